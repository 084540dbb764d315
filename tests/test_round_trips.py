"""No N+1: a nested query costs the same number of Neo4j round trips for 1 row or 500: one
statement when the read compiler answers it, one per level when the resolvers do."""

from __future__ import annotations

import asyncio

import pytest

from cmdb.core.models import OrgKind
from cmdb.items.models import CIClass, RelationType, ServiceKind
from cmdb.services import Services
from tests.conftest import GQL, app_client

pytestmark = pytest.mark.integration

NESTED = """
query($n: Int!) {
  services(first: $n) {
    edges { node { name costCentre { code parent { code } }
      relationships(direction: OUTGOING, types: [DEPENDS_ON], first: 5) {
        item { name ... on ConfigurationItem {
          relationships(direction: OUTGOING, types: [RUNS_ON], first: 5) {
            item { name ownerGroup { name } } } } } } } } } }"""


async def _gather(coros, width=25):
    out = []
    for i in range(0, len(coros), width):
        out += await asyncio.gather(*coros[i : i + width])
    return out


@pytest.fixture
async def wide_graph(gql, clean_db, test_settings):
    """500 business services, each on one of 10 apps, each app on its own VM."""
    s = Services(clean_db, test_settings)
    parent = await s.org.create(OrgKind.COST_CENTRE, {"name": "Corp", "code": "CC-1"})
    cc = await s.org.create(OrgKind.COST_CENTRE, {"name": "IT", "code": "CC-2",
                                                   "parent_id": parent.id})
    grp = await s.org.create(OrgKind.OWNER_GROUP, {"name": "Ops"})
    apps = []
    for i in range(10):
        vm = await s.inventory.create({"name": f"vm{i}", "ci_class": CIClass.VIRTUAL_MACHINE,
                                       "owner_group_id": grp.id})
        app = await s.inventory.create({"name": f"app{i}",
                                        "ci_class": CIClass.APPLICATION_INSTANCE})
        await s.relations.relate(app.id, vm.id, RelationType.RUNS_ON, None)
        apps.append(app)
    services = await _gather([
        s.service_records.create({"name": f"svc{i:03}", "kind": ServiceKind.BUSINESS,
                               "cost_centre_id": cc.id})
        for i in range(500)
    ])
    await _gather([
        s.relations.relate(svc.id, apps[i % 10].id, RelationType.DEPENDS_ON, None)
        for i, svc in enumerate(services)
    ])
    return clean_db


async def _trips(gql, db, n):
    before = db.round_trips.count
    data = await gql.ok(NESTED, n=n)
    edges = data["services"]["edges"]
    assert len(edges) == n
    leaf = edges[-1]["node"]["relationships"][0]["item"]["relationships"][0]["item"]
    assert leaf["name"].startswith("vm") and leaf["ownerGroup"] == {"name": "Ops"}
    assert edges[0]["node"]["costCentre"] == {"code": "CC-2", "parent": {"code": "CC-1"}}
    return db.round_trips.count - before


async def test_nested_query_round_trips_do_not_grow_with_rows(gql, wide_graph):
    one = await _trips(gql, wide_graph, 1)
    five_hundred = await _trips(gql, wide_graph, 500)
    assert one == five_hundred == 1  # the compiled statement


async def test_resolver_round_trips_do_not_grow_with_rows(wide_graph, test_settings):
    resolvers = test_settings.model_copy(update={"read_compiler": False})
    async with app_client(wide_graph, resolvers) as client:
        gql = GQL(client)
        one = await _trips(gql, wide_graph, 1)
        five_hundred = await _trips(gql, wide_graph, 500)
    # services page, DEPENDS_ON batch, RUNS_ON batch, cost-centre parents batch
    assert one == five_hundred == 4
