"""Property tests: the health roll-up and impact answers Neo4j computes, compared with the
plain-Python reference in ``tests/health_oracle.py`` on random graphs (layers, diamonds,
cycles, redundancy groups, optional and informational edges, maintenance by lifecycle,
services inside and outside their SLA maintenance windows, services' own states set
explicitly, UNKNOWN included, retirement).

Each example wipes the graph, loads it through the bulk path (retirements and every other
MEMBER_OF through the normal services), rolls every item up with
``HealthService.set_states`` and checks:
- every stored ``healthState`` equals the oracle's;
- every item's ``inMaintenance`` flag (lifecycle MAINTENANCE, or a service inside an SLA
  window now), read over GraphQL, is the oracle's, and GraphQL shows the stored states;
- a few later changes (own states of any items or of services only, maintenance on/off, a
  service's window opened or closed) roll up incrementally to the states the oracle
  computes from scratch, and report exactly the items whose state changed;
- ``impact`` reaches exactly the oracle's upward reachability, each along a shortest valid
  path, with the stored states; ``servicesOnly`` keeps the services of it;
- ``impact(assumeDown)`` gives the oracle's what-if states and stores nothing;
- ``model`` (top-down) reaches exactly the oracle's downward reachability.

Graphs on which the oracle's iteration does not settle (see
``test_redundancy_cycle_settles_independently_of_the_batch``) skip the state comparisons;
the reachability checks still run. Inputs that hit the discrepancies documented by the
strict ``xfail`` tests at the end are left out of generation unless
``CMDB_HEALTH_KNOWN_BUGS=1``. ``CMDB_HEALTH_EXAMPLES`` sets the number of examples (300).

Hypothesis drives the async test directly (pytest-asyncio runs each example on the session
loop), so failures shrink as usual: items and relationships are flat lists of small
integers, and a failing graph shrinks to a handful of items and edges.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from cmdb.api.schema import build_schema
from cmdb.bulk import BulkService, CIRow, RelationRow, ServiceRow
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, LifecycleStatus, OperationalState
from cmdb.db.driver import Database
from cmdb.identity.principal import Principal
from cmdb.items.models import RULES, SERVICE, SLA, CIClass, RelationType, ServiceKind
from cmdb.schema.context import Context
from cmdb.services import Services
from cmdb.settings import Settings
from tests import health_oracle as o
from tests.conftest import settle

pytestmark = pytest.mark.integration

WIPE = "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n"
READ_ALL = """MATCH (n:Item) RETURN n.id AS id, n.healthState AS health,
  n.operationalState AS own, n.lifecycleStatus AS lifecycle, n.healthChangedAt AS since"""
COUNT_CHANGES = "MATCH (c:StateChange) RETURN count(c) AS n"
# The shared test instance is wiped by other test runs too: a marker node tells whether the
# graph is still the one this example loaded.
MARK = "CREATE (:HealthPropertyMarker {token: $token})"
INTACT = """OPTIONAL MATCH (m:HealthPropertyMarker {token: $token})
WITH count(m) AS marks
OPTIONAL MATCH (n:Item)
RETURN marks, collect(n.id) AS ids"""
ATTEMPTS = 4

# The discrepancies once excluded from generation are fixed; "0" excludes them again.
KNOWN_BUGS = os.environ.get("CMDB_HEALTH_KNOWN_BUGS", "1") == "1"
EXAMPLES = int(os.environ.get("CMDB_HEALTH_EXAMPLES", "300"))

# Layers, consumers above providers: a "down" edge goes from a lower rank to a higher one.
RANK = {
    "BUSINESS": 0, "TECHNICAL": 1, "DesktopPool": 2, "LoadBalancer": 2,
    "ApplicationInstance": 3, "Database": 4, "SoftwarePackage": 4, "VirtualMachine": 5,
    "VirtualDesktop": 5, "Cluster": 6, "HypervisorHost": 7, "Server": 7,
    "StorageVolume": 8, "NetworkDevice": 8,
}
# Weighted by repetition; the first entries are what shrinking goes to.
CI_CLASSES = [
    "ApplicationInstance", "ApplicationInstance", "ApplicationInstance", "Database",
    "Database", "VirtualMachine", "VirtualMachine", "HypervisorHost", "HypervisorHost",
    "Cluster", "Cluster", "Server", "LoadBalancer", "StorageVolume", "NetworkDevice",
    "SoftwarePackage", "VirtualDesktop", "DesktopPool",
]
SERVICE_KINDS = ["BUSINESS", "TECHNICAL"]
# Services weigh more than their share of kinds: in-window services and services' own
# states matter only where services consume services.
ITEM_KINDS = [*CI_CLASSES, "BUSINESS", "BUSINESS", "TECHNICAL", "TECHNICAL", "TECHNICAL"]
TYPES = [t.value for t in RelationType]
PERCENTS = [0, 25, 33.3, 50, 66.7, 75, 100]


def rule_class(item: o.Item) -> str:
    return SERVICE if item.service else item.cls


def allowed(rel_type: str, source: o.Item, target: o.Item) -> bool:
    sources, targets = RULES[RelationType(rel_type)]
    return rule_class(source) in sources and rule_class(target) in targets


def rank(item: o.Item) -> int:
    return RANK[item.cls]


# ------------------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class Step:
    """A change after the first roll-up: own states of some items, maintenance on/off, or a
    service's SLA maintenance window opened or closed."""

    states: tuple[tuple[str, str], ...] = ()
    maintenance: tuple[str, bool] | None = None
    window: tuple[str, bool] | None = None


