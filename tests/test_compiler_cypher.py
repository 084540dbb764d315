"""The statements the read compiler generates, pinned as snapshots (as the Neo4j GraphQL
Library's TCK pins its Cypher), and what decides whether it answers at all.

A snapshot holds the statement and its parameters: a change to either shows in review.
Refresh them after a deliberate change with
``CMDB_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_compiler_cypher.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from graphql import parse
from graphql.utilities import get_operation_ast

from bench.queries import LIST, LOOKUP, NESTED
from cmdb.api.schema import build_schema
from cmdb.compiler.cache import PlanCache, scope_shape
from cmdb.compiler.models import Cannot, Plan
from cmdb.compiler.plan import plan_operation
from cmdb.compiler.queries import statement
from cmdb.identity.principal import Principal
from cmdb.schema.context import Context
from cmdb.services import Services
from cmdb.settings import Settings

pytestmark = pytest.mark.integration

SNAPSHOTS = Path(__file__).parent / "snapshots" / "compiled"

CASES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "lookup": (LOOKUP.ours, {"id": "ci-1"}, ("admin",)),
    "list": (LIST.ours, {}, ("admin",)),
    "nested": (NESTED.ours, {}, ("admin",)),
    "node_fragments_service_owner": ("""
query($id: ID!) {
  node(id: $id) {
    __typename id name healthState
    ... on ConfigurationItem { ciClass families identifiers { fqdn } attributes }
    ... on Service { kind sla { availabilityTarget } inMaintenance ownerGroup { name } }
  }
}""", {"id": "svc-1"}, ("service_owner",)),
    "paths_requester": ("""
{
  services(first: 5, filter: {kinds: [BUSINESS]}) {
    edges { node { name relationships(depth: 3, direction: BOTH, first: 20) {
      type direction depth path properties createdAt item { name } } } }
  }
}""", {}, ("requester",)),
    "connection_cursor_total": ("""
query($after: String) {
  configurationItems(first: 10, after: $after, orderBy: {field: CREATED_AT, direction: DESC},
                     filter: {nameContains: "web", attributes: [{key: "env", value: "prod"}]}) {
    totalCount
    edges { cursor node { name createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}""", {"after": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwiY2ktOSJd"}, ("operator",)),
    "org_lists_and_aliases": ("""
{
  groups: ownerGroups(nameContains: "Ops") { id name email }
  costCentres(first: 3) { code name parent { code parent { code } } }
  vms: configurationItems(first: 2, filter: {classes: [VIRTUAL_MACHINE]}) {
    edges { node { name location { name parent { name } } } } }
  hosts: configurationItems(first: 2, filter: {families: [COMPUTE]}) {
    edges { node { name } } }
}""", {}, ("executive",)),
}


@pytest.fixture
def schema_and_services(db: Any, test_settings: Settings) -> tuple[Any, Services]:
    return build_schema(test_settings), Services(db, test_settings)


def _plan(schema: Any, services: Services, query: str, variables: dict[str, Any],
          roles: tuple[str, ...], user: str = "pat") -> tuple[Plan, Context]:
    context = Context(services, "snapshot", Principal(user, frozenset(roles)))
    document = parse(query)
    operation = get_operation_ast(document, None)
    assert operation is not None
    return plan_operation(schema, document, operation, variables, context), context


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_statement(name: str, schema_and_services: tuple[Any, Services]) -> None:
    query, variables, roles = CASES[name]
    plan, context = _plan(*schema_and_services, query, variables, roles)
    text = statement(plan.roots, scope_shape(context.visible))
    got = text.replace(" COLLECT {", "\n  COLLECT {") + "\n\n// parameters\n" + json.dumps(
        plan.params, indent=1, sort_keys=True, default=str) + "\n"
    path = SNAPSHOTS / f"{name}.cypher"
    if os.environ.get("CMDB_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert got == path.read_text(), f"{name}: the statement changed (see the module docstring)"


def test_values_travel_as_parameters(schema_and_services: tuple[Any, Services]) -> None:
    query = ('{ configurationItems(filter: {nameContains: "x\' OR 1=1 //"}) '
             '{ edges { node { id } } } }')
    plan, context = _plan(*schema_and_services, query, {}, ("admin",))
    assert "OR 1=1" not in statement(plan.roots, scope_shape(context.visible))
    assert "x' or 1=1 //" in plan.params.values()


def test_a_lookup_id_is_bound_per_request(schema_and_services: tuple[Any, Services]) -> None:
    schema, services = schema_and_services
    cache = PlanCache()
    query = LOOKUP.ours
    document = parse(query)
    operation = get_operation_ast(document, None)
    assert operation is not None
    plans = []
    for item_id in ("a", "b"):
        context = Context(services, "r", Principal("pat", frozenset({"admin"})))
        variables = {"id": item_id}

        def make(c: Context = context, v: dict[str, Any] = variables) -> Plan:
            return plan_operation(schema, document, operation, v, c)

        plans.append(cache.plan(query, document, operation, variables, context, make))
    first, second = plans
    assert first.roots is second.roots  # one plan, one statement
    assert sorted(first.params.values()) == ["a"] and sorted(second.params.values()) == ["b"]


def test_a_variable_that_shapes_the_plan_keys_the_cache(
        schema_and_services: tuple[Any, Services]) -> None:
    schema, services = schema_and_services
    cache = PlanCache()
    query = "query($d: Int!) { node(id: \"x\") { relationships(depth: $d) { depth } } }"
    document = parse(query)
    operation = get_operation_ast(document, None)
    assert operation is not None
    roots = []
    for depth in (1, 2):
        context = Context(services, "r", Principal("pat", frozenset({"admin"})))
        variables = {"d": depth}

        def make(c: Context = context, v: dict[str, Any] = variables) -> Plan:
            return plan_operation(schema, document, operation, v, c)

        roots.append(cache.plan(query, document, operation, variables, context, make).roots)
    assert roots[0] != roots[1]


@pytest.mark.parametrize(("query", "roles", "why"), [
    ("{ configurationItems { edges { node { history { kind } } } } }", ("admin",),
     "ConfigurationItem.history"),
    ("{ configurationItems(first: 100000) { edges { node { id } } } }", ("admin",),
     "first must be"),
    ("{ node(id: \"x\") { relationships(depth: 99) { depth } } }", ("admin",), "depth"),
    ("{ services(orderBy: {field: CLASS}) { edges { node { id } } } }", ("admin",), "class"),
    ("{ configurationItems { edges { node { id } } } }", (), "refused"),
    ("{ alarms { id } }", ("admin",), "alarms"),
])
def test_what_the_resolvers_answer_instead(query: str, roles: tuple[str, ...], why: str,
                                           schema_and_services: tuple[Any, Services]) -> None:
    with pytest.raises(Cannot, match=why):
        _plan(*schema_and_services, query, {}, roles)
