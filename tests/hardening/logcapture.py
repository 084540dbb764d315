"""The JSON lines a logger emits while a block runs, formatted as the API formats them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cmdb.logs import JsonFormatter

Lines = Callable[[], list[dict[str, object]]]


@contextmanager
def json_lines(logger_name: str) -> Iterator[Lines]:
    """Capture what ``logger_name`` and its children log (INFO and above) inside the block;
    yields a function returning the decoded lines captured so far (usable after the block)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(x) for x in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
