"""Properties of the chargeback arithmetic (pure functions, no database), each checked on
hundreds of random cases: allocations sum exactly to their totals, no line is negative, ties
break the same way every run whatever the input order, the graph walk agrees with an
independent evaluation, and unallocated is exactly what reaches no payer."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmdb.chargeback.allocation import (
    NO_CONSUMER,
    CostGraph,
    largest_remainder,
    rate,
    split,
    weighted,
)
from cmdb.chargeback.engine import (
    HOLDER_FIELDS,
    CalculationInput,
    CostCentreRow,
    Engine,
    ItemRow,
    SubscriptionRow,
    UsageGroup,
)
from cmdb.chargeback.models import BillingMode, CostPool, Driver, Tier
from cmdb.items.models import CostRecovery

MANY = settings(max_examples=300, deadline=None)

weights = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30).filter(
    lambda w: sum(w) > 0)


def holders(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A calculated line's holders (stored as arrays) by field name."""
    return [dict(zip(HOLDER_FIELDS, h, strict=True)) for h in row.get("holders") or []]


def shares_of(ws: list[int]) -> list[Fraction]:
    total = sum(ws)
    return [Fraction(w, total) for w in ws]


@MANY
@given(total=st.integers(min_value=-10**12, max_value=10**12), ws=weights,
       seed=st.integers(min_value=0, max_value=2**32))
def test_largest_remainder_sums_exactly_and_stays_within_a_cent(total, ws, seed):
    shares = shares_of(ws)
    keys = [f"k{i:03d}" for i in range(len(ws))]
    parts = largest_remainder(total, shares, keys)
    assert sum(parts) == total
    for part, share in zip(parts, shares, strict=True):
        assert abs(part - total * share) < 1
        if total >= 0:
            assert part >= 0
        if share == 0:
            assert part == 0
    # Ties break by key, not by input order: a shuffled input gives the same parts per key.
    order = list(range(len(ws)))
    random.Random(seed).shuffle(order)
    again = largest_remainder(total, [shares[i] for i in order], [keys[i] for i in order])
    assert dict(zip([keys[i] for i in order], again, strict=True)) == \
        dict(zip(keys, parts, strict=True))


def test_largest_remainder_breaks_a_tie_towards_the_smaller_key():
    assert largest_remainder(100, [Fraction(1, 3)] * 3, ["b", "a", "c"]) == [33, 34, 33]
    assert largest_remainder(200, [Fraction(1, 3)] * 3, ["b", "a", "c"]) == [67, 67, 66]


def test_largest_remainder_refuses_shares_that_do_not_add_up():
    for shares in ([Fraction(1, 2)], [Fraction(3, 2), Fraction(-1, 2)]):
        try:
            largest_remainder(10, shares, [str(i) for i in range(len(shares))])
        except ValueError:
            continue
        raise AssertionError(f"accepted {shares}")


tiers = st.lists(st.tuples(st.integers(min_value=1, max_value=500),
                           st.decimals(min_value=0, max_value=5, places=3)),
                 min_size=0, max_size=4)


def tier_list(spec: list[tuple[int, Decimal]], last: Decimal) -> list[Tier]:
    out, top = [], 0
    for width, r in spec:
        top += width
        out.append(Tier(up_to=Decimal(top), rate=r))
    out.append(Tier(rate=last))
    return out


@MANY
@given(spec=tiers, last=st.decimals(min_value=0, max_value=5, places=3),
       q=st.integers(min_value=0, max_value=3000))
def test_tiered_rate_matches_a_unit_by_unit_evaluation(spec, last, q):
    ts = tier_list(spec, last)

    def marginal(unit: int) -> Decimal:  # the price of the unit-th unit (1-based)
        for t in ts:
            if t.up_to is None or unit <= t.up_to:
                return t.rate
        raise AssertionError

    assert rate(Decimal(q), ts) == sum((marginal(u) for u in range(1, q + 1)), Decimal(0))
    assert rate(Decimal(q) + Decimal("0.5"), ts) >= rate(Decimal(q), ts)


def test_flat_and_tiered_examples():
    assert rate(Decimal("2048"), [Tier(up_to=Decimal(1000), rate=Decimal("0.10")),
                                  Tier(up_to=Decimal(5000), rate=Decimal("0.08")),
                                  Tier(rate=Decimal("0.05"))]) == Decimal("183.84")
    assert rate(Decimal("730.5"), [Tier(rate=Decimal("0.012345"))]) == Decimal("9.0180225")


# --- the graph walk --------------------------------------------------------------------------


@st.composite
def graphs(draw: Any, acyclic: bool) -> tuple[dict[str, list[str]], frozenset[str]]:
    n = draw(st.integers(min_value=1, max_value=14))
    nodes = [f"n{i:02d}" for i in range(n)]
    edges: dict[str, list[str]] = {}
    for i, a in enumerate(nodes):
        pool = nodes[i + 1:] if acyclic else [b for b in nodes if b != a]
        if pool:
            chosen = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))
            if chosen:
                edges[a] = sorted(chosen)
    payers = frozenset(draw(st.lists(st.sampled_from(nodes), max_size=4, unique=True)))
    return edges, payers