def window_spec(open_now: bool) -> str:
    """A daily SLA maintenance window: open from an hour ago for four hours, or one that
    opens in six hours."""
    now = utcnow()
    a, b = (now - timedelta(hours=1), now + timedelta(hours=3)) if open_now else (
        now + timedelta(hours=6), now + timedelta(hours=8))
    return f"Daily {a:%H:%M}-{b:%H:%M}"


@dataclass
class Scenario:
    graph: o.Graph
    steps: list[Step]
    failing: list[str]
    top: str
    windows: dict[str, bool] | None = None  # services with an SLA window: open now or not


def _lifecycle(v: int) -> str:
    return o.RETIRED if v == 19 else o.MAINTENANCE if v >= 16 else o.IN_SERVICE


def _rule(v: int, rel_type: str) -> dict[str, Any]:
    rules: dict[int, dict[str, Any]] = {
        7: {"impact": "OPTIONAL"}, 8: {"impact": "INFORMATIONAL"}, 9: {"impact": "REQUIRED"},
        10: {"required": True}, 11: {"required": False},
    }
    if v == 11 and rel_type in o.INFORMATIONAL_BY_DEFAULT and not KNOWN_BUGS:
        return {}  # see test_connects_to_with_required_false_stays_informational
    return rules.get(v, {})


def _params(v: int, min_up: int, pct: float) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [{}, {"minUp": min_up}, {"minUpPercent": pct},
                                     {"minUp": min_up, "minUpPercent": pct}, {}]
    return choices[v]


# One item: (class or service kind, own state, lifecycle draw, window draw: a service is
# inside an SLA maintenance window now on 0, has a closed one on 1, none otherwise).
ITEMS = st.tuples(st.sampled_from(ITEM_KINDS), st.sampled_from(o.STATES),
                  st.integers(0, 19), st.integers(0, 2))


def edges(n: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """One relationship between items i and j: which of the allowed types, whether it goes
    against the layers, its rule, group, group parameters, and whether it is retired (and
    then whether a live one replaces it, with which rule)."""
    return st.tuples(
        st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, 6), st.integers(0, 9),
        st.integers(0, 11), st.sampled_from([None, None, "a", "b"]), st.integers(0, 4),
        st.integers(0, 4), st.sampled_from(PERCENTS), st.integers(0, 19), st.booleans(),
        st.integers(0, 11),
    )


def options(consumer: o.Item, provider: o.Item) -> list[tuple[str, str, str]]:
    """The (source, type, target) the rules allow for a consumer and a provider."""
    out = [(consumer.id, t, provider.id) for t in TYPES
           if t != o.MEMBER_OF and allowed(t, consumer, provider)]
    if allowed(o.MEMBER_OF, provider, consumer):
        out.append((provider.id, o.MEMBER_OF, consumer.id))
    return out


