"""The request's caller, for REST routes and the GraphQL context alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
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


Handler = Callable[[Request, Principal], Awaitable[Response]]
Route = Callable[[Request], Awaitable[Response]]


def permitted(perm: str, action: str) -> Callable[[Handler], Route]:
    """A REST route that runs only for a caller with ``perm`` (``forbidden`` otherwise) and
    is handed that caller."""

    def wrap(handler: Handler) -> Route:
        # Not functools.wraps: FastAPI would read the handler's signature through it and take
        # ``principal`` for a query parameter.
        async def route(request: Request) -> Response:
            principal = request_principal(request)
            if principal is None or not has_permission(principal, perm):
                return forbidden(principal, perm, action)
            return await handler(request, principal)

        route.__name__, route.__doc__ = handler.__name__, handler.__doc__
        return route

    return wrap