def independent(edges: dict[str, list[str]], payers: frozenset[str], node: str,
                weights: dict[str, int] | None = None) -> dict[str, Fraction]:
    """Plain recursion on a DAG: split among consumers by weight (equally when no consumer
    has one) until a payer."""
    if node in payers:
        return {node: Fraction(1)}
    consumers = edges.get(node, [])
    if not consumers:
        return {NO_CONSUMER + node: Fraction(1)}
    total = sum((weights or {}).get(c, 0) for c in consumers)
    out: dict[str, Fraction] = {}
    for c in consumers:
        part = Fraction((weights or {}).get(c, 0), total) if total else \
            Fraction(1, len(consumers))
        if not part:
            continue
        for k, f in independent(edges, payers, c, weights).items():
            out[k] = out.get(k, Fraction(0)) + f * part
    return out


def reachable(edges: dict[str, list[str]], node: str) -> set[str]:
    seen, stack = {node}, [node]
    while stack:
        for c in edges.get(stack.pop(), []):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


@MANY
@given(g=graphs(acyclic=True))
def test_walk_on_diamonds_agrees_with_an_independent_evaluation(g):
    edges, payers = g
    walk = CostGraph(edges, payers)
    for node in sorted({*edges, *payers, *(c for cs in edges.values() for c in cs)}):
        got = {k: s.fraction for k, s in walk.shares(node).items()}
        assert got == independent(edges, payers, node)


@MANY
@given(g=graphs(acyclic=True), data=st.data())
def test_weighted_walk_agrees_with_an_independent_evaluation(g, data):
    edges, payers = g
    nodes = sorted({*edges, *payers, *(c for cs in edges.values() for c in cs)})
    if not nodes:
        return
    weights = data.draw(st.dictionaries(st.sampled_from(nodes),
                                        st.integers(min_value=0, max_value=5)))
    walk = CostGraph(edges, payers, {k: Fraction(v) for k, v in weights.items()})
    for node in nodes:
        got = {k: s.fraction for k, s in walk.shares(node).items()}
        assert got == independent(edges, payers, node, weights)
        assert sum(got.values(), Fraction(0)) == 1


@MANY
@given(g=graphs(acyclic=False))
def test_walk_with_cycles_terminates_sums_to_one_and_stays_on_reachable_nodes(g):
    edges, payers = g
    nodes = sorted({*edges, *payers, *(c for cs in edges.values() for c in cs)})
    first = CostGraph(edges, payers)
    answers = {n: first.shares(n) for n in nodes}
    for node, shares in answers.items():
        assert sum((s.fraction for s in shares.values()), Fraction(0)) == 1
        reach = reachable(edges, node)
        for key, s in shares.items():
            assert s.fraction > 0
            target = key.removeprefix(NO_CONSUMER)
            assert target in reach
            assert (key in payers) != key.startswith(NO_CONSUMER)
            assert s.path[0] == node and s.path[-1] == target
        # Unallocated exactly when no payer is reachable, or only through a cut cycle.
        if not reach & payers:
            assert all(k.startswith(NO_CONSUMER) for k in shares)
    # The same graph asked in the same order answers the same: every run, every copy.
    again = CostGraph(edges, payers)
    assert {n: again.shares(n) for n in nodes} == answers


@MANY
@given(ws=st.dictionaries(st.text("abcdef", min_size=1, max_size=3),
                          st.integers(min_value=0, max_value=1000), min_size=0, max_size=10),
       capacity=st.one_of(st.none(), st.integers(min_value=1, max_value=20_000)),
       cents=st.integers(min_value=0, max_value=10**9))
def test_weighted_pool_shares_and_idle_capacity(ws, capacity, cents):
    shares, idle = weighted({k: Decimal(v) for k, v in ws.items()},
                            None if capacity is None else Decimal(capacity))
    used = sum(ws.values())
    assert idle >= 0 and sum(shares.values(), Fraction(0)) + idle == 1
    if capacity is not None and capacity > used:
        assert idle == Fraction(capacity - used, capacity)
    elif used:
        assert idle == 0
    parts = split(cents, [*shares.items(), ("~idle", idle)])
    assert sum(c for _, c in parts) == cents and all(c >= 0 for _, c in parts)


# --- whole calculations on random graphs -----------------------------------------------------


