"""A plain-Python reference for health roll-up and impact reachability.

Written from the rules in ``docs/health.md`` (not from the Cypher), so that property tests can
compare what Neo4j computes with an independent evaluation:

- Precedence, worst first: DOWN > DEGRADED > UNKNOWN > UP.
- An item's own state is what monitoring or an operator says. A service's own state UNKNOWN
  is neutral (UP), whether set explicitly or left at its default: services are not monitored
  themselves, so UNKNOWN on a service says only that nobody asserted anything. A service's
  own DEGRADED or DOWN counts like a CI's.
- Impact flows from provider to consumer: a consumer DEPENDS_ON / RUNS_ON / USES /
  INSTALLED_ON a provider; for MEMBER_OF the group (the target) consumes its members (the
  sources), which form one redundancy group, named "members", unless an edge names another.
- Rule of an edge: ``impact`` REQUIRED (default) / OPTIONAL / INFORMATIONAL;
  ``required: false`` means OPTIONAL. CONNECTS_TO and CONTAINS are INFORMATIONAL unless their
  ``impact`` says otherwise (``required`` does not apply to them). INFORMATIONAL edges have no
  effect at all.
- A provider whose lifecycle status is MAINTENANCE passes UP on to its consumers. A service
  inside one of its SLA maintenance windows (``Item.window``) passes its state on like any
  other item: a window only takes its minutes out of the service's own SLA accounting. Both
  are "in maintenance" (``in_maintenance``). RETIRED items and retired relationships are
  ignored.
- Redundancy groups: the providers of one consumer whose edges carry the same
  ``redundancyGroup``; every edge without one is a group of its own. A group needs
  k = minUp, else ceil(minUpPercent * n / 100), else 1 of its n members (distinct live
  providers). Contribution: DOWN if n - down < k; else DEGRADED if any member is down or
  degraded; else UNKNOWN if n - down - unknown < k; else UP. A group all of whose edges are
  OPTIONAL contributes DEGRADED when it would be DOWN or DEGRADED, and UP otherwise.
- An item's state is worst(own state, contributions of its groups), computed as the fixpoint
  reached from own states by applying that rule to all items at once until nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

UP, UNKNOWN, DEGRADED, DOWN = "UP", "UNKNOWN", "DEGRADED", "DOWN"
STATES = (UP, UNKNOWN, DEGRADED, DOWN)
RANK = {UP: 0, UNKNOWN: 1, DEGRADED: 2, DOWN: 3}

IN_SERVICE, MAINTENANCE, RETIRED = "IN_SERVICE", "MAINTENANCE", "RETIRED"
REQUIRED, OPTIONAL, INFORMATIONAL = "REQUIRED", "OPTIONAL", "INFORMATIONAL"

CONSUMER_IS_SOURCE = {"DEPENDS_ON", "RUNS_ON", "USES", "INSTALLED_ON", "CONNECTS_TO", "CONTAINS"}
INFORMATIONAL_BY_DEFAULT = {"CONNECTS_TO", "CONTAINS"}
MEMBER_OF = "MEMBER_OF"
MEMBERS_GROUP = "members"


@dataclass(frozen=True)
class Item:
    id: str
    service: bool  # a service (else a CI)
    own: str  # own operational state
    lifecycle: str = IN_SERVICE
    cls: str = "Service"  # CI class, or "Service"; only used to build graphs
    window: bool = False  # a service inside one of its SLA maintenance windows now


@dataclass(frozen=True)
class Rel:
    source: str
    type: str
    target: str
    props: Mapping[str, Any] = field(default_factory=dict)
    retired: bool = False


@dataclass
class Graph:
    items: dict[str, Item]
    rels: list[Rel]


class NotSettled(Exception):
    """The iteration revisited an earlier assignment without reaching a fixpoint."""


def worst(states: Iterable[str]) -> str:
    return max(states, key=RANK.__getitem__, default=UP)


def rule(rel: Rel) -> str:
    impact = rel.props.get("impact")
    if impact is not None:
        return str(impact).upper()
    if rel.type in INFORMATIONAL_BY_DEFAULT:
        return INFORMATIONAL
    if rel.props.get("required") is False:
        return OPTIONAL
    return REQUIRED


def consumer_and_provider(rel: Rel) -> tuple[str, str]:
    if rel.type == MEMBER_OF:
        return rel.target, rel.source
    assert rel.type in CONSUMER_IS_SOURCE, rel.type
    return rel.source, rel.target


def live(graph: Graph, rel: Rel) -> bool:
    """The edge takes part in health: not retired, between items that are not retired,
    and not informational."""
    return (
        not rel.retired
        and graph.items[rel.source].lifecycle != RETIRED
        and graph.items[rel.target].lifecycle != RETIRED
        and rule(rel) != INFORMATIONAL
    )


def own_state(item: Item) -> str:
    if item.service and item.own == UNKNOWN:
        return UP
    return item.own


def passed_on(item: Item, state: str) -> str:
    """What a provider passes on to its consumers: UP in lifecycle MAINTENANCE, else its
    state (an open SLA maintenance window changes nothing here)."""
    return UP if item.lifecycle == MAINTENANCE else state


def in_maintenance(item: Item) -> bool:
    """The ``inMaintenance`` flag: lifecycle MAINTENANCE, or a service inside a window."""
    return item.lifecycle == MAINTENANCE or (item.service and item.window)


@dataclass
class Group:
    providers: set[str] = field(default_factory=set)
    rules: list[str] = field(default_factory=list)
    min_up: list[Any] = field(default_factory=list)
    min_up_percent: list[Any] = field(default_factory=list)
    single: bool = False  # an edge without a group: it needs its one provider

    def needed(self) -> int:
        n = len(self.providers)
        if self.single:
            return 1
        if self.min_up:
            # Generated graphs give every edge of a group the same values.
            return int(max(self.min_up))
        if self.min_up_percent:
            pct = Fraction(str(max(self.min_up_percent)))
            return math.ceil(pct * n / 100)
        return 1

    def contribution(self, state_of: Mapping[str, str]) -> str:
        states = [state_of[p] for p in self.providers]
        n, k = len(states), self.needed()
        down = states.count(DOWN)
        unknown = states.count(UNKNOWN)
        degraded = states.count(DEGRADED)
        if n - down < k:
            c = DOWN
        elif down + degraded > 0:
            c = DEGRADED
        elif n - down - unknown < k:
            c = UNKNOWN
        else:
            c = UP
        if all(r == OPTIONAL for r in self.rules):
            return DEGRADED if c in (DOWN, DEGRADED) else UP
        return c


def groups_of(graph: Graph) -> dict[str, dict[Any, Group]]:
    """For every live consumer, its redundancy groups."""
    out: dict[str, dict[Any, Group]] = {i: {} for i, it in graph.items.items()
                                        if it.lifecycle != RETIRED}
    for n, rel in enumerate(graph.rels):
        if not live(graph, rel):
            continue
        consumer, provider = consumer_and_provider(rel)
        name = rel.props.get("redundancyGroup")
        if name is not None:
            key: Any = ("named", name)
        elif rel.type == MEMBER_OF:
            key = ("named", MEMBERS_GROUP)
        else:
            key = ("edge", n)
        g = out[consumer].setdefault(key, Group(single=key[0] == "edge"))
        g.providers.add(provider)
        g.rules.append(rule(rel))
        if rel.props.get("minUp") is not None:
            g.min_up.append(rel.props["minUp"])
        if rel.props.get("minUpPercent") is not None:
            g.min_up_percent.append(rel.props["minUpPercent"])
    return out


def _live_items(graph: Graph, own: Mapping[str, str] | None) -> dict[str, Item]:
    return {
        i: it if own is None or i not in own else replace(it, own=own[i])
        for i, it in graph.items.items() if it.lifecycle != RETIRED
    }


def next_states(
    graph: Graph, state: Mapping[str, str], own: Mapping[str, str] | None = None
) -> dict[str, str]:
    """One application of the rule to every live item at once: worst(own state,
    contributions of its groups given the providers' states in ``state``)."""
    items = _live_items(graph, own)
    groups = groups_of(graph)
    passed = {i: passed_on(items[i], s) for i, s in state.items() if i in items}
    return {
        i: worst([own_state(items[i])] + [g.contribution(passed) for g in groups[i].values()])
        for i in items
    }


def rollup(graph: Graph, own: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every live item's rolled-up state: from own states, apply the rule to all items at
    once until nothing changes. ``own`` overrides own states (what-if). Raises NotSettled
    when the states come back to an earlier assignment instead."""
    state = {i: own_state(it) for i, it in _live_items(graph, own).items()}
    seen: set[tuple[str, ...]] = set()
    while True:
        nxt = next_states(graph, state, own)
        if nxt == state:
            return state
        key = tuple(nxt[i] for i in sorted(nxt))
        if key in seen:
            raise NotSettled(f"no fixpoint: the states cycle through {nxt}")
        seen.add(key)
        state = nxt


def consumers_of(graph: Graph) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {i: set() for i in graph.items}
    for rel in graph.rels:
        if live(graph, rel):
            consumer, provider = consumer_and_provider(rel)
            out[provider].add(consumer)
    return out


def providers_of(graph: Graph) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {i: set() for i in graph.items}
    for rel in graph.rels:
        if live(graph, rel):
            consumer, provider = consumer_and_provider(rel)
            out[consumer].add(provider)
    return out


def _distances(step: Mapping[str, set[str]], graph: Graph, start: set[str]) -> dict[str, int]:
    """Breadth-first hop counts from ``start`` along ``step``, the start left out."""
    dist = {i: 0 for i in start if graph.items[i].lifecycle != RETIRED}
    frontier = list(dist)
    while frontier:
        nxt = []
        for i in frontier:
            for j in step[i]:
                if j not in dist:
                    dist[j] = dist[i] + 1
                    nxt.append(j)
        frontier = nxt
    return {i: d for i, d in dist.items() if i not in start}


def reach(graph: Graph, failing: Iterable[str]) -> dict[str, int]:
    """The live items that the failing items hold up, directly or transitively (upward over
    live, non-informational edges), the failing items left out: item -> fewest hops."""
    return _distances(consumers_of(graph), graph, set(failing))


def reach_down(graph: Graph, item: str) -> dict[str, int]:
    """The live items ``item`` rests on (its providers, transitively): item -> fewest hops."""
    return _distances(providers_of(graph), graph, {item})
