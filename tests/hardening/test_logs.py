"""Structured logs: every line logged while a request is served carries its request id and
the caller (user and roles), the access log line included; nothing leaks past the request."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.auth import auth_headers
from tests.hardening.logcapture import Lines, json_lines

pytestmark = pytest.mark.integration


@pytest.fixture
def capture() -> Iterator[Lines]:
    """The JSON lines of the ``cmdb`` loggers, formatted as they are emitted (in context)."""
    with json_lines("cmdb") as lines:
        yield lines


async def test_every_line_of_a_request_names_the_request_and_the_caller(client, capture):
    # A GraphQL error is logged inside the request, then the access line after it.
    r = await client.post("/graphql", json={"query": "{ noSuchField }"},
                          headers={**auth_headers("olga", "operator", "approver"),
                                   "X-Request-ID": "req-logs-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-logs-1"
    logging.getLogger("cmdb.test").info("after the request")

    lines = capture()
    during = [x for x in lines if x.get("request_id") == "req-logs-1"]
    messages = [x["msg"] for x in during]
    assert "request" in messages  # the access log line
    assert any(str(m).startswith("graphql error") for m in messages)
    for line in during:
        assert line["user"] == "olga", line
        assert line["roles"] == ["approver", "operator"], line
    access = next(x for x in during if x["msg"] == "request")
    assert access["path"] == "/graphql" and access["status"] == 200
    after = next(x for x in lines if x["msg"] == "after the request")
    assert "user" not in after and "request_id" not in after


async def test_a_refused_request_has_an_id_and_no_caller(client, capture):
    r = await client.post("/graphql", json={"query": "{ __typename }"},
                          headers={"Authorization": "Bearer not-a-token",
                                   "X-Request-ID": "req-logs-2"})
    assert r.status_code == 401
    [access] = [x for x in capture() if x.get("request_id") == "req-logs-2"]
    assert access["msg"] == "request" and access["status"] == 401
    assert "user" not in access and "roles" not in access


async def test_concurrent_requests_keep_their_own_caller(client, capture):
    import asyncio

    async def call(user: str, role: str, rid: str) -> None:
        r = await client.post("/graphql", json={"query": "{ services { totalCount } }"},
                              headers={**auth_headers(user, role), "X-Request-ID": rid})
        assert r.status_code == 200

    await asyncio.gather(*(call(f"user{i}", role, f"req-c{i}")
                           for i, role in enumerate(["operator", "executive"] * 4)))
    access = {x["request_id"]: x for x in capture() if x["msg"] == "request"}
    for i, role in enumerate(["operator", "executive"] * 4):
        assert access[f"req-c{i}"]["user"] == f"user{i}"
        assert access[f"req-c{i}"]["roles"] == [role]
