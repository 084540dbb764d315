"""Who pays and the lines they get: the base of the engine (``engine.Engine``).

The cost graph and its payers (subscriptions, business services and services recovered
through prices, users, cost centres), each payer's line fields worked out once, and one
source's cents rounded over its payers into lines, handed on in chunks as they are final.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cmdb.chargeback.allocation import NO_CONSUMER, CostGraph, Share, split
from cmdb.chargeback.models import BillingMode, ChargePeriod, LineKind
from cmdb.chargeback.snapshot import CalculationInput, SubscriptionRow
from cmdb.items.models import CostRecovery

MICROS = Decimal(1_000_000)
SIX = Decimal("0.000001")
SERVICES = {"BUSINESS_SERVICE", "TECHNICAL_SERVICE"}
SUB, USER, CC = "sub:", "user:", "cc:"
# Stands for the CIs of subscriptions for no service among a shared CI's direct consumers
# (followed by the shared CI's id): their part of its cost is unallocated.
VIA_SUBS = "subcis:"
Part = tuple[str, Share, Sequence[str], str]  # one part of a source: payer, share, path, holder


def _line_id(period: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join((period, *parts)).encode()).hexdigest()[:24]
    return f"{period}:{digest}"


def _days(start: date, end: date) -> int:
    return (end - start).days


def _subscribers(data: CalculationInput
                 ) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, set[str | None]]]:
    """Per CI, the subscriptions that provisioned it; per service recovered from its
    consumers, the subscriptions for it; per provisioned CI, the services its subscriptions
    are for (None: a subscription for no service)."""
    subs_of_item: dict[str, list[str]] = {}
    subs_of_service: dict[str, list[str]] = {}
    for_service: dict[str, set[str | None]] = {}
    for s in data.subscriptions:
        svc = data.items.get(s.service_id) if s.service_id else None
        if svc is not None and svc.cls not in SERVICES:
            svc = None
        for ci in s.ci_ids:
            subs_of_item.setdefault(ci, []).append(SUB + s.id)
            for_service.setdefault(ci, set()).add(svc.id if svc else None)
        # Being for a service pays its cost only when it recovers it from consumers.
        if svc is not None and svc.recovery is CostRecovery.CONSUMERS:
            subs_of_service.setdefault(svc.id, []).append(SUB + s.id)
    return subs_of_item, subs_of_service, for_service


def _consumers(data: CalculationInput, subs_of_item: Mapping[str, list[str]],
               subs_of_service: Mapping[str, list[str]],
               for_service: Mapping[str, set[str | None]]) -> dict[str, list[str]]:
    """Each node's direct consumers as its cost divides among them."""
    consumers: dict[str, list[str]] = {}
    for n in set(data.uses) | set(subs_of_item) | set(subs_of_service):
        # The subscriptions that provisioned a CI pay for it, alone; so do those for a
        # service that recovers its cost from its consumers (both by their active days:
        # the weights below).
        paying = subs_of_item.get(n) or subs_of_service.get(n)
        if paying:
            consumers[n] = sorted(paying)
            continue
        # A subscription's CIs take no share of what they rest on: a subscription pays
        # what its CIs use and hold (by a pool's driver), not the shared CIs below. The
        # services those subscriptions are for consume it in their place (each once),
        # and their recovery rule decides who pays; subscriptions for no service leave
        # their part unallocated.
        direct = set(data.uses.get(n, ()))
        theirs = direct & subs_of_item.keys()
        if theirs:
            direct -= theirs
            for ci in theirs:
                for svc_id in for_service[ci]:
                    direct.add(svc_id if svc_id is not None else VIA_SUBS + n)
            direct.discard(n)
        consumers[n] = sorted(direct)
    return consumers


