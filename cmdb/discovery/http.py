"""REST for discovery agents.

``POST /api/discovery/batches``: JSON ``{"source": ..., "items": [...], "relations": [...],
"mergeDuplicates": true}`` (``application/json``) or one record a line with ``"record":
"item"|"relation"`` (``application/x-ndjson``, source in ``?source=``). Needs permission
``discovery:write``. One request is one batch: every record validated on its own, the
accepted ones written in one transaction (all or none).

Responses: 200 with counts and each rejected record (its index, reason, field); 400 for a
body that cannot be read; 401/403; 404 for an unregistered source; 413 above
``MAX_BODY_BYTES`` or ``MAX_BATCH_RECORDS``; 415 for other content types; 503 with
Retry-After when the database cannot be reached (``cmdb.db.availability``).

``GET /api/discovery/schema``: the JSON Schema of the payload.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cmdb.core.httpbody import NDJSON_TYPES, json_document, read_text
from cmdb.core.httpbody import BadBody as _BadBody
from cmdb.core.httpbody import error_response as _error
from cmdb.core.models import DomainError
from cmdb.discovery.models import MAX_BATCH_RECORDS, IngestResult, batch_json_schema
from cmdb.discovery.parsers import ParseError, parse_ndjson
from cmdb.discovery.service import DiscoveryService
from cmdb.identity.principal import Permission, Principal
from cmdb.identity.request_auth import permitted

log = logging.getLogger("cmdb.discovery")

MAX_BODY_BYTES = 32 * 1024 * 1024

router = APIRouter()


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise _BadBody(400, "INVALID", f"mergeDuplicates must be true or false, not {value!r}")


def _parse(request: Request, text: str) -> tuple[str, list[Any], list[Any], bool]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    merge = _flag(request.query_params.get("mergeDuplicates"), True)
    if media in NDJSON_TYPES:
        source = request.query_params.get("source")
        if not source:
            raise _BadBody(400, "INVALID", "NDJSON batches name their source: ?source=<name>")
        try:
            parsed = parse_ndjson(text)
        except ParseError as e:
            raise _BadBody(400, "INVALID", str(e)) from None
        return source, parsed.items, parsed.relations, merge
    if media not in ("", "application/json") and not media.endswith("+json"):
        raise _BadBody(415, "UNSUPPORTED_MEDIA_TYPE",
                       "send application/json or application/x-ndjson")
    body = json_document(text)
    if not isinstance(body, dict):
        raise _BadBody(400, "INVALID", 'expected a JSON object {"source": ..., "items": [...]}')
    unknown = set(body) - {"source", "items", "relations", "mergeDuplicates"}
    if unknown:
        raise _BadBody(400, "INVALID", f"unknown fields: {', '.join(sorted(unknown))}")
    source = body.get("source") or request.query_params.get("source")
    if not isinstance(source, str) or not source:
        raise _BadBody(400, "INVALID", "name the source: \"source\": \"<registered name>\"")
    items, relations = body.get("items", []), body.get("relations", [])
    if not isinstance(items, list) or not isinstance(relations, list):
        raise _BadBody(400, "INVALID", "items and relations must be arrays")
    flag = body.get("mergeDuplicates", merge)
    if not isinstance(flag, bool):
        raise _BadBody(400, "INVALID", "mergeDuplicates must be true or false")
    return source, items, relations, flag


def report(result: IngestResult) -> dict[str, Any]:
    return {
        "counts": result.counts(),
        "rejected": [r.model_dump() for r in result.rejected],
        "ids": result.ids,
    }


@router.get("/api/discovery/schema")
async def discovery_schema() -> JSONResponse:
    """The JSON Schema of ``POST /api/discovery/batches``."""
    return JSONResponse(batch_json_schema(), media_type="application/schema+json")


@router.post("/api/discovery/batches")
@permitted(Permission.DISCOVERY_WRITE, "send discovery data")
async def post_batch(request: Request, principal: Principal) -> JSONResponse:
    """Reconcile one batch of discovered items and relations; see the module docstring."""
    services = request.app.state.services
    try:
        text = await read_text(request, MAX_BODY_BYTES)
        source, items, relations, merge = _parse(request, text)
        if len(items) + len(relations) > MAX_BATCH_RECORDS:
            raise _BadBody(413, "TOO_LARGE", f"at most {MAX_BATCH_RECORDS} records per batch")
    except _BadBody as e:
        return _error(e.status, e.code, e.message)
    svc: DiscoveryService = services.discovery
    try:
        result = await svc.ingest(principal, source, items, relations,
                                  merge_duplicates=merge, batch_size=MAX_BATCH_RECORDS)
    except DomainError as e:
        first = e.errors[0]
        status = {"NOT_FOUND": 404, "FORBIDDEN": 403}.get(first.code, 400)
        return _error(status, first.code, first.message)
    log.info("discovery batch from %s by %s: %s", source, principal.user, result.counts())
    return JSONResponse(report(result))
