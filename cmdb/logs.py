"""Structured (JSON) logs that carry the request id of the request being served."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import get_current_span

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The caller (``identity.principal.Principal``) once authentication has resolved it.
principal_var: ContextVar[Any] = ContextVar("principal", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        principal = principal_var.get()
        if principal is not None:
            entry["user"] = principal.user
            entry["roles"] = sorted(principal.roles)
        span = get_current_span().get_span_context()
        if span.is_valid:  # tracing on: the line joins its trace
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key in ("method", "path", "status", "duration_ms", "operation"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("neo4j").setLevel(logging.WARNING)
