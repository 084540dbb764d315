"""The checks of the graphql-cop security scanner (github.com/dolevf/graphql-cop,
``lib/tests``), one test each, against the app in production mode.

Each test sends what the scanner sends and asserts that the scanner's own detection
condition does not hold, plus what our API answers instead. The scanner runs twelve checks;
its thirteenth, field duplication, is switched off upstream (a false positive where repeated
fields are merged) and is kept here because repeats make validation quadratic.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.hardening import abuse_fixtures
from tests.hardening.abuse_fixtures import GRAPHQL

pytestmark = pytest.mark.integration
prod = abuse_fixtures.prod
production_settings = abuse_fixtures.production_settings

IDE_MARKERS = ("graphiql.min.css", "GraphQL Playground", "GraphiQL", "graphql-playground")


async def scanner_post(client: httpx.AsyncClient, query: str,
                       batch: bool = False) -> httpx.Response:
    """The scanner's JSON POST: one operation named "cop", or ten in an array."""
    body: Any = [{"query": query}] * 10 if batch else {"query": query, "operationName": "cop"}
    r = await client.post(GRAPHQL, json=body)
    assert r.status_code != 500, r.text
    return r


def json_of(r: httpx.Response) -> Any:
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r.json()


def data_of(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


async def test_alias_overloading(prod, production_settings):
    aliases = " ".join(f"alias{i}:__typename" for i in range(101))
    body = json_of(await scanner_post(prod, "query cop { " + aliases + " }"))
    assert not (data_of(body) or {}).get("alias100")
    assert body["errors"][0]["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert f"the limit is {production_settings.max_aliases}" in body["errors"][0]["message"]


async def test_array_based_query_batching(prod):
    r = await scanner_post(prod, "query cop { __typename }", batch=True)
    body = json_of(r)
    assert r.status_code == 400
    assert not isinstance(body, list)
    assert "batched operations" in body["errors"][0]["message"]


async def test_directive_overloading(prod):
    body = json_of(await scanner_post(
        prod, "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }"))
    # The scanner flags ten errors (each duplicate processed); one refusal comes back.
    assert len(body["errors"]) == 1
    assert body["errors"][0]["extensions"]["code"] == "DIRECTIVE_REPEATED"


async def test_field_duplication(prod):
    body = json_of(await scanner_post(prod, "query cop { " + "__typename \n" * 500 + "} "))
    assert not (data_of(body) or {}).get("__typename")
    assert body["errors"][0]["extensions"]["code"] == "FIELD_REPEATED"


async def test_field_suggestions(prod):
    body = json_of(await scanner_post(prod, "query cop { __schema { directive } }"))
    assert body["errors"]
    assert all("Did you mean" not in e["message"] for e in body["errors"])


async def test_get_based_mutation(prod, clean_db):
    r = await prod.get(GRAPHQL, params={"query": "mutation cop {__typename}"})
    assert r.status_code == 400
    assert not data_of(json_of(r))
    assert json_of(r)["errors"][0]["message"] == "mutations are not allowed when using GET"


async def test_get_method_query_support(prod):
    r = await prod.get(GRAPHQL, params={"query": "query cop {__typename}"})
    assert r.status_code == 400
    assert not data_of(json_of(r))


@pytest.mark.parametrize("path", ["/", "/graphiql", "/playground", "/console", GRAPHQL])
async def test_graphql_ide(prod, path):
    r = await prod.get(path, headers={"accept": "text/html"}, follow_redirects=True)
    assert r.status_code in (401, 404), r.text[:200]
    assert not any(marker in r.text for marker in IDE_MARKERS)


async def test_introspection(prod):
    body = json_of(await scanner_post(prod, "query cop { __schema { types { name fields { "
                                            "name } } } }"))
    assert data_of(body) is None
    assert "introspection has been disabled" in body["errors"][0]["message"]


async def test_introspection_based_circular_query(prod):
    body = json_of(await scanner_post(
        prod, "query cop { __schema { types { fields { type { fields { type { fields { type { "
              "fields { type { name } } } } } } } } } } }"))
    assert data_of(body) is None
    # graphql-core's own introspection depth rule, or ours (no introspection at all).
    assert all("introspection" in e["message"] for e in body["errors"])


async def test_post_based_url_encoded_query(prod, clean_db):
    r = await prod.post(GRAPHQL, data={"query": "query cop { __typename }"})
    assert r.status_code == 415
    assert not data_of(json_of(r))


async def test_trace_mode(prod):
    r = await scanner_post(prod, "query cop { __typename }")
    body = json_of(r)
    assert body == {"data": {"__typename": "Query"}}
    assert "tracing" not in json.dumps(body).lower()


async def test_unhandled_errors(prod):
    r = await scanner_post(prod, "qwerty cop { abc }")
    body = json_of(r)
    assert r.status_code == 200
    assert body["errors"][0]["message"].startswith("Syntax Error")
    for error in body["errors"]:
        assert "exception" not in error.get("extensions", {})
    assert "Traceback" not in r.text and 'File "' not in r.text