@st.composite
def worlds(draw: Any) -> CalculationInput:
    """Clusters of hosts, VMs on hosts, apps on VMs, services on apps, some subscriptions."""
    rnd = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    items: dict[str, ItemRow] = {}
    uses: dict[str, list[str]] = {}
    ccs = {c: CostCentreRow(c, c, None, BillingMode.CHARGEBACK) for c in ("CC-A", "CC-B")}

    def add(id_: str, cls: str, **kw: Any) -> str:
        items[id_] = ItemRow(id_, id_, cls, rnd.choice(["CC-A", "CC-B", None]), **kw)
        return id_

    def use(provider: str, consumer: str) -> None:
        uses.setdefault(provider, []).append(consumer)

    clusters = [add(f"cl{i}", "Cluster") for i in range(draw(st.integers(1, 3)))]
    hosts = []
    for i in range(draw(st.integers(1, 6))):
        h = add(f"h{i}", "HypervisorHost")
        use(rnd.choice(clusters), h)  # cluster -> member host
        hosts.append(h)
    vms = []
    for i in range(draw(st.integers(0, 12))):
        vm = add(f"vm{i}", "VirtualMachine", cpu=Decimal(rnd.choice([1, 2, 4, 8])))
        use(rnd.choice(hosts), vm)
        vms.append(vm)
    services = [add(f"bs{i}", "BUSINESS_SERVICE",
                    recovery=rnd.choice([CostRecovery.OWNER, CostRecovery.CONSUMERS,
                                         CostRecovery.PRICES]))
                for i in range(draw(st.integers(0, 3)))]
    for i, vm in enumerate(vms):
        if rnd.random() < 0.7:
            app = add(f"app{i}", "ApplicationInstance")
            use(vm, app)
            for s in rnd.sample(services, k=min(len(services), rnd.choice([0, 1, 2]))):
                use(app, s)  # diamonds when an app serves two services
            if rnd.random() < 0.2 and len(vms) > 1:
                use(app, rnd.choice(vms))  # a cycle now and then
    # Subscriptions provision VMs, some for a service, some active only part of October.
    subs = [SubscriptionRow(
        id=f"s{i}", user=f"u{i}", cost_centre=rnd.choice(["CC-A", "CC-B"]), item_id="it",
        item_name="Linux VM", service_id=rnd.choice([None, *services]), ci_ids=(vm,),
        start=datetime(2026, 10, rnd.choice([1, 1, 11]), tzinfo=UTC),
        end=rnd.choice([None, None, datetime(2026, 10, 21, tzinfo=UTC)]), monthly=Decimal(0),
        one_off=Decimal(0), currency="EUR") for i, vm in enumerate(vms) if rnd.random() < 0.3]
    pools = [CostPool(id=f"p{i}", code=f"pool-{i}", name=f"Pool {i}", driver=driver,
                      ci_ids=[rnd.choice(clusters)],
                      capacity=Decimal(rnd.choice([0, 16, 64])) or None
                      if driver is Driver.VCPU else None, description=None,
                      amounts={"2026-10": Decimal(rnd.randint(0, 10**7)) / 100},
                      currency="EUR")
             for i, driver in enumerate(draw(st.lists(st.sampled_from(
                 [Driver.VCPU, Driver.EQUAL]), min_size=1, max_size=3)))]
    return CalculationInput(period="2026-10", currency="EUR", items=items, uses=uses,
                            subscriptions=subs, users={}, cost_centres=ccs, rate_cards={},
                            meter_units={}, usage=[], pools=pools)


def active(s: SubscriptionRow) -> int:
    """Days of October a subscription of these worlds was active (1st or 11th to 21st or
    the end)."""
    return (s.end.day if s.end else 32) - s.start.day


def pays(world: CalculationInput, node: str, weights: dict[str, Fraction] | None = None,
         seen: frozenset[str] = frozenset()) -> dict[str | None, Fraction]:
    """Who pays a node's cost, by the rule in words (plain recursion, no engine code): the
    subscriptions that provisioned a CI, alone, by their active days; those for a service
    that recovers its cost from its consumers, alone, by their active days (keyed
    ``<id>@svc``: no pro-rating after that); a business service, or one recovered through
    prices, keeps its own; anything else splits among its direct consumers, by their
    ``weights`` (a pool's onward attribute; equally when none of them has one), where the
    services of the subscriptions whose CIs consume it stand in for those CIs (each once;
    a subscription for no service: its part reaches nobody, with no weight). A cycle is cut;
    what reaches no payer is ``None``."""
    made = [s for s in world.subscriptions if node in s.ci_ids]
    item = world.items[node]
    tag = ""
    if not made and item.recovery is CostRecovery.CONSUMERS:
        made = [s for s in world.subscriptions if s.service_id == node]
        tag = "@svc"
    if made:
        total = sum(active(s) for s in made)
        return {s.id + tag: Fraction(active(s), total) for s in made}
    if item.cls == "BUSINESS_SERVICE" or item.recovery is CostRecovery.PRICES:
        return {node: Fraction(1)}
    ours = {ci for s in world.subscriptions for ci in s.ci_ids}
    direct = set(world.uses.get(node, ()))
    stand_ins = {s.service_id for s in world.subscriptions for ci in s.ci_ids if ci in direct}
    consumers = sorted(((direct - ours) | {x for x in stand_ins if x is not None})
                       - seen - {node})
    nobody = None in stand_ins
    weights = weights or {}
    total_w = sum((weights.get(c, Fraction(0)) for c in consumers), Fraction(0))
    k = len(consumers) + nobody
    out: dict[str | None, Fraction] = {}
    for c in consumers:
        part = weights.get(c, Fraction(0)) / total_w if total_w else Fraction(1, k)
        if not part:
            continue
        for payer, f in pays(world, c, weights, seen | {node}).items():
            out[payer] = out.get(payer, Fraction(0)) + f * part
    if nobody and not total_w:
        out[None] = out.get(None, Fraction(0)) + Fraction(1, k)
    return out or {None: Fraction(1)}


