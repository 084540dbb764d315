"""One period's charge lines from data already read in bulk (``repository.CalculationInput``).

Neo4j does the heavy reading (usage summed per CI, meter and rate card; the graph as edge
lists); this module prices, allocates and rounds, and returns the lines as node properties.

Where cost goes (documented in ``docs/chargeback.md``):
- a subscription's fees go to the subscription (its cost centre and consumer);
- a CI's usage goes to whoever consumes the CI: the subscriptions that provisioned it, or else
  its direct consumers in the graph (what depends on it, runs on it, uses it; a cluster's or
  pool's members) other than CIs that subscriptions provisioned, each an equal share, level
  by level, until a *payer* is reached: a subscription, a business service (its own cost
  centre) or a user;
- a subscription *for* a service pays that service's cost only when the service recovers its
  cost from its consumers (``costRecovery`` ``CONSUMERS``); by default (``OWNER``) a business
  service keeps its cost, on its own cost centre, whoever subscribes to it;
- a subscription's share of a pool is pro-rated by the days it was active in the month (the
  rest of its CIs' share is unallocated);
- a cost pool is first shared among its *driver holders* under the pool's CIs by the driver
  (vCPUs, GB, desktop sessions or their hours in the month, equal split, a CI attribute, a
  meter's usage in the month), or among payers directly (a role's users, subscriptions by
  active days, cost centres by fixed percentages); then each holder's share travels on like
  usage, equally or, when the pool names an ``onward`` attribute, by the consumers' values;
- cost that reaches no payer, and the idle share of a pool with a capacity, is unallocated.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

from cmdb.chargeback.allocation import NO_CONSUMER, CostGraph, Share, rate, split, to_cents
from cmdb.chargeback.models import (
    BillingMode,
    CostPool,
    Driver,
    LineKind,
    RateCard,
    period_bounds,
)
from cmdb.items.models import CostRecovery

MICROS = Decimal(1_000_000)
_HOLDER_CLASSES = {Driver.VCPU: {"VirtualMachine", "VirtualDesktop"},
                   Driver.STORAGE_GB: {"StorageVolume"}}
_SERVICES = {"BUSINESS_SERVICE", "TECHNICAL_SERVICE"}
SUB, USER, CC = "sub:", "user:", "cc:"
_AFTER_USAGE = {Driver.METER}  # pools shared by what the usage (read last) says
# Stands for the CIs of subscriptions for no service among a shared CI's direct consumers
# (followed by the shared CI's id): their part of its cost is unallocated.
VIA_SUBS = "subcis:"


@dataclass(frozen=True)
class ItemRow:
    id: str
    name: str
    cls: str
    cost_centre: str | None
    cpu: Decimal | None = None
    size_gb: Decimal | None = None
    recovery: CostRecovery = CostRecovery.OWNER  # services: who pays their cost
    attrs: Mapping[str, Decimal] = field(default_factory=dict)  # those pools read, numbers


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    user: str
    cost_centre: str
    item_id: str
    item_name: str
    service_id: str | None
    ci_ids: tuple[str, ...]
    start: datetime
    end: datetime | None
    monthly: Decimal
    one_off: Decimal
    currency: str


class UsageGroup(NamedTuple):
    """A CI's usage of a meter in a month at one rate card (None: none in force), summed."""

    ci: str
    meter: str
    month: str
    rate_card: str | None
    micros: int
    records: int
    # Late usage: what earlier periods already billed of this CI, meter, month and rate card
    # (its tiers continue from there).
    prior_micros: int = 0


@dataclass(frozen=True)
class CostCentreRow:
    code: str
    name: str
    parent: str | None
    mode: BillingMode


@dataclass
class CalculationInput:
    period: str
    currency: str
    items: dict[str, ItemRow]
    uses: dict[str, list[str]]  # provider -> consumers
    subscriptions: list[SubscriptionRow]
    users: dict[str, tuple[str, str | None]]  # user id -> (user name, cost centre)
    cost_centres: dict[str, CostCentreRow]
    rate_cards: dict[str, RateCard]  # by id
    meter_units: dict[str, str]
    usage: list[UsageGroup]
    pools: list[CostPool]
    sessions: dict[str, dict[str, int]] = field(default_factory=dict)  # pool -> user -> n
    # SESSION_HOURS and ROLE_USERS pools: pool -> user id -> hours (or 1), read beforehand.
    pool_weights: dict[str, dict[str, Fraction]] = field(default_factory=dict)


