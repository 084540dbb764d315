"""Production mode: no GraphiQL, no introspection, no "Did you mean", masked internal errors
with the request id; in every mode: JSON bodies only (CSRF), no mutations or subscriptions
over GET, and refusals of the HTTP layer as JSON."""

from __future__ import annotations

import httpx
import pytest
from graphql import get_introspection_query

from cmdb.core.models import Criticality
from tests.hardening import abuse_fixtures
from tests.hardening.abuse_fixtures import GRAPHQL, app_client, only_error, post, production

pytestmark = pytest.mark.integration
prod = abuse_fixtures.prod
production_settings = abuse_fixtures.production_settings

TYPO_FIELD = "{ servics { totalCount } }"
TYPO_ARGUMENT = "{ services(frist: 1) { totalCount } }"
TYPO_ENUM = "{ services(filter: {kinds: [BUSINES]}) { totalCount } }"
TYPO_ENUM_VARIABLE = ("query($c: [Criticality!]) { configurationItems(filter: "
                      "{criticalities: $c}) { totalCount } }")

MUTATION = 'mutation { createOwnerGroup(input: {name: "x"}) { errors { message } } }'


def messages(body: dict[str, object]) -> str:
    return " ".join(e["message"] for e in body.get("errors", ()))  # type: ignore[attr-defined]


async def test_graphiql_is_served_in_development_only(client, prod):
    page = await client.get(GRAPHQL, headers={"accept": "text/html"})
    assert page.status_code == 200 and "GraphiQL" in page.text
    page = await prod.get(GRAPHQL, headers={"accept": "text/html"})
    assert page.status_code == 404
    assert "GraphiQL" not in page.text
    anonymous = await prod.get(GRAPHQL, headers={"accept": "text/html", "authorization": ""})
    assert anonymous.status_code == 401


async def test_introspection_is_off_in_production(gql, prod):
    assert (await gql.ok("{ __schema { queryType { name } } }"))["__schema"]
    for query in (get_introspection_query(), '{ __type(name: "Query") { name } }'):
        error = only_error(await post(prod, query)) if "__type(" in query else \
            (await post(prod, query))["errors"][0]
        assert "introspection has been disabled" in error["message"]
    # __typename is not introspection of the schema: clients rely on it.
    assert await post(prod, "{ __typename }") == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("query", [TYPO_FIELD, TYPO_ARGUMENT, TYPO_ENUM])
async def test_no_field_suggestions_in_production(gql, prod, query):
    assert "Did you mean" in messages(await gql(query))
    body = await post(prod, query)
    assert body["errors"] and "Did you mean" not in messages(body)


async def test_no_suggestions_for_variable_values_in_production(gql, prod):
    wrong = {"c": [Criticality.HIGH.value[:-1]]}  # "HIG"
    assert "Did you mean" in messages(await gql(TYPO_ENUM_VARIABLE, **wrong))
    body = await post(prod, TYPO_ENUM_VARIABLE, wrong)
    assert body["errors"] and "Did you mean" not in messages(body)


async def test_internal_errors_are_masked_with_the_request_id(prod, monkeypatch):
    from cmdb.health.service import HealthService

    async def broken(self: object, *args: object, **kwargs: object) -> object:
        raise RuntimeError("secret detail of a bug at /srv/cmdb/health/service.py")

    monkeypatch.setattr(HealthService, "ranked_impact", broken)
    r = await prod.post(GRAPHQL, json={"query": '{ impact(ids: ["x"]) { rank } }'},
                        headers={"x-request-id": "req-42"})
    assert r.status_code == 200
    error = r.json()["errors"][0]
    assert error["message"] == "Internal error (request id req-42)"
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "req-42"}
    assert r.headers["x-request-id"] == "req-42"
    assert "secret" not in r.text and "Traceback" not in r.text and "/srv" not in r.text


