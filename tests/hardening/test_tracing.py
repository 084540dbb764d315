"""OpenTelemetry: one GraphQL request is one trace (HTTP span, GraphQL spans, Neo4j spans);
no parameter values in spans; nothing at all on the request path when tracing is off."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cmdb
from cmdb.app import create_app
from cmdb.discovery import queries as discovery_queries
from cmdb.observability.spans import statement_names, statement_span
from cmdb.observability.tracing import provider_from_settings, tracing_endpoint
from tests.auth import ADMIN, auth_headers
from tests.hardening.logcapture import json_lines

pytestmark = pytest.mark.integration

QUERY = """query FindServer($name: String!) {
  configurationItems(filter: {nameContains: $name}) { totalCount }
}"""


async def _traced(db, settings) -> AsyncIterator[tuple[httpx.AsyncClient,
                                                     InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, db=db, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        assert db.tracer is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     headers=auth_headers(ADMIN[0], *ADMIN[1])) as c:
            yield c, exporter
    assert db.tracer is None  # the shared database is left untraced


@pytest_asyncio.fixture
async def traced(clean_db, test_settings) -> AsyncIterator[tuple[httpx.AsyncClient,
                                                                 InMemorySpanExporter]]:
    async for pair in _traced(clean_db, test_settings):
        yield pair


@pytest_asyncio.fixture
async def traced_resolvers(clean_db, test_settings
                           ) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    """The same with the read compiler off: every field through its resolver."""
    resolvers = test_settings.model_copy(update={"read_compiler": False})
    async for pair in _traced(clean_db, resolvers):
        yield pair


async def test_a_compiled_read_is_one_trace(traced):
    client, exporter = traced
    secret = "payroll-secret-host"
    r = await client.post("/graphql", json={"query": QUERY, "variables": {"name": secret}})
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [root] = [s for s in spans if s.name.startswith("POST /graphql")]
    [operation] = [s for s in spans if s.name == "GraphQL Query: FindServer"]
    [compiled] = [s for s in spans if s.name == "GraphQL compiled read"]
    [statement] = [s for s in spans if s.name.startswith("neo4j ")]
    assert statement.name == "neo4j compiler.read"
    assert not [s for s in spans if s.name.startswith("GraphQL Resolving")]
    assert len({s.context.trace_id for s in spans}) == 1
    chain = []
    span = statement
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span)
    # strawberry does not make its operation span current, so the compiled read's span sits
    # beside it under the HTTP span (the resolvers' spans name it as their parent instead).
    assert chain == [compiled, root] and operation.parent.span_id == root.context.span_id
    for s in (statement, compiled):
        assert all(secret not in str(v) for v in s.attributes.values()), s.attributes


async def test_one_graphql_request_is_one_trace(traced_resolvers):
    client, exporter = traced_resolvers
    secret = "payroll-secret-host"
    r = await client.post("/graphql", json={"query": QUERY, "variables": {"name": secret}})
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    http = [s for s in spans if s.name.startswith("POST /graphql")]
    assert len(http) == 1, [s.name for s in spans]
    root = http[0]
    assert root.parent is None
    operation = [s for s in spans if s.name == "GraphQL Query: FindServer"]
    resolver = [s for s in spans if s.name == "GraphQL Resolving: configurationItems"]
    neo4j = [s for s in spans if s.name.startswith("neo4j ")]
    assert operation and resolver and neo4j, [s.name for s in spans]
    assert {s.name for s in spans} >= {"GraphQL Parsing", "GraphQL Validation"}
    assert len({s.context.trace_id for s in spans}) == 1

    def ancestors(span):
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            yield span

    # Neo4j spans nest under the resolver that ran them, under the operation, under HTTP.
    for span in neo4j:
        chain = list(ancestors(span))
        assert resolver[0] in chain and operation[0] in chain and chain[-1] is root
        assert span.attributes["db.system.name"] == "neo4j"
        assert span.attributes["db.operation.name"].isalpha()
    # Statement names, never parameter values (nor argument values in GraphQL spans).
    for span in neo4j + resolver:
        assert all(secret not in str(v) for v in span.attributes.values()), span.attributes


async def test_log_lines_of_a_traced_request_name_its_trace(traced):
    client, exporter = traced
    with json_lines("cmdb.api") as lines:
        r = await client.post("/graphql", json={"query": "{ services { totalCount } }"},
                              headers={"X-Request-ID": "traced-1"})
        assert r.status_code == 200
    [access] = [x for x in lines() if x.get("request_id") == "traced-1"]
    [http] = [s for s in exporter.get_finished_spans() if s.name.startswith("POST /graphql")]
    assert access["trace_id"] == format(http.context.trace_id, "032x")


async def test_transactions_nest_their_statements(traced):
    client, exporter = traced
    r = await client.post("/graphql", json={"query": """mutation {
      createConfigurationItem(input: {name: "web-1", ciClass: SERVER}) {
        configurationItem { id } errors { message } } }"""})
    assert r.status_code == 200 and r.json()["data"]["createConfigurationItem"]["errors"] == []
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    transactions = [s for s in spans if s.name == "neo4j write transaction"]
    assert transactions, [s.name for s in spans]
    inner = [s for s in spans if s.parent is not None and s.parent.span_id
             in {t.context.span_id for t in transactions}]
    assert inner and all(s.name.startswith("neo4j ") for s in inner)
    # Statements kept as constants in a queries module are named after them.
    named = [s for s in inner if "db.query.summary" in s.attributes]
    assert named, [s.name for s in inner]
    assert all(s.name == f"neo4j {s.attributes['db.query.summary']}" for s in named)
    assert all(s.attributes["db.query.summary"].split(".")[0] in {"items", "rollup",
               "discovery"} for s in named), [s.name for s in named]
    assert all(by_id[t.parent.span_id].name.startswith("GraphQL Resolving")
               for t in transactions if t.parent is not None)


async def test_tracing_is_off_unless_configured(client, clean_db, test_settings, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing_endpoint(test_settings) is None
    assert provider_from_settings(test_settings) is None
    app = client._transport.app  # the default app of the client fixture
    assert clean_db.tracer is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    from strawberry.extensions.tracing import OpenTelemetryExtension

    from cmdb.api.schema import build_schema

    def kinds(schema):
        return {type(factory()) for factory in schema.extensions}

    assert OpenTelemetryExtension not in kinds(build_schema(test_settings))
    assert OpenTelemetryExtension in kinds(build_schema(test_settings, TracerProvider()))
    r = await client.post("/graphql", json={"query": "{ services { totalCount } }"})
    assert r.status_code == 200


def test_the_standard_variable_turns_tracing_on(test_settings, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_endpoint(test_settings) == "http://127.0.0.1:4318"
    provider = provider_from_settings(test_settings)
    try:
        assert provider is not None
    finally:
        if isinstance(provider, TracerProvider):
            provider.shutdown()
    ours = test_settings.model_copy(update={"otel_endpoint": "http://collector:4318"})
    assert tracing_endpoint(ours) == "http://collector:4318"


def test_every_package_under_cmdb_is_a_regular_package():
    # A directory of modules without ``__init__.py`` is a namespace package: it imports, but
    # ``pkgutil.iter_modules`` (and so ``statement_names``) never sees it.
    root = Path(cmdb.__file__).parent
    missing = sorted(str(d.relative_to(root)) for d in root.rglob("*")
                     if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").exists())
    assert missing == []


def test_the_statements_of_every_domain_are_named():
    names = statement_names()
    root = Path(cmdb.__file__).parent
    domains = sorted(p.parent.name for p in root.glob("*/queries.py"))
    assert "discovery" in domains
    for domain in domains:
        module = importlib.import_module(f"cmdb.{domain}.queries")
        constants = {attr: value for attr, value in vars(module).items()
                     if attr.isupper() and isinstance(value, str)}
        assert constants, domain
        unnamed = sorted(attr for attr, value in constants.items() if value not in names)
        assert unnamed == [], domain
        # a constant shared with another domain keeps the first domain's name
        assert any(names[value] == f"{domain}.{attr}" for attr, value in constants.items()), \
            domain


def test_a_discovery_statement_span_carries_its_name():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with statement_span(provider.get_tracer("test"), discovery_queries.UPSERT_SOURCE,
                        "WRITE", "neo4j"):
        pass
    [span] = exporter.get_finished_spans()
    assert span.name == "neo4j discovery.UPSERT_SOURCE"
    assert span.attributes is not None
    assert span.attributes["db.query.summary"] == "discovery.UPSERT_SOURCE"