def acyclic(world: CalculationInput) -> bool:
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        if state.get(n) == 1:
            return False
        if state.get(n) == 2:
            return True
        state[n] = 1
        ok = all(visit(c) for c in world.uses.get(n, ()))
        state[n] = 2
        return ok

    return all(visit(n) for n in world.items)


@settings(max_examples=200, deadline=None)
@given(world=worlds())
def test_each_payers_share_of_a_pool_is_what_it_consumes(world):
    """Each payer's exact share of each pool against the rule worked out independently: the
    driver holders (a cluster's VMs by vCPU, or its hosts equally) share the pool, each
    holder's part goes where ``pays`` says, and a subscription pays for the days it was
    active (1 to 11 October: 10 of 31 days; from the 11th: 21; to the 21st: 20) what
    reaches it through a CI it provisioned; through a service recovered from its consumers,
    its share (already by days) in full."""
    if not acyclic(world):
        return  # cycles are cut where the walk meets them: checked on the walk alone
    host_of = {vm: h for h, cs in world.uses.items() if h.startswith("h") for vm in cs
               if vm.startswith("vm")}
    cluster_of = {h: c for c, cs in world.uses.items() if c.startswith("cl") for h in cs}
    days = {s.id: Fraction(active(s), 31) for s in world.subscriptions}
    rows = Engine(world).run().rows
    for pool in world.pools:
        [cluster] = pool.ci_ids
        if pool.driver is Driver.VCPU:
            weights = {vm: Fraction(world.items[vm].cpu or 0) for vm, h in host_of.items()
                       if cluster_of[h] == cluster}
        else:
            weights = {h: Fraction(1) for h, c in cluster_of.items() if c == cluster}
        used = sum(weights.values(), Fraction(0))
        base = max(used, Fraction(pool.capacity)) if pool.capacity is not None else used
        want: dict[str, Fraction] = {}
        for holder, w in weights.items():
            if not w:
                continue
            for payer, f in pays(world, holder).items():
                if payer is not None and payer in days:  # through a CI it provisioned
                    f *= days[payer]
                elif payer is not None and payer.endswith("@svc"):  # through a service
                    payer = payer.removesuffix("@svc")
                if payer is not None and f:
                    want[payer] = want.get(payer, Fraction(0)) + w / base * f
        got = {row.get("subscriptionId") or row["serviceId"]: Fraction(row["share"])
               for row in rows if row["pool"] == pool.code
               and (row.get("subscriptionId") or row.get("serviceId"))}
        assert got == want


@settings(max_examples=200, deadline=None)
@given(world=worlds())
def test_pools_allocate_exactly_and_unallocated_is_what_reaches_no_payer(world):
    rows = Engine(world).run().rows
    by_pool: dict[str, int] = {}
    for row in rows:
        assert row["amountMinor"] >= 0
        by_pool[row["pool"]] = by_pool.get(row["pool"], 0) + row["amountMinor"]
        service = world.items.get(row.get("serviceId") or "")
        if row["kind"] == "UNALLOCATED":
            assert row.get("costCentre") is None and row["invoiced"] is False
        elif service is not None and service.recovery is CostRecovery.PRICES and \
                not row.get("subscriptionId"):  # kept by a service its prices recover
            assert row["invoiced"] is False and row["recovery"] == "PRICES"
        else:
            assert "recovery" not in row
            assert row.get("subscriptionId") or row.get("serviceId")
    for pool in world.pools:
        expected = int(pool.amounts["2026-10"] * 100)
        assert by_pool.get(pool.code, 0) == expected
    # The same world calculated again gives the same lines, cent for cent, id for id.
    again = Engine(world).run().rows
    assert [(r["id"], r["amountMinor"]) for r in again] == \
        [(r["id"], r["amountMinor"]) for r in rows]



def test_unpriced_usage_is_one_warning_per_meter_and_month_and_no_line():
    items = {f"v{i}": ItemRow(f"v{i}", f"vm{i}", "VirtualMachine", "CC-A") for i in range(3)}
    usage = [UsageGroup(f"v{i}", "gpu-hours", "2026-10", None, 1_500_000, 2)
             for i in range(3)]
    world = CalculationInput(period="2026-10", currency="EUR", items=items, uses={},
                             subscriptions=[], users={}, cost_centres={}, rate_cards={},
                             meter_units={"gpu-hours": "GPU-hour"}, usage=usage, pools=[])
    calc = Engine(world).run()
    assert calc.rows == []
    assert calc.warnings == ["usage of gpu-hours in 2026-10 (4.5 GPU-hour, 6 records on 3 CIs) "
                             "has no rate card in force in EUR: not charged"]