@st.composite
def scenarios(draw: Callable[[Any], Any]) -> Scenario:
    """Items in layers (services, load balancers and pools, applications, databases and
    packages, VMs and desktops, clusters, hosts, storage and network). Each edge i -> j
    makes the upper of the two the consumer; one in ten goes against the layers, and
    between items of one layer (applications on each other) the first is the consumer, so
    pairs drawn both ways make cycles."""
    size = draw(st.integers(5, 24))
    raw = draw(st.lists(ITEMS, min_size=size, max_size=size))
    items: dict[str, o.Item] = {}
    windows: dict[str, bool] = {}
    for n, (cls, own, life, win) in enumerate(raw):
        service = cls in SERVICE_KINDS
        ident = f"{'s' if service else 'c'}{n:02d}"
        lifecycle = _lifecycle(life) if n else o.IN_SERVICE  # at least one stays live
        items[ident] = o.Item(ident, service, own, lifecycle, cls, service and win == 0)
        if service and win < 2:
            windows[ident] = win == 0
    ids = list(items)

    rels: list[o.Rel] = []
    params: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    in_group: set[tuple[str, str, str]] = set()

    def add(consumer: o.Item, provider: o.Item, triple: tuple[str, str, str],
            rest: tuple[Any, ...]) -> None:
        rule, group, pv, min_up, pct, retire, keep, rule2 = rest
        if triple in seen:
            return  # one live relationship per (source, type, target)
        seen.add(triple)
        source, t, target = triple
        props = _rule(rule, t)
        name = group if group is not None else "members" if t == o.MEMBER_OF else None
        if name is not None:
            if (consumer.id, name, provider.id) in in_group and not KNOWN_BUGS:
                return  # see test_one_provider_twice_in_a_group_is_one_member
            in_group.add((consumer.id, name, provider.id))
            # Every edge of a group carries the parameters of its first edge.
            props |= params.setdefault((consumer.id, name), _params(pv, min_up, pct))
            if group is not None:
                props["redundancyGroup"] = group
        elif pv == 4:
            props["minUp"] = 2  # ignored: an edge without a group needs its one provider
        if retire == 0:  # retired, and maybe replaced by a live one with another rule
            rels.append(o.Rel(source, t, target, props, retired=True))
            if not keep:
                return
            props = {k: v for k, v in props.items() if k not in ("impact", "required")}
            props |= _rule(rule2, t)
        rels.append(o.Rel(source, t, target, props))

    count = draw(st.integers(len(ids), 3 * len(ids)))
    for i, j, pick, against, *rest in draw(
        st.lists(edges(len(ids)), min_size=count, max_size=count)
    ):
        a, b = items[ids[i]], items[ids[j]]
        if a.id == b.id:
            continue
        upper, lower = (a, b) if rank(a) <= rank(b) else (b, a)
        consumer, provider = (lower, upper) if against == 0 else (upper, lower)
        allowed_here = options(consumer, provider)
        if allowed_here:
            add(consumer, provider, allowed_here[pick % len(allowed_here)], tuple(rest))
    # Members of clusters and pools, a few each.
    for group_item in [it for it in items.values() if it.cls in ("Cluster", "DesktopPool")]:
        for i, _, _, _, *rest in draw(st.lists(edges(len(ids)), max_size=4)):
            member = items[ids[i]]
            if member.id != group_item.id and allowed(o.MEMBER_OF, member, group_item):
                add(group_item, member, (member.id, o.MEMBER_OF, group_item.id), tuple(rest))

    alive = [i for i in ids if items[i].lifecycle != o.RETIRED]
    services = [i for i in alive if items[i].service]
    steps: list[Step] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            target = draw(st.sampled_from(alive))
            steps.append(Step(maintenance=(target, draw(st.booleans()))))
        elif kind == 1 and services:
            target = draw(st.sampled_from(services))
            steps.append(Step(window=(target, draw(st.booleans()))))
        else:
            # Own states set explicitly, on services only one time in three.
            pool = services if kind == 2 and services else alive
            picked = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
            steps.append(Step(states=tuple((i, draw(st.sampled_from(o.STATES)))
                                           for i in picked)))
    cis = [i for i in alive if not items[i].service] or alive
    failing = draw(st.lists(st.sampled_from(cis), min_size=1, max_size=2, unique=True))
    top = draw(st.sampled_from([i for i in alive if items[i].service] or alive))
    return Scenario(o.Graph(items, rels), steps, failing, top, windows)


# ------------------------------------------------------------------------------ loading


async def load(svc: Services, graph: o.Graph, token: str,
               windows: dict[str, bool] | None = None) -> None:
    """Bulk-load ``graph``; retirements (and half of MEMBER_OF) go through the services.
    No roll-up yet (the bulk path leaves it to the caller). ``token`` marks this load.
    ``windows``: the services with an SLA maintenance window, open now or not."""
    await svc.db.write(WIPE)
    await svc.db.write(MARK, {"token": token})
    bulk = BulkService(svc.db, svc.settings)
    rows: list[CIRow | ServiceRow] = []
    for it in graph.items.values():
        lifecycle = LifecycleStatus(o.IN_SERVICE if it.lifecycle == o.RETIRED else it.lifecycle)
        state = OperationalState(it.own)
        if it.service:
            sla = (SLA(maintenance_windows=[window_spec(windows[it.id])])
                   if windows and it.id in windows else SLA())
            rows.append(ServiceRow(id=it.id, name=it.id, kind=ServiceKind(it.cls),
                                   lifecycle_status=lifecycle, operational_state=state,
                                   sla=sla))
        else:
            rows.append(CIRow(id=it.id, name=it.id, ci_class=CIClass(it.cls),
                              lifecycle_status=lifecycle, operational_state=state))
    result = await bulk.upsert_items(rows)
    assert result.rejected == [] and result.created == len(rows)

    async def relate(rels: list[o.Rel]) -> None:
        # Every other MEMBER_OF through ``relate``, the rest in bulk: both keep the HAS_MEMBER
        # mirror that impact and model traverse.
        members = [r for r in rels if r.type == o.MEMBER_OF][1::2]
        for r in members:
            await svc.relations.relate(r.source, r.target, RelationType.MEMBER_OF,
                                       dict(r.props))
        rows = [RelationRow(source_id=r.source, target_id=r.target, type=RelationType(r.type),
                            properties=dict(r.props)) for r in rels if r not in members]
        if rows:
            result = await bulk.upsert_relations(rows)
            assert result.rejected == [] and result.created == len(rows), result

    retired = [r for r in graph.rels if r.retired]
    await relate(retired)
    for r in retired:
        await svc.relations.unrelate(r.source, r.target, RelationType(r.type), "test")
    await relate([r for r in graph.rels if not r.retired])
    for it in graph.items.values():
        if it.lifecycle == o.RETIRED:
            if it.service:
                await svc.service_records.retire(it.id, "test")
            else:
                await svc.inventory.retire(it.id, "test")


