"""A batch's items: the stored CIs holding their identifiers looked up, each record
identified, created, updated or merged with its duplicates (plain Python), then written."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cmdb.core.mapping import dump_json, load_json
from cmdb.core.models import RejectCode, Rejected
from cmdb.db.driver import CountingTx
from cmdb.discovery.batch import ItemWrites, Outcome, Raced, Row
from cmdb.discovery.models import Source, attribute_property
from cmdb.discovery.reconcile import (
    Candidate,
    Identified,
    apply,
    fill_from,
    identify,
    new_item_props,
    unchanged,
)
from cmdb.discovery.records import rejection
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.items.history import History
from cmdb.items.models import HistoryKind, class_labels
from cmdb.items.writes import roll_up

_labels = lru_cache(maxsize=None)(class_labels)  # one label text per class (an enum)
Found = Mapping[tuple[str, str], Row]


@lru_cache(maxsize=1024)
def _seen_at(seen_json: str | None, source: str) -> datetime | None:
    """When ``source`` last saw a CI, from its sightings (JSON): parsed once for the many
    CIs a batch saw at the same time."""
    at = load_json(seen_json).get(source)
    return None if at is None else datetime.fromisoformat(at)


def identifier_values(cands: list[Candidate]) -> set[tuple[str, str]]:
    return {pv for c in cands for pv in c.unique.items()}


class ItemWriter:
    """Reconciles and writes the items of a batch, in the batch's transaction."""

    def __init__(self, repo: DiscoveryRepository, resolution: timedelta) -> None:
        self.repo = repo
        self.resolution = resolution

    async def write(
        self, tx: CountingTx, source: Source, sources: Mapping[str, Source], cands: list[Candidate],
        merge_duplicates: bool, now: datetime, out: Outcome, history: History,
    ) -> None:
        found = await self.lookup(tx, cands)
        writes = self.reconcile(source, sources, cands, found, merge_duplicates, now, out,
                                history)
        await self.write_changes(tx, writes, now)

    def reconcile(
        self, source: Source, sources: Mapping[str, Source], cands: list[Candidate],
        found: Found, merge_duplicates: bool, now: datetime, out: Outcome, history: History,
    ) -> ItemWrites:
        """What to write for the batch's items, given the stored CIs holding their
        identifiers (``found``): plain Python, no database."""
        batch = _Reconciliation(source, sources, found, merge_duplicates, now,
                                now - self.resolution, out, history)
        return batch.run(cands)

    async def write_changes(self, tx: CountingTx, writes: ItemWrites, now: datetime) -> None:
        pairs = writes.pairs
        if pairs:
            await self.repo.merge(tx, pairs, now)
        await self.repo.update_items(tx, writes.updates, now)
        raced = 0
        for (labels, rule), rows in writes.creates.items():
            raced += await self.repo.create_items(tx, labels, rule, rows, now)
        if raced:
            raise Raced()
        if pairs:  # relationships moved: the survivors' consumers roll up again
            await roll_up(tx, sorted({p["survivor"] for p in pairs}), "merged", now)

    async def lookup(self, tx: CountingTx, cands: list[Candidate]) -> dict[tuple[str, str], Row]:
        """Stored CIs holding the records' identifiers, in two steps: first each record's
        leading identifier (by its class's rules); then only the identifiers that could be
        held by some other CI: all of an unmatched record's, and those of a matched one that
        differ from what its CI holds (a value its CI holds is held by no other: unique).
        Re-sending what is stored costs one index seek per record."""
        first: dict[str, set[str]] = defaultdict(set)
        lead: list[tuple[str, str] | None] = []
        for c in cands:
            p0 = next((p for p in c.rules if p in c.unique), None)
            lead.append((p0, c.unique[p0]) if p0 else None)
            if p0:
                first[p0].add(c.unique[p0])
        found = await self.repo.lookup(tx, {p: sorted(v) for p, v in first.items()})
        more: dict[str, set[str]] = defaultdict(set)
        for c, key in zip(cands, lead, strict=True):
            hit = found.get(key) if key else None
            held = hit["props"] if hit else {}
            for p, v in c.unique.items():
                if (p, v) != key and held.get(p) != v:
                    more[p].add(v)
        if more:
            found.update(await self.repo.lookup(tx, {p: sorted(v) for p, v in more.items()}))
        return found


