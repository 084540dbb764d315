"""An app in production mode for the abuse tests, and helpers to look at its answers.

Production mode needs an external token issuer; here the "external" issuer is the test
development issuer's key set, so ``tests.auth.auth_headers`` tokens work unchanged while the
app itself runs exactly as in production (no development issuer, no GraphiQL, no
introspection, no suggestions, no queries over GET).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cmdb.app import create_app
from cmdb.db.driver import Database
from cmdb.identity.auth import Authenticator
from cmdb.identity.devissuer import DEV_ISSUER
from cmdb.identity.jwks import StaticKeys
from cmdb.identity.tokens import TokenVerifier
from cmdb.settings import Settings
from tests.auth import ADMIN, auth_headers, dev_issuer

GRAPHQL = "/graphql"


def production(test_settings: Settings, **overrides: Any) -> Settings:
    """The test settings in production mode, with the test issuer as the external one."""
    values: dict[str, Any] = {
        **test_settings.model_dump(exclude={"neo4j_password"}),
        "neo4j_password": test_settings.neo4j_password,
        "mode": "production",
        "auth_issuer": DEV_ISSUER,
        "auth_jwks_url": "https://issuer.invalid/jwks",  # never fetched: keys are static
    }
    values.update(overrides)
    return Settings(**values)


def authenticator(settings: Settings) -> Authenticator:
    keys = StaticKeys(dev_issuer().public_keys())
    return Authenticator(settings, TokenVerifier(settings, keys, DEV_ISSUER), keys, None)


async def app_client(settings: Settings, db: Database,
                     headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db=db, authenticator=authenticator(settings)
                     if settings.mode == "production" else None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     headers=headers if headers is not None
                                     else auth_headers(ADMIN[0], *ADMIN[1])) as c:
            yield c


@pytest.fixture(scope="session")
def production_settings(test_settings: Settings) -> Settings:
    return production(test_settings)


@pytest_asyncio.fixture
async def prod(clean_db: Database,
               production_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The production-mode app on an empty graph, called as an admin."""
    async for c in app_client(production_settings, clean_db):
        yield c


async def post(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
               **kwargs: Any) -> dict[str, Any]:
    """POST one operation; the answer must be a 200 GraphQL response."""
    r = await client.post(GRAPHQL, json={"query": query, "variables": variables}, **kwargs)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    """The single error of a refused request (no data)."""
    assert body.get("data") is None, body
    assert len(body["errors"]) == 1, body["errors"]
    error: dict[str, Any] = body["errors"][0]
    return error
