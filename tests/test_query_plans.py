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