async def roll_up_all(svc: Services, graph: o.Graph) -> None:
    await svc.health.set_states(
        [(i, OperationalState(it.own)) for i, it in graph.items.items()
         if it.lifecycle != o.RETIRED], "load")


async def stored(db: Database) -> dict[str, dict[str, Any]]:
    """The stored states, once the roll-up of every write so far has settled."""
    await settle(db)
    return {r["id"]: r for r in await db.read(READ_ALL)}


def expected(graph: o.Graph, own: dict[str, str] | None = None) -> dict[str, str] | None:
    """The oracle's states, or None (with an event) when its iteration does not settle."""
    try:
        return o.rollup(graph, own)
    except o.NotSettled:
        event("oracle: roll-up does not settle")
        return None


def compare_states(graph: o.Graph, want: dict[str, str], rows: dict[str, dict[str, Any]]) -> None:
    got = {i: rows[i]["health"] for i in want}
    wrong = {i: (got[i], want[i]) for i in want if got[i] != want[i]}
    assert not wrong, f"(neo4j, oracle) differ: {wrong}"


def passes_on_in_window(graph: o.Graph, state: dict[str, str]) -> bool:
    """Whether a service inside its window, not UP, has a consumer: where an open window
    passing UP on (as lifecycle MAINTENANCE does) would change an answer."""
    consumers = o.consumers_of(graph)
    return any(it.window and it.lifecycle == o.IN_SERVICE and state[i] != o.UP
               and consumers[i] for i, it in graph.items.items())


_SCHEMA: list[Any] = []
OPERATOR = Principal("olga", frozenset({"operator"}))


async def compare_maintenance_flags(svc: Services, graph: o.Graph) -> None:
    """Each live item's ``inMaintenance`` flag and ``healthState``, read over GraphQL, are
    the oracle's flag and the stored state."""
    if not _SCHEMA:
        _SCHEMA.append(build_schema(svc.settings))
    live = [i for i, it in graph.items.items() if it.lifecycle != o.RETIRED]
    rows = await stored(svc.db)
    got: dict[str, bool] = {}
    for chunk in (live[n:n + 8] for n in range(0, len(live), 8)):  # repeated-field limit
        query = "{ " + " ".join(f'{i}: node(id: "{i}") {{ inMaintenance healthState }}'
                                for i in chunk) + " }"
        result = await _SCHEMA[0].execute(query, context_value=Context(svc, "test", OPERATOR))
        assert result.errors is None and result.data is not None, result.errors
        for i in chunk:
            assert result.data[i]["healthState"] == rows[i]["health"], i
            got[i] = result.data[i]["inMaintenance"]
    want = {i: o.in_maintenance(graph.items[i]) for i in live}
    assert got == want, {i: (got[i], want[i]) for i in live if got[i] != want[i]}


def with_item(graph: o.Graph, item: o.Item) -> o.Graph:
    return o.Graph({**graph.items, item.id: item}, graph.rels)


def check_path(graph: o.Graph, path: list[str], item: str, failing: set[str],
               hops: int) -> None:
    """An impact path: from a failing item up to the affected one, over live edges."""
    providers = o.providers_of(graph)
    assert path[0] in failing and path[-1] == item, path
    assert len(path) - 1 == hops, (path, hops)
    for provider, consumer in itertools.pairwise(path):
        assert provider in providers[consumer], (path, consumer, provider)


# ------------------------------------------------------------------------------ the test


async def intact(db: Database, token: str, graph: o.Graph) -> bool:
    row = (await db.read(INTACT, {"token": token}))[0]
    return bool(row["marks"] == 1 and sorted(row["ids"]) == sorted(graph.items))


async def run_undisturbed(
    db: Database, graph: o.Graph, body: Callable[[str], Awaitable[None]]
) -> None:
    """Run ``body``; when it fails and the graph is no longer the one it loaded (another
    test run wiped it meanwhile), run it again."""
    for attempt in range(ATTEMPTS):
        token = uuid.uuid4().hex
        try:
            await body(token)
            return
        except Exception:
            if attempt == ATTEMPTS - 1 or await intact(db, token, graph):
                raise
            event("rerun: another test run changed the graph meanwhile")


