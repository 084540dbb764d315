"""The FastAPI application: /graphql, /healthz, /readyz, request ids and access logs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from cmdb.alarms.http import MAX_BODY_BYTES as ALARMS_MAX_BODY
from cmdb.alarms.http import router as alarms_router
from cmdb.api.graphiql import local_assets_dir, mount_assets
from cmdb.api.graphql_view import CMDBGraphQL
from cmdb.api.metrics import metrics_router
from cmdb.api.schema import build_schema
from cmdb.chargeback.http import MAX_BODY_BYTES as USAGE_MAX_BODY
from cmdb.chargeback.http import router as chargeback_router
from cmdb.core.bodylimit import BodyLimitMiddleware
from cmdb.db.availability import (
    UNAVAILABLE_ERRORS,
    is_unavailable,
    retry_after_header,
    unavailable_handler,
    unavailable_response,
)
from cmdb.db.driver import Database
from cmdb.db.migrations import current_version, migrate, pending
from cmdb.db.tracing import trace_database
from cmdb.discovery.http import MAX_BODY_BYTES as DISCOVERY_MAX_BODY
from cmdb.discovery.http import router as discovery_router
from cmdb.identity.auth import Authenticator, BearerAuthMiddleware
from cmdb.identity.devissuer import dev_issuer_router
from cmdb.logs import configure_logging, principal_var, request_id_var
from cmdb.observability.metrics import MetricsMiddleware
from cmdb.observability.tracing import instrument_app, provider_from_settings
from cmdb.services import Services
from cmdb.settings import Settings, get_settings
from cmdb.vdi.http import MAX_BODY_BYTES as VDI_MAX_BODY
from cmdb.vdi.http import router as vdi_router

log = logging.getLogger("cmdb.api")
_REQUEST_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if 0 < len(given) <= 64 and set(given) <= _REQUEST_ID_OK:
                return given
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Request id (given or new) for logs and the X-Request-ID header, one access log line
    per request, and a JSON 500 naming the request id for an unhandled error.

    Plain ASGI: Starlette's ``BaseHTTPMiddleware`` runs the app in a task of its own behind
    memory streams, which cost more per request than the rest of the HTTP layer together."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        token = request_id_var.set(rid)
        principal_token = principal_var.set(None)  # set by authentication, for the logs
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                answered = True
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"]
                headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as e:
                if is_unavailable(e) and not answered:  # raised outside a route
                    log.warning("database unavailable: %s: %s", type(e).__name__, e)
                    await unavailable_response(rid)(scope, receive, send_with_id)
                    return
                log.exception("unhandled error")
                if answered:
                    raise
                await JSONResponse({"error": "internal error", "request_id": rid},
                                   status_code=500)(scope, receive, send_with_id)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={
                    "method": scope.get("method"), "path": scope.get("path"), "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        finally:
            principal_var.reset(principal_token)
            request_id_var.reset(token)


def create_app(settings: Settings | None = None, db: Database | None = None,
               authenticator: Authenticator | None = None,
               tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build the app. ``db`` lets tests share one driver; otherwise one is made per process.

    ``authenticator`` defaults to the one the settings describe (external issuer or, in
    development, the built-in development issuer). ``tracer_provider`` turns tracing on
    (default: the one the settings configure, or off).
    """
    settings = settings or get_settings()
    if settings.neo4j_uri is None:
        raise RuntimeError("CMDB_NEO4J_URI is not set; start the API with `cmdb serve`")
    auth = authenticator or Authenticator.from_settings(settings)
    tracer_provider = tracer_provider or provider_from_settings(settings)
    app = FastAPI(title="CMDB API", version="0.1.0",
                  lifespan=_lifespan(settings, db, tracer_provider),
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.auth = auth
    # GraphiQL's scripts are served from this process when installed (no CDN needed).
    assets = local_assets_dir(settings.home) if settings.is_development else None
    graphql = _graphql_view(settings, tracer_provider, auth, assets)
    _add_routes(app, graphql, settings, auth, assets)
    _add_middleware(app, settings, auth, graphql.route_path)
    _add_probes(app)
    instrument_app(app, tracer_provider)  # tracing: a no-op unless configured
    return app


def _lifespan(settings: Settings, db: Database | None, tracer_provider: TracerProvider | None
              ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start: the driver (unless given), the services, pending migrations. Stop: in reverse."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = db is None
        database = db or Database.connect(
            settings.neo4j_uri or "",
            settings.neo4j_user,
            settings.neo4j_password.get_secret_value() if settings.neo4j_password else "",
            settings.neo4j_database,
            settings.neo4j_tx_timeout_s,
            settings.neo4j_pool_size,
            settings.neo4j_retry_s,
        )
        app.state.db = database
        app.state.services = Services(database, settings)
        try:
            if await pending(database):
                await migrate(database)
        except Exception:  # the API still starts; /readyz reports why it is not ready
            log.exception("schema migration at start failed")
        app.state.services.rollup.start()  # stopped by services.close()
        try:
            with trace_database(database, tracer_provider):
                yield
        finally:
            await app.state.services.close()
            await app.state.services.chargeback.settle()
            if own:
                await database.close()

    return lifespan


def _graphql_view(settings: Settings, tracer_provider: TracerProvider | None,
                  auth: Authenticator,
                  assets: Path | None) -> CMDBGraphQL:
    return CMDBGraphQL(
        build_schema(settings, tracer_provider),
        graphql_ide="graphiql" if settings.is_development else None,
        # Mutations and subscriptions are never run over GET; queries in development only
        # unless the setting says otherwise.
        allow_queries_via_get=(settings.is_development if settings.graphql_get_queries is None
                               else settings.graphql_get_queries),
        multipart_uploads_enabled=False,
        assets_dir=assets,
        # graphql-transport-ws only: the legacy graphql-ws protocol is off.
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        authenticator=auth,
    )


def _add_routes(app: FastAPI, graphql: CMDBGraphQL, settings: Settings, auth: Authenticator,
                assets: Path | None) -> None:
    # Neo4j unreachable: 503 with Retry-After from every route, never a 500.
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, unavailable_handler)
    # Every method reaches the view, which refuses what it does not serve as JSON.
    # strawberry's view is an ASGI app; Starlette routes take one as their endpoint.
    app.router.add_route(graphql.route_path, graphql)  # type: ignore[arg-type]
    app.router.add_websocket_route(graphql.route_path, graphql)  # type: ignore[arg-type]
    app.include_router(alarms_router)
    if auth.dev_issuer is not None:
        app.include_router(dev_issuer_router(auth.dev_issuer))
    app.include_router(vdi_router)
    app.include_router(discovery_router)
    app.include_router(chargeback_router)
    app.include_router(metrics_router(settings))
    if assets is not None:
        mount_assets(app, assets)


def _add_middleware(app: FastAPI, settings: Settings, auth: Authenticator,
                    graphql_path: str) -> None:
    """The last added runs first (outermost)."""
    # Added before the request-id middleware, so it runs inside it: refusals get an id too.
    app.add_middleware(BearerAuthMiddleware, authenticator=auth)
    # Every body is capped before any route reads it; the bulk endpoints keep their own caps.
    app.add_middleware(BodyLimitMiddleware, default_cap=settings.max_body_bytes, caps={
        "/api/alarms": ALARMS_MAX_BODY, "/api/chargeback/usage": USAGE_MAX_BODY,
        "/api/discovery/batches": DISCOVERY_MAX_BODY, "/api/vdi/events": VDI_MAX_BODY,
    }, graphql_path=graphql_path)
    # Counts and times every request, refusals included (see /metrics).
    app.add_middleware(MetricsMiddleware)
    # Outermost: every answer, refusals and 500s included, carries the request id.
    app.add_middleware(RequestContextMiddleware)


def _add_probes(app: FastAPI) -> None:
    """/ (to GraphiQL), /healthz (the process answers), /readyz (Neo4j and schema ready)."""

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/graphql")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/readyz", _readyz, methods=["GET"])


async def _readyz(request: Request) -> Response:
    database: Database = request.app.state.db
    checks: dict[str, object] = {"neo4j": await database.ping()}
    if checks["neo4j"]:
        try:
            version = await current_version(database)
            current = not await pending(database)
        except Exception:
            version, current = -1, False
        checks["schema_version"] = version
        checks["schema_current"] = current
    ready = bool(checks["neo4j"]) and bool(checks.get("schema_current"))
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503,
                        headers=None if ready else retry_after_header())


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: every worker reads the same environment."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