def test_a_payer_without_a_cost_centre_is_unallocated_not_invoiced():
    items = {"bs": ItemRow("bs", "Orphan service", "BUSINESS_SERVICE", None),
             "vm": ItemRow("vm", "vm1", "VirtualMachine", "CC-A", cpu=Decimal(2))}
    pool = CostPool(id="p", code="p", name="P", driver=Driver.VCPU, ci_ids=["vm"],
                    capacity=None, description=None, amounts={"2026-10": Decimal("10.00")},
                    currency="EUR")
    world = CalculationInput(period="2026-10", currency="EUR", items=items,
                             uses={"vm": ["bs"]}, subscriptions=[], users={},
                             cost_centres={}, rate_cards={}, meter_units={}, usage=[],
                             pools=[pool])
    [line] = Engine(world).run().rows
    assert (line["kind"], line["amountMinor"], line["invoiced"]) == ("UNALLOCATED", 1000, False)
    assert "Orphan service has no cost centre" in line["description"]


@pytest.mark.parametrize(("capacity", "why"), [
    (None, "P: unallocated: nothing holds its driver (VCPU)"),
    (Decimal(8), "P: idle capacity (VCPU)")])
def test_a_pool_nothing_holds_is_unallocated_and_says_why(capacity, why):
    items = {"h": ItemRow("h", "esx-1", "HypervisorHost", "CC-A")}  # no VM under it
    pool = CostPool(id="p", code="p", name="P", driver=Driver.VCPU, ci_ids=["h"],
                    capacity=capacity, description=None,
                    amounts={"2026-10": Decimal("10.00")}, currency="EUR")
    world = CalculationInput(period="2026-10", currency="EUR", items=items, uses={},
                             subscriptions=[], users={}, cost_centres={}, rate_cards={},
                             meter_units={}, usage=[], pools=[pool])
    [line] = Engine(world).run().rows
    assert (line["kind"], line["amountMinor"], line["description"]) == \
        ("UNALLOCATED", 1000, why)


def test_a_pool_books_one_line_per_payer_listing_the_holders_that_reach_it():
    items = {"c": ItemRow("c", "cluster-1", "Cluster", None),
             "h": ItemRow("h", "esx-1", "HypervisorHost", None),
             "vm1": ItemRow("vm1", "vm-1", "VirtualMachine", None, cpu=Decimal(2)),
             "vm2": ItemRow("vm2", "vm-2", "VirtualMachine", None, cpu=Decimal(6)),
             "vm3": ItemRow("vm3", "vm-3", "VirtualMachine", None, cpu=Decimal(4)),
             "app": ItemRow("app", "shop-app", "ApplicationInstance", None),
             "bs": ItemRow("bs", "Shop", "BUSINESS_SERVICE", "CC-A")}
    pool = CostPool(id="p", code="cl", name="Cluster 1", driver=Driver.VCPU, ci_ids=["c"],
                    capacity=None, description=None, amounts={"2026-10": Decimal("100.00")},
                    currency="EUR")
    world = CalculationInput(
        period="2026-10", currency="EUR", items=items,
        uses={"c": ["h"], "h": ["vm1", "vm2", "vm3"], "vm1": ["app"], "vm2": ["app"],
              "app": ["bs"]},
        subscriptions=[], users={}, cost_centres={}, rate_cards={}, meter_units={},
        usage=[], pools=[pool])
    rows = Engine(world).run().rows
    shop = next(r for r in rows if r.get("serviceId") == "bs")
    lost = next(r for r in rows if r["kind"] == "UNALLOCATED")
    assert len(rows) == 2
    # 8 of 12 vCPUs reach the Shop through two VMs: one line, 66.67 (the extra cent by the
    # larger remainder), quantity 8 vCPU, share 2/3, each VM listed with its way there.
    assert (shop["amountMinor"], shop["quantity"], shop["share"], shop["unit"]) == \
        (6667, "8", "2/3", "vCPU")
    assert "ciId" not in shop
    assert shop["path"] == ["Cluster 1", "cluster-1", "esx-1", "vm-1", "shop-app", "Shop"]
    assert [(h["id"], h["quantity"], h["reaching"], h["share"], h["path"])
            for h in holders(shop)] == [
        ("vm1", "2", "1/1", "1/6", ["Cluster 1", "cluster-1", "esx-1", "vm-1", "shop-app",
                                    "Shop"]),
        ("vm2", "6", "1/1", "1/2", ["Cluster 1", "cluster-1", "esx-1", "vm-2", "shop-app",
                                    "Shop"])]
    # The VM nobody consumes keeps its share, as its own unallocated line.
    assert (lost["amountMinor"], lost["ciId"], lost["quantity"]) == (3333, "vm3", "4")
    assert "no consumer of vm-3" in lost["description"] and "holders" not in lost
    # Stored lean (what reports read as properties, the rest as one JSON detail) and read
    # back whole.
    from cmdb.chargeback.repository import LINE_PROPS, line_from_row, stored_line

    stored = stored_line(shop, "run-1")
    assert set(stored) <= LINE_PROPS | {"run", "detail"} and "holders" not in stored
    line = line_from_row({**stored, "periodCurrency": "EUR",
                          "periodStart": "2026-10-01T00:00:00+00:00",
                          "periodEnd": "2026-11-01T00:00:00+00:00"})
    assert (line.amount, line.quantity, line.share, line.pool, line.driver) == \
        (Decimal("66.67"), Decimal(8), "2/3", "cl", Driver.VCPU)
    assert line.path == shop["path"] and line.service_name == "Shop"
    assert [(h.id, h.name, h.ci_class, h.quantity, h.share) for h in line.holders] == [
        ("vm1", "vm-1", "VirtualMachine", Decimal(2), "1/6"),
        ("vm2", "vm-2", "VirtualMachine", Decimal(6), "1/2")]