@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sc=scenarios())
async def test_roll_up_and_impact_match_the_oracle(
    sc: Scenario, db: Database, test_settings: Settings
) -> None:
    note(f"items: {list(sc.graph.items.values())}")
    note(f"rels: {sc.graph.rels}")
    event(f"items: {len(sc.graph.items) // 5 * 5}-{len(sc.graph.items) // 5 * 5 + 4}")
    event(f"cyclic: {has_cycle(sc.graph)}")
    await run_undisturbed(db, sc.graph, lambda token: check(sc, db, test_settings, token))


async def check(sc: Scenario, db: Database, test_settings: Settings, token: str) -> None:
    graph = sc.graph
    svc = Services(db, test_settings)
    await load(svc, graph, token, sc.windows)
    await roll_up_all(svc, graph)
    want = expected(graph)
    if want is not None:
        compare_states(graph, want, await stored(db))
        if passes_on_in_window(graph, want):
            event("an in-window service passes a failure on")
    await compare_maintenance_flags(svc, graph)

    # Later changes roll up from the changed items only; the result must be the same as
    # rolling everything up from scratch, and the changes reported are the states that moved.
    for step in sc.steps:
        if step.window is not None:
            ident, on = step.window
            graph = with_item(graph, replace(graph.items[ident], window=on))
            await svc.service_records.update(
                ident, {"sla": {"maintenance_windows": [window_spec(on)]}})
            changes = None
        elif step.maintenance is not None:
            ident, on = step.maintenance
            it = graph.items[ident]
            lifecycle = o.MAINTENANCE if on else o.IN_SERVICE
            graph = with_item(graph, replace(it, lifecycle=lifecycle))
            update: Callable[[str, dict[str, Any]], Awaitable[Any]] = (
                svc.service_records.update if it.service else svc.inventory.update)
            await update(ident, {"lifecycle_status": lifecycle})
            changes = None
        else:
            for ident, state in step.states:
                graph = with_item(graph, replace(graph.items[ident], own=state))
            changes = await svc.health.set_states(
                [(i, OperationalState(s)) for i, s in step.states], "step")
        before, want = want, expected(graph)
        if before is not None and want is not None:
            compare_states(graph, want, await stored(db))
            if changes is not None:
                moved = {i: s for i, s in want.items() if before[i] != s}
                assert {c.item_id: c.state.value for c in changes} == moved
        else:
            want = None  # stored states are not comparable any more
        if step.states == ():
            await compare_maintenance_flags(svc, graph)

    # Bottom-up impact: reachability, shortest explaining paths, stored states.
    failing = set(sc.failing)
    reached = o.reach(graph, failing)
    impact = await svc.health.impact(ids=sc.failing, services_only=False)
    assert {e.item.id for e in impact} == set(reached)
    for e in impact:
        check_path(graph, e.path, e.item.id, failing, reached[e.item.id])
        if want is not None:
            assert e.state.value == want[e.item.id], e
    services = await svc.health.impact(ids=sc.failing, services_only=True)
    assert {e.item.id for e in services} == {i for i in reached if graph.items[i].service}

    # What-if: the same reach, the states as if the items were down, nothing stored.
    rows_before = await stored(db)
    changes_before = (await db.read(COUNT_CHANGES))[0]["n"]
    what_if = await svc.health.impact(ids=sc.failing, services_only=False, assume_down=True)
    assert {e.item.id for e in what_if} == set(reached)
    if want is not None:
        down = expected(graph, dict.fromkeys(sc.failing, o.DOWN))
        if down is not None:
            wrong = {e.item.id: (e.state.value, down[e.item.id]) for e in what_if
                     if e.state.value != down[e.item.id]}
            assert not wrong, f"what-if (neo4j, oracle) differ: {wrong}"
    assert await stored(db) == rows_before
    assert (await db.read(COUNT_CHANGES))[0]["n"] == changes_before

    # Top-down: the model under an item.
    model = await svc.health.model(sc.top)
    assert {e.item.id: e.depth for e in model} == o.reach_down(graph, sc.top)
    if want is not None:
        assert all(e.state.value == want[e.item.id] for e in model)


def has_cycle(graph: o.Graph) -> bool:
    providers = o.providers_of(graph)
    colour: dict[str, int] = {}

    def visit(i: str) -> bool:
        colour[i] = 1
        for p in providers[i]:
            if colour.get(p) == 1 or (p not in colour and visit(p)):
                return True
        colour[i] = 2
        return False

    return any(i not in colour and visit(i) for i in providers)


# ------------------------------------------------------------------------------ regressions


def ci(ident: str, cls: str, own: str = o.UP, lifecycle: str = o.IN_SERVICE) -> o.Item:
    return o.Item(ident, False, own, lifecycle, cls)


def service(ident: str, own: str = o.UNKNOWN) -> o.Item:
    return o.Item(ident, True, own, o.IN_SERVICE, "BUSINESS")


def rel(source: str, rel_type: str, target: str, **props: Any) -> o.Rel:
    return o.Rel(source, rel_type, target, props)


