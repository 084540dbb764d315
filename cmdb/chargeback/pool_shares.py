"""Cost pools shared out: the driver holders under a pool's CIs, their weights by the
pool's driver, each holder's share travelling on to the payers it reaches, idle capacity."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cmdb.chargeback.allocation import NO_CONSUMER, CostGraph, Share, to_cents, weighted
from cmdb.chargeback.lines import (
    CC,
    MICROS,
    SERVICES,
    SUB,
    USER,
    LineMaker,
    Part,
    exact_text,
    fraction_text,
    weight_text,
)
from cmdb.chargeback.models import CostPool, Driver, LineKind
from cmdb.chargeback.snapshot import ItemRow, SubscriptionRow

_HOLDER_CLASSES = {Driver.VCPU: {"VirtualMachine", "VirtualDesktop"},
                   Driver.STORAGE_GB: {"StorageVolume"}}
_AFTER_USAGE = {Driver.METER}  # pools shared by what the usage (read last) says


class PoolSharing(LineMaker):
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
            if item.cls in SERVICES or (item.cls in holders and len(seen[n]) > 1) or (
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
            self._share_out(pool, amount)
            self._flush()

    def _share_out(self, pool: CostPool, amount: Decimal) -> None:
        """One pool's lines: one per payer, its exact share of the pool summed over the
        driver holders whose cost reaches it, each holder listed with its quantity, share
        and path; what reaches no payer and idle capacity are lines too."""
        reach = self.reach(pool)
        weights = self._weights(pool, reach)
        # A FIXED pool's percentages are of 100: what they leave is unallocated.
        capacity = Decimal(100) if pool.driver is Driver.FIXED else pool.capacity
        shares, idle = weighted(weights, capacity)
        used = sum((Fraction(w) for w in weights.values()), Fraction(0))
        # What the shares are of: the capacity when it exceeds what is used.
        base = max(used, Fraction(capacity)) if capacity is not None else used
        parts: list[Part] = []
        more: dict[str, dict[str, Any]] = {}
        for fraction, path, held, payer in self._by_payer(pool, shares, reach).values():
            only = held[0][0] if len(held) == 1 else ""
            parts.append((payer, Share(fraction, path), path, only))
            # The driver quantity reaching the payer: sum of weight x reaching share.
            info: dict[str, Any] = {"quantity": exact_text(fraction * base)}
            if not only:
                info["holders"] = [self._holder(h, weights[h], part, of, (pool.name, *p))
                                   for h, part, of, p in held]
            more[payer] = info
        if idle:
            parts.append((NO_CONSUMER + "idle", Share(idle, ()), (), "idle"))
            more[NO_CONSUMER + "idle"] = {
                "quantity": _idle_quantity(weights, capacity, used),
                "description": self._idle(pool, bool(weights))}
        extra = {"pool": pool.code, "driver": pool.driver.value, "unit": self._unit(pool)}
        self._pool_lines(pool, amount, pool.name, parts, extra, more)

    def _by_payer(self, pool: CostPool, shares: Mapping[str, Fraction],
                  reach: Mapping[str, tuple[str, ...]]) -> dict[str, list[Any]]:
        """Payer -> [fraction of the pool, first path, holders, payer]; what reaches no
        payer is grouped as one, listing each holder's path."""
        graph = self._graph_of(pool)
        prorate = pool.driver is not Driver.SUBSCRIPTIONS  # its weights are active days
        by_payer: dict[str, list[Any]] = {}
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
        return by_payer

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
            return (f"{pool.name}: {weight_text(left)} % unallocated: the pool's percentages "
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
        return [holder, name_of(holder), item.cls if item else None, weight_text(weight),
                fraction_text(of), fraction_text(part), None, None,
                [names[n] if n in names else name_of(n) for n in path]]

    def _pool_lines(self, pool: CostPool, amount: Decimal, origin: str,
                    parts: list[Part],
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


_DRIVER_UNITS = {Driver.VCPU: "vCPU", Driver.STORAGE_GB: "GB", Driver.SESSIONS: "session",
                 Driver.EQUAL: "share", Driver.SESSION_HOURS: "hour", Driver.ROLE_USERS: "user",
                 Driver.SUBSCRIPTIONS: "subscription-day", Driver.FIXED: "percent"}


def _idle_quantity(weights: Mapping[str, Decimal | Fraction], capacity: Decimal | None,
                   used: Fraction) -> str:
    """The capacity nobody uses, in driver units: as given when the weights are decimals
    ("96", "39.5")."""
    decimals = [w for w in weights.values() if isinstance(w, Decimal)]
    if len(decimals) == len(weights):
        in_use = sum(decimals, Decimal(0))
        return str((capacity or in_use) - in_use)
    return exact_text(Fraction(capacity or 0) - used if capacity is not None else Fraction(0))
