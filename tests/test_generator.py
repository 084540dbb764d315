"""The synthetic enterprise generator, without Neo4j: determinism, sizes and shape."""

from __future__ import annotations

import types
from collections import Counter, defaultdict
from itertools import islice, pairwise

import pytest

from bench.generator import TIERS, Enterprise, plan
from cmdb.core.models import OperationalState, OrgKind
from cmdb.items.models import RULES, SERVICE, CIClass, RelationType, rule_violation

DEP, RUN = RelationType.DEPENDS_ON, RelationType.RUNS_ON


@pytest.fixture(scope="module")
def small():
    """Tier S materialised once: classes, CIs by id, relationships."""
    e = Enterprise("S", seed=42)
    items = list(e.items())
    rels = list(e.relations())
    return e, items, rels


def dumps(rows):
    return [r.model_dump(mode="json") for r in rows]


def test_same_seed_same_rows_and_counts():
    a, b = Enterprise("S", seed=7), Enterprise("S", seed=7)
    assert dumps(islice(a.items(), 500)) == dumps(islice(b.items(), 500))
    assert dumps(islice(a.relations(), 2000)) == dumps(islice(b.relations(), 2000))
    for kind in OrgKind:
        assert dumps(a.org_units(kind)) == dumps(b.org_units(kind))
    assert a.summary() == b.summary()
    assert sum(1 for _ in a.relations()) == sum(1 for _ in b.relations())


def test_different_seed_different_rows():
    a, b = Enterprise("S", seed=1), Enterprise("S", seed=2)
    assert dumps(islice(a.cis(), 300)) != dumps(islice(b.cis(), 300))
    assert dumps(islice(a.relations(), 30000)) != dumps(islice(b.relations(), 30000))


def test_rows_are_streamed_not_listed():
    e = Enterprise("S")
    for stream in (e.items(), e.cis(), e.services(), e.relations(),
                   e.org_units(OrgKind.COST_CENTRE)):
        assert isinstance(stream, types.GeneratorType)


def test_stable_ids():
    first = next(Enterprise("M", seed=3).cis())
    assert first.id == "ci-000001"
    assert next(Enterprise("S", seed=4).cis()).id == "ci-000001"


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_tier_sizes_within_five_percent(tier):
    e = Enterprise(tier)
    target = TIERS[tier]
    assert abs(e.layout.cis - target) <= 0.05 * target
    ratio = e.relation_count() / e.layout.cis
    assert 3.8 <= ratio <= 4.2
    assert e.layout.technical_services >= 100
    assert min(b - a for a, b in pairwise(e.layout.ts_apps)) >= 10
    sizes = [b - a for table in (e.layout.vm_clusters, e.layout.vdi_clusters)
             for a, b in pairwise(table)]
    assert min(sizes) >= 3 and max(sizes) <= 16
    assert e.layout.cost_centres == {"S": 50, "M": 200, "L": 500}[tier]


@pytest.mark.parametrize("tier", ["S", "M"])
def test_streams_match_the_plan_and_obey_the_rules(tier):
    e = Enterprise(tier, seed=11)
    classes = {}
    for item in e.items():
        classes[item.id] = item.ci_class.value if hasattr(item, "ci_class") else SERVICE
    cis = sum(1 for c in classes.values() if c != SERVICE)
    assert cis == e.layout.cis
    assert len(classes) == cis + e.layout.services  # ids unique
    count, seen = 0, set()
    for r in e.relations():
        count += 1
        assert rule_violation(r.type, classes[r.source_id], classes[r.target_id]) is None, r
        assert r.source_id != r.target_id
        seen.add((r.source_id, r.type, r.target_id))
    assert count == e.relation_count() == len(seen)  # one relationship per (source, type, target)
    assert abs(count / cis - 4) <= 0.2


