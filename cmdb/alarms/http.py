"""``POST /api/alarms``: bulk raises for monitoring tools.

Body: JSON ``{"alarms": [{...}, ...]}`` (``Content-Type: application/json``) or one alarm
object per line (``Content-Type: application/x-ndjson``). Each alarm has the fields of the
``raiseAlarm`` mutation: ``source``, ``ciId``, ``severity``, ``dedupKey``, ``message`` and
optionally ``occurredAt`` (ISO 8601) and ``eventId`` (the occurrence's id at the source: a
raise sent again with it is not counted again, its result says ``"replayed": true``). The
caller needs permission ``alarm:write``.

Responses: 200 with a result per alarm (``created``, ``deduplicated`` or ``rejected`` with
its errors) and counts; 400 for a body that cannot be read (with what is wrong and where);
403 without permission; 413 above ``MAX_BODY_BYTES`` or ``MAX_ALARMS``; 415 for other
content types; 503 with Retry-After when the database cannot be
reached (``cmdb.db.availability``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cmdb.alarms.models import BatchResult, RaiseOutcome
from cmdb.alarms.service import AlarmService
from cmdb.core.httpbody import NDJSON_TYPES, json_document, read_text
from cmdb.core.httpbody import BadBody as _BadBody
from cmdb.core.httpbody import error_response as _error
from cmdb.core.httpbody import loads as _loads
from cmdb.identity.principal import Permission, Principal
from cmdb.identity.request_auth import permitted

log = logging.getLogger("cmdb.alarms")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_ALARMS = 10_000

router = APIRouter()


def _too_many() -> _BadBody:
    return _BadBody(413, "TOO_LARGE", f"at most {MAX_ALARMS} alarms per request")


def _parse_json(text: str) -> list[Any]:
    body = json_document(text)
    if not isinstance(body, dict) or not isinstance(body.get("alarms"), list):
        raise _BadBody(400, "INVALID", 'expected a JSON object {"alarms": [...]}')
    items: list[Any] = body["alarms"]
    if len(items) > MAX_ALARMS:
        raise _too_many()
    return items


def _parse_ndjson(text: str) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(items) == MAX_ALARMS:
            raise _too_many()
        try:
            items.append(_loads(line))
        except json.JSONDecodeError as e:
            raise _BadBody(400, "INVALID", f"line {number}: malformed JSON at column "
                           f"{e.colno}: {e.msg}") from None
        except (ValueError, RecursionError) as e:
            raise _BadBody(400, "INVALID", f"line {number}: malformed JSON: {e}") from None
    return items


def _parse(media_type: str, text: str) -> list[Any]:
    if media_type in NDJSON_TYPES:
        return _parse_ndjson(text)
    if not text.strip():
        raise _BadBody(400, "INVALID", 'the body is empty; expected {"alarms": [...]}')
    return _parse_json(text)


def _media_type(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in NDJSON_TYPES or media in ("", "application/json") or media.endswith("+json"):
        return media
    raise _BadBody(415, "UNSUPPORTED_MEDIA_TYPE",
                   "send application/json ({\"alarms\": [...]}) or application/x-ndjson")


def _report(result: BatchResult) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for r in result.results:
        entry: dict[str, Any] = {"index": r.index, "outcome": r.outcome.value}
        if r.alarm is not None:
            entry.update(alarmId=r.alarm.id, status=r.alarm.status.value, count=r.alarm.count)
        if r.replayed:
            entry["replayed"] = True
        if r.outcome is RaiseOutcome.REJECTED:
            entry["errors"] = [e.model_dump() for e in r.errors]
        results.append(entry)
    return {"counts": result.counts, "results": results}


@router.post("/api/alarms")
@permitted(Permission.ALARM_WRITE, "raise alarms")
async def post_alarms(request: Request, principal: Principal) -> JSONResponse:
    """Raise many alarms at once; see the module docstring."""
    services = request.app.state.services
    try:
        media_type = _media_type(request)
        items = _parse(media_type, await read_text(request, MAX_BODY_BYTES))
    except _BadBody as e:
        return _error(e.status, e.code, e.message)
    result = await AlarmService(services.db, services.settings).raise_batch(items, principal)
    log.info("alarm bulk raise by %s: %s", principal.user,
             ", ".join(f"{n} {k}" for k, n in result.counts.items()))
    return JSONResponse(_report(result))
