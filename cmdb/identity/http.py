"""The request's caller, for REST routes and the GraphQL context alike."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from cmdb.identity.principal import Principal, principal_from_headers


def request_principal(conn: HTTPConnection) -> Principal | None:
    """The authenticated caller of this request or websocket; None is anonymous."""
    settings = conn.app.state.services.settings
    return principal_from_headers(conn.headers, settings.is_development)


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