def test_nested_benchmark_shape(small):
    """At least 100 technical services -> 10+ components -> 3+ RUNS_ON targets each."""
    _, items, rels = small
    technical = {i.id for i in items if getattr(i, "kind", None) == "TECHNICAL"}
    out: defaultdict[RelationType, defaultdict[str, set[str]]] = defaultdict(
        lambda: defaultdict(set))
    for r in rels:
        out[r.type][r.source_id].add(r.target_id)
    good = 0
    for ts in technical:
        components = [c for c in out[DEP][ts] if len(out[RUN][c]) >= 3]
        good += len(components) >= 10
    assert good >= 100


def test_every_relationship_row_satisfies_rules(small):
    _, items, rels = small
    classes = {i.id: (i.ci_class.value if hasattr(i, "ci_class") else SERVICE) for i in items}
    for r in rels:
        sources, targets = RULES[r.type]
        assert classes[r.source_id] in sources and classes[r.target_id] in targets, r


def test_realistic_shape(small):
    e, items, rels = small
    cis = [i for i in items if hasattr(i, "ci_class")]
    by_id = {i.id: i for i in cis}
    # every class is there, and every CI has its org units, which exist
    assert {c.ci_class for c in cis} == set(CIClass)
    org = {kind: {u.id for u in e.org_units(kind)} for kind in OrgKind}
    for ci in cis:
        assert ci.owner_group_id in org[OrgKind.OWNER_GROUP]
        assert ci.cost_centre_id in org[OrgKind.COST_CENTRE]
        assert ci.location_id in org[OrgKind.LOCATION]
    # identifiers are unique
    for field in ("serial_number", "mac_address", "cloud_instance_id", "fqdn"):
        values = [getattr(c.identifiers, field) for c in cis]
        present = [v for v in values if v is not None]
        assert present and len(present) == len(set(present)), field
    # states mostly UP, some DEGRADED and DOWN; criticality spread
    states = Counter(c.operational_state for c in cis)
    assert states[OperationalState.UP] > 0.85 * len(cis)
    assert states[OperationalState.DEGRADED] > 0 and states[OperationalState.DOWN] > 0
    assert len({c.criticality for c in cis}) == 4
    # diamonds: applications sharing a database; and some DEPENDS_ON cycles
    deps = defaultdict(set)
    for r in rels:
        if r.type is DEP:
            deps[r.source_id].add(r.target_id)
    db_users = Counter(t for s, ts in deps.items() for t in ts
                       if by_id.get(t) and by_id[t].ci_class is CIClass.DATABASE)
    assert max(db_users.values()) >= 2
    assert _cycles(deps) >= 3
    # hosts are MEMBER_OF clusters of 3..16
    members = Counter(r.target_id for r in rels if r.type is RelationType.MEMBER_OF
                      and by_id[r.target_id].ci_class is CIClass.CLUSTER)
    assert min(members.values()) >= 3 and max(members.values()) <= 16
    # the other relationship kinds are there too
    assert {r.type for r in rels} >= {DEP, RUN, RelationType.MEMBER_OF, RelationType.USES,
                                      RelationType.CONNECTS_TO, RelationType.INSTALLED_ON}


def test_org_units_come_parents_first():
    e = Enterprise("M")
    for kind in OrgKind:
        seen: set[str] = set()
        names: set[str] = set()
        for unit in e.org_units(kind):
            assert unit.parent_id is None or unit.parent_id in seen
            assert unit.name.lower() not in names  # names are unique per kind
            seen.add(unit.id)
            names.add(unit.name.lower())
    codes = [u.code for u in e.org_units(OrgKind.COST_CENTRE)]
    assert len(codes) == len(set(codes)) == 200


def test_plan_is_cheap_for_the_largest_tier():
    layout = plan("L", seed=42)
    assert layout.cis == 1_000_000
    assert len(layout.vm_host) == layout.counts[CIClass.VIRTUAL_MACHINE]


def _cycles(deps):
    """Number of nodes on a DEPENDS_ON cycle (iterative colour DFS)."""
    colour, on_cycle = {}, 0
    for root in list(deps):
        if root in colour:
            continue
        stack = [(root, iter(deps.get(root, ())))]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
            elif colour.get(child) == 1:
                on_cycle += 1
            elif child not in colour:
                colour[child] = 1
                stack.append((child, iter(deps.get(child, ()))))
    return on_cycle
