"""The raw ceiling over HTTP: ``POST /op/{name}`` runs that operation's hand-written Cypher from
bench/queries.py with the JSON body as parameters, and returns the rows as JSON.

    python -m bench.raw_server --port 8002 --uri bolt://127.0.0.1:27687 --user neo4j \
        --password "$(cat .cmdb/instances/bench/password)"

One async driver per process (``--workers`` processes, default 1), one ``execute_query`` per
request (routed read or write).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from neo4j import AsyncDriver, AsyncGraphDatabase, RoutingControl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.queries import OPERATIONS


def create_app(uri: str, user: str, password: str, database: str, pool_size: int) -> Starlette:
    driver: AsyncDriver | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal driver
        driver = AsyncGraphDatabase.driver(
            uri, auth=(user, password), max_connection_pool_size=pool_size
        )
        await driver.verify_connectivity()
        try:
            yield
        finally:
            await driver.close()

    async def run_op(request: Request) -> JSONResponse:
        op = OPERATIONS.get(request.path_params["name"])
        if op is None:
            return JSONResponse({"error": "unknown operation"}, status_code=404)
        params = await request.json()
        if not isinstance(params, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        assert driver is not None
        records, _, _ = await driver.execute_query(
            op.cypher,
            params,
            database_=database,
            routing_=RoutingControl.WRITE if op.write else RoutingControl.READ,
        )
        return JSONResponse([r.data() for r in records])

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/op/{name}", run_op, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The app of one worker process (uvicorn factory); main() puts the settings in the env."""
    e = os.environ
    return create_app(e["BENCH_RAW_URI"], e["BENCH_RAW_USER"], e["BENCH_RAW_PASSWORD"],
                      e["BENCH_RAW_DATABASE"], int(e["BENCH_RAW_POOL_SIZE"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--uri", default=os.environ.get("NEO4J_URI", "bolt://127.0.0.1:27687"))
    parser.add_argument("--user", default=os.environ.get("NEO4J_USER", "neo4j"))
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"))
    parser.add_argument("--database", default="neo4j")
    parser.add_argument("--pool-size", type=int, default=50, help="per process, as our API")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    args = parser.parse_args()
    if not args.password:
        parser.error("--password (or NEO4J_PASSWORD) is required")

    import uvicorn

    os.environ.update(BENCH_RAW_URI=args.uri, BENCH_RAW_USER=args.user,
                      BENCH_RAW_PASSWORD=args.password, BENCH_RAW_DATABASE=args.database,
                      BENCH_RAW_POOL_SIZE=str(args.pool_size))
    uvicorn.run("bench.raw_server:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
