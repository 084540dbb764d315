"""What the local Neo4j manager knows of an instance, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Echo = Callable[[str], None]


@dataclass(frozen=True)
class InstanceSpec:
    name: str  # "dev", "test", "bench"
    bolt_port: int
    http_port: int
    heap: str  # JVM size, e.g. "2g"
    pagecache: str  # Neo4j size, e.g. "2g"


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    running: bool
    pid: int | None
    uri: str
    home: Path  # the instance directory (Neo4j's --home-dir)
    data_dir: Path
    logs_dir: Path


class LocalNeo4jError(RuntimeError):
    """A failure with a human-readable first line; later lines (if any) are log context."""


class AlreadyRunning(LocalNeo4jError):
    pass
