"""What the metrics cost per request and per Neo4j round trip, measured in-process.

    .venv/bin/python -m bench.ops [--n 200000]

Rows: the metrics middleware around an ASGI app that answers at once (its cost is the
difference to the bare app), the GraphQL hooks (operation name; errors by kind), one
Neo4j statement observation (two clock reads and a histogram), the tracing check of the
database wrapper when tracing is off, and rendering /metrics with 200 operation series.
No database, no network. Prints a table and records the machine; writes the "Metrics
overhead" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from prometheus_client.exposition import generate_latest

from bench.doc import replace_section
from bench.run import DOC, machine
from cmdb.core.models import DomainError, FieldError
from cmdb.observability import metrics
from cmdb.observability.instruments import NEO4J_READ, REGISTRY, REQUEST_SECONDS, REQUESTS

START, END = "<!-- ops-metrics:start -->", "<!-- ops-metrics:end -->"
HEADING = "## Metrics overhead"


class _Route:
    path = "/graphql"


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _Route
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _per_call_async(n: int, fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t) / n * 1e6


def _per_call(n: int, fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


class _Ctx:
    operation_name = "DashboardServices"


async def run(n: int) -> list[tuple[str, float]]:
    wrapped = metrics.MetricsMiddleware(_bare)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/graphql", "headers": []}

    bare = await _per_call_async(n, lambda: _bare(scope(), receive, send))
    with_metrics = await _per_call_async(n, lambda: wrapped(scope(), receive, send))
    error = GraphQLError("x", original_error=DomainError([FieldError(field=None, message="m")]))
    database = type("Db", (), {"tracer": None})()

    def observe() -> None:
        started = time.perf_counter()
        NEO4J_READ.observe(time.perf_counter() - started)

    def tracing_check() -> None:
        if database.tracer is not None:
            raise AssertionError

    metrics._record.set(metrics.RequestRecord())  # as inside a request, for the hooks
    for i in range(200):  # a scrape with many series
        REQUEST_SECONDS.labels("/graphql", f"Op{i}").observe(0.01)
        REQUESTS.labels("/graphql", f"Op{i}", "200").inc()
    scrape_n = max(10, n // 1000)
    return [
        ("bare ASGI app (reference)", bare),
        ("same app inside the metrics middleware", with_metrics),
        ("middleware cost per request (difference)", with_metrics - bare),
        ("GraphQL hook: operation name", _per_call(n, lambda: metrics.note_operation(_Ctx))),
        ("GraphQL hook: one error by kind", _per_call(n, lambda: metrics.note_errors([error]))),
        ("per Neo4j round trip: clock reads + histogram", _per_call(n, observe)),
        ("per Neo4j round trip: tracing off (tracer check)", _per_call(n, tracing_check)),
        ("render /metrics, 200 operation series", _per_call(scrape_n,
                                                            lambda: generate_latest(REGISTRY))),
    ]


def render(rows: list[tuple[str, float]], n: int) -> str:
    m = machine()
    lines = [START, HEADING, "",
             f"`PYTHONPATH=. .venv/bin/python -m bench.ops --n {n}` on {m['cpu']} "
             f"({m['cores']} cores, shared), Python {m['python']}; in-process, no database, no "
             "network. Mean microseconds per call over the run.", "",
             "| what | µs per call |", "| --- | ---: |"]
    for name, us in rows:
        lines.append(f"| {name} | {us:.2f} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    rows = asyncio.run(run(args.n))
    text = render(rows, args.n)
    print(text)
    replace_section(DOC, text, START, END, HEADING)


if __name__ == "__main__":
    main()
