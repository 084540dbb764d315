"""How tests authenticate: bearer tokens from the development issuer of the test settings.

Every test that calls the API as someone goes through ``auth_headers`` so that the way a caller
proves who they are lives in one place.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cmdb.identity.devissuer import DevIssuer
from cmdb.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("test-admin", ("admin",))


@lru_cache(maxsize=1)
def dev_issuer() -> DevIssuer:
    """The issuer whose key the test app trusts (same home as ``test_settings``)."""
    return DevIssuer.load(Settings(home=ROOT / ".cmdb"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@lru_cache(maxsize=256)
def _token(user: str, roles: tuple[str, ...]) -> str:
    return dev_issuer().mint(user, roles)


def auth_headers(user: str, *roles: str) -> dict[str, str]:
    """Request headers that make the caller ``user`` with ``roles`` (a fresh dict each time)."""
    return bearer(_token(user, roles))