class Scripted:
    """A loaded and rolled-up graph that a test changes step by step, checking each step
    against the oracle."""

    def __init__(self, svc: Services, graph: o.Graph) -> None:
        self.svc, self.graph = svc, graph

    async def set(self, **states: str) -> dict[str, str]:
        await self.svc.health.set_states(
            [(i, OperationalState(s)) for i, s in states.items()], "test")
        for i, s in states.items():
            self.graph = with_item(self.graph, replace(self.graph.items[i], own=s))
        return await self.check()

    async def maintenance(self, ident: str, on: bool) -> dict[str, str]:
        lifecycle = o.MAINTENANCE if on else o.IN_SERVICE
        await self.svc.inventory.update(ident, {"lifecycle_status": lifecycle})
        self.graph = with_item(self.graph, replace(self.graph.items[ident], lifecycle=lifecycle))
        return await self.check()

    async def retire(self, ident: str) -> dict[str, str]:
        await self.svc.inventory.retire(ident, "test")
        self.graph = with_item(self.graph, replace(self.graph.items[ident], lifecycle=o.RETIRED))
        return await self.check()

    async def check(self) -> dict[str, str]:
        """The stored states, after checking that they are the oracle's."""
        want = o.rollup(self.graph)
        rows = await stored(self.svc.db)
        compare_states(self.graph, want, rows)
        return {i: rows[i]["health"] for i in want}


async def scripted(
    db: Database, test_settings: Settings, items: list[o.Item], rels: list[o.Rel],
    script: Callable[[Scripted], Awaitable[None]],
) -> None:
    graph = o.Graph({i.id: i for i in items}, rels)

    async def body(token: str) -> None:
        svc = Services(db, test_settings)
        await load(svc, graph, token)
        await roll_up_all(svc, graph)
        s = Scripted(svc, graph)
        await s.check()
        await script(s)

    await run_undisturbed(db, graph, body)


async def test_cycle_does_not_keep_itself_down_after_recovery(clean_db, test_settings):
    # s -> a <-> b -> d: the cycle a, b goes down with d and must come back with it.
    items = [service("s"), ci("a", "ApplicationInstance"), ci("b", "ApplicationInstance"),
             ci("d", "Database")]
    rels = [rel("s", "DEPENDS_ON", "a"), rel("a", "DEPENDS_ON", "b"),
            rel("b", "DEPENDS_ON", "a"), rel("b", "DEPENDS_ON", "d")]

    async def script(g: Scripted) -> None:
        assert (await g.set(d=o.DOWN)) == {"s": o.DOWN, "a": o.DOWN, "b": o.DOWN, "d": o.DOWN}
        assert (await g.set(d=o.UP)) == dict.fromkeys("sabd", o.UP)
        assert (await g.set(d=o.DEGRADED))["s"] == o.DEGRADED
        assert (await g.set(a=o.DOWN, d=o.UP))["b"] == o.DOWN  # own failure inside the cycle
        assert (await g.set(a=o.UP)) == dict.fromkeys("sabd", o.UP)
        impact = await g.svc.health.impact(ids=["d"], services_only=False)
        assert {e.item.id: e.path for e in impact} == {
            "b": ["d", "b"], "a": ["d", "b", "a"], "s": ["d", "b", "a", "s"]}

    await scripted(clean_db, test_settings, items, rels, script)


async def test_diamond_members_are_counted_once_in_a_k_of_n_group(clean_db, test_settings):
    # x needs 2 of its 3 web VMs; w1 and w2 share host h1 (a diamond under x), w3 is on h2.
    # The service also uses h1 directly (a second diamond, over x and straight to h1).
    items = [service("s"), ci("x", "ApplicationInstance"), ci("w1", "VirtualMachine"),
             ci("w2", "VirtualMachine"), ci("w3", "VirtualMachine"),
             ci("h1", "HypervisorHost"), ci("h2", "HypervisorHost")]
    web = {"redundancyGroup": "web", "minUp": 2}
    rels = [rel("s", "DEPENDS_ON", "x"), rel("s", "USES", "h1", impact="OPTIONAL"),
            rel("x", "DEPENDS_ON", "w1", **web), rel("x", "DEPENDS_ON", "w2", **web),
            rel("x", "DEPENDS_ON", "w3", **web), rel("w1", "RUNS_ON", "h1"),
            rel("w2", "RUNS_ON", "h1"), rel("w3", "RUNS_ON", "h2")]

    async def script(g: Scripted) -> None:
        got = await g.set(h2=o.DOWN)  # one of three members down: 2 of 3 still up
        assert (got["w3"], got["x"], got["s"]) == (o.DOWN, o.DEGRADED, o.DEGRADED)
        got = await g.set(h2=o.UP, h1=o.DOWN)  # two members down through one host
        assert (got["w1"], got["w2"], got["x"], got["s"]) == (o.DOWN, o.DOWN, o.DOWN, o.DOWN)
        got = await g.set(h1=o.UNKNOWN)  # unknown members decide
        assert (got["x"], got["s"]) == (o.UNKNOWN, o.UNKNOWN)
        got = await g.set(h1=o.DEGRADED)
        assert (got["x"], got["s"]) == (o.DEGRADED, o.DEGRADED)
        paths = {e.item.id: e.path for e in
                 await g.svc.health.impact(ids=["h1"], services_only=False)}
        assert paths.pop("x") in (["h1", "w1", "x"], ["h1", "w2", "x"])
        assert paths == {"w1": ["h1", "w1"], "w2": ["h1", "w2"], "s": ["h1", "s"]}

    await scripted(clean_db, test_settings, items, rels, script)


