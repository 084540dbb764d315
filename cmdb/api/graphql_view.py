"""The GraphQL endpoint: GraphiQL served locally, websockets authenticated in connection_init,
JSON bodies only, and every refusal of the HTTP layer answered as JSON.

It is strawberry's plain ASGI view on a Starlette route, not its FastAPI router: the router
resolves FastAPI dependencies (the context getter, request, response, background tasks) on
every request, which cost about 0.2 ms of CPU per request for nothing the API uses."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types.unset import UnsetType

from cmdb.api.graphiql import LocalGraphiQL
from cmdb.core.httpbody import loads
from cmdb.db.availability import graphql_unavailable, retry_after_header
from cmdb.identity.auth import Authenticator
from cmdb.identity.request_auth import request_principal
from cmdb.identity.tokens import TokenError
from cmdb.logs import request_id_var
from cmdb.schema.context import Context

log = logging.getLogger("cmdb.api")

_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
          415: "UNSUPPORTED_MEDIA_TYPE"}


def refusal(status: int, message: str) -> JSONResponse:
    """An HTTP-level refusal in the shape of a GraphQL response (no data, one error)."""
    return JSONResponse(
        {"errors": [{"message": message,
                     "extensions": {"code": _CODES.get(status, "BAD_REQUEST")}}]},
        status_code=status)


# Why on_ws_connect refused the connection being set up (read when strawberry closes it).
_ws_refusal: ContextVar[str | None] = ContextVar("cmdb_ws_refusal", default=None)
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes


def close_reason(text: str) -> str:
    """``text`` cut to what a websocket close frame can carry (whole characters)."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class RefusalReasonWebSocket(ASGIWebSocketAdapter):
    """strawberry closes a connection that ``on_ws_connect`` refused with 4403 "Forbidden";
    this says why (e.g. "Forbidden: a bearer token is required ..."), so that a client can
    tell a missing token from an expired one."""

    async def close(self, code: int, reason: str) -> None:
        refusal = _ws_refusal.get()
        if code == 4403 and refusal:
            reason = close_reason(f"{reason}: {refusal}")
        await super().close(code, reason)


class CMDBGraphQL(LocalGraphiQL[Context, None]):
    # strawberry types the attribute as a callable of its base view (it ignores it too).
    websocket_adapter_class = RefusalReasonWebSocket  # type: ignore[assignment]

    def __init__(self, *args: Any, authenticator: Authenticator, route_path: str = "/graphql",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.authenticator = authenticator
        self.route_path = route_path  # where it is served: metrics label requests with it

    async def get_context(self, request: Request | WebSocket,
                          response: Response | WebSocket) -> Context:
        # The same context for HTTP requests and websocket subscriptions; over a websocket
        # the principal is set from connection_init (on_ws_connect).
        return Context(request.app.state.services, request_id_var.get() or "",
                       request_principal(request))

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        # strawberry answers its refusals (bad JSON, GET mutations, ...) as plain text.
        try:
            return await super().run(*args, **kwargs)
        except HTTPException as e:
            return refusal(e.status_code, e.reason)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> Any:
        """POST bodies are JSON only. Forms (urlencoded, multipart) and text/plain are what a
        page on another site can make a browser send without asking (CSRF), so they are
        refused with 415 whatever they hold."""
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type != "application/json":
                raise HTTPException(
                    415, "send GraphQL requests as JSON (Content-Type: application/json); "
                         f"{content_type or 'a body without a content type'} is refused")
        return await super().parse_http_body(request)

    def decode_json(self, data: str | bytes) -> object:
        """Strict JSON (no NaN or Infinity). Whatever cannot be decoded, too deeply nested or
        not UTF-8 included, is a JSONDecodeError: a 400 over HTTP, a 4400 close over a
        websocket, never an internal error."""
        try:
            return loads(data)
        except json.JSONDecodeError:
            raise
        except RecursionError:
            raise json.JSONDecodeError("the JSON is nested too deeply", "", 0) from None
        except UnicodeDecodeError as e:
            raise json.JSONDecodeError(f"the body is not valid UTF-8 (byte {e.start})",
                                       "", 0) from None
        except ValueError as e:
            raise json.JSONDecodeError(str(e), "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        """A request body is one JSON object, or a list of them for a batch."""
        try:
            parsed = self.decode_json(data)
        except json.JSONDecodeError as e:
            raise HTTPException(400, f"the body is not valid JSON: {e.msg}") from e
        for item in parsed if isinstance(parsed, list) else (parsed,):
            if not isinstance(item, dict):
                raise HTTPException(400, "expected a JSON object with a query "
                                         "(and optionally variables and operationName)")
            name = item.get("operationName")
            if name is not None and not isinstance(name, str):
                raise HTTPException(400, "operationName must be a string or null")
        return parsed

    def _validate_batch_request(self, request_data: list[Any], protocol: Any) -> None:
        config = self.schema.config.batching_config
        if config is None:
            raise HTTPException(400, "batched operations (a JSON array) are not accepted; "
                                     "send one operation per request")
        if len(request_data) > config["max_operations"]:
            raise HTTPException(400, f"a batch holds at most {config['max_operations']} "
                                     f"operations; this one has {len(request_data)}")
        super()._validate_batch_request(request_data, protocol)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a graphql-transport-ws connection from its connection_init payload.

        The payload carries ``{"Authorization": "Bearer <token>"}`` (browsers cannot set
        headers on a websocket). A refusal closes the socket with 4403 before any operation,
        its reason saying what was wrong with the token.
        """
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        raw = params.get("Authorization", params.get("authorization"))
        try:
            context.principal = await self.authenticator.authenticate(
                raw if isinstance(raw, str) else None)
        except TokenError as e:
            log.info("websocket refused: %s", e.reason)
            _ws_refusal.set(e.reason)
            raise ConnectionRejectionError({"reason": e.reason}) from e
        return None

    def create_response(self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
                        sub_response: Response) -> Response:
        """A response holding a database-unavailable error is a 503 with Retry-After as a
        whole (its data, if any, is partial)."""
        response = super().create_response(response_data, sub_response)
        if graphql_unavailable(response_data):
            response.status_code = 503
            response.headers.update(retry_after_header())
        return response