def test_usage_windows_cover_all_time_per_meter_with_gaps_unpriced() -> None:
    from datetime import UTC, date, datetime

    from cmdb.chargeback.models import RateCard
    from cmdb.chargeback.repository import usage_windows

    def card(id_: str, start: date, end: date | None) -> RateCard:
        return RateCard(id=id_, meter="cpu", version=1, currency="EUR", tiers=[],
                        effective_from=start, effective_to=end,
                        created_at=datetime(2026, 1, 1, tzinfo=UTC))

    got = usage_windows(UTC, [card("v2", date(2026, 10, 16), None),
                              card("v1", date(2026, 1, 1), date(2026, 10, 16))],
                        ["cpu", "gb"])
    day = lambda d: datetime.combine(d, datetime.min.time(), UTC)  # noqa: E731
    assert [(w["meter"], w["rate"]) for w in got] == [
        ("cpu", None), ("cpu", "v1"), ("cpu", "v2"), ("gb", None)]
    assert got[0]["to"] == got[1]["from"] == day(date(2026, 1, 1))
    assert got[1]["to"] == got[2]["from"] == day(date(2026, 10, 16))
    assert got[2]["to"] == got[3]["to"] and got[3]["from"] == got[0]["from"]
    # A gap between two cards is a window without a rate.
    gap = usage_windows(UTC, [card("a", date(2026, 1, 1), date(2026, 2, 1)),
                              card("b", date(2026, 3, 1), None)], ["cpu"])
    assert [(w["rate"], w["from"], w["to"]) for w in gap][1:4] == [
        ("a", day(date(2026, 1, 1)), day(date(2026, 2, 1))),
        (None, day(date(2026, 2, 1)), day(date(2026, 3, 1))),
        ("b", day(date(2026, 3, 1)), gap[-1]["to"])]


def _card(id_: str, version: int, tiers: list[Tier]) -> Any:
    from datetime import date

    from cmdb.chargeback.models import RateCard

    return RateCard(id=id_, meter="m", version=version, currency="EUR", tiers=tiers,
                    effective_from=date(2026, 1, 1), effective_to=None,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC))


FLAT = [Tier(rate=Decimal("0.013"))]
TIERED = [Tier(up_to=Decimal(10), rate=Decimal("0.5")), Tier(rate=Decimal("0.333"))]


