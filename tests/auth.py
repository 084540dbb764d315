"""How tests authenticate as a user with roles.

Every test that calls the API as someone goes through ``auth_headers`` so that the way a caller
proves who they are can change in one place.
"""

from __future__ import annotations

ADMIN = ("test-admin", ("admin",))


def auth_headers(user: str, *roles: str) -> dict[str, str]:
    """Request headers that make the caller ``user`` with ``roles``."""
    return {"X-CMDB-User": user, "X-CMDB-Roles": ",".join(roles)}
