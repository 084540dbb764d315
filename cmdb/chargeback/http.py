"""REST for metering tools and finance tools.

``POST /api/chargeback/usage``: usage records as JSON (``{"records": [...]}`` or an array),
NDJSON (``application/x-ndjson``) or CSV (``text/csv``); see ``usagefile``. Needs permission
``chargeback:usage``. Policy per record: each bad record is rejected with its index and
reason, the rest stored (each batch of 5,000 in one transaction). Idempotent by recordId.
Responses: 200 with counts and rejections; 400 for a body that cannot be read; 401/403; 413
above ``MAX_BODY_BYTES`` or ``usagefile.MAX_RECORDS``; 415 for other content types; 503 with
Retry-After when the database cannot be reached (``cmdb.db.availability``).

``GET /api/chargeback/periods/{period}/lines.csv`` and ``.../focus.csv``: the period's lines
the caller may read (finance: their cost centres; finance_all: all; others: their own), as a
plain CSV or as the FinOps FOCUS 1.2 dataset, streamed; a text cell a spreadsheet would take for
a formula is written with a leading single quote (``export.neutralise``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cmdb.chargeback.export import LINE_CSV_COLUMNS, csv_text, line_csv_rows
from cmdb.chargeback.focus import FOCUS_COLUMNS, focus_rows
from cmdb.chargeback.models import ChargeLine
from cmdb.chargeback.service import ChargebackService
from cmdb.chargeback.usagefile import MAX_RECORDS, UsageFileError, UsageFormat, parse_usage
from cmdb.core.httpbody import NDJSON_TYPES, BadBody, error_response, read_text
from cmdb.core.models import DomainError
from cmdb.identity.principal import Permission, Principal
from cmdb.identity.request_auth import permitted, request_principal

log = logging.getLogger("cmdb.chargeback")

MAX_BODY_BYTES = 64 * 1024 * 1024
CSV_TYPES = frozenset({"text/csv", "application/csv"})

router = APIRouter()


def _format(request: Request) -> UsageFormat:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in NDJSON_TYPES:
        return UsageFormat.NDJSON
    if media in CSV_TYPES:
        return UsageFormat.CSV
    if media in ("", "application/json") or media.endswith("+json"):
        return UsageFormat.JSON
    raise BadBody(415, "UNSUPPORTED_MEDIA_TYPE",
                  "send application/json, application/x-ndjson or text/csv")


def _status(e: DomainError) -> tuple[int, str, str]:
    first = e.errors[0]
    status = {"NOT_FOUND": 404, "FORBIDDEN": 403, "CONFLICT": 409}.get(first.code, 400)
    where = f"{first.field}: " if first.field else ""
    return status, first.code, where + first.message


@router.post("/api/chargeback/usage")
@permitted(Permission.USAGE_INGEST, "send usage records")
async def post_usage(request: Request, principal: Principal) -> JSONResponse:
    """Store usage records; see the module docstring."""
    try:
        fmt = _format(request)
        text = await read_text(request, MAX_BODY_BYTES)
        try:
            records = parse_usage(fmt, text)
        except UsageFileError as e:
            status = 413 if str(e).startswith("at most") else 400
            raise BadBody(status, "TOO_LARGE" if status == 413 else "INVALID", str(e)) from None
    except BadBody as e:
        return e.response()
    svc: ChargebackService = request.app.state.services.chargeback
    try:
        result = await svc.ingest_usage(principal, records)
    except DomainError as e:
        return error_response(*_status(e))
    log.info("usage from %s: %s received, %s created, %s duplicates, %s rejected",
             principal.user, result.received, result.created,
             result.duplicates, len(result.rejected))
    return JSONResponse({
        "counts": {"received": result.received, "created": result.created,
                   "duplicates": result.duplicates, "late": result.late,
                   "rejected": len(result.rejected)},
        "rejected": [{"index": r.index, "recordId": r.record_id, "reason": r.reason}
                     for r in result.rejected],
    })


async def _export(request: Request, period: str, name: str, header: Sequence[str],
                  rows: Callable[[Any, list[ChargeLine]], Iterable[Sequence[str]]]) -> Response:
    svc: ChargebackService = request.app.state.services.chargeback
    principal = request_principal(request)
    try:
        found, _scope, lines = await svc.export_lines(principal, period)
        names = await svc.cost_centre_names()
    except DomainError as e:
        return error_response(*_status(e))

    async def body() -> AsyncIterator[str]:
        # Every piece is written by export.CsvWriter, which keeps text cells from being taken
        # for formulas by a spreadsheet.
        yield csv_text(header, [])
        batch: list[ChargeLine] = []
        async for line in lines:
            batch.append(line)
            if len(batch) >= 2000:
                yield csv_text(header, rows((found, names), batch), with_header=False)
                batch = []
        if batch:
            yield csv_text(header, rows((found, names), batch), with_header=False)

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}-{found.id}.csv"'})


@router.get("/api/chargeback/periods/{period}/lines.csv")
async def lines_csv(request: Request, period: str) -> Response:
    """Every line of the period the caller may read, one column per line field."""
    return await _export(request, period, "charge-lines", LINE_CSV_COLUMNS,
                         lambda _ctx, batch: line_csv_rows(batch))


@router.get("/api/chargeback/periods/{period}/focus.csv")
async def focus_csv(request: Request, period: str) -> Response:
    """The period as a FinOps FOCUS 1.2 cost and usage dataset (custom columns x_...)."""

    def rows(ctx: Any, batch: list[ChargeLine]) -> Iterable[Sequence[str]]:
        found, names = ctx
        return ([row.get(c, "") for c in FOCUS_COLUMNS]
                for row in focus_rows(found, batch, names))

    return await _export(request, period, "focus", FOCUS_COLUMNS, rows)


__all__ = ["MAX_RECORDS", "router"]
