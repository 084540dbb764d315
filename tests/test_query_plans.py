"""The hot statements seek by index: no label or all-node scans (they grow with the graph)."""

from __future__ import annotations

from typing import Any

import pytest

from cmdb.core.cypher import ItemFilter, build_list_query, sort_spec
from cmdb.core.models import OperationalState, SortDirection
from cmdb.core.pagination import PageRequest
from cmdb.items import queries as iq
from cmdb.items import queries as rq
from cmdb.items import queries as sq
from cmdb.items.models import Direction, RelationType
from cmdb.org import queries as oq

pytestmark = pytest.mark.integration

_LIST, _LIST_PARAMS = build_list_query(
    "CI", ItemFilter(classes=["VirtualMachine"], operational_state=[OperationalState.UP]),
    sort_spec("NAME", SortDirection.ASC), PageRequest(100, True, None), True,
)

STATEMENTS: dict[str, Any] = {
    "get items": iq.GET_ITEMS,
    "identifier conflicts": iq.IDENTIFIER_CONFLICTS,
    "reference check": iq.REFS_EXIST,
    "update CI": iq.UPDATE_CI,
    "update service": sq.UPDATE_SERVICE,
    "retire": iq.RETIRE_ITEM,
    "neighbours": rq.neighbours(Direction.BOTH, (RelationType.DEPENDS_ON,), 1, False),
    "neighbours deep": rq.neighbours(Direction.INCOMING, (), 3, False),
    "relation ends": rq.GET_ENDS,
    "relate": rq.upsert(RelationType.RUNS_ON),
    "unrelate": rq.retire(RelationType.RUNS_ON),
    "org units": oq.GET_UNITS,
    "org conflicts": oq.FIND_CONFLICT,
    "list": _LIST,
}


def _operators(plan: Any) -> list[str]:
    out = [plan["operatorType"]]
    for child in plan.get("children", []):
        out += _operators(child)
    return out


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_statement_uses_indexes(db, name):
    async with db.driver.session(database=db.database) as session:
        result = await session.run("EXPLAIN " + STATEMENTS[name], _LIST_PARAMS)
        summary = await result.consume()
    operators = _operators(summary.plan)
    scans = [op for op in operators if "AllNodesScan" in op or "NodeByLabelScan" in op]
    assert scans == [], f"{name} scans: {operators}"


# --- lists in index order -------------------------------------------------------------------

_CLASSES = ("VirtualMachine", "PhysicalServer", "Database", "StorageVolume")
_STATES = ("UP", "DOWN", "DEGRADED")

# (label, filter, sort, page): the shapes ORDERED_INDEXES answers in order.
_ORDERED_SHAPES: dict[str, tuple[str, ItemFilter, Any, PageRequest]] = {
    "VMs that are UP": ("CI", ItemFilter(classes=["VirtualMachine"],
                                         operational_state=[OperationalState.UP]),
                        sort_spec("NAME", SortDirection.ASC), PageRequest(20, True, None)),
    "VMs, page 2": ("CI", ItemFilter(classes=["VirtualMachine"]),
                    sort_spec("NAME", SortDirection.ASC), PageRequest(20, True, ("ci-0100", "x"))),
    "VMs, last page": ("CI", ItemFilter(classes=["VirtualMachine"]),
                       sort_spec("NAME", SortDirection.DESC), PageRequest(20, False, None)),
    "all CIs": ("CI", ItemFilter(), sort_spec("NAME", SortDirection.ASC),
                PageRequest(20, True, None)),
    "technical services": ("Service", ItemFilter(service_kinds=["TECHNICAL"]),
                           sort_spec("NAME", SortDirection.ASC), PageRequest(20, True, None)),
    "all services": ("Service", ItemFilter(), sort_spec("NAME", SortDirection.DESC),
                     PageRequest(20, True, None)),
}


