"""Authentication of every request: a pure ASGI middleware in front of the whole app.

Every HTTP request needs a valid bearer token except the public paths (health probes, the
development issuer's own endpoints, and in development the GraphiQL page and its assets).
The principal is put into the request's state, where ``identity.http.request_principal``
finds it. Websockets authenticate later, in ``connection_init`` (see the GraphQL router).

Headers are sized before anything is parsed: a request whose headers are larger than the
limit is refused with 431 at once, so a 1 MB header costs no crypto and no JSON.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from cmdb.identity.devissuer import DEV_ISSUER, JWKS_PATH, TOKEN_PATH, DevIssuer
from cmdb.identity.jwks import JWKSCache, KeySource, StaticKeys, http_fetch
from cmdb.identity.principal import Principal
from cmdb.identity.tokens import TokenError, TokenVerifier
from cmdb.logs import principal_var
from cmdb.settings import Settings

log = logging.getLogger("cmdb.identity.auth")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
DEV_PUBLIC_PATHS = frozenset({TOKEN_PATH, JWKS_PATH})
ASSET_PREFIX = "/graphiql-assets/"
METRICS_PATH = "/metrics"  # public only with CMDB_METRICS_PUBLIC=true
# All request headers together; the Authorization header has its own, smaller limit.
MAX_TOTAL_HEADER_BYTES = 32 * 1024


@dataclass
class Authenticator:
    settings: Settings
    verifier: TokenVerifier
    keys: KeySource
    dev_issuer: DevIssuer | None

    @classmethod
    def from_settings(cls, settings: Settings,
                      jwks_transport: httpx.AsyncBaseTransport | None = None) -> Authenticator:
        """The external issuer when one is configured, else the development issuer."""
        if settings.uses_dev_issuer:
            dev = DevIssuer.load(settings)
            keys: KeySource = StaticKeys(dev.public_keys())
            return cls(settings, TokenVerifier(settings, keys, DEV_ISSUER), keys, dev)
        if settings.auth_issuer is None or settings.auth_jwks_url is None:
            raise ValueError("CMDB_AUTH_ISSUER and CMDB_AUTH_JWKS_URL must both be set")
        keys = JWKSCache(
            http_fetch(settings.auth_jwks_url, settings.auth_jwks_timeout_s, jwks_transport),
            cache_s=settings.auth_jwks_cache_s,
            cooldown_s=settings.auth_jwks_refetch_cooldown_s,
        )
        return cls(settings, TokenVerifier(settings, keys, settings.auth_issuer), keys, None)

    def is_public(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS:
            return True
        if path == METRICS_PATH and self.settings.metrics_public:
            return True
        if self.dev_issuer is None:
            return False
        if path in DEV_PUBLIC_PATHS or path.startswith(ASSET_PREFIX):
            return True
        # The GraphiQL page itself (GET asking for HTML never executes an operation).
        return (scope.get("method") == "GET" and path.rstrip("/") == "/graphql"
                and b"text/html" in _header(scope, b"accept"))

    async def authenticate(self, authorization: str | None) -> Principal:
        return await self.verifier.principal(authorization)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return b""


async def _refuse(send: Send, status: int, code: str, message: str,
                  extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(k) + len(v) for k, v in headers) > MAX_TOTAL_HEADER_BYTES:
            await _refuse(send, 431, "HEADERS_TOO_LARGE",
                          f"request headers exceed {MAX_TOTAL_HEADER_BYTES} bytes")
            return
        if self.auth.is_public(scope):
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"authorization")
        if len(raw) > self.auth.settings.auth_max_header_bytes:
            await _refuse(send, 431, "HEADERS_TOO_LARGE",
                          "the Authorization header is too large")
            return
        try:
            principal = await self.auth.authenticate(raw.decode("latin-1") if raw else None)
        except TokenError as e:
            description = e.reason.replace('"', "'")
            await _refuse(send, 401, "UNAUTHENTICATED", e.reason, {
                "www-authenticate":
                    f'Bearer error="invalid_token", error_description="{description}"'})
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["principal"] = principal
        principal_var.set(principal)  # every log line of the request names the caller
        await self.app(scope, receive, send)
