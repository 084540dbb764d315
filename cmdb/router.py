"""The GraphQL router: GraphiQL served locally, websockets authenticated in connection_init."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types.unset import UnsetType

from cmdb.db.availability import graphql_unavailable, retry_after_header
from cmdb.graphiql import LocalGraphiQLRouter
from cmdb.identity.auth import Authenticator
from cmdb.identity.tokens import TokenError
from cmdb.resolvers.context import Context

log = logging.getLogger("cmdb.api")


class CMDBGraphQLRouter(LocalGraphiQLRouter[Context, None]):
    def __init__(self, *args: Any, authenticator: Authenticator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.authenticator = authenticator

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a graphql-transport-ws connection from its connection_init payload.

        The payload carries ``{"Authorization": "Bearer <token>"}`` (browsers cannot set
        headers on a websocket). A refusal closes the socket with 4403 before any operation.
        """
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        raw = params.get("Authorization", params.get("authorization"))
        try:
            context.principal = await self.authenticator.authenticate(
                raw if isinstance(raw, str) else None)
        except TokenError as e:
            log.info("websocket refused: %s", e.reason)
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
