"""Writing one benchmark's section of docs/benchmarks.md, keeping every other section."""

from __future__ import annotations

from pathlib import Path


def replace_section(doc: Path, block: str, start_marker: str, end_marker: str,
                    heading: str) -> None:
    """Put ``block`` (which starts with ``start_marker`` and ends with ``end_marker``) in
    place of the section it replaces, or append it. The section may have lost its start
    marker when another benchmark rewrote the file around it: its ``heading`` finds it."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start = text.find(start_marker)
    if start == -1:
        start = text.find(heading)
    if start != -1 and end_marker in text[start:]:
        tail = text[start:].split(end_marker, 1)[1]
        text = text[:start] + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
