"""The worked examples in docs/health.md are what the reference evaluation computes."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

from tests import health_oracle as o

DOC = (Path(__file__).resolve().parents[1] / "docs" / "health.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading``, as stripped cells."""
    lines = DOC[DOC.index(heading):].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows[2:]  # the header and its rule left out


def test_the_unknown_member_examples():
    rows = table_after("### How UNKNOWN members count")
    assert len(rows) == 5
    for members, contribution, _ in rows:
        states = [s.strip() for s in members.split(",")]
        group = o.Group(providers={f"p{i}" for i in range(len(states))}, rules=[o.REQUIRED],
                        min_up=[2])
        got = group.contribution({f"p{i}": s for i, s in enumerate(states)})
        assert got == contribution, (members, got)


def test_the_rounding_examples():
    rows = table_after("### How `minUpPercent` rounds")
    assert len(rows) == 7
    for pct, n, product, k in rows:
        for size in ([1, 2, 3, 4, 5] if n == "any" else [int(n)]):
            group = o.Group(providers={f"p{i}" for i in range(size)}, rules=[o.REQUIRED],
                            min_up_percent=[float(pct)])
            assert group.needed() == int(k), (pct, size)
            # Neo4j works it out in floating point: the same here.
            assert math.ceil(float(pct) * size / 100.0) == int(k), (pct, size)
        if n != "any":
            assert Fraction(pct) * int(n) / 100 == Fraction(product)


def test_the_rule_table():
    rows = table_after("What each rule does with what a provider")
    for contribution, *by_rule in rows:
        for rule, want in zip((o.REQUIRED, o.OPTIONAL, o.INFORMATIONAL), by_rule, strict=True):
            if rule == o.INFORMATIONAL:
                assert want == "nothing"
                continue
            group = o.Group(providers={"p"}, rules=[rule], single=True)
            got = group.contribution({"p": contribution})
            assert got == re.sub(r"^nothing \(UP\)$", "UP", want), (contribution, rule)
