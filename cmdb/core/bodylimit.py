"""A size cap on every request body, enforced before a route reads it.

Each route has a cap: the bulk endpoints keep the caps they document, every other route (the
GraphQL endpoint among them) takes ``max_body_bytes`` from the settings. A body over its cap is
answered 413 as soon as its declared length or the bytes read so far pass the cap, so nothing
past the cap is buffered and nothing of it reaches a route.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    pass


def _too_large(path: str, cap: int, graphql_path: str) -> JSONResponse:
    message = f"the request body is larger than {cap} bytes"
    if path == graphql_path:  # answered in the shape of a GraphQL response, like its refusals
        return JSONResponse({"errors": [{"message": message,
                                         "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]},
                            status_code=413)
    return JSONResponse({"error": message, "code": "TOO_LARGE"}, status_code=413)


class BodyLimitMiddleware:
    """Refuses request bodies over their route's cap with 413. Plain ASGI."""

    def __init__(self, app: ASGIApp, default_cap: int, caps: Mapping[str, int],
                 graphql_path: str = "/graphql") -> None:
        self.app = app
        self.default_cap = default_cap
        self.caps = dict(caps)
        self.graphql_path = graphql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        cap = self.caps.get(path, self.default_cap)
        for key, value in scope.get("headers", ()):
            if key.lower() == b"content-length":
                declared = bytes(value).strip()
                if declared.isdigit() and int(declared) > cap:
                    await _too_large(path, cap, self.graphql_path)(scope, receive, send)
                    return
                break  # a malformed length is refused by the server or the route

        size = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > cap:
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except _TooLarge:
            if started:  # the route answered before reading all of it; nothing more to say
                return
            await _too_large(path, cap, self.graphql_path)(scope, receive, send)
