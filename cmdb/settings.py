"""One settings class, read from the environment (prefix ``CMDB_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WEAK_PASSWORDS = {"", "neo4j", "password", "changeme", "secret"}
# Keys come from a JWKS of public keys, so shared-secret (HS*) and "none" are never accepted.
_ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore")

    mode: Literal["development", "production"] = "development"

    # Neo4j. No URI: the CLI runs the project-managed local instance and fills these in.
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"
    neo4j_tx_timeout_s: float = Field(30.0, gt=0)
    neo4j_pool_size: int = Field(50, ge=1)
    # How long a request waits for an unreachable Neo4j (connection, pool and transaction
    # retries) before it is answered 503 with Retry-After.
    neo4j_retry_s: float = Field(5.0, gt=0, le=300)

    # API server
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1)
    log_level: str = "INFO"
    log_json: bool = True

    # Project-local state: Neo4j install, instances, generated passwords.
    home: Path = Path(".cmdb")
    local_neo4j_bolt_port: int = 7687
    local_neo4j_http_port: int = 7474
    local_neo4j_heap: str = "2g"
    local_neo4j_pagecache: str = "2g"

    # GraphQL limits
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(500, ge=1)
    max_query_depth: int = Field(12, ge=2)
    max_aliases: int = Field(30, ge=1)
    max_tokens: int = Field(4000, ge=100)
    max_relationship_depth: int = Field(5, ge=1)
    # Reads over the graph compiled to one Cypher statement per operation (cmdb.compiler);
    # off: every field resolves through the resolvers (the differential tests compare both).
    read_compiler: bool = True
    # Directives per operation (fragments count each time they are spread).
    max_directives: int = Field(25, ge=1)
    # How often one field (response name) may be selected in one selection set.
    max_field_repeats: int = Field(10, ge=1)
    # One unit per field, times the page sizes of the lists it is in (README: Hardening).
    max_query_cost: int = Field(100_000, ge=1)
    # Operations in one batched request (a JSON array); 0 refuses batches.
    max_batch_operations: int = Field(0, ge=0, le=50)
    # Queries over GET (never mutations or subscriptions); unset: in development only.
    graphql_get_queries: bool | None = None

    # Discovery: CIs no source has seen for this long become stale, later retired.
    discovery_stale_after_days: float = Field(7, gt=0)
    discovery_retire_after_days: float = Field(30, gt=0)
    # A record that changes nothing records its sighting only when the last one by the same
    # source is older than this: re-sending a batch within it writes nothing.
    discovery_sighting_resolution_s: float = Field(300, ge=0)

    # Chargeback: the one currency rates, pools, fees and lines are kept in (ISO 4217).
    chargeback_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    # Usage older than this is refused: it would open (and hold up the closing of) a period
    # long gone.
    chargeback_usage_max_age_days: int = Field(400, ge=1)

    # Bearer tokens (JWT). With no issuer set, development mode uses the built-in development
    # issuer (keys under <home>/dev-issuer); production mode refuses to start without one.
    auth_issuer: str | None = None
    auth_audience: str = "cmdb-api"
    auth_jwks_url: str | None = None
    auth_algorithms: list[str] = ["RS256"]
    # Dotted path of the claim holding roles or groups (Keycloak: realm_access.roles,
    # Entra ID: roles, Okta: groups) and how its values map to our roles. An empty map takes
    # values that are already our role names as they are.
    auth_roles_claim: str = "roles"
    auth_role_map: dict[str, str] = {}
    auth_user_claims: list[str] = ["preferred_username", "upn", "email", "sub"]
    auth_leeway_s: int = Field(30, ge=0, le=300)
    auth_jwks_cache_s: float = Field(300.0, gt=0)
    auth_jwks_refetch_cooldown_s: float = Field(30.0, ge=0)
    auth_jwks_timeout_s: float = Field(3.0, gt=0)
    auth_max_header_bytes: int = Field(8192, ge=1024)
    dev_issuer_token_ttl_s: int = Field(8 * 3600, ge=60)

    # Subscriptions (stateChanges, orderStatus). One change feed per API process reads the
    # stored change log every subscription_interval_s while anyone subscribes, re-reading the
    # last subscription_overlap_s (changes commit out of stamp order, and replicas' clocks
    # differ): it must exceed the longest stamp-to-commit delay of a write plus the clock skew
    # between replicas. A subscriber with more than subscription_queue_size changes waiting
    # to be sent is closed (it fell behind). subscription_shared_feed=false makes each
    # subscriber poll Neo4j on its own every second (the former design; benchmarks compare).
    subscription_interval_s: float = Field(0.1, gt=0, le=60)
    subscription_overlap_s: float = Field(30.0, gt=0, le=3600)
    subscription_queue_size: int = Field(1000, ge=1)
    subscription_shared_feed: bool = True

    # Health roll-up: a state write commits the item's own state with a pending mark; each
    # API process's roll-up worker looks for marks this often and rolls up all it finds at
    # once (docs/health.md: "When roll-up runs"). The bound on commit-to-health delay, plus
    # the roll-up's own time.
    rollup_delay_ms: int = Field(50, ge=1, le=60_000)

    # Request bodies: the cap of every route without one of its own (the bulk endpoints keep
    # theirs); over it, 413. The default is the alarms endpoint's.
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)

    # Operations. /metrics needs permission metrics:read unless public; the business gauges
    # (open alarms, orders waiting, services down) are read from Neo4j at most once per
    # metrics_cache_s. Tracing is off unless an OTLP endpoint is set here or in the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT.
    metrics_public: bool = False
    metrics_cache_s: float = Field(5.0, ge=0)
    metrics_max_operations: int = Field(200, ge=1)
    otel_endpoint: str | None = None
    otel_service_name: str = "cmdb-api"

    @field_validator("auth_issuer", "auth_jwks_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _refuse_weak_production(self) -> Settings:
        if self.mode == "production":
            if self.neo4j_uri is None:
                raise ValueError("CMDB_NEO4J_URI must be set in production mode")
            pw = self.neo4j_password.get_secret_value() if self.neo4j_password else ""
            if pw in _WEAK_PASSWORDS:
                raise ValueError("CMDB_NEO4J_PASSWORD is missing or a known default")
            if self.auth_issuer is None or self.auth_jwks_url is None:
                raise ValueError("CMDB_AUTH_ISSUER and CMDB_AUTH_JWKS_URL must be set in "
                                 "production mode (the development issuer is refused)")
        if self.auth_issuer is not None and self.auth_jwks_url is None:
            raise ValueError("CMDB_AUTH_JWKS_URL is required when CMDB_AUTH_ISSUER is set")
        bad = [a for a in self.auth_algorithms if a not in _ASYMMETRIC_ALGORITHMS]
        if bad or not self.auth_algorithms:
            raise ValueError(
                f"CMDB_AUTH_ALGORITHMS allows only asymmetric algorithms "
                f"({', '.join(sorted(_ASYMMETRIC_ALGORITHMS))}); refused: {', '.join(bad)}")
        if self.default_page_size > self.max_page_size:
            raise ValueError("CMDB_DEFAULT_PAGE_SIZE exceeds CMDB_MAX_PAGE_SIZE")
        return self

    @property
    def is_development(self) -> bool:
        return self.mode == "development"

    @property
    def uses_dev_issuer(self) -> bool:
        """Whether tokens come from the built-in development issuer (development mode only)."""
        return self.is_development and self.auth_issuer is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
