"""The request's caller, for REST routes and the GraphQL context alike."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from cmdb.identity.principal import Principal, has_permission


def request_principal(conn: HTTPConnection) -> Principal | None:
    """The caller authenticated by the bearer-token middleware; None is anonymous.

    Websockets have none here: they authenticate in ``connection_init`` instead.
    """
    state = conn.scope.get("state") or {}
    principal = state.get("principal")
    return principal if isinstance(principal, Principal) else None


def forbidden(principal: Principal | None, perm: str, action: str) -> JSONResponse:
    """The 401/403 answer of a REST route the caller may not use: ``{error, code}``."""
    if principal is None:
        return JSONResponse(
            {"error": f"authentication is required to {action}", "code": "UNAUTHENTICATED"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
    return JSONResponse(
        {"error": f"your roles may not {action} (needs permission {perm})", "code": "FORBIDDEN"},
        status_code=403,
    )


def refusal(principal: Principal | None, perm: str, action: str) -> JSONResponse | None:
    """``forbidden`` when the caller lacks ``perm``; None when they may go on."""
    return None if has_permission(principal, perm) else forbidden(principal, perm, action)