@pytest.mark.parametrize("mode", ["development", "production"])
async def test_mutations_and_subscriptions_are_refused_over_get(
        mode, client, prod, clean_db):
    c = client if mode == "development" else prod
    before = await clean_db.read("MATCH (n) WHERE NOT n:SchemaMigration RETURN count(n) AS n")
    for operation, query in [
            ("mutations", MUTATION),
            ("subscriptions", "subscription { stateChanges { id } }")]:
        r = await c.get(GRAPHQL, params={"query": query})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["message"] == f"{operation} are not allowed when using GET"
        assert r.headers["x-request-id"]
    assert await clean_db.read(
        "MATCH (n) WHERE NOT n:SchemaMigration RETURN count(n) AS n") == before
    # The same mutation over POST writes (so the refusal above is what kept the graph).
    assert (await post(c, MUTATION))["data"]["createOwnerGroup"]["errors"] == []
    assert await clean_db.read(
        "MATCH (n) WHERE NOT n:SchemaMigration RETURN count(n) AS n") != before


@pytest.mark.parametrize("mode", ["development", "production"])
async def test_subscriptions_are_refused_over_post(mode, client, prod):
    c = client if mode == "development" else prod
    r = await c.post(GRAPHQL, json={"query": "subscription { stateChanges { id } }"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "subscriptions are not allowed when using POST"


async def test_queries_over_get_only_in_development_unless_set(client, prod, clean_db,
                                                              test_settings):
    params = {"query": "{ __typename }"}
    assert (await client.get(GRAPHQL, params=params)).json() == {"data": {"__typename": "Query"}}
    r = await prod.get(GRAPHQL, params=params)
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "queries are not allowed when using GET"
    async for c in app_client(production(test_settings, graphql_get_queries=True), clean_db):
        r = await c.get(GRAPHQL, params=params)
        assert r.json() == {"data": {"__typename": "Query"}}


CSRF_BODIES = [
    ("application/x-www-form-urlencoded", {"data": {"query": "{ __typename }"}}),
    ("multipart/form-data", {"files": {"query": (None, "{ __typename }")}}),
    ("text/plain", {"content": b'{"query": "{ __typename }"}',
                    "headers": {"content-type": "text/plain"}}),
    ("no content type", {"content": b'{"query": "{ __typename }"}'}),
]


@pytest.mark.parametrize("mode", ["development", "production"])
@pytest.mark.parametrize(("kind", "request_args"), CSRF_BODIES, ids=[k for k, _ in CSRF_BODIES])
async def test_non_json_bodies_are_refused_with_415(mode, kind, request_args, client, prod,
                                                    clean_db):
    c = client if mode == "development" else prod
    before = clean_db.round_trips.count
    r = await c.post(GRAPHQL, **request_args)
    assert r.status_code == 415, r.text
    body = r.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert clean_db.round_trips.count == before


async def test_json_with_a_charset_is_json(prod):
    r = await prod.post(GRAPHQL, content=b'{"query": "{ __typename }"}',
                        headers={"content-type": "application/json; charset=utf-8"})
    assert r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(("body", "message"), [
    (b"123", "expected a JSON object"),
    (b'"{ __typename }"', "expected a JSON object"),
    (b"null", "expected a JSON object"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"query": "{ __typename }", "operationName": 5}', "operationName must be a string"),
    (b'{"query": "{ __typename }", "operationName": ["a"]}', "operationName must be a string"),
    (b'{"query": 5}', "`query` must be a string"),
    (b'{"query": "{ __typename }", "variables": [1]}', "`variables` must be an object"),
    (b"{not json", "the body is not valid JSON: Expecting property name"),
])
async def test_malformed_bodies_are_a_json_400(prod, body, message):
    r = await prod.post(GRAPHQL, content=body, headers={"content-type": "application/json",
                                                        "x-request-id": "bad-1"})
    assert r.status_code == 400, r.text
    assert message in r.json()["errors"][0]["message"]
    assert r.headers["x-request-id"] == "bad-1"


async def test_refusals_of_other_methods_are_json(prod: httpx.AsyncClient):
    r = await prod.put(GRAPHQL, json={"query": "{ __typename }"})
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/json")