class LineMaker:
    def __init__(self, data: CalculationInput) -> None:
        self.d = data
        self.period = ChargePeriod.parse(data.period)
        self.start, self.end = self.period.start, self.period.end
        self.subs = {SUB + s.id: s for s in data.subscriptions}
        self.days_in_period = _days(self.start.date(), self.end.date())
        subs_of_item, subs_of_service, for_service = _subscribers(data)
        consumers = _consumers(data, subs_of_item, subs_of_service, for_service)
        self.consumers = consumers
        self.provisioned = subs_of_item.keys()
        self._made_by = subs_of_item
        self._held: dict[str, int] = {}  # provisioned CI -> days any of its subscriptions held it
        # Services recovered through the prices of their catalogue items: they keep the cost
        # reaching them (a technical one too), not invoiced.
        self.prices = {i.id for i in data.items.values()
                       if i.cls in SERVICES and i.recovery is CostRecovery.PRICES}
        payers = set(self.subs)
        payers |= {USER + u for u in data.users}
        payers |= {CC + c for c in data.cost_centres}  # FIXED pools' percentages
        payers |= {i.id for i in data.items.values()
                   if i.cls == "BUSINESS_SERVICE" and i.id not in subs_of_service}
        payers |= self.prices  # a technical service recovered by prices keeps its cost too
        # A node's cost divides among the subscriptions that pay it by their active days.
        self._sub_weights = {sub: Fraction(self.active_days(s)) for sub, s in self.subs.items()}
        self.graph = CostGraph(consumers, frozenset(payers), self._sub_weights)
        self._onward: dict[str, CostGraph] = {}  # a pool's onward attribute -> its graph
        self._metered: dict[str, dict[str, Decimal]] = {}  # meter -> CI -> month's quantity
        self.rows: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        # Names and payer fields repeat on many lines: worked out once per node.
        self._names: dict[str, str] = {}
        self._fields: dict[str, dict[str, Any]] = {}
        self._payers: dict[str, tuple[dict[str, Any], bool, str | None]] = {}
        self._sink: Callable[[list[dict[str, Any]]], None] | None = None
        self._chunk = 2_000
        self._sent = 0  # lines handed to the sink so far

    # --- payers ------------------------------------------------------------------------------

    def _name(self, node: str) -> str:
        name = self._names.get(node)
        if name is None:
            name = self._names[node] = self._name_of(node)
        return name

    def _name_of(self, node: str) -> str:
        if node.startswith(SUB):
            s = self.subs[node]
            return f"{s.item_name} ({s.user})"
        if node.startswith(USER):
            return self.d.users[node[len(USER):]][0]
        if node.startswith(CC):
            cc = self.d.cost_centres.get(node[len(CC):])
            return cc.name if cc else node[len(CC):]
        if node.startswith(VIA_SUBS):
            return "CIs of subscriptions for no service"
        item = self.d.items.get(node)
        return item.name if item else node

    def _payer_fields(self, payer: str) -> dict[str, Any]:
        """The line fields that say who pays (shared between lines: not to be changed)."""
        fields = self._fields.get(payer)
        if fields is None:
            fields = self._fields[payer] = self._payer_fields_of(payer)
        return fields

    def _payer_fields_of(self, payer: str) -> dict[str, Any]:
        if payer.startswith(NO_CONSUMER):
            return {"costCentre": None}
        if payer.startswith(SUB):
            s = self.subs[payer]
            svc = self.d.items.get(s.service_id) if s.service_id else None
            return {"costCentre": s.cost_centre, "user": s.user, "subscriptionId": s.id,
                    "itemId": s.item_id, "itemName": s.item_name,
                    "serviceId": s.service_id, "serviceName": svc.name if svc else None}
        if payer.startswith(USER):
            name, cc = self.d.users[payer[len(USER):]]
            return {"costCentre": cc, "user": name}
        if payer.startswith(CC):
            return {"costCentre": payer[len(CC):]}
        item = self.d.items[payer]
        # A service recovered through prices says so on its lines (why they are not
        # invoiced).
        recovery = CostRecovery.PRICES.value if payer in self.prices else None
        return {"costCentre": item.cost_centre, "serviceId": item.id, "serviceName": item.name,
                "recovery": recovery}

    def _invoiced(self, cc: str | None) -> bool:
        if cc is None:
            return False
        row = self.d.cost_centres.get(cc)
        return row is None or row.mode is BillingMode.CHARGEBACK

    # --- lines -------------------------------------------------------------------------------

    def _payer_of(self, payer: str) -> tuple[dict[str, Any], bool, str | None]:
        """The payer's line fields (no None among them), whether it is invoiced, and why
        its lines are unallocated (None when they are not); worked out once per payer."""
        found = self._payers.get(payer)
        if found is None:
            fields = {k: v for k, v in self._payer_fields(payer).items() if v is not None}
            cc = fields.get("costCentre")
            why = None
            if payer == NO_CONSUMER:  # several CIs' cost stops short: their paths say where
                why = "no consumer (each CI's path shows where its cost stops)"
            elif payer.startswith(NO_CONSUMER + VIA_SUBS):
                shared = payer[len(NO_CONSUMER + VIA_SUBS):]
                only = self.consumers.get(shared) == [VIA_SUBS + shared]
                why = (f"{'only ' if only else ''}CIs of subscriptions for no service consume "
                       f"{self._name(shared)}")
            elif payer.startswith(NO_CONSUMER + SUB):
                why = f"{self._name(payer[len(NO_CONSUMER):])} was not active all month"
            elif payer.startswith(NO_CONSUMER):
                why = f"no consumer of {self._name(payer[len(NO_CONSUMER):])}"
            elif cc is None:  # a payer nobody can be invoiced for
                why = f"{self._name(payer)} has no cost centre"
            # A service recovered through prices is not invoiced: its subscriptions' fees
            # recover its cost (chargeRecovery compares the two).
            invoiced = self._invoiced(cc) and payer not in self.prices
            found = self._payers[payer] = (fields, invoiced, why)
        return found

    def _emit(self, kind: LineKind, cents: int, source: str, payer: str, description: str,
              share: Fraction | None, path: Sequence[str], extra: Mapping[str, Any],
              key: str = "") -> None:
        fields, invoiced, why = self._payer_of(payer)
        if why is not None:
            kind = LineKind.UNALLOCATED
            description = f"{description}: {why}"
        # Stored lean (a month has hundreds of thousands of lines): the amount as cents only,
        # currency and charge period taken from the period unless the line says otherwise.
        names = self._names
        row: dict[str, Any] = {
            "id": _line_id(self.d.period, source, key, payer),
            "period": self.d.period, "seq": self._sent + len(self.rows) + 1,
            "kind": kind.value,
            "amountMinor": cents, "source": source, "description": description,
            "invoiced": invoiced,
            "path": [names[p] if p in names else self._name(p) for p in path],
        }
        if share is not None:
            row["share"] = f"{share.numerator}/{share.denominator}"
        row.update(fields)
        for k, v in extra.items():  # None: the field is left out
            if v is None:
                row.pop(k, None)
            else:
                row[k] = v
        self.rows.append(row)

    def _rounded(self, cents: int, parts: list[Part]
                 ) -> list[tuple[int, str, Share, Sequence[str], str]]:
        """One source's ``cents`` over its parts (payer, share, path, holder), by largest
        remainder: (cents, payer, share, path, holder) per part."""
        if len(parts) == 1 and parts[0][1].fraction == 1:  # one payer of all of it
            return [(cents, *parts[0])]
        # Keys lead with the payer's name, so ties between payers break by name, the same
        # way every run and on every copy of the data.
        keyed = {f"{self._name(payer)}|{payer}|{holder}": (payer, s, path, holder)
                 for payer, s, path, holder in parts}
        return [(c, *keyed[key]) for key, c in split(cents, [(k, v[1].fraction)
                                                              for k, v in keyed.items()])]

    def _lines(self, kind: LineKind, cents: int, source: str, description: str,
               extra: Mapping[str, Any],
               parts: list[Part],
               more_of: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Lines of one source's parts (payer, share, path, holder), rounded together;
        ``more_of`` adds fields to the line of a payer."""
        for c, payer, s, path, holder in self._rounded(cents, parts):
            more = dict(extra)
            if holder and "ciId" not in more and holder in self.d.items:
                item = self.d.items[holder]
                more.update(ciId=item.id, ciName=item.name, ciClass=item.cls)
            if more_of and payer in more_of:
                more.update(more_of[payer])
            self._emit(kind, c, source, payer, description, s.fraction, path, more, holder)

    def active_days(self, s: SubscriptionRow) -> int:
        """Days of the period the subscription was active: the start day counts, the end
        day does not; one started and ended on one day counts one day."""
        first = max(s.start, self.start).date()
        last = min(s.end, self.end).date() if s.end else self.end.date()
        return max(_days(first, last), 1 if s.end and s.end > self.start else 0)

    def _flush(self, final: bool = False) -> None:
        """Hand the lines made so far to the sink, which keeps them from then on (the
        engine does not: a month has hundreds of thousands)."""
        if self._sink is not None and (len(self.rows) >= self._chunk
                                       or (final and self.rows)):
            rows, self.rows = self.rows, []
            self._sent += len(rows)
            self._sink(rows)


SIX = Decimal("0.000001")


def quantity_text(q: Decimal) -> str:
    """A quantity to six places at most, without trailing zeros ("730.5", "2048")."""
    q = q.quantize(SIX) if q != q.quantize(SIX) else q
    return str(q.quantize(Decimal(1))) if q == q.to_integral() else str(q.normalize())


def weight_text(w: Decimal | Fraction) -> str:
    return str(w) if isinstance(w, Decimal) else exact_text(w)


def fraction_text(f: Fraction) -> str:
    return f"{f.numerator}/{f.denominator}"


def exact_text(f: Fraction) -> str:
    """An exact quantity as a decimal, to six places when it does not end sooner."""
    exact = Decimal(f.numerator) / Decimal(f.denominator)
    if exact == exact.quantize(Decimal("0.000001")):
        return str(exact.normalize()) if exact != exact.to_integral() else str(
            exact.quantize(Decimal(1)))
    return str(exact.quantize(Decimal("0.000001")))