async def test_member_of_groups_with_min_up(clean_db, test_settings):
    # Cluster c1 needs 3 of its 4 hosts, cluster c2 half of its 4; a VM runs on each.
    hosts1, hosts2 = [f"a{i}" for i in range(4)], [f"b{i}" for i in range(4)]
    items = ([ci("c1", "Cluster"), ci("c2", "Cluster"), ci("v1", "VirtualMachine"),
              ci("v2", "VirtualMachine")]
             + [ci(h, "HypervisorHost") for h in hosts1 + hosts2])
    rels = ([rel(h, "MEMBER_OF", "c1", minUp=3) for h in hosts1]
            + [rel(h, "MEMBER_OF", "c2", minUpPercent=50) for h in hosts2]
            + [rel("v1", "RUNS_ON", "c1"), rel("v2", "RUNS_ON", "c2")])

    async def script(g: Scripted) -> None:
        got = await g.set(a0=o.DOWN, b0=o.DOWN)
        assert (got["c1"], got["v1"], got["c2"], got["v2"]) == (o.DEGRADED,) * 4
        got = await g.set(a1=o.DOWN, b1=o.DOWN)
        assert (got["c1"], got["c2"]) == (o.DOWN, o.DEGRADED)
        got = await g.set(b2=o.DOWN)
        assert (got["c2"], got["v2"]) == (o.DOWN, o.DOWN)
        got = await g.maintenance("a1", True)  # a host in maintenance counts as up
        assert (got["a1"], got["c1"], got["v1"]) == (o.DOWN, o.DEGRADED, o.DEGRADED)
        got = await g.set(a2=o.UNKNOWN)  # a member is down: degraded outranks unknown
        assert (got["c1"], got["v1"]) == (o.DEGRADED, o.DEGRADED)
        got = await g.set(a2=o.UP)
        assert got["c1"] == o.DEGRADED
        got = await g.retire("a3")  # three members left, one down: fewer than 3 up
        assert (got["c1"], got["v1"]) == (o.DOWN, o.DOWN)
        impact = await g.svc.health.impact(ids=["b3"], services_only=False)
        assert {e.item.id: e.path for e in impact} == {"c2": ["b3", "c2"],
                                                       "v2": ["b3", "c2", "v2"]}

    await scripted(clean_db, test_settings, items, rels, script)


async def test_bulk_member_of_is_seen_by_impact(clean_db, test_settings):
    # Failed before 1dd2f14: the bulk path made no HAS_MEMBER mirror for MEMBER_OF.
    bulk = BulkService(clean_db, test_settings)
    await bulk.upsert_items([CIRow(id="h", name="h", ci_class=CIClass.HYPERVISOR_HOST),
                             CIRow(id="c", name="c", ci_class=CIClass.CLUSTER)])
    await bulk.upsert_relations([RelationRow(source_id="h", target_id="c",
                                             type=RelationType.MEMBER_OF)])
    svc = Services(clean_db, test_settings)
    changes = await svc.health.set_states([("h", OperationalState.DOWN)], "test")
    assert {c.item_id: c.state.value for c in changes}["c"] == o.DOWN  # roll-up sees it
    assert [e.item.id for e in await svc.health.impact(ids=["h"], services_only=False)] == ["c"]
    assert [e.item.id for e in await svc.health.model("c")] == ["h"]


# --------------------------------------------------------------------- former discrepancies
# Each once showed a difference between the code and the rules; kept as regressions.


async def test_connects_to_with_required_false_stays_informational(clean_db, test_settings):
    items = [ci("a", "ApplicationInstance"), ci("n", "NetworkDevice", o.DOWN)]
    rels = [rel("a", "CONNECTS_TO", "n", required=False)]

    async def script(g: Scripted) -> None:
        pass  # Scripted.check compares with the oracle: a stays UP

    await scripted(clean_db, test_settings, items, rels, script)


async def test_one_provider_twice_in_a_group_is_one_member(clean_db, test_settings):
    # a needs half of {v1, v2}; it both DEPENDS_ON and RUNS_ON v1. v1 down leaves 1 of 2.
    g = {"redundancyGroup": "g", "minUpPercent": 50}
    items = [ci("a", "ApplicationInstance"), ci("v1", "VirtualMachine", o.DOWN),
             ci("v2", "VirtualMachine")]
    rels = [rel("a", "DEPENDS_ON", "v1", **g), rel("a", "RUNS_ON", "v1", **g),
            rel("a", "DEPENDS_ON", "v2", **g)]

    async def script(s: Scripted) -> None:
        pass  # oracle: a DEGRADED; Neo4j: n = 3 edges, k = 2, a DOWN

    await scripted(clean_db, test_settings, items, rels, script)


