"""``POST /api/vdi/events``: the VDI broker's session feed.

Body: JSON ``{"events": [...]}`` (``application/json``), one event per line
(``application/x-ndjson``) or CSV with a header row (``text/csv``); fields in
``cmdb/vdi/feed.py`` and the README. The caller needs permission ``vdi:ingest``.

Responses: 200 with counts (stored, duplicate, rejected) and a result per record (rejections
name the field and the reason; ``line`` is the CSV line); 400 for a feed that cannot be read;
401/403 without permission; 413 above ``MAX_BODY_BYTES`` or ``feed.MAX_EVENTS``; 415 for
other content types; 503 with Retry-After when the database cannot be
reached (``cmdb.db.availability``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cmdb.core.httpbody import BadBody, read_text
from cmdb.core.httpbody import error_response as _error
from cmdb.identity.principal import Permission, Principal
from cmdb.identity.request_auth import permitted
from cmdb.vdi import feed
from cmdb.vdi.models import IngestReport, Outcome
from cmdb.vdi.service import VdiService

log = logging.getLogger("cmdb.vdi")

MAX_BODY_BYTES = 20 * 1024 * 1024

router = APIRouter()


def report(result: IngestReport, fmt: feed.FeedFormat) -> dict[str, Any]:
    """The answer to a feed: counts and one entry per record."""
    results: list[dict[str, Any]] = []
    for r in result.results:
        entry: dict[str, Any] = {"index": r.index, "outcome": r.outcome.value}
        if fmt is feed.FeedFormat.CSV:
            entry["line"] = r.index + 2  # the header is line 1
        if r.event_id is not None:
            entry["eventId"] = r.event_id
        if r.session_id is not None:
            entry["sessionId"] = r.session_id
        if r.outcome is Outcome.REJECTED:
            entry["field"] = r.field
            entry["reason"] = r.reason
        results.append(entry)
    return {"counts": result.counts, "results": results}


@router.post("/api/vdi/events")
@permitted(Permission.VDI_INGEST, "ingest desktop sessions")
async def post_events(request: Request, principal: Principal) -> JSONResponse:
    """Ingest broker logon/logoff events; see the module docstring."""
    fmt = feed.format_for(request.headers.get("content-type", ""))
    if fmt is None:
        return _error(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json "
                      "({\"events\": [...]}), application/x-ndjson or text/csv")
    try:
        text = await read_text(request, MAX_BODY_BYTES)
    except BadBody as e:
        return e.response()
    try:
        records = feed.parse(text, fmt)
    except feed.FeedError as e:
        status = 413 if "at most" in str(e) else 400
        return _error(status, "TOO_LARGE" if status == 413 else "INVALID", str(e))
    vdi: VdiService = request.app.state.services.vdi
    result = await vdi.ingest(records, principal)
    log.info("VDI feed by %s: %s", principal.user,
             ", ".join(f"{n} {k}" for k, n in result.counts.items()))
    return JSONResponse(report(result, fmt))
