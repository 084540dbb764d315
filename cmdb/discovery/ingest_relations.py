"""A batch's relationships: their ends resolved to CIs (by id, by this import's keys, or
by identifiers), checked against the relationship rules, then seen again or created."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cmdb.core.mapping import dump_json
from cmdb.core.models import RejectCode, Rejected
from cmdb.db.driver import CountingTx
from cmdb.discovery.batch import Accepted, Outcome, RelationWrites, Row
from cmdb.discovery.models import (
    DiscoveredRelation,
    EndpointRef,
    Source,
    relation_key,
)
from cmdb.discovery.reconcile import unique_values
from cmdb.discovery.records import RelationRecord, rejection
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.items.history import History
from cmdb.items.models import HistoryKind, RelationType, rule_violation
from cmdb.items.writes import roll_up

# A relationship with both ends resolved: (index, record, properties, source id, target id).
Resolved = tuple[int, DiscoveredRelation, dict[str, Any], str, str]
Found = Mapping[tuple[str, str], Row]


class RelationWriter:
    """Resolves, checks and writes the relationships of a batch, in its transaction."""

    def __init__(self, repo: DiscoveryRepository, resolution: timedelta) -> None:
        self.repo = repo
        self.resolution = resolution

    async def write(
        self, tx: CountingTx, source: Source, rels: list[RelationRecord],
        keys: Mapping[str, str], fresh: Mapping[str, str], classes: Mapping[str, str],
        now: datetime, out: Outcome, history: History,
    ) -> None:
        """Relationships between items this ingest created need neither their ends looked up
        (their class is known, they are live) nor their live relationships (a new item has
        none but those this ingest makes, and the create statement skips an existing one),
        nor a health roll-up: new items are UNKNOWN with no state of their own yet, and so is
        anything rolled up from them alone."""
        by_ident: dict[str, set[str]] = defaultdict(set)
        for _, r, _ in rels:
            for end in (r.source, r.target):
                if end.identifiers is not None:
                    for p, v in unique_values(end.identifiers).items():
                        by_ident[p].add(v)
        found = await self.repo.lookup(tx, {p: sorted(v) for p, v in by_ident.items()})
        resolved = _resolve_relations(rels, keys, found, out)
        # Items this ingest identified are live (a retired one is rejected) of a known class.
        ends = await self.repo.ends(tx, sorted({i for x in resolved for i in (x[3], x[4])
                                                if i not in classes}))
        ends.update({i: (cls, "IN_SERVICE") for x in resolved for i in (x[3], x[4])
                     if (cls := classes.get(i)) is not None})
        accepted = _accept_relations(resolved, ends, out)
        await self.write_seen(tx, source, accepted, fresh, now, out, history)

    async def write_seen(
        self, tx: CountingTx, source: Source, accepted: list[Accepted],
        fresh: Mapping[str, str], now: datetime, out: Outcome, history: History,
    ) -> None:
        """Write the accepted relationships: those live already are seen again first (one
        statement per type; their properties by precedence); the others are created."""
        touch: dict[RelationType, list[Row]] = defaultdict(list)
        for i, rt, props, s, t in accepted:
            if s not in fresh or (s, rt.value, t) in out.fresh_relations:
                touch[rt].append({"i": i, "s": s, "t": t, "props": props})
        live: set[int] = set()
        changed: dict[int, Row] = {}
        for rt, rows in touch.items():
            f, c, kept = await self.repo.touch_relations(tx, rt, rows, source, now,
                                                         now - self.resolution)
            live |= f
            changed.update(c)
            out.suppressed += kept
        writes = relation_writes(accepted, live, changed, fresh, out, history)
        await self.write_changes(tx, source, writes, now)

    async def write_changes(self, tx: CountingTx, source: Source, writes: RelationWrites,
                            now: datetime) -> None:
        for rt, rows in writes.creates.items():
            await self.repo.create_relations(tx, rt, rows, source, now)
        await self.repo.sync_mirrors(tx, writes.mirrors)
        if writes.changed_ends:
            await roll_up(tx, sorted(writes.changed_ends), "discovered", now)


def plan_relations(
    rels: list[RelationRecord], keys: Mapping[str, str], fresh: Mapping[str, str],
    classes: Mapping[str, str], out: Outcome, history: History,
) -> tuple[list[Accepted], RelationWrites | None] | None:
    """The accepted relationships when both ends of each are CIs this ingest identified
    (see ``Ingest.plan``), and their writes too when each source end is one it created (no
    live relationship to look for first); None when an end is to be read."""
    for _, r, _ in rels:  # what rules a plan out, at the first such record
        for end in (r.source, r.target):
            if end.identifiers is not None or (end.id is not None and end.id not in classes):
                return None
    resolved = _resolve_relations(rels, keys, {}, out)
    if any(i not in classes for x in resolved for i in (x[3], x[4])):
        return None
    ends = {i: (classes[i], "IN_SERVICE") for x in resolved for i in (x[3], x[4])}
    accepted = _accept_relations(resolved, ends, out)
    if any(s not in fresh for _, _, _, s, _ in accepted):
        return accepted, None
    return accepted, relation_writes(accepted, set(), {}, fresh, out, history)


def relation_writes(
    accepted: list[Accepted], live: set[int], changed: Mapping[int, Row],
    fresh: Mapping[str, str], out: Outcome, history: History,
) -> RelationWrites:
    """What to write for the accepted relationships, given those found live (``live``,
    by record index) and the old properties of those whose properties changed."""
    creates: dict[RelationType, list[Row]] = defaultdict(list)
    mirrors: list[Row] = []
    changed_ends: set[str] = set()
    for i, rt, props, s, t in accepted:
        row = {"s": s, "t": t, "props": props}
        if i not in live:
            # The creation record travels on the relationship (queries.HISTORY).
            creates[rt].append({**row, "seq": history.next_seq(), "changes": dump_json(
                {relation_key(k): [None, v] for k, v in props.items()}) if props else None})
            if s in fresh:
                out.fresh_relations.add((s, rt.value, t))
            out.relations_created += 1
        elif i in changed:
            have = changed[i]
            diff = {relation_key(k): [have.get(k), v] for k, v in props.items()
                    if have.get(k) != v}
            history.add(s, HistoryKind.RELATION_UPDATED, diff,
                        relationType=rt.value, otherId=t)
            out.relations_updated += 1
        else:
            out.relations_unchanged += 1
            continue
        if s not in fresh or t not in fresh:
            changed_ends.update((s, t))
        if rt is RelationType.MEMBER_OF:
            mirrors.append(row)
    return RelationWrites(dict(creates), mirrors, changed_ends)


def _resolve_relations(
    rels: list[RelationRecord], keys: Mapping[str, str], found: Found, out: Outcome,
) -> list[Resolved]:
    """Each relationship's ends as CI ids (by id, by this import's keys, or by the stored
    CIs holding their identifiers); one that cannot be resolved is rejected."""
    resolved: list[Resolved] = []
    for index, r, props in rels:
        try:
            s = _resolve(r.source, keys, found, "source")
            t = _resolve(r.target, keys, found, "target")
            if s == t:
                raise Rejected(RejectCode.INVALID, "an item cannot be related to itself",
                               "target")
            resolved.append((index, r, props, s, t))
        except Rejected as e:
            out.rejected.append(rejection(index, "relation", e))
    return resolved


def _accept_relations(resolved: list[Resolved], ends: Mapping[str, tuple[str, str]],
                      out: Outcome) -> list[Accepted]:
    """The relationships whose ends exist, are live and may be joined by their type (each
    once per batch); the others are rejected. ``ends``: id -> (class, lifecycle status)."""
    accepted: list[Accepted] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for index, r, props, s, t in resolved:
        try:
            _check_ends(r, s, t, ends)
            triple = (s, r.type.value, t)
            if triple in first_seen:
                raise Rejected(RejectCode.INVALID, f"repeats relation {first_seen[triple]} "
                               "of this batch")
            first_seen[triple] = index
        except Rejected as e:
            out.rejected.append(rejection(index, "relation", e))
            continue
        accepted.append((index, r.type, props, s, t))
    return accepted


def _check_ends(r: DiscoveredRelation, s: str, t: str,
                ends: Mapping[str, tuple[str, str]]) -> None:
    for ident, name in ((s, "source"), (t, "target")):
        if ident not in ends:
            raise Rejected(RejectCode.NOT_FOUND, f"item {ident!r} not found", name)
        if ends[ident][1] == "RETIRED":
            raise Rejected(RejectCode.CONFLICT, f"item {ident!r} is retired", name)
    why = rule_violation(r.type, ends[s][0], ends[t][0])
    if why:
        raise Rejected(RejectCode.INVALID, why, "type")


def _resolve(end: EndpointRef, keys: Mapping[str, str], found: Found, name: str) -> str:
    if end.id is not None:
        return end.id
    if end.key is not None:
        if end.key not in keys:
            raise Rejected(RejectCode.NOT_FOUND, f"no item with key {end.key!r} in this "
                           "import", f"{name}.key")
        return keys[end.key]
    for p, v in unique_values(end.identifiers).items() if end.identifiers is not None else ():
        if (p, v) in found:
            return str(found[(p, v)]["id"])
    raise Rejected(RejectCode.NOT_FOUND, "no CI has these identifiers", f"{name}.identifiers")
