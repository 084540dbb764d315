"""Request bodies of the bulk REST endpoints: size-capped reads, strict JSON, error answers.

Every bulk endpoint (alarms, discovery batches, the VDI broker feed) answers errors the same
way, ``{"error": message, "code": CODE}``, and refuses a body over its cap with 413 before
reading more than the cap.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines"})


class RecordFormat(StrEnum):
    """How a file or body of records is written: one JSON array, one JSON object a line, or
    CSV with a header row."""

    JSON = "json"
    NDJSON = "ndjson"
    CSV = "csv"


class BadBody(Exception):
    """A body the endpoint cannot take; ``status`` and ``code`` go into the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it (or its declared length) passes ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadBody(400, "INVALID", "Content-Length is not a number")
        if int(declared) > max_bytes:
            raise BadBody(413, "TOO_LARGE", f"the body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BadBody(413, "TOO_LARGE", f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_text(request: Request, max_bytes: int) -> str:
    """The body as ``read_body`` reads it, decoded: one that is not UTF-8 is a 400."""
    try:
        return (await read_body(request, max_bytes)).decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(400, "INVALID", "the body is not UTF-8") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Strict JSON: NaN and Infinity are refused."""
    return json.loads(text, parse_constant=_no_constants)


def json_document(text: str) -> Any:
    """A whole body of strict JSON; malformed JSON is a 400 that says where."""
    try:
        return loads(text)
    except json.JSONDecodeError as e:
        raise BadBody(400, "INVALID", f"malformed JSON at line {e.lineno} column {e.colno}: "
                      f"{e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise BadBody(400, "INVALID", f"malformed JSON: {e}") from None