# A line's holders are stored as arrays of these fields, in this order (a month has hundreds
# of thousands): the CI (or user), its name and class, its driver or metered quantity, the
# fraction of its cost reaching the payer, its exact share of a pool (None for usage: the
# fraction reaching), its cents and unit price (usage only), and its path.
HOLDER_FIELDS = ("id", "name", "class", "quantity", "reaching", "share", "amountMinor",
                 "unitPrice", "path")


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


@dataclass
class Calculation:
    rows: list[dict[str, Any]]
    warnings: list[str]


def _line_id(period: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join((period, *parts)).encode()).hexdigest()[:24]
    return f"{period}:{digest}"


def _days(start: date, end: date) -> int:
    return (end - start).days


class Engine:
    def __init__(self, data: CalculationInput) -> None:
        self.d = data
        self.start, self.end = period_bounds(data.period)
        self.subs = {SUB + s.id: s for s in data.subscriptions}
        self.days_in_period = _days(self.start.date(), self.end.date())
        subs_of_item: dict[str, list[str]] = {}
        subs_of_service: dict[str, list[str]] = {}
        # The services a subscription's CIs stand for when something shared below them is
        # shared out (None: a subscription for no service).
        for_service: dict[str, set[str | None]] = {}
        for s in data.subscriptions:
            svc = data.items.get(s.service_id) if s.service_id else None
            if svc is not None and svc.cls not in _SERVICES:
                svc = None
            for ci in s.ci_ids:
                subs_of_item.setdefault(ci, []).append(SUB + s.id)
                for_service.setdefault(ci, set()).add(svc.id if svc else None)
            # Being for a service pays its cost only when it recovers it from consumers.
            if svc is not None and svc.recovery is CostRecovery.CONSUMERS:
                subs_of_service.setdefault(svc.id, []).append(SUB + s.id)
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
        self.consumers = consumers
        self.provisioned = subs_of_item.keys()
        self._made_by = subs_of_item
        self._held: dict[str, int] = {}  # provisioned CI -> days any of its subscriptions held it
        # Services recovered through the prices of their catalogue items: they keep the cost
        # reaching them (a technical one too), not invoiced.
        self.prices = {i.id for i in data.items.values()
                       if i.cls in _SERVICES and i.recovery is CostRecovery.PRICES}
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

    def _rounded(self, cents: int, parts: list[tuple[str, Share, Sequence[str], str]]
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
               parts: list[tuple[str, Share, Sequence[str], str]],
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

    # --- fees --------------------------------------------------------------------------------

    def active_days(self, s: SubscriptionRow) -> int:
        """Days of the period the subscription was active: the start day counts, the end
        day does not; one started and ended on one day counts one day."""
        first = max(s.start, self.start).date()
        last = min(s.end, self.end).date() if s.end else self.end.date()
        return max(_days(first, last), 1 if s.end and s.end > self.start else 0)

    def fees(self) -> None:
        days_in_period = self.days_in_period
        for s in self.d.subscriptions:
            if s.currency != self.d.currency:
                self.warnings.append(f"subscription {s.id} is priced in {s.currency}, the "
                                     f"period in {self.d.currency}: its fees are left out")
                continue
            payer = SUB + s.id
            days = self.active_days(s)
            share = Share(Fraction(1), (payer,))
            base = {"quantity": str(days), "unit": "day", "itemId": s.item_id}
            if s.monthly and days:
                exact = Fraction(s.monthly) * days / days_in_period
                self._lines(LineKind.RECURRING_FEE, to_cents(exact), f"subscription:{s.id}",
                            f"{s.item_name}: {s.monthly} {s.currency} a month, {days} of "
                            f"{days_in_period} days", base
                            | {"unitPrice": str((s.monthly / days_in_period).quantize(
                                Decimal("0.000001")))},
                            [(payer, share, (payer,), "")])
            self._flush()
            if s.one_off and self.start <= s.start < self.end:
                self._lines(LineKind.ONE_OFF_FEE, to_cents(s.one_off), f"order:{s.id}",
                            f"{s.item_name}: one-off fee", {"quantity": "1", "unit": "order",
                                                            "unitPrice": str(s.one_off)},
                            [(payer, share, (payer,), "")])
            self._flush()

    # --- usage -------------------------------------------------------------------------------

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
        q_text = _quantity_text(quantity)
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
            start, end = period_bounds(month)
            extra |= {"adjusts": month, "chargeStart": start, "chargeEnd": end}
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

    # --- pools -------------------------------------------------------------------------------

    def reach(self, pool: CostPool) -> dict[str, tuple[str, ...]]:
        """Items under the pool's CIs (members, what runs on or uses them), with the path
        from the pool; services and holders are not walked through."""
        holders = _HOLDER_CLASSES.get(pool.driver, set())
        held = self._attribute_of(pool) if pool.driver is Driver.ATTRIBUTE else None
        seen: dict[str, tuple[str, ...]] = {}
        queue: deque[str] = deque()
        for ci in sorted(pool.ci_ids):
            if ci in self.d.items and ci not in seen:
                seen[ci] = (ci,)
                queue.append(ci)
        while queue:
            n = queue.popleft()
            item = self.d.items[n]
            if item.cls in _SERVICES or (item.cls in holders and len(seen[n]) > 1) or (
                    held is not None and held(item) is not None):
                continue
            for c in sorted(set(self.d.uses.get(n, ()))):
                if c not in seen and c in self.d.items:
                    seen[c] = (*seen[n], c)
                    queue.append(c)
        return seen

    def _attribute_of(self, pool: CostPool) -> Callable[[ItemRow], Decimal | None]:
        """An ATTRIBUTE pool's weight of an item: its positive value of the attribute when
        its class is one of the pool's holder classes (any class when none are given)."""
        attr, classes = pool.attribute or "", set(pool.holder_classes)

        def weight(item: ItemRow) -> Decimal | None:
            v = item.attrs.get(attr)
            return v if v is not None and v > 0 and (
                not classes or item.cls in classes) else None
        return weight

    def _metered_of(self, meter: str) -> dict[str, Decimal]:
        """Each CI's usage of a meter in the period's month (on time: late records for
        earlier months are not counted), summed over rate cards."""
        found = self._metered.get(meter)
        if found is None:
            micros: dict[str, int] = {}
            for g in self.d.usage:
                if g.meter == meter and g.month == self.d.period:
                    micros[g.ci] = micros.get(g.ci, 0) + g.micros
            found = self._metered[meter] = {ci: Decimal(m) / MICROS
                                            for ci, m in micros.items() if m > 0}
        return found

    def _weights(self, pool: CostPool, reach: Mapping[str, tuple[str, ...]]
                 ) -> Mapping[str, Decimal | Fraction]:
        driver = pool.driver
        if driver in (Driver.SESSION_HOURS, Driver.ROLE_USERS):
            return {USER + u: w for u, w in self.d.pool_weights.get(pool.code, {}).items()
                    if u in self.d.users and w > 0}
        if driver is Driver.FIXED:
            return {CC + a.cost_centre: a.percent for a in pool.allocations}
        if driver is Driver.SUBSCRIPTIONS:
            # Active in the month, provisioned CIs or service among or under the pool's CIs.
            return {SUB + s.id: Decimal(days) for s in self.d.subscriptions
                    if (any(ci in reach for ci in s.ci_ids) or s.service_id in reach)
                    and (days := self.active_days(s))}
        if driver is Driver.METER:
            metered = self._metered_of(pool.meter or "")
            return {n: metered[n] for n in reach if n in metered}
        if driver is Driver.ATTRIBUTE:
            held = self._attribute_of(pool)
            return {n: w for n in reach if (w := held(self.d.items[n])) is not None}
        if pool.driver is Driver.SESSIONS:
            return {USER + u: Decimal(n) for u, n in self.d.sessions.get(pool.code, {}).items()
                    if u in self.d.users}
        if pool.driver is Driver.EQUAL:
            # The direct consumers, a subscription's CIs among them (each holds one share).
            direct = {c for ci in pool.ci_ids for c in (
                self.consumers.get(ci, ()) if ci in self.provisioned
                else self.d.uses.get(ci, ()))}
            return {c: Decimal(1) for c in direct - set(pool.ci_ids)}
        attr = "cpu" if pool.driver is Driver.VCPU else "size_gb"
        out: dict[str, Decimal] = {}
        for n in reach:
            item = self.d.items[n]
            value = getattr(item, attr)
            if item.cls in _HOLDER_CLASSES[pool.driver] and value and value > 0:
                out[n] = value
        return out

    def _graph_of(self, pool: CostPool) -> CostGraph:
        """The graph a pool's holders' shares travel: divided by the pool's ``onward``
        attribute among each node's consumers, or equally."""
        if pool.onward is None:
            return self.graph
        graph = self._onward.get(pool.onward)
        if graph is None:
            attr = pool.onward
            # Subscriptions keep dividing what they pay by their active days.
            weights = {**self._sub_weights,
                       **{i.id: Fraction(v) for i in self.d.items.values()
                          if (v := i.attrs.get(attr)) is not None and v > 0}}
            graph = self._onward[attr] = CostGraph(self.consumers, self.graph.payers, weights)
        return graph

    def pools(self, after_usage: bool = False) -> None:
        """Lines of the pools, in their order; those whose driver reads the usage
        (``_AFTER_USAGE``) when ``after_usage``, the others when not."""
        from cmdb.chargeback.allocation import weighted

        for pool in self.d.pools:
            if (pool.driver in _AFTER_USAGE) is not after_usage:
                continue
            amount = pool.amounts.get(self.d.period)
            if amount is None:
                continue
            if pool.currency != self.d.currency:
                self.warnings.append(f"pool {pool.code} is in {pool.currency}, the period in "
                                     f"{self.d.currency}: left out")
                continue
            reach = self.reach(pool)
            weights = self._weights(pool, reach)
            # A FIXED pool's percentages are of 100: what they leave is unallocated.
            capacity = Decimal(100) if pool.driver is Driver.FIXED else pool.capacity
            shares, idle = weighted(weights, capacity)
            used = sum((Fraction(w) for w in weights.values()), Fraction(0))
            # What the shares are of: the capacity when it exceeds what is used.
            base = max(used, Fraction(capacity)) if capacity is not None else used
            graph = self._graph_of(pool)
            prorate = pool.driver is not Driver.SUBSCRIPTIONS  # its weights are active days
            # One line per payer: its exact share of the pool summed over the driver holders
            # whose cost reaches it, each holder listed with its quantity, share and path.
            # What reaches no payer is one line too, listing each holder's path.
            by_payer: dict[str, list[Any]] = {}  # payer -> [fraction, first path, holders]
            for holder, f in sorted(shares.items()):
                head = reach.get(holder, (holder,)) if not holder.startswith(USER) \
                    else (holder,)
                for payer, s in self._active_shares(holder, graph, prorate):
                    part = f if s.fraction == 1 else f * s.fraction
                    path = (*head[:-1], *s.path)
                    group = NO_CONSUMER if payer.startswith(NO_CONSUMER) else payer
                    entry = by_payer.get(group)
                    if entry is None:
                        entry = by_payer[group] = [Fraction(0), path, [], payer]
                    elif entry[3] != payer:
                        entry[3] = NO_CONSUMER  # several places where cost stops
                    entry[0] += part
                    entry[2].append((holder, part, s.fraction, path))
            unit = self._unit(pool)
            parts: list[tuple[str, Share, Sequence[str], str]] = []
            more: dict[str, dict[str, Any]] = {}
            for fraction, path, held, payer in by_payer.values():
                only = held[0][0] if len(held) == 1 else ""
                parts.append((payer, Share(fraction, path), path, only))
                # The driver quantity reaching the payer: sum of weight x reaching share.
                info: dict[str, Any] = {"quantity": _decimal_text(fraction * base)}
                if not only:
                    info["holders"] = [self._holder(h, weights[h], part, of, (pool.name, *p))
                                       for h, part, of, p in held]
                more[payer] = info
            if idle:
                parts.append((NO_CONSUMER + "idle", Share(idle, ()), (), "idle"))
                decimals = [w for w in weights.values() if isinstance(w, Decimal)]
                if len(decimals) == len(weights):  # as given: "96", "39.5"
                    in_use = sum(decimals, Decimal(0))
                    idle_text = str((capacity or in_use) - in_use)
                else:
                    idle_text = _decimal_text(Fraction(capacity or 0) - used
                                              if capacity is not None else Fraction(0))
                more[NO_CONSUMER + "idle"] = {"quantity": idle_text,
                                              "description": self._idle(pool, bool(weights))}
            extra = {"pool": pool.code, "driver": pool.driver.value, "unit": unit}
            self._pool_lines(pool, amount, pool.name, parts, extra, more)
            self._flush()

    def _unit(self, pool: CostPool) -> str:
        if pool.driver is Driver.ATTRIBUTE:
            return pool.attribute or ""
        if pool.driver is Driver.METER:
            return self.d.meter_units.get(pool.meter or "", pool.meter or "")
        return _DRIVER_UNITS[pool.driver]

    def _how(self, pool: CostPool) -> str:
        """How a pool is shared, for its lines' descriptions ("ATTRIBUTE memoryGb")."""
        how = " ".join(x for x in (pool.driver.value, pool.attribute, pool.meter, pool.role)
                       if x)
        return how + (f", onward by {pool.onward}" if pool.onward else "")

    def _idle(self, pool: CostPool, held: bool = False) -> str:
        """Why a pool's cost (or part of it) is unallocated: its percentages leave it, its
        capacity is unused, or nothing under its CIs holds its driver."""
        if pool.driver is Driver.FIXED:
            left = 100 - sum((a.percent for a in pool.allocations), Decimal(0))
            return (f"{pool.name}: {_weight_text(left)} % unallocated: the pool's percentages "
                    "leave it unallocated")
        if not held and pool.capacity is None:
            return f"{pool.name}: unallocated: nothing holds its driver ({self._how(pool)})"
        return f"{pool.name}: idle capacity ({pool.driver.value})"

    def _active_shares(self, holder: str, graph: CostGraph | None = None,
                       prorate: bool = True) -> list[tuple[str, Share]]:
        """Where a driver holder's share of a pool goes: what reaches a subscription through
        a CI it provisioned is paid for the days it held the CI (several subscriptions of
        one CI share its cost by their active days, for the days any of them held it); the
        rest of that part reaches no payer. What reaches it through a service recovered from
        its consumers is already divided among them by their active days: all of it is
        paid. ``prorate`` False: the holders' weights already counted the days."""
        out: list[tuple[str, Share]] = []
        for payer, s in (graph or self.graph).shares(holder).items():
            sub = self.subs.get(payer) if prorate else None
            # The node before the subscription: one of its CIs (no other way leads from a
            # CI to a subscription's CI), or a service recovered from its consumers.
            own = sub is not None and len(s.path) > 1 and s.path[-2] in self.provisioned
            days = self._held_days(s.path[-2]) if own else self.days_in_period
            if days >= self.days_in_period:
                out.append((payer, s))
                continue
            active = s.fraction * Fraction(days, self.days_in_period)
            if active:
                out.append((payer, Share(active, s.path)))
            out.append((NO_CONSUMER + payer, Share(s.fraction - active, s.path)))
        return out

    def _held_days(self, ci: str) -> int:
        """Days of the period a subscription held the CI: those any of the subscriptions
        that provisioned it was active (its own active days when one did). They already
        share the CI's cost by their active days, so only the days none of them held it
        are left unallocated."""
        days = self._held.get(ci)
        if days is None:
            held: set[int] = set()
            for sub in self._made_by[ci]:
                held |= self._active_dates(self.subs[sub])
            days = self._held[ci] = len(held)
        return days

    def _active_dates(self, s: SubscriptionRow) -> set[int]:
        """The days (ordinals) ``active_days`` counts."""
        first = max(s.start, self.start).date()
        last = min(s.end, self.end).date() if s.end else self.end.date()
        out = set(range(first.toordinal(), last.toordinal()))
        if not out and s.end and s.end > self.start:
            out.add(first.toordinal())
        return out

    def _holder(self, holder: str, weight: Decimal | Fraction, part: Fraction, of: Fraction,
                path: Sequence[str]) -> list[Any]:
        """How one driver holder adds to a payer's pool line (``HOLDER_FIELDS``): the
        holder's driver quantity, the fraction of the holder's cost that reaches the payer,
        its exact share of the pool, and the path from the pool to the payer."""
        item = self.d.items.get(holder)
        names, name_of = self._names, self._name  # a month has hundreds of thousands
        return [holder, name_of(holder), item.cls if item else None, _weight_text(weight),
                _fraction_text(of), _fraction_text(part), None, None,
                [names[n] if n in names else name_of(n) for n in path]]

    def _pool_lines(self, pool: CostPool, amount: Decimal, origin: str,
                    parts: list[tuple[str, Share, Sequence[str], str]],
                    extra: dict[str, Any], more: Mapping[str, Mapping[str, Any]]) -> None:
        description = f"{pool.name}: {amount} {pool.currency} shared by {self._how(pool)}"
        assets = pool.asset_counts.get(self.d.period)
        if assets is not None:
            description = (f"{pool.name}: {amount} {pool.currency} from the depreciation and "
                           f"support of {assets} asset{'' if assets == 1 else 's'}, shared by "
                           f"{self._how(pool)}")
        if not parts:
            parts = [(NO_CONSUMER + "idle", Share(Fraction(1), ()), (), "idle")]
            more = {NO_CONSUMER + "idle": {"description": self._idle(pool)}}
        before = len(self.rows)
        self._lines(LineKind.POOL, to_cents(amount), f"pool:{pool.code}", description,
                    extra, parts, more)
        for row in self.rows[before:]:
            row["path"] = [origin, *row["path"]] if row["path"] else [origin]

    def run(self, sink: Callable[[list[dict[str, Any]]], None] | None = None,
            chunk: int = 2_000,
            usage: Callable[[], list[UsageGroup]] | None = None) -> Calculation:
        """All lines of the period: fees, pools, the pools shared by usage (METER) once the
        usage is read, then usage. ``sink``, when given, receives
        them as they are final, in order, about ``chunk`` at a time (so they can be written
        while the rest is calculated), and the result's rows are then empty; ``usage``,
        when given, is called for the usage groups once fees and pools are done (so they
        can be read meanwhile)."""
        self._sink, self._chunk = sink, chunk
        self.fees()
        self.pools()
        if usage is not None:
            self.d.usage = usage()
        self.pools(after_usage=True)
        self.usage()
        self._flush(final=True)
        return Calculation(self.rows, self.warnings)

    def _flush(self, final: bool = False) -> None:
        """Hand the lines made so far to the sink, which keeps them from then on (the
        engine does not: a month has hundreds of thousands)."""
        if self._sink is not None and (len(self.rows) >= self._chunk
                                       or (final and self.rows)):
            rows, self.rows = self.rows, []
            self._sent += len(rows)
            self._sink(rows)


SIX = Decimal("0.000001")


def _quantity_text(q: Decimal) -> str:
    """A quantity to six places at most, without trailing zeros ("730.5", "2048")."""
    q = q.quantize(SIX) if q != q.quantize(SIX) else q
    return str(q.quantize(Decimal(1))) if q == q.to_integral() else str(q.normalize())


def _weight_text(w: Decimal | Fraction) -> str:
    return str(w) if isinstance(w, Decimal) else _decimal_text(w)


def _fraction_text(f: Fraction) -> str:
    return f"{f.numerator}/{f.denominator}"


def _decimal_text(f: Fraction) -> str:
    """An exact quantity as a decimal, to six places when it does not end sooner."""
    exact = Decimal(f.numerator) / Decimal(f.denominator)
    if exact == exact.quantize(Decimal("0.000001")):
        return str(exact.normalize()) if exact != exact.to_integral() else str(
            exact.quantize(Decimal(1)))
    return str(exact.quantize(Decimal("0.000001")))


_DRIVER_UNITS = {Driver.VCPU: "vCPU", Driver.STORAGE_GB: "GB", Driver.SESSIONS: "session",
                 Driver.EQUAL: "share", Driver.SESSION_HOURS: "hour", Driver.ROLE_USERS: "user",
                 Driver.SUBSCRIPTIONS: "subscription-day", Driver.FIXED: "percent"}
