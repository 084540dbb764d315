"""The committed SDL matches the live schema; query limits and health endpoints work."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmdb.api.schema import sdl

ROOT = Path(__file__).resolve().parent.parent


def test_committed_schema_matches_live_schema():
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == sdl(), (
        "schema.graphql is out of date: run `cmdb schema export` and commit the result"
    )


@pytest.mark.integration
async def test_depth_limit(gql, test_settings):
    nested = "relationships { item { " * test_settings.max_query_depth + "id" + " } }" * \
        test_settings.max_query_depth
    body = await gql("{ services { edges { node { " + nested + " } } } }")
    assert body["data"] is None
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


@pytest.mark.integration
async def test_alias_limit(gql, test_settings):
    aliases = " ".join(f"a{i}: __typename" for i in range(test_settings.max_aliases + 1))
    body = await gql("{ " + aliases + " }")
    assert "aliases found" in body["errors"][0]["message"]


@pytest.mark.integration
async def test_token_limit(gql, test_settings):
    body = await gql("{ " + "__typename " * (test_settings.max_tokens + 1) + "}")
    assert f"more than {test_settings.max_tokens} tokens" in body["errors"][0]["message"]


@pytest.mark.integration
async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["schema_current"] is True
    assert ready.headers["x-request-id"]


@pytest.mark.integration
async def test_request_id_is_echoed_and_bad_json_is_a_400(client):
    r = await client.post("/graphql", content=b"{not json", headers={
        "content-type": "application/json", "x-request-id": "abc-123"})
    assert r.status_code == 400
    assert r.headers["x-request-id"] == "abc-123"
    assert "Traceback" not in r.text


@pytest.mark.integration
async def test_unknown_field_is_a_graphql_error_not_a_500(gql):
    body = await gql("{ configurationItems { edges { node { nope } } } }")
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]


async def test_a_repeated_document_is_validated_once(gql, monkeypatch):
    """The limiters' rules are built once, so the validation cache hits across requests."""
    import uuid

    import cmdb.api.schema as strawberry_schema

    calls = 0
    original = vars(strawberry_schema)["validate"]  # graphql's, as the module imported it

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    query = f"query Q{uuid.uuid4().hex} {{ services {{ totalCount }} }}"  # a new document
    for _ in range(3):
        await gql.ok(query)
    assert calls == 1


@pytest.mark.integration
async def test_unexpected_errors_are_masked_and_domain_errors_are_not(gql, monkeypatch):
    from cmdb.core.models import DomainError
    from cmdb.health.service import HealthService

    async def broken(self, *args, **kwargs):
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(HealthService, "ranked_impact", broken)
    body = await gql('{ impact(ids: ["x"]) { rank } }')
    assert body["errors"][0]["message"].startswith("Internal error")
    assert "secret" not in str(body)

    async def refused(self, *args, **kwargs):
        raise DomainError.single("ids", "give at least one item id")

    monkeypatch.setattr(HealthService, "ranked_impact", refused)
    body = await gql('{ impact(ids: ["x"]) { rank } }')
    assert body["errors"][0]["message"] == "give at least one item id"


@pytest.mark.integration
async def test_an_unhandled_error_is_a_json_500_with_the_request_id(client, monkeypatch):
    from cmdb.alarms.service import AlarmService

    async def broken(self, *args, **kwargs):
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(AlarmService, "raise_batch", broken)
    r = await client.post("/api/alarms", json={"alarms": []}, headers={"x-request-id": "r-1"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error", "request_id": "r-1"}
    assert r.headers["x-request-id"] == "r-1"
    assert "secret" not in r.text