class _Reconciliation:
    """One batch's item records reconciled in turn: each identifier value and each CI may
    be claimed by one record of the batch only."""

    def __init__(self, source: Source, sources: Mapping[str, Source], found: Found,
                 merge_duplicates: bool, now: datetime, fresh_after: datetime, out: Outcome,
                 history: History) -> None:
        self.source, self.sources, self.found = source, sources, found
        self.merge_duplicates = merge_duplicates
        self.now_iso = now.isoformat()
        self.fresh_after = fresh_after
        self.out, self.history = out, history
        self.claimed_values: dict[tuple[str, str], int] = {}
        self.claimed_ids: dict[str, int] = {}
        self.creates: dict[tuple[str, str], list[Row]] = defaultdict(list)
        self.writes = ItemWrites()

    def run(self, cands: list[Candidate]) -> ItemWrites:
        out = self.out
        for c in cands:
            try:
                ident = self._identify(c)
            except Rejected as e:
                out.rejected.append(rejection(c.index, "item", e))
                continue
            for pv in c.unique.items():
                self.claimed_values[pv] = c.index
            ci_id = self._create(c) if ident.primary is None else self._update(c, ident)
            out.classes[ci_id] = c.cls
            if c.item.key:
                out.ids[c.item.key] = ci_id
        self.writes.creates = dict(self.creates)
        return self.writes

    def _identify(self, c: Candidate) -> Identified:
        """The CI the record identifies (and its duplicates), unless the record is to be
        rejected: it repeats an earlier record's identifier value or CI, or it names
        duplicates while merging is off."""
        for pv in c.unique.items():
            if pv in self.claimed_values:
                raise Rejected(RejectCode.INVALID, f"{pv[0]} {pv[1]!r} is also given by item "
                               f"{self.claimed_values[pv]} of this batch", f"identifiers.{pv[0]}")
        ident = identify(c, self.found)
        ids = [r["id"] for _, r in ident.duplicates]
        if ident.primary:
            ids.append(ident.primary["id"])
        for cid in ids:
            if cid in self.claimed_ids:
                raise Rejected(RejectCode.INVALID, f"identifies CI {cid!r}, as item "
                               f"{self.claimed_ids[cid]} of this batch does", "identifiers")
        if ident.duplicates and not self.merge_duplicates:
            raise Rejected(RejectCode.CONFLICT, "; ".join(
                f"{p} {c.unique[p]!r} identifies CI {r['id']!r}, a duplicate of "
                f"{ident.primary['id']!r} (by {ident.rule}); merging is off"
                for p, r in ident.duplicates if ident.primary
            ), "identifiers")
        return ident

    def _create(self, c: Candidate) -> str:
        ci_id = str(uuid.uuid4())
        self.claimed_ids[ci_id] = c.index
        props = new_item_props(self.source, c, self.now_iso)
        # The creation record travels on the CI itself (queries.HISTORY).
        props["createdSeq"] = self.history.next_seq()
        props["createdChanges"] = dump_json(
            {k: [None, v] for k, v in c.values.items()} | {"name": [None, props["name"]]})
        rule = next(p for p in c.rules if p in c.unique)
        self.creates[(_labels(c.item.ci_class), rule)].append(
            {"id": ci_id, "mergeValue": c.unique[rule], "props": props})
        self.out.created += 1
        self.out.fresh[ci_id] = c.cls
        return ci_id

    def _update(self, c: Candidate, ident: Identified) -> str:
        assert ident.primary is not None
        out = self.out
        ci_id: str = ident.primary["id"]
        self.claimed_ids[ci_id] = c.index
        stored = dict(ident.primary["props"])
        filled_props = self._merge_duplicates(c, ident, ci_id, stored)
        if not ident.duplicates and unchanged(stored, c.values) and \
                self._recently_seen(stored):
            out.unchanged += 1  # re-sent within the sighting resolution: a read
            return ci_id
        applied = apply(self.source, self.sources, stored, c.values, self.now_iso)
        out.suppressed += applied.suppressed
        changed = bool(applied.changes or ident.duplicates)
        if applied.changes:
            self.history.add(ci_id, HistoryKind.UPDATED, applied.changes)
        if changed:
            out.updated += 1
        else:
            out.unchanged += 1
        if changed or not self._recently_seen(stored):
            self.writes.updates.append({"id": ci_id, "props": filled_props | applied.props,
                                        "seen": True, "changed": changed})
        return ci_id

    def _merge_duplicates(self, c: Candidate, ident: Identified, ci_id: str,
                          stored: dict[str, Any]) -> dict[str, Any]:
        """Fill the survivor's gaps (``stored``, in place) from each duplicate the record
        identifies, and record the merges: the node properties filled."""
        filled_props: dict[str, Any] = {}
        for prop, dup in ident.duplicates:
            self.claimed_ids[dup["id"]] = c.index
            filled = fill_from(stored, dup["props"])
            filled_props.update({attribute_property(k): stored[attribute_property(k)]
                                 for k in filled})
            if "fqdn" in stored and ("hostName" in filled or "domain" in filled):
                filled_props["fqdn"] = stored["fqdn"]
            self.writes.pairs.append({"survivor": ci_id, "dup": dup["id"]})
            detail = {"duplicate": dup["id"], "survivor": ci_id, "rule": ident.rule,
                      "identifier": prop, "value": c.unique[prop],
                      "reason": f"{ident.rule} {c.unique[ident.rule or '']!r} identifies "
                      f"{ci_id}; {prop} {c.unique[prop]!r} identifies {dup['id']}, which "
                      "contradicts nothing"}
            self.history.add(ci_id, HistoryKind.MERGED, filled, otherId=dup["id"],
                             detail=detail)
            self.history.add(dup["id"], HistoryKind.MERGED_INTO,
                             {"lifecycleStatus": [dup["props"].get("lifecycleStatus"),
                                                  "RETIRED"]},
                             otherId=ci_id, detail=detail)
            self.out.merged += 1
        return filled_props

    def _recently_seen(self, stored: Mapping[str, Any]) -> bool:
        """Whether this source's last sighting is within the sighting resolution (then an
        unchanged record writes nothing: re-sending a batch is a read)."""
        at = _seen_at(stored.get("seenBy"), self.source.name)
        return at is not None and at >= self.fresh_after