@settings(max_examples=200, deadline=None)
@given(world=worlds(), seed=st.integers(0, 10**6))
def test_usage_lines_sum_each_cis_usage_exactly_one_line_per_payer_and_card(world, seed):
    from cmdb.chargeback.focus import per_resource
    from cmdb.chargeback.repository import line_from_row, stored_line

    rnd = random.Random(seed)
    world.rate_cards = {"flat": _card("flat", 1, FLAT), "tiered": _card("tiered", 2, TIERED)}
    world.meter_units = {"m": "unit"}
    metered = [i for i in world.items if not i.startswith("bs")]
    world.usage = list(
        UsageGroup(ci, "m", rnd.choice(["2026-09", "2026-10"]), card,
                   rnd.randint(0, 40_000_000), 1)
        for ci in rnd.sample(metered, k=min(len(metered), rnd.randint(1, 12)))
        for card in rnd.sample(["flat", "tiered"], k=rnd.randint(1, 2)))
    world.usage.sort(key=lambda g: (g.ci, g.month, g.rate_card))
    world.pools = []
    rows = Engine(world).run().rows
    assert len({r["id"] for r in rows}) == len(rows)
    got: dict[tuple[str, str, str], int] = {}
    keys = set()
    for row in rows:
        assert row["amountMinor"] >= 0
        held = holders(row) or [{"id": row["ciId"], "amountMinor": row["amountMinor"]}]
        assert sum(h["amountMinor"] for h in held) == row["amountMinor"]
        payer = row.get("subscriptionId") or row.get("serviceId") or row["description"]
        key = (payer, row["rateCardId"], row.get("adjusts", "2026-10"))
        assert key not in keys  # one line per payer, rate card and month
        keys.add(key)
        assert row["kind"] == ("ADJUSTMENT" if "adjusts" in row else "USAGE") or \
            (row["kind"] == "UNALLOCATED" and row.get("costCentre") is None)
        for h in held:
            k = (h["id"], row["rateCardId"], row.get("adjusts", "2026-10"))
            got[k] = got.get(k, 0) + h["amountMinor"]
        # Each CI's part becomes one FOCUS row: they add up to the line.
        line = line_from_row({**stored_line(row, "r"), "periodCurrency": "EUR",
                              "periodStart": "2026-10-01T00:00:00+00:00",
                              "periodEnd": "2026-11-01T00:00:00+00:00"})
        parts = list(per_resource(line))
        assert sum(p.amount for p in parts) == line.amount
        assert [p.ci_id for p in parts] == [h["id"] for h in held]
    # Every CI's usage is priced and rounded once, and all of it lands on some line.
    want = {(g.ci, g.rate_card, g.month): int((rate(Decimal(g.micros) / 10**6,
                                                    world.rate_cards[g.rate_card].tiers)
                                               * 100).quantize(Decimal(1),
                                                               rounding="ROUND_HALF_EVEN"))
            for g in world.usage}
    assert got == want
    again = Engine(world).run().rows
    assert [(r["id"], r["amountMinor"]) for r in again] == \
        [(r["id"], r["amountMinor"]) for r in rows]


def test_a_usage_line_sums_a_payers_cis_and_splits_a_shared_ci():
    items = {"vm1": ItemRow("vm1", "vm-1", "VirtualMachine", None),
             "vm2": ItemRow("vm2", "vm-2", "VirtualMachine", None),
             "db": ItemRow("db", "shared-db", "Database", None),
             "a": ItemRow("a", "Shop", "BUSINESS_SERVICE", "CC-A"),
             "b": ItemRow("b", "Mail", "BUSINESS_SERVICE", "CC-B")}
    world = CalculationInput(
        period="2026-10", currency="EUR", items=items,
        uses={"vm1": ["a"], "vm2": ["a"], "db": ["a", "b"]}, subscriptions=[], users={},
        cost_centres={}, rate_cards={"flat": _card("flat", 1, FLAT)},
        meter_units={"m": "GB"},
        usage=[UsageGroup("db", "m", "2026-10", "flat", 100_000_000, 3),
               UsageGroup("vm1", "m", "2026-10", "flat", 10_000_000, 1),
               UsageGroup("vm2", "m", "2026-10", "flat", 20_500_000, 2)], pools=[])
    shop, mail = sorted(Engine(world).run().rows, key=lambda r: r["serviceName"], reverse=True)
    # db: 100 GB x 0.013 = 1.30, half each; vm1 0.13, vm2 0.2665 -> 0.27.
    assert (shop["amountMinor"], shop["quantity"], shop["unitPrice"]) == (105, "80.5", "0.013000")
    assert shop["description"] == "80.5 GB of m on 3 CIs at rate card v1"
    assert shop["source"] == "usage:m:2026-10:flat" and "ciId" not in shop and \
        "share" not in shop
    assert [(h["id"], h["quantity"], h["reaching"], h["amountMinor"], h["path"])
            for h in holders(shop)] == [
        ("db", "100", "1/2", 65, ["shared-db", "Shop"]),
        ("vm1", "10", "1/1", 13, ["vm-1", "Shop"]),
        ("vm2", "20.5", "1/1", 27, ["vm-2", "Shop"])]
    # A payer reached by one CI: the line names it, with its share of the CI's usage.
    assert (mail["amountMinor"], mail["quantity"], mail["ciId"], mail["share"]) == \
        (65, "50", "db", "1/2")
    assert "holders" not in mail and mail["path"] == ["shared-db", "Mail"]


