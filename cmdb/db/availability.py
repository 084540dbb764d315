"""When Neo4j cannot be reached: what counts as "unavailable" and how the API answers it.

Every surface answers the same way while the database is gone: HTTP 503 with a
``Retry-After`` header and a short error (REST: ``{"error", "code": "UNAVAILABLE"}``;
GraphQL: an error with ``extensions.code = "UNAVAILABLE"`` and the whole response 503).
How long a request waits before that answer is bounded by ``CMDB_NEO4J_RETRY_S`` (the
driver's transaction retry time and connection timeouts, see ``Database.connect``).

A client may send the same write again after a 503: every write path is idempotent (an
order's idempotency key, an alarm's event id, a usage record's id, discovery's MERGE on
identifiers), so a commit that did happen before the connection broke is not repeated.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError
from neo4j.exceptions import (
    ConnectionPoolError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from cmdb.logs import request_id_var

log = logging.getLogger("cmdb.api")

# Raised by the driver when no server answers (refused, reset, timed out, retries exhausted),
# when a pooled connection broke, when no connection could be had in time, or when the
# server itself says "not now" (starting, stopping, a transient error retried to the limit).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable, SessionExpired, ConnectionPoolError, TransientError,
)
CODE = "UNAVAILABLE"
MESSAGE = "the database is unavailable; retry later"
# Seconds a client should wait before sending again (the Retry-After header).
RETRY_AFTER_S = 5


def is_unavailable(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it was raised from, a few levels deep) says the database
    cannot be reached right now."""
    for _ in range(4):
        if error is None:
            return False
        if isinstance(error, UNAVAILABLE_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_after_header() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_S)}


def unavailable_response(request_id: str | None = None) -> JSONResponse:
    body: dict[str, object] = {"error": MESSAGE, "code": CODE}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=503, headers=retry_after_header())


async def unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI exception handler for ``UNAVAILABLE_ERRORS`` raised by any route."""
    log.warning(
        "database unavailable at %s %s: %s: %s", request.method, request.url.path,
        type(exc).__name__, exc)
    return unavailable_response(request_id_var.get() or None)


def unavailable_graphql_error(error: GraphQLError) -> GraphQLError:
    """The client's view of a resolver error caused by an unreachable database."""
    return GraphQLError(MESSAGE, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path,
                        extensions={"code": CODE, "retryAfter": RETRY_AFTER_S})


def graphql_unavailable(response_data: object) -> bool:
    """Whether a formatted GraphQL response (or batch of them) holds an unavailable error:
    one dict lookup per response when there are no errors."""
    for one in response_data if isinstance(response_data, list) else (response_data,):
        errors = one.get("errors") if isinstance(one, dict) else None
        for e in errors or ():
            ext = e.get("extensions") if isinstance(e, dict) else None
            if ext and ext.get("code") == CODE:
                return True
    return False
