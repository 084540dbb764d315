"""The one clock. Tests may pin it to script a timeline; nothing else should."""

from datetime import UTC, datetime

_pinned: datetime | None = None


def utcnow() -> datetime:
    return _pinned if _pinned is not None else datetime.now(UTC)


def pin(at: datetime | None) -> None:
    """Pin the clock to ``at`` (None releases it)."""
    global _pinned
    _pinned = at