def test_a_subscription_pays_its_active_days_and_a_service_recovers_by_its_rule():
    """Cluster pool 310.00 by vCPU over vm1 (2 vCPU) and vm2 (2 vCPU): 155.00 each.
    vm1 is s1's, active from 11 October: 21 of 31 days, 155 x 21/31 = 105.00; the other
    50.00 is unallocated. vm2 serves the Shop through an app; s2 is for the Shop: with
    CONSUMERS s2 pays the 155.00, with OWNER the Shop keeps it on CC-A and s2 pays nothing."""
    def world(recovery: CostRecovery) -> CalculationInput:
        items = {"c": ItemRow("c", "cluster-1", "Cluster", None),
                 "h": ItemRow("h", "esx-1", "HypervisorHost", None),
                 "vm1": ItemRow("vm1", "vm-1", "VirtualMachine", None, cpu=Decimal(2)),
                 "vm2": ItemRow("vm2", "vm-2", "VirtualMachine", None, cpu=Decimal(2)),
                 "app": ItemRow("app", "shop-app", "ApplicationInstance", None),
                 "bs": ItemRow("bs", "Shop", "BUSINESS_SERVICE", "CC-A", recovery=recovery)}
        sub: dict[str, Any] = dict(cost_centre="CC-B", item_id="it", monthly=Decimal(0),
                                   one_off=Decimal(0), currency="EUR", end=None)
        subs = [SubscriptionRow(id="s1", user="u1", item_name="Linux VM", service_id=None,
                                ci_ids=("vm1",), start=datetime(2026, 10, 11, tzinfo=UTC),
                                **sub),
                SubscriptionRow(id="s2", user="u2", item_name="Shop seat", service_id="bs",
                                ci_ids=(), start=datetime(2026, 10, 1, tzinfo=UTC), **sub)]
        pool = CostPool(id="p", code="cl", name="Cluster 1", driver=Driver.VCPU,
                        ci_ids=["c"], capacity=None, description=None,
                        amounts={"2026-10": Decimal("310.00")}, currency="EUR")
        return CalculationInput(
            period="2026-10", currency="EUR", items=items,
            uses={"c": ["h"], "h": ["vm1", "vm2"], "vm2": ["app"], "app": ["bs"]},
            subscriptions=subs, users={}, cost_centres={}, rate_cards={}, meter_units={},
            usage=[], pools=[pool])

    def paid(rows: list[dict[str, Any]]) -> set[tuple[str | None, str, int]]:
        return {(r.get("costCentre"), r.get("subscriptionId") or r.get("serviceId")
                 or r["kind"], r["amountMinor"]) for r in rows}

    rows = Engine(world(CostRecovery.CONSUMERS)).run().rows
    assert paid(rows) == {("CC-B", "s1", 10500), ("CC-B", "s2", 15500),
                          (None, "UNALLOCATED", 5000)}
    lost = next(r for r in rows if r["kind"] == "UNALLOCATED")
    assert "Linux VM (u1) was not active all month" in lost["description"]
    rows = Engine(world(CostRecovery.OWNER)).run().rows
    assert paid(rows) == {("CC-B", "s1", 10500), ("CC-A", "bs", 15500),
                          (None, "UNALLOCATED", 5000)}


def test_a_ci_several_subscriptions_provisioned_is_shared_by_their_active_days():
    """A VM two subscriptions provisioned holds all of a 41.00 pool (2 vCPU of 2).
    s1 from 1 October (31 days), s2 from 22 October (10 days): 31:10, 41 x 31/41 = 31.00 and
    41 x 10/41 = 10.00; someone held the VM all month, so nothing is unallocated.
    s1 from 1 to 11 October (10 days), s2 from 22 October (10 days): 10:10, half each, for
    the 20 days one of them held it: 41 x 1/2 x 20/31 = 13.2258... each, 41 x 11/31 =
    14.5483... unallocated; floors 13.22 + 13.22 + 14.54 = 40.98, the cents left go to the
    largest remainders: the unallocated line (.83) and s1 (.58, tied with s2, first by
    name): 13.23, 13.22, 14.55."""
    def world(s1_end: datetime | None) -> CalculationInput:
        sub: dict[str, Any] = dict(cost_centre="CC-B", item_id="it", item_name="Linux VM",
                                   service_id=None, ci_ids=("vm",), monthly=Decimal(0),
                                   one_off=Decimal(0), currency="EUR")
        subs = [SubscriptionRow(id="s1", user="u1", start=datetime(2026, 10, 1, tzinfo=UTC),
                                end=s1_end, **sub),
                SubscriptionRow(id="s2", user="u2", start=datetime(2026, 10, 22, tzinfo=UTC),
                                end=None, **sub)]
        pool = CostPool(id="p", code="vms", name="VMs", driver=Driver.VCPU, ci_ids=["vm"],
                        capacity=None, description=None,
                        amounts={"2026-10": Decimal("41.00")}, currency="EUR")
        items = {"vm": ItemRow("vm", "vm-1", "VirtualMachine", None, cpu=Decimal(2))}
        return CalculationInput(period="2026-10", currency="EUR", items=items, uses={},
                                subscriptions=subs, users={}, cost_centres={},
                                rate_cards={}, meter_units={}, usage=[], pools=[pool])

    def paid(rows: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(r.get("subscriptionId") or r["kind"], r["amountMinor"]) for r in rows}

    assert paid(Engine(world(None)).run().rows) == {("s1", 3100), ("s2", 1000)}
    assert paid(Engine(world(datetime(2026, 10, 11, tzinfo=UTC))).run().rows) == \
        {("s1", 1323), ("s2", 1322), ("UNALLOCATED", 1455)}
