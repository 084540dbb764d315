"""Fuzzing the GraphQL API with generated documents (hypothesis-graphql), in production mode,
against the demo graph on the test Neo4j.

Queries and mutations with random arguments, valid for the schema (positive) or with one
violation (negative), sent as an admin and as a requester (low privilege). Every answer must
be a GraphQL response or a 4xx JSON: no 500, no traceback, no masked internal error (an
unexpected exception is a bug). A mutation answered with errors and no data must leave the
graph exactly as it was (nodes, relationships and every property).

Arguments are not only random text: IDs and strings are drawn partly from the graph (item
ids, user names, codes, periods), so generated operations reach past "not found".

The run is bounded for CI: ``CMDB_FUZZ_EXAMPLES`` operations in all (default 1500, shared
among the tests below by fixed shares). A longer run (``-s`` prints the counts):

    CMDB_FUZZ_EXAMPLES=20000 .venv/bin/pytest -s tests/hardening/test_fuzz.py
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import graphql
import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, nodes
from hypothesis_graphql import strategies as gql_st

from cmdb.api.schema import sdl
from cmdb.app import create_app
from cmdb.db.driver import Database
from cmdb.demo.loader import load_demo
from cmdb.services import Services
from cmdb.settings import Settings
from tests.auth import ADMIN, auth_headers
from tests.hardening.abuse_fixtures import GRAPHQL, authenticator, production

pytestmark = pytest.mark.integration

TOTAL = int(os.environ.get("CMDB_FUZZ_EXAMPLES", "1500"))
SCHEMA = sdl()
AS_ADMIN = auth_headers(ADMIN[0], *ADMIN[1])
AS_REQUESTER = auth_headers("fuzzy-requester", "requester")

# Values from the graph, filled by the fixture before the first example is drawn.
POOL: dict[str, list[str]] = {"ids": ["none"], "strings": ["none"]}


def _from_graph(kind: str) -> st.SearchStrategy[str]:
    return st.deferred(lambda: st.sampled_from(POOL[kind]))


def _string(value: str) -> graphql.StringValueNode:
    return nodes.String(value)


TEXT = st.text(max_size=40)
SCALARS: dict[str, st.SearchStrategy[graphql.ValueNode]] = {
    "ID": st.one_of(_from_graph("ids"), _from_graph("ids"), TEXT).map(_string),
    "String": st.one_of(_from_graph("strings"), TEXT).map(_string),
    "Int": st.one_of(st.integers(0, 20), st.integers(-(2**31), 2**31 - 1)).map(nodes.Int),
    "Date": st.one_of(st.dates().map(str), TEXT).map(_string),
    "DateTime": st.one_of(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
                          st.datetimes().map(lambda d: d.isoformat()), TEXT).map(_string),
    "Decimal": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
        st.sampled_from(["NaN", "Infinity", "-0", "1e999999", "0.000000001", "-1"]),
        TEXT).map(_string),
    "JSON": st.one_of(
        TEXT.map(_string),
        st.integers().map(nodes.Int),
        st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=6), TEXT,
                        max_size=4).map(lambda d: nodes.Object([
                            graphql.ObjectFieldNode(name=graphql.NameNode(value=k),
                                                    value=nodes.String(v))
                            for k, v in d.items()]))),
}


FINGERPRINT = """
CALL () { MATCH (n) UNWIND [k IN keys(n) | n[k]] + [null] AS v WITH n, v
          RETURN count(DISTINCT n) AS nodes, count(v) AS nodeProps,
                 sum(CASE WHEN v IS :: ZONED DATETIME THEN v.epochMillis ELSE 0 END) AS nodeTimes,
                 sum(CASE WHEN v IS :: STRING THEN size(v) ELSE 0 END) AS nodeText }
CALL () { MATCH ()-[r]->() UNWIND [k IN keys(r) | r[k]] + [null] AS v WITH r, v
          RETURN count(DISTINCT r) AS rels, count(v) AS relProps,
                 sum(CASE WHEN v IS :: ZONED DATETIME THEN v.epochMillis ELSE 0 END) AS relTimes,
                 sum(CASE WHEN v IS :: STRING THEN size(v) ELSE 0 END) AS relText }
