"""The history of items and relationships: records kept in the writer's transaction, each
with its place in that transaction's order, and read back as entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.mapping import as_datetime, dump_json, load_json, native
from cmdb.db.driver import CountingTx
from cmdb.items.models import AttributeChange, HistoryEntry, HistoryKind
from cmdb.items.repository import HistoryRepository

Row = dict[str, Any]
MAX_HISTORY_PAGE = 1000


@dataclass
class History:
    """History records of one transaction, each with a sequence number for ordering."""

    source: str
    records: list[Row] = field(default_factory=list)
    seq: int = 0

    def next_seq(self) -> int:
        """A place in this transaction's order for a record kept elsewhere: a creation,
        carried by the CI or relationship created (see ``queries.HISTORY``)."""
        self.seq += 1
        return self.seq - 1

    def add(self, item_id: str, kind: HistoryKind, changes: Mapping[str, Any] | None = None,
            **extra: Any) -> None:
        rec: Row = {"itemId": item_id, "kind": kind.value, "source": self.source,
                    "seq": self.next_seq()}
        if changes:
            rec["changes"] = dump_json(changes)
        for k, v in extra.items():
            if v is not None:
                rec[k] = dump_json(v) if isinstance(v, dict) else v
        self.records.append(rec)


def history_entry(r: Row) -> HistoryEntry:
    changes = [AttributeChange(attribute=k, old=v[0], new=v[1])
               for k, v in sorted(load_json(r.get("changes")).items())]
    detail = load_json(r.get("detail"))
    if r.get("mergedFrom"):
        detail = {**detail, "mergedFrom": r["mergedFrom"]}
    return HistoryEntry(
        item_id=r["itemId"], at=as_datetime(r["at"]) or utcnow(), source=r.get("source") or "",
        kind=HistoryKind(r["kind"]), changes=changes, relation_type=r.get("relationType"),
        other_id=r.get("otherId"), detail=detail,
    )


# Node properties a person's edit is recorded for, as provenance keys (attr_* as attributes.*).
_MANUAL_KEYS = {"name", "description", "serialNumber", "hostName", "domain", "macAddress",
                "cloudInstanceId", "lifecycleStatus", "operationalState", "criticality"}


async def record_manual_change(
    tx: CountingTx, item_id: str, stored: Mapping[str, Any], props: dict[str, Any],
    now: datetime, who: str = "api",
) -> None:
    """Keep the history of an edit made through the API (old and new values, ``who``, time)
    in the caller's transaction, and drop the discovery provenance of what it changes: a
    value a person set is protected like any value without provenance (``MANUAL_TRUST``).
    ``props`` (the node properties about to be set) gains the new provenance."""
    changes: dict[str, list[Any]] = {}
    for prop, new in props.items():
        key = "attributes." + prop[5:] if prop.startswith("attr_") else prop
        if key != prop or prop in _MANUAL_KEYS:
            old = native(stored.get(prop))
            if old != new:
                changes[key] = [old, new]
    if not changes:
        return
    prov = load_json(stored.get("provenance"))
    if any(k in prov for k in changes):
        props["provenance"] = dump_json({k: v for k, v in prov.items() if k not in changes})
    history = History(who)
    history.add(item_id, HistoryKind.UPDATED, changes)
    await HistoryRepository.write(tx, history.records, now)

