"""Reading a broker session feed: JSON, NDJSON or CSV, into records for ``VdiService.ingest``.

JSON is ``{"events": [...]}`` (or a bare list); NDJSON one event object per line; CSV a header
row and one event per row. Header and key spellings are forgiving: ``eventId``,
``event_id``, ``Event ID`` and ``EventId`` are the same column, and a few broker export names
are understood (``UserName``, ``MachineName``, ``Time``, ...). Unknown columns are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from cmdb.core.httpbody import RecordFormat
from cmdb.vdi.models import BrokerEvent

MAX_EVENTS = 50_000


FeedFormat = RecordFormat


class FeedError(ValueError):
    """The feed as a whole cannot be read (not one record: those are rejected one by one)."""


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Squashed spelling -> the model's camelCase key.
_KEYS: dict[str, str] = {}
for _name, _field in BrokerEvent.model_fields.items():
    _alias = _field.alias or _name
    _KEYS[_squash(_alias)] = _alias
_KEYS.update({
    "id": "eventId", "type": "eventType", "event": "eventType", "time": "timestamp",
    "eventtime": "timestamp", "occurredat": "timestamp", "session": "sessionId",
    "username": "user", "userid": "user", "userprincipalname": "user", "upn": "user",
    "desktopname": "desktop", "machine": "desktop", "machinename": "desktop",
    "vmname": "desktop", "machineid": "desktopId", "hostname": "host", "esxhost": "host",
    "hypervisor": "host", "poolname": "pool", "desktoppool": "pool", "deliverygroup": "pool",
    "logondurationms": "logonDurationMs", "logonms": "logonDurationMs",
    "latencyms": "roundTripMs", "rttms": "roundTripMs", "cpu": "cpuPercent",
    "clientip": "clientAddress", "clientipaddress": "clientAddress",
})


def canonical(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its keys in the model's spelling (the first of equal keys wins)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str):
            continue
        name = _KEYS.get(_squash(key))
        if name is not None and name not in out:
            out[name] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


def _records(items: list[Any]) -> list[Any]:
    if len(items) > MAX_EVENTS:
        raise FeedError(f"at most {MAX_EVENTS} events per feed")
    return [canonical(i) if isinstance(i, dict) else i for i in items]


def parse(text: str, fmt: FeedFormat) -> list[Any]:
    """The records of a feed; raises ``FeedError`` when the feed cannot be read at all."""
    if fmt is FeedFormat.CSV:
        return _parse_csv(text)
    if fmt is FeedFormat.NDJSON:
        items: list[Any] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(_loads(line))
            except (ValueError, RecursionError) as e:
                raise FeedError(f"line {number}: malformed JSON: {e}") from None
        return _records(items)
    if not text.strip():
        raise FeedError('the feed is empty; expected {"events": [...]}')
    try:
        body = _loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise FeedError(f"malformed JSON: {e}") from None
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return _records(body["events"])
    if isinstance(body, list):
        return _records(body)
    raise FeedError('expected a JSON object {"events": [...]} or a list of events')


def _parse_csv(text: str) -> list[Any]:
    text = text.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise FeedError("the CSV has no header row")
    known = [h for h in reader.fieldnames if h and _KEYS.get(_squash(h))]
    if not known:
        raise FeedError("the CSV header names none of the event fields "
                        "(eventId, eventType, timestamp, sessionId, user, desktop, ...)")
    rows: list[Any] = []
    try:
        for row in reader:
            if len(rows) == MAX_EVENTS:
                raise FeedError(f"at most {MAX_EVENTS} events per feed")
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            rows.append(canonical({k: v for k, v in row.items() if k is not None}))
    except csv.Error as e:
        raise FeedError(f"CSV line {reader.line_num}: {e}") from None
    return rows


def format_for(media_type: str) -> FeedFormat | None:
    media = media_type.split(";")[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return FeedFormat.CSV
    if media in ("application/x-ndjson", "application/ndjson", "application/jsonl",
                 "application/x-jsonlines"):
        return FeedFormat.NDJSON
    if media in ("", "application/json") or media.endswith("+json"):
        return FeedFormat.JSON
    return None


def format_for_path(path: str) -> FeedFormat:
    lower = path.lower()
    if lower.endswith(".csv"):
        return FeedFormat.CSV
    if lower.endswith((".ndjson", ".jsonl")):
        return FeedFormat.NDJSON
    return FeedFormat.JSON
