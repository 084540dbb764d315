"""Usage files as metering tools write them: JSON, NDJSON or CSV.

Every format carries the same fields per record: ``recordId, ciId, meter, quantity, at,
source``. JSON is ``{"records": [...]}`` or a bare array; NDJSON one object a line; CSV a
header row naming those columns (others are refused, so a typo is not silently ignored).
Quantities stay text until validated, so no float ever touches them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

from cmdb.core.httpbody import RecordFormat, loads

FIELDS = ("recordId", "ciId", "meter", "quantity", "at", "source")
MAX_RECORDS = 200_000


UsageFormat = RecordFormat


class UsageFileError(ValueError):
    pass


def _json_number_as_text(text: str) -> str:
    return text


def _loads_exact(text: str) -> Any:
    """Strict JSON where numbers with a fraction keep their written digits."""
    return loads(text) if "." not in text else json.loads(
        text, parse_float=_json_number_as_text,
        parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} is not JSON")))


def parse_usage(fmt: UsageFormat, text: str) -> list[Any]:
    """Every record of a request body or file read whole."""
    if fmt is UsageFormat.JSON:
        try:
            body = _loads_exact(text)
        except ValueError as e:
            raise UsageFileError(f"malformed JSON: {e}") from None
        if isinstance(body, dict):
            extra = set(body) - {"records"}
            if extra:
                raise UsageFileError(f"unknown fields: {', '.join(sorted(extra))}")
            body = body.get("records")
        if not isinstance(body, list):
            raise UsageFileError('expected {"records": [...]} or a JSON array of records')
        out = body
    else:
        out = list(iter_usage(fmt, io.StringIO(text)))
    if len(out) > MAX_RECORDS:
        raise UsageFileError(f"at most {MAX_RECORDS} records per request or file")
    return out


def _check_header(header: Any) -> None:
    unknown = [h for h in header if h not in FIELDS]
    missing = [f for f in FIELDS if f not in header]
    if unknown or missing:
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if unknown:
            parts.append("unknown columns: " + ", ".join(unknown))
        raise UsageFileError("CSV header: " + "; ".join(parts))


def iter_usage(fmt: UsageFormat, stream: IO[str]) -> Iterator[Any]:
    """Records one by one from a file, without reading it whole (CSV and NDJSON; a JSON
    document has to be read whole)."""
    if fmt is UsageFormat.JSON:
        yield from parse_usage(fmt, stream.read())
        return
    if fmt is UsageFormat.NDJSON:
        for n, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield _loads_exact(line)
            except ValueError as e:
                raise UsageFileError(f"line {n}: malformed JSON: {e}") from None
        return
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    _check_header(header)
    for row in reader:
        if None in row:
            yield {"__error__": "more cells than header columns"}
        else:
            yield {k: v for k, v in row.items() if v not in (None, "")}
