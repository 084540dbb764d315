"""The arithmetic of chargeback, kept pure so it can be checked alone.

- ``rate``: tiered (graduated) or flat pricing of a quantity, exact.
- ``largest_remainder``: split an amount of cents by exact shares so the parts sum to the
  amount, with a deterministic tie-break (the parts' keys, ascending).
- ``CostGraph``: where cost goes. Each node's cost divides equally among its direct
  consumers until it reaches a *payer* (a subscription, a business service, a user); a node
  with no consumer keeps its cost as unallocated. The walk follows each node's consumers in
  id order and cuts a cycle where it first meets it, so the answer is the same every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from cmdb.chargeback.models import CENT, Tier

NO_CONSUMER = "none:"  # prefix of the payer key that stands for "nobody consumes this node"


def rate(quantity: Decimal, tiers: Sequence[Tier]) -> Decimal:
    """Exact price of ``quantity`` under graduated tiers (a flat rate is one tier)."""
    total = Decimal(0)
    below = Decimal(0)
    for tier in tiers:
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if top > below:
            total += (top - below) * tier.rate
        if tier.up_to is None or quantity <= tier.up_to:
            break
        below = tier.up_to
    return total


def to_cents(amount: Decimal | Fraction) -> int:
    """The amount rounded once to whole cents, half to even."""
    if isinstance(amount, Fraction):
        amount = Decimal(amount.numerator) / Decimal(amount.denominator)
    return int((amount / CENT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def largest_remainder(total_cents: int, shares: Sequence[Fraction],
                      keys: Sequence[str]) -> list[int]:
    """Cents per share, summing exactly to ``total_cents``.

    Each part gets the floor of its exact share of the total; the cents left over go one each
    to the parts with the largest remainders, ties to the smallest key. ``shares`` must be
    non-negative and sum to 1.
    """
    if len(shares) != len(keys):
        raise ValueError("one key per share")
    if not shares:
        if total_cents:
            raise ValueError("cannot split a non-zero amount into no parts")
        return []
    # Integers over the shares' common denominator: exact, and far cheaper than fractions.
    den = math.lcm(*(s.denominator for s in shares))
    nums = [s.numerator * (den // s.denominator) for s in shares]
    if any(n < 0 for n in nums) or sum(nums) != den:
        raise ValueError("shares must be non-negative and sum to 1")
    sign = -1 if total_cents < 0 else 1
    total = abs(total_cents)
    parts = []
    rems = []
    for n in nums:
        q, r = divmod(total * n, den)  # floor of the exact share, and what is left of it
        parts.append(q)
        rems.append(r)
    left = total - sum(parts)
    if left:
        order = sorted(range(len(parts)), key=lambda i: (-rems[i], keys[i]))
        for i in order[:left]:
            parts[i] += 1
    return [sign * p for p in parts]


@dataclass(frozen=True)
class Share:
    """A payer's exact share of one node's cost, and the first path that leads there."""

    fraction: Fraction
    path: tuple[str, ...]


@dataclass
class CostGraph:
    """Nodes by id; ``consumers[n]``: who n's cost goes to; ``payers``: nodes that pay;
    ``weights``: a node's weight as a consumer. A node's cost divides among its live
    consumers in proportion to their weights (absent: 0), equally when none has a positive
    weight or no weights are given."""

    consumers: Mapping[str, Sequence[str]]
    payers: frozenset[str]
    weights: Mapping[str, Fraction] | None = None
    _memo: dict[str, dict[str, Share]] = field(default_factory=dict)

    def shares(self, node: str) -> dict[str, Share]:
        """Payer key -> share of ``node``'s cost. Shares sum to exactly 1.

        A payer pays all of its own cost. A node with no consumer (or whose consumers all
        lead back into a cycle) yields ``NO_CONSUMER + node``.
        """
        if node in self._memo:
            return self._memo[node]
        # Iterative depth-first walk (graphs can be deep), post-order.
        on_stack: set[str] = set()
        stack: list[tuple[str, int]] = [(node, 0)]
        on_stack.add(node)
        while stack:
            n, i = stack[-1]
            if n in self.payers:
                self._memo[n] = {n: Share(Fraction(1), (n,))}
                stack.pop()
                on_stack.discard(n)
                continue
            nxt = self.consumers.get(n, ())
            if i < len(nxt):
                stack[-1] = (n, i + 1)
                c = nxt[i]
                if c not in self._memo and c not in on_stack:
                    stack.append((c, 0))
                    on_stack.add(c)
                continue
            live = [c for c in nxt if c in self._memo and c not in on_stack]
            self._memo[n] = self._combine(n, live)
            stack.pop()
            on_stack.discard(n)
        return self._memo[node]

    def _combine(self, n: str, consumers: list[str]) -> dict[str, Share]:
        if not consumers:
            return {NO_CONSUMER + n: Share(Fraction(1), (n,))}
        out: dict[str, Share] = {}
        k = len(consumers)
        of = self._weighted(consumers) if k > 1 and self.weights else None
        for c in consumers:
            # Equally (most nodes): a division by an int, no Fraction made for the part.
            f = None if of is None else of.get(c)
            if of is not None and not f:
                continue
            for payer, s in self._memo[c].items():
                part = s.fraction * f if f is not None else \
                    s.fraction / k if k > 1 else s.fraction  # one consumer: all of it
                have = out.get(payer)
                out[payer] = Share(part, (n, *s.path)) if have is None else \
                    Share(have.fraction + part, have.path)
        return out

    def _weighted(self, consumers: list[str]) -> dict[str, Fraction] | None:
        """Each consumer's part by its weight; None (equal parts) when none has a positive
        weight."""
        weights = self.weights
        assert weights is not None
        w = {c: v for c in consumers if (v := weights.get(c)) is not None and v > 0}
        if not w:
            return None
        total = sum(w.values(), Fraction(0))
        return {c: v / total for c, v in w.items()}


def weighted(weights: Mapping[str, Fraction | Decimal | int],
             capacity: Decimal | None) -> tuple[dict[str, Fraction], Fraction]:
    """Shares of each holder by weight, and the idle share of unused ``capacity``.

    Without a capacity (or when use exceeds it) the whole amount goes to the holders; with
    no holder at all, everything is idle.
    """
    exact = {k: Fraction(w) for k, w in weights.items() if w}
    used = sum(exact.values(), Fraction(0))
    base = max(used, Fraction(capacity)) if capacity is not None else used
    if base == 0:
        return {}, Fraction(1)
    return {k: w / base for k, w in exact.items()}, (base - used) / base


def split(total_cents: int, parts: Iterable[tuple[str, Fraction]]) -> list[tuple[str, int]]:
    """``largest_remainder`` over (key, share) pairs; parts with zero cents are kept."""
    items = sorted(parts)
    if len(items) == 1 and items[0][1] == 1:  # one payer of all of it: nothing to round
        return [(items[0][0], total_cents)]
    cents = largest_remainder(total_cents, [s for _, s in items], [k for k, _ in items])
    return [(k, c) for (k, _), c in zip(items, cents, strict=True)]
