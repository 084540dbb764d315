"""Usage priced and billed: each CI's usage of a meter in a month at its rate card, rounded
to the cent on its own, then split among the payers it reaches (a payer's line sums them)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cmdb.chargeback.allocation import NO_CONSUMER, Share, rate, to_cents
from cmdb.chargeback.lines import MICROS, SIX, LineMaker, quantity_text
from cmdb.chargeback.models import ChargePeriod, LineKind, RateCard


@dataclass(slots=True)
class _UsagePart:
    """One CI's usage reaching one payer: its quantity and exact amount (whole), the share
    that reaches the payer and the cents of it."""

    ci: str
    quantity: Decimal
    exact: Decimal
    share: Share
    cents: int
    payer: str  # as the graph walk found it (unallocated: where the cost stops)


class UsagePricing(LineMaker):
    def usage(self) -> None:
        """Usage lines: one per payer, meter, month and rate card. Each CI's usage is priced
        and rounded to the cent on its own, then split among the payers it reaches; a payer's
        line sums its parts and lists the CIs as holders (a line of one CI names it)."""
        # Unpriced usage is summed per meter and month: one warning each, not one per CI.
        unpriced: dict[tuple[str, str], list[int]] = {}
        lines: dict[tuple[str, str, str, str], list[_UsagePart]] = {}
        for g in self.d.usage:
            card = self.d.rate_cards.get(g.rate_card) if g.rate_card else None
            if card is None or card.currency != self.d.currency:
                tally = unpriced.setdefault((g.meter, g.month), [0, 0, 0])
                tally[0] += g.micros
                tally[1] += g.records
                tally[2] += 1
                continue
            quantity = Decimal(g.micros) / MICROS
            if g.prior_micros:
                # Late usage continues the month's tiers: its price is what it adds on top
                # of the quantity already billed for that month.
                prior = Decimal(g.prior_micros) / MICROS
                exact = rate(prior + quantity, card.tiers) - rate(prior, card.tiers)
            else:
                exact = rate(quantity, card.tiers)
            shares = self.graph.shares(g.ci)
            if len(shares) == 1:
                [(payer, s)] = shares.items()
                parts = [(to_cents(exact), payer, s)]
            else:
                parts = [(c, payer, s) for c, payer, s, _, _ in self._rounded(
                    to_cents(exact), [(p, s, s.path, g.ci) for p, s in shares.items()])]
            for c, payer, s in parts:
                # What reaches no payer is one line per meter, month and rate card too.
                group = NO_CONSUMER if payer.startswith(NO_CONSUMER) else payer
                key = (group, g.meter, g.month, card.id)
                found = lines.get(key)
                if found is None:
                    found = lines[key] = []
                found.append(_UsagePart(g.ci, quantity, exact, s, c, payer))
        # In a stable order: by meter, month, rate card version, then payer.
        order = sorted(lines, key=lambda k: (k[1], k[2], self.d.rate_cards[k[3]].version,
                                             self._name(k[0]), k[0]))
        for key in order:
            held = lines.pop(key)
            payer = key[0]
            if payer == NO_CONSUMER and all(p.payer == held[0].payer for p in held):
                payer = held[0].payer  # one place where cost stops: the line names it
            self._usage_line(payer, *key[1:], held)
            self._flush()
        for (meter, month), (micros, records, cis) in sorted(unpriced.items()):
            unit = self.d.meter_units.get(meter, meter)
            self.warnings.append(
                f"usage of {meter} in {month} ({Decimal(micros) / MICROS} {unit}, {records} "
                f"records on {cis} CIs) has no rate card in force in {self.d.currency}: "
                "not charged")

    def _usage_line(self, payer: str, meter: str, month: str, card_id: str,
                    parts: list[_UsagePart]) -> None:
        card = self.d.rate_cards[card_id]
        unit = self.d.meter_units.get(meter, meter)
        # What reaches the payer: each CI's quantity and exact amount times its share. Both
        # are shown to six places only (the cents are exact), so decimals do.
        quantity, exact = Decimal(0), Decimal(0)
        for p in parts:
            f = p.share.fraction
            if f.denominator == 1:
                quantity += p.quantity
                exact += p.exact
            else:
                quantity += p.quantity * f.numerator / f.denominator
                exact += p.exact * f.numerator / f.denominator
        price = str((exact / quantity).quantize(SIX)) if quantity else "0.000000"
        q_text = quantity_text(quantity)
        extra: dict[str, Any] = {
            "meter": meter, "unit": unit, "quantity": q_text,
            "rateCardId": card.id, "rateVersion": card.version, "unitPrice": price,
        }
        tiers = " tiered" if card.tiered else ""
        share: Fraction | None = None
        if len(parts) == 1:
            only = parts[0]
            item = self.d.items.get(only.ci)
            on = item.name if item else only.ci
            if item:
                extra |= {"ciId": item.id, "ciName": item.name, "ciClass": item.cls}
            else:
                extra |= {"ciId": only.ci}
            share = only.share.fraction
        else:
            on = f"{len(parts)} CIs"
            extra["holders"] = self._usage_holders(parts, card)
        description = (f"{extra['quantity']} {unit} of {meter} on {on} at rate card "
                       f"v{card.version}{tiers}")
        late = month < self.d.period
        if late:
            charged = ChargePeriod.parse(month)
            extra |= {"adjusts": month, "chargeStart": charged.start,
                      "chargeEnd": charged.end}
            description = f"late usage for {month}: {description}"
        self._emit(LineKind.ADJUSTMENT if late else LineKind.USAGE,
                   sum(p.cents for p in parts), f"usage:{meter}:{month}:{card.id}", payer,
                   description, share, parts[0].share.path, extra)

    def _usage_holders(self, parts: list[_UsagePart], card: RateCard) -> list[list[Any]]:
        """The CIs behind a usage line (``HOLDER_FIELDS``): each one's metered quantity, the
        fraction of its usage that reaches the payer, its part of the line in cents, its unit
        price and the path. (One loop: a month has hundreds of thousands.)"""
        items, names, name_of = self.d.items, self._names, self._name
        flat = None if card.tiered else str(card.tiers[0].rate.quantize(SIX))
        out = []
        for p in parts:
            item = items.get(p.ci)
            f = p.share.fraction
            price = flat if flat is not None else (
                str((p.exact / p.quantity).quantize(SIX)) if p.quantity else "0.000000")
            out.append([p.ci, item.name if item else p.ci, item.cls if item else None,
                        str(p.quantity), f"{f.numerator}/{f.denominator}", None, p.cents,
                        price, [names[n] if n in names else name_of(n)
                                for n in p.share.path]])
        return out