RETURN nodes, nodeProps, nodeTimes, nodeText, rels, relProps, relTimes, relText"""


def share(part: float) -> settings:
    return settings(max_examples=max(1, round(TOTAL * part)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@dataclass
class Fuzz:
    client: httpx.AsyncClient
    db: Database
    services: Services
    counts: Counter[str] = field(default_factory=Counter)

    async def fingerprint(self) -> tuple[Any, ...]:
        """Cheap, and changed by any write the CMDB makes: counts of nodes, relationships
        and their properties, the sum of every timestamp (creating, changing or ending
        anything stamps the clock's now) and the total length of the text properties."""
        rows = await self.db.read(FINGERPRINT)
        return tuple(rows[0].values())

    async def settled_fingerprint(self) -> tuple[Any, ...]:
        # An earlier calculation deletes the lines it replaced in the background; the
        # fingerprint is taken once that work is done, so it is not laid at a later mutation.
        await self.services.chargeback.settle()
        # Likewise the health roll-up of earlier writes, which the worker does after them.
        await self.services.rollup.settle()
        return await self.fingerprint()

    async def exchange(self, query: str, headers: dict[str, str], kind: str) -> None:
        mutation = query.lstrip().startswith("mutation")
        before = await self.settled_fingerprint() if mutation else None
        r = await self.client.post(GRAPHQL, json={"query": query}, headers=headers)
        self.counts[kind] += 1
        body = check_answer(r, query)
        if body.get("data") is None:
            error = body["errors"][0]
            code = (error.get("extensions") or {}).get("code") or error["message"][:30]
            self.counts[f"{kind}: refused {code}"] += 1
        else:
            self.counts[f"{kind}: answered"] += 1
        if before is not None and isinstance(body, dict) and body.get("data") is None:
            after = await self.settled_fingerprint()
            assert after == before, f"a refused mutation wrote: {query}"


def check_answer(r: httpx.Response, query: str) -> dict[str, Any]:
    context = f"\n{query}\n-> {r.status_code} {r.text[:1500]}"
    assert r.status_code < 500, context
    assert "Traceback" not in r.text and 'File "/' not in r.text, context
    assert r.headers["content-type"].startswith("application/json"), context
    body = r.json()
    assert isinstance(body, dict), context
    if r.status_code != 200:
        assert 400 <= r.status_code < 500 and body["errors"], context
        return body
    assert "data" in body or "errors" in body, context
    for error in body.get("errors", ()):
        assert isinstance(error.get("message"), str) and error["message"], context
        assert (error.get("extensions") or {}).get("code") != "INTERNAL", context
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz(db: Database, test_settings: Settings) -> AsyncIterator[Fuzz]:
    await db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
    await load_demo(db, test_settings, echo=lambda _: None)
    rows = await db.read(
        "MATCH (n) WHERE n.id IS NOT NULL WITH n ORDER BY n.id LIMIT 400 "
        "RETURN collect(n.id) AS ids")
    POOL["ids"] = rows[0]["ids"] or ["none"]
    rows = await db.read(
        "MATCH (n) UNWIND [n.userName, n.code, n.name, n.period, n.key] AS v "
        "WITH DISTINCT v WHERE v IS NOT NULL AND v = toString(v) "
        "WITH v ORDER BY v LIMIT 400 RETURN collect(v) AS strings")
    POOL["strings"] = (rows[0]["strings"] or []) + [
        "2026-01", "2025-12", "requester", "operator", "admin", "DEPENDS_ON", ""]
    settings_ = production(test_settings)
    app = create_app(settings_, db=db, authenticator=authenticator(settings_))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            f = Fuzz(client, db, app.state.services)
            yield f
    print(f"\nfuzzed operations ({sum(v for k, v in f.counts.items() if ':' not in k)}):",
          dict(sorted(f.counts.items())))


@share(0.25)
@given(query=gql_st.queries(SCHEMA, custom_scalars=SCALARS))
async def test_queries_as_admin(fuzz: Fuzz, query: str) -> None:
    await fuzz.exchange(query, AS_ADMIN, "query admin")


@share(0.1)
@given(query=gql_st.queries(SCHEMA, custom_scalars=SCALARS))
async def test_queries_as_requester(fuzz: Fuzz, query: str) -> None:
    await fuzz.exchange(query, AS_REQUESTER, "query requester")


@share(0.3)
@given(query=gql_st.mutations(SCHEMA, custom_scalars=SCALARS))
async def test_mutations_as_admin(fuzz: Fuzz, query: str) -> None:
    await fuzz.exchange(query, AS_ADMIN, "mutation admin")


@share(0.15)
@given(query=gql_st.mutations(SCHEMA, custom_scalars=SCALARS))
async def test_mutations_as_requester(fuzz: Fuzz, query: str) -> None:
    await fuzz.exchange(query, AS_REQUESTER, "mutation requester")


@share(0.2)
@given(query=st.one_of(gql_st.queries(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE),
                       gql_st.mutations(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE)))
async def test_invalid_operations(fuzz: Fuzz, query: str) -> None:
    await fuzz.exchange(query, AS_ADMIN, "invalid")
