"""Document limits (depth, aliases, tokens, directives, repeated fields, batches, page sizes,
cost) and the Neo4j transaction timeout: each refused before execution with one clear
GraphQL error (or a 4xx JSON for the HTTP layer), never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from cmdb.db.driver import Database
from cmdb.settings import Settings
from tests.hardening import abuse_fixtures
from tests.hardening.abuse_fixtures import GRAPHQL, app_client, only_error, post, production

pytestmark = pytest.mark.integration
prod = abuse_fixtures.prod
production_settings = abuse_fixtures.production_settings

NESTED_LIST = ("query($a: Int, $b: Int) { services(first: $a) { edges { node { "
               "relationships(first: $b) { item { name } } } } } }")


def nested_cost(a: int, b: int) -> int:
    """The cost of NESTED_LIST: services 1 + edges (1 + a x node (1 + relationships
    (1 + b x item (1 + name 1))))."""
    return 1 + 1 + a * (1 + 1 + b * 2)


async def refused_before_running(db: Database, client: httpx.AsyncClient, query: str,
                                 variables: dict[str, Any] | None = None) -> dict[str, Any]:
    before = db.round_trips.count
    error = only_error(await post(client, query, variables))
    assert db.round_trips.count == before, "a refused request ran statements"
    return error


async def test_depth_is_limited_also_through_fragments(prod, clean_db, production_settings):
    depth = production_settings.max_query_depth
    # services > edges > node = 3 levels, then item > relationships pairs.
    pairs = (depth - 3) // 2
    inner = "relationships(first: 1) { item { " * pairs + "name" + " } }" * pairs
    ok = await post(prod, "{ services { edges { node { " + inner + " } } } }")
    assert "errors" not in ok, ok
    deeper = "relationships(first: 1) { item { " * (pairs + 1) + "name" + " } }" * (pairs + 1)
    error = await refused_before_running(
        clean_db, prod, "{ services { edges { ...N } } } fragment N on ServiceEdge { node { "
        + deeper + " } }")
    assert error["extensions"]["code"] == "TOO_DEEP"
    assert f"exceeds maximum operation depth of {depth}" in error["message"]


async def test_aliases_in_fragments_count_each_time_the_fragment_is_used(
        prod, clean_db, production_settings):
    limit = production_settings.max_aliases
    per_fragment = 8
    fragment = "fragment A on Query { " + " ".join(
        f"a{i}: __typename" for i in range(per_fragment)) + " }"
    fits = limit // per_fragment
    ok = await post(prod, "{ " + "... on Query { ...A } " * fits + "} " + fragment)
    assert "errors" not in ok, ok
    error = await refused_before_running(
        clean_db, prod, "{ " + "... on Query { ...A } " * (fits + 1) + "} " + fragment)
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert error["message"].startswith(f"{per_fragment * (fits + 1)} aliases found")
    assert f"the limit is {limit}" in error["message"]


async def test_too_many_tokens(prod, production_settings):
    error = only_error(await post(
        prod, "{ " + "__typename " * (production_settings.max_tokens + 1) + "}"))
    assert f"more than {production_settings.max_tokens} tokens" in error["message"]


async def test_directives_are_counted_through_fragments(prod, clean_db, production_settings):
    limit = production_settings.max_directives
    fragment = "fragment D on Service { name @include(if: true) id @skip(if: false) }"
    fits = limit // 2
    spreads = " ".join(f"n{i}: node {{ ...D }}" for i in range(fits))
    ok = await post(prod, "{ services { edges { " + spreads + " } } } " + fragment)
    assert "errors" not in ok, ok
    spreads = " ".join(f"n{i}: node {{ ...D }}" for i in range(fits + 1))
    error = await refused_before_running(
        clean_db, prod, "{ services { edges { " + spreads + " } } } " + fragment)
    assert error["extensions"]["code"] == "TOO_MANY_DIRECTIVES"
    assert error["message"].startswith(f"{2 * (fits + 1)} directives found")


async def test_a_repeated_directive_is_one_error(prod, clean_db):
    # Known or not: without this check each unknown copy would be an error of its own.
    for directive in ("@skip(if: false)", "@aa"):
        error = await refused_before_running(
            clean_db, prod, "{ __typename " + directive * 10 + " }")
        assert error["extensions"]["code"] == "DIRECTIVE_REPEATED"


async def test_repeated_fields_are_merged_and_limited(prod, clean_db, production_settings):
    limit = production_settings.max_field_repeats
    before = clean_db.round_trips.count
    await post(prod, "{ services { totalCount } }")
    one = clean_db.round_trips.count - before
    before = clean_db.round_trips.count
    ok = await post(prod, "{ " + "services { totalCount } " * limit + "}")
    assert ok == {"data": {"services": {"totalCount": 0}}}
    assert clean_db.round_trips.count - before == one  # executed once
    error = await refused_before_running(
        clean_db, prod, "{ " + "services { totalCount } " * (limit + 1) + "}")
    assert error["extensions"]["code"] == "FIELD_REPEATED"
    assert f"selected {limit + 1} times" in error["message"]


async def test_a_fragment_bomb_is_refused_without_expanding_it(prod, clean_db):
    # 3^25 copies of one field if expanded; measured per fragment it is a few hundred nodes.
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} ...F{i + 1} }}"
                         for i in range(25))
    error = await refused_before_running(
        clean_db, prod, "{ ...F0 } " + fragments + " fragment F25 on Query { services "
        "{ totalCount } }")
    assert error["extensions"]["code"] == "FIELD_REPEATED"


async def test_batches_are_refused_unless_allowed(prod, clean_db, test_settings):
    r = await prod.post(GRAPHQL, json=[{"query": "{ __typename }"}] * 2)
    assert r.status_code == 400
    assert "batched operations" in r.json()["errors"][0]["message"]
    allowing = production(test_settings, max_batch_operations=3)
    async for c in app_client(allowing, clean_db):
        r = await c.post(GRAPHQL, json=[{"query": "{ __typename }"},
                                        {"query": "{ services { totalCount } }"}])
        assert r.status_code == 200
        assert r.json() == [{"data": {"__typename": "Query"}},
                            {"data": {"services": {"totalCount": 0}}}]
        r = await c.post(GRAPHQL, json=[{"query": "{ __typename }"}] * 4)
        assert r.status_code == 400
        assert r.json()["errors"][0]["message"] == \
            "a batch holds at most 3 operations; this one has 4"
        # Each operation of a batch meets the same limits.
        r = await c.post(GRAPHQL, json=[
            {"query": NESTED_LIST, "variables": {"a": 500, "b": 500}}])
        assert r.json()[0]["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


@pytest.mark.parametrize(("query", "variables", "argument"), [
    ("{ services(first: 100000) { totalCount } }", None, "first"),
    ("{ configurationItems(last: 501) { totalCount } }", None, "last"),
    ("{ alarms(first: -1) { id } }", None, "first"),
    ("query($n: Int) { users(last: $n) { totalCount } }", {"n": 100000}, "last"),
    ("query($n: Int = 9999) { roles(first: $n) { name } }", None, None),
    ("{ chargeLines(period: \"2026-01\", first: 1001) { hasNextPage } }", None, "first"),
])
async def test_page_sizes_above_the_limit_are_refused_before_running(
        prod, clean_db, production_settings, query, variables, argument):
    error = await refused_before_running(clean_db, prod, query, variables)
    assert error["extensions"]["code"] == "INVALID"
    if argument is not None:
        assert error["extensions"]["fields"][0]["field"] == argument
        assert error["message"].startswith(f"{argument} must be between 0 and ")


async def test_page_sizes_within_the_limit_run(prod, production_settings):
    largest = production_settings.max_page_size
    body = await post(prod, "query($n: Int) { services(first: $n) { totalCount } "
                            "chargeLines(period: \"2026-01\", first: 1000) { hasNextPage } }",
                      {"n": largest})
    assert "errors" not in body, body


async def test_cost_is_computed_from_page_sizes_before_running(
        prod, clean_db, production_settings):
    limit = production_settings.max_query_cost
    largest = production_settings.max_page_size
    assert nested_cost(largest, largest) > limit, "the test needs a costlier query"
    error = await refused_before_running(clean_db, prod, NESTED_LIST,
                                         {"a": largest, "b": largest})
    cost = nested_cost(largest, largest)
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": limit}
    assert error["message"].startswith(f"query cost {cost} exceeds the limit of {limit}")
    # The same document with smaller pages runs (its plan is cached; only the numbers change).
    small = await post(prod, NESTED_LIST, {"a": 10, "b": 10})
    assert "errors" not in small, small
    # Literal page sizes and a variable's default count the same way.
    literal = (f"{{ services(first: {largest}) {{ edges {{ node {{ "
               f"relationships(first: {largest}) {{ item {{ name }} }} }} }} }} }}")
    assert (await refused_before_running(clean_db, prod, literal))["extensions"]["cost"] == cost
    default = NESTED_LIST.replace("$b: Int", f"$b: Int = {largest}")
    error = await refused_before_running(clean_db, prod, default, {"a": largest})
    assert error["extensions"]["cost"] == cost
    # Without first, the default page size counts.
    error = await refused_before_running(
        clean_db, prod, f"{{ services {{ edges {{ node {{ relationships(first: {largest}) "
        "{ item { relationships(first: 3) { item { name } } } } } } } }")
    assert error["extensions"]["cost"] == 2 + production_settings.default_page_size * (
        2 + largest * (2 + 3 * 2))


async def test_the_introspection_query_passes_the_limits_in_development(gql):
    data = await gql.ok(get_introspection_query(descriptions=True))
    assert data["__schema"]["queryType"]["name"] == "Query"


SLOW = "UNWIND range(1, 500000000) AS x WITH x WHERE x % 7 = 0 RETURN count(*) AS n"


async def test_a_statement_over_the_transaction_timeout_is_stopped_with_a_clear_error(
        clean_db, test_settings, monkeypatch):
    from cmdb.health.service import HealthService

    timeout_s = 0.5
    settings = production(test_settings, neo4j_tx_timeout_s=timeout_s)
    short = Database(clean_db.driver, clean_db.database, timeout_s)

    async def slow(self: HealthService, *args: object, **kwargs: object) -> object:
        await self.db.read(SLOW)  # a statement that runs for seconds
        raise AssertionError("the statement was not stopped")

    monkeypatch.setattr(HealthService, "ranked_impact", slow)
    async for c in app_client(settings, short):
        r = await c.post(GRAPHQL, json={"query": '{ impact(ids: ["x"]) { rank } }'})
        assert r.status_code == 200
        error = r.json()["errors"][0]
        assert error["extensions"]["code"] == "TIMEOUT"
        assert error["message"].startswith(f"the query took longer than {timeout_s:g} s")
        assert "Internal" not in error["message"]


def test_the_cost_example_of_the_readme():
    from graphql import parse

    from cmdb.api.schema import PAGE_SIZE_OVERRIDES, build_schema
    from cmdb.schema.limits import Limits, compile_cost

    settings = Settings()
    limits = Limits(settings.max_query_depth, settings.max_aliases, settings.max_directives,
                    settings.max_field_repeats, settings.max_query_cost,
                    settings.default_page_size, settings.max_page_size, PAGE_SIZE_OVERRIDES)
    query = ("{ services(first: 100) { edges { node { name relationships(first: 20) "
             "{ item { name } } } } } }")
    plan = compile_cost(build_schema(settings)._schema, parse(query), None, limits)
    assert plan.expr == (4302, ())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"`{query[2:-2]}`" in readme.replace("\n", " ")
