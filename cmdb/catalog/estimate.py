"""The price of a catalogue item by the bill's own rules: the quote recorded on an order when it
is submitted, and the estimate the catalogue shows before.

Fees are the item's price plan (the bill charges a subscription the fees quoted on its order).
Usage is billed by the chargeback rate cards, never by the rates a plan lists: each meter of
the plan is shown with the rate card version in force, priced with the bill's own functions
(``rate``: graduated tiers, exact; ``to_cents``: rounded once, half to even). Where the plan's
listed rate is not what the rate card charges, or no rate card is in force, a note says so.

Pure functions: the caller reads the plan, the rate cards in force and the meters' units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

from cmdb.catalog.models import (
    Estimate,
    EstimateLine,
    EstimateQuantity,
    Quote,
    QuotedRate,
)
from cmdb.chargeback.allocation import rate, to_cents
from cmdb.chargeback.models import CENT, PricePlan, RateCard, Tier
from cmdb.core.models import DomainError


def tiers_text(tiers: Sequence[Tier]) -> str:
    """"0.12" (flat), "0.10 up to 100, 0.08 above 100" (graduated)."""
    if len(tiers) == 1:
        return str(tiers[0].rate)
    parts, below = [], None
    for t in tiers:
        if t.up_to is not None:
            parts.append(f"{t.rate} up to {t.up_to}")
            below = t.up_to
        else:
            parts.append(f"{t.rate} above {below}")
    return ", ".join(parts)


def _same(listed: Decimal, tiers: Sequence[Tier]) -> bool:
    return all(t.rate == listed for t in tiers)


def terms(plan: PricePlan, cards: Mapping[str, RateCard], units: Mapping[str, str],
          on: date) -> list[QuotedRate]:
    """Each meter of the plan with the rate card in force (``cards``: meter -> version in
    force on the day ``on``; ``units``: meter -> unit of the meters that exist)."""
    out = []
    for u in plan.usage:
        card = cards.get(u.meter)
        notes = []
        if u.meter not in units:
            notes.append(f"{u.meter}: the plan lists {u.rate} a {u.unit}, but there is no "
                         "chargeback meter of that code: nothing is billed for it")
        elif card is None:
            notes.append(f"{u.meter}: the plan lists {u.rate} a {u.unit}, but no rate card "
                         f"is in force on {on.isoformat()}: its usage is not charged")
        else:
            if units[u.meter] != u.unit:
                notes.append(f"{u.meter}: the plan lists a rate per {u.unit}, the meter is "
                             f"billed per {units[u.meter]}")
            if not _same(u.rate, card.tiers):
                notes.append(f"{u.meter}: the plan lists {u.rate}, billed at rate card "
                             f"v{card.version}: {tiers_text(card.tiers)}")
        out.append(QuotedRate(
            meter=u.meter, unit=units.get(u.meter, u.unit), listed_rate=u.rate,
            rate_card_id=card.id if card else None,
            rate_card_version=card.version if card else None,
            tiers=list(card.tiers) if card else [], note="; ".join(notes) or None))
    return out


def currency_notes(plan: PricePlan, billing_currency: str) -> list[str]:
    if plan.currency == billing_currency:
        return []
    return [f"the plan is priced in {plan.currency} and bills are kept in "
            f"{billing_currency}: its fees are left out of the bill (the period warns), and "
            f"usage is charged in {billing_currency}"]


def quote(plan: PricePlan, cards: Mapping[str, RateCard], units: Mapping[str, str],
          billing_currency: str, at: datetime) -> Quote:
    """The quote recorded on an order submitted at ``at`` (cards in force that day)."""
    return Quote(currency=plan.currency, one_off=plan.one_off, monthly=plan.monthly,
                 usage=terms(plan, cards, units, at.date()),
                 notes=currency_notes(plan, billing_currency), quoted_at=at)


def estimate(plan: PricePlan, cards: Mapping[str, RateCard], units: Mapping[str, str],
             billing_currency: str, quantities: Sequence[EstimateQuantity],
             on: date) -> Estimate:
    """What a month of an order made now costs for ``quantities`` (a quantity per meter of
    the plan, each priced as one CI's usage of a month is). A meter the plan does not have is
    an error naming ``quantities[i].meter``."""
    known = [u.meter for u in plan.usage]
    for i, q in enumerate(quantities):
        if q.meter not in known:
            has = ", ".join(known) if known else "none"
            raise DomainError.single(f"quantities[{i}].meter", f"the item's price plan has no "
                                     f"meter {q.meter!r} (its meters: {has})", "NOT_FOUND")
    wanted = {q.meter: q.quantity for q in quantities}
    lines: list[EstimateLine] = []
    notes: list[str] = currency_notes(plan, billing_currency)
    usage_total = Decimal(0)
    added = plan.currency == billing_currency
    for t in terms(plan, cards, units, on):
        if t.note:
            notes.append(t.note)
        quantity = wanted.get(t.meter)
        amount = None
        if quantity is not None and t.tiers:
            amount = (Decimal(to_cents(rate(quantity, t.tiers))) * CENT).quantize(CENT)
            if added:
                usage_total += amount
        lines.append(EstimateLine(
            meter=t.meter, unit=t.unit, quantity=quantity, rate_card_id=t.rate_card_id,
            rate_card_version=t.rate_card_version, tiers=t.tiers, amount=amount))
    monthly_total = (plan.monthly + usage_total).quantize(CENT)
    return Estimate(currency=plan.currency, one_off=plan.one_off, monthly=plan.monthly,
                    usage=lines, monthly_total=monthly_total,
                    first_month=(plan.one_off + monthly_total).quantize(CENT), notes=notes,
                    rates_on=on)