@pytest.fixture
async def list_graph(clean_db):
    """4,000 CIs over four classes and three states (a tenth retired), 400 services, and
    names that repeat (ties broken by id)."""
    await clean_db.write(
        "UNWIND range(0, 3999) AS i "
        "CREATE (n:Item:CI {id: 'c' + toString(i * 7919 % 4001), name: 'CI-' + "
        "right('000' + toString(i % 1500), 4), ciClass: $classes[i % 4], "
        "operationalState: $states[i % 3], "
        "lifecycleStatus: CASE WHEN i % 10 = 3 THEN 'RETIRED' ELSE 'LIVE' END, "
        "criticalityRank: i % 4, createdAt: datetime(), updatedAt: datetime()}) "
        "SET n.nameLower = toLower(n.name)",
        {"classes": list(_CLASSES), "states": list(_STATES)})
    await clean_db.write(
        "UNWIND range(0, 399) AS i "
        "CREATE (n:Item:Service {id: 's' + toString(i), name: 'Svc-' + toString(i % 150), "
        "serviceKind: CASE WHEN i % 4 = 0 THEN 'BUSINESS' ELSE 'TECHNICAL' END, "
        "lifecycleStatus: 'LIVE', operationalState: 'UP', criticalityRank: 1, "
        "createdAt: datetime(), updatedAt: datetime()}) SET n.nameLower = toLower(n.name)")
    await clean_db.write("CALL db.resampleOutdatedIndexes()")
    return clean_db


@pytest.mark.parametrize("shape", sorted(_ORDERED_SHAPES))
async def test_list_pages_read_an_index_in_order(list_graph, shape):
    """The first page of a sorted list stops at the page: no Sort or Top over every match."""
    label, f, sort, page = _ORDERED_SHAPES[shape]
    text, params = build_list_query(label, f, sort, page, False)
    async with list_graph.driver.session(database=list_graph.database) as session:
        summary = await (await session.run("EXPLAIN " + text, params)).consume()
    operators = [op.split("@")[0] for op in _operators(summary.plan)]
    assert "Sort" not in operators and "Top" not in operators, operators
    assert "Limit" in operators or "PartialTop" in operators, operators


def _expected(rows: list[dict[str, Any]], f: ItemFilter, sort: Any, page: PageRequest
              ) -> list[str]:
    """The page as the old statement defined it: every match sorted by (sort value, id)."""
    keep = [r for r in rows if r["lifecycleStatus"] != "RETIRED"
            and (f.classes is None or r.get("ciClass") in f.classes)
            and (f.service_kinds is None or r.get("serviceKind") in f.service_kinds)
            and (f.operational_state is None
                 or r["operationalState"] in [s.value for s in f.operational_state])]
    ascending = (sort.direction is SortDirection.ASC) == page.forward
    keep.sort(key=lambda r: (r[sort.prop], r["id"]), reverse=not ascending)
    if page.cursor is not None:
        cv = page.cursor
        keep = [r for r in keep if ((r[sort.prop], r["id"]) > cv if ascending
                                    else (r[sort.prop], r["id"]) < cv)]
    return [r["id"] for r in keep[: page.size + 1]]


@pytest.mark.parametrize("shape", sorted(_ORDERED_SHAPES))
async def test_lists_in_index_order_answer_as_a_full_sort(list_graph, shape):
    label, f, sort, page = _ORDERED_SHAPES[shape]
    everything = await list_graph.read(
        f"MATCH (n:{label}) RETURN n {{.id, .nameLower, .ciClass, .serviceKind, "
        ".operationalState, .lifecycleStatus} AS r")
    rows = [r["r"] for r in everything]
    for cursor in (page.cursor, ("ci-0042", "c9"), ("svc-7", "s7")):
        p = PageRequest(page.size, page.forward, cursor)
        text, params = build_list_query(label, f, sort, p, False)
        (got,) = await list_graph.read(text, params)
        assert [r["item"]["id"] for r in got["rows"]] == _expected(rows, f, sort, p)