async def test_redundancy_cycle_settles_independently_of_the_batch(clean_db, test_settings):
    # i0 needs one of {i1, i2}; i2 is down, and i1 depends on i0.
    items = [ci("i0", "ApplicationInstance", o.UNKNOWN), ci("i1", "ApplicationInstance"),
             ci("i2", "ApplicationInstance", o.DOWN), ci("x", "Server")]
    rels = [rel("i0", "DEPENDS_ON", "i1", redundancyGroup="g"),
            rel("i0", "DEPENDS_ON", "i2", redundancyGroup="g"), rel("i1", "DEPENDS_ON", "i0")]
    graph = o.Graph({i.id: i for i in items}, rels)
    o.rollup(graph)  # settles: the group rule is checked in precedence order

    async def body(token: str) -> None:
        svc = Services(clean_db, test_settings)
        await load(svc, graph, token)
        await svc.health.set_states([("i2", OperationalState.DOWN)], "alone")
        alone = {i: r["health"] for i, r in (await stored(clean_db)).items() if i != "x"}
        await svc.health.set_states([("i2", OperationalState.DOWN),
                                     ("x", OperationalState.UP)], "with an unrelated item")
        batch = {i: r["health"] for i, r in (await stored(clean_db)).items()}
        assert alone == {i: s for i, s in batch.items() if i != "x"}
        assert o.next_states(graph, batch) == batch  # what is stored is a fixpoint

    await run_undisturbed(clean_db, graph, body)


async def test_impact_reaches_as_far_as_the_roll_up(clean_db, test_settings):
    n = 60  # a chain a59 -> a58 -> ... -> a00
    items = [ci(f"a{i:02d}", "ApplicationInstance") for i in range(n)]
    rels = [rel(f"a{i + 1:02d}", "DEPENDS_ON", f"a{i:02d}") for i in range(n - 1)]

    async def script(g: Scripted) -> None:
        assert (await g.set(a00=o.DOWN))["a59"] == o.DOWN
        impact = await g.svc.health.impact(ids=["a00"], services_only=False)
        assert len(impact) == n - 1
        assert len(await g.svc.health.model("a59")) == n - 1

    await scripted(clean_db, test_settings, items, rels, script)


A_TO_V = "MATCH (:Item {id: 'a'})-[r]->(:Item {id: 'v'}) RETURN count(r) AS n"
MALFORMED = [{"redundancyGroup": "g", "minUpPercent": "50"},
             {"redundancyGroup": "g", "minUp": "1"}, {"impact": "SOMETIMES"}]


@pytest.mark.parametrize("rule", MALFORMED, ids=[list(r)[-1] for r in MALFORMED])
async def test_a_malformed_rule_does_not_break_the_roll_up(clean_db, test_settings, rule):
    # a needs w; a malformed rule on a -> v is refused by relate and by the bulk path,
    # naming its field, and writes nothing. Refusing is one way: a rule that is accepted
    # must roll up as the oracle says. Either way the roll-up goes on matching the oracle.
    items = [ci("a", "ApplicationInstance"), ci("v", "VirtualMachine"),
             ci("w", "VirtualMachine")]
    (key,) = [k for k in rule if k != "redundancyGroup"]

    async def script(g: Scripted) -> None:
        accepted = False
        try:
            await g.svc.relations.relate("a", "v", RelationType.DEPENDS_ON, dict(rule))
            accepted = True
        except DomainError as e:
            assert [x.field for x in e.errors] == [f"input.properties.{key}"], e.errors
        bulk = BulkService(g.svc.db, g.svc.settings)
        result = await bulk.upsert_relations([RelationRow(
            source_id="a", target_id="v", type=RelationType.DEPENDS_ON, properties=dict(rule))])
        if result.rejected:
            assert [r.field for r in result.rejected] == [f"properties.{key}"], result
        else:
            accepted = True
        assert (await g.svc.db.read(A_TO_V))[0]["n"] == int(accepted)
        if accepted:
            g.graph = o.Graph(g.graph.items, [*g.graph.rels, rel("a", "DEPENDS_ON", "v", **rule)])
        # Each step is compared with the oracle (Scripted.check); a stays UP while w is up.
        got = await g.set(v=o.DOWN)
        assert accepted or got["a"] == o.UP
        assert (await g.set(w=o.DOWN))["a"] == o.DOWN
        assert (await g.set(v=o.UP, w=o.UP))["a"] == o.UP

    await scripted(clean_db, test_settings, items, [rel("a", "DEPENDS_ON", "w")], script)
