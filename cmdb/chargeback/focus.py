"""The FinOps FOCUS 1.2 cost and usage dataset of a period's charge lines (written out as CSV
through ``export``).

FOCUS 1.2 (https://focus.finops.org) is written here for an internal IT provider that supports:
usage measurement, sub accounts (the user a charge is for), billing based on provisioned
resources with resource types (the CIs), published unit prices (rate cards, catalogue fees),
negotiated prices equal to list prices (no discounts) and provider-defined tags. It has no
commitment discounts, capacity reservations, regions, availability zones, virtual currency or
pricing currency different from the billing currency, so those columns are left out as the
specification allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction

from cmdb.chargeback.export import (
    FOCUS_NUMERIC_COLUMNS,
    PATH_SEPARATOR,
    fractional,
    money,
    quantity,
    text,
    utc_text,
)
from cmdb.chargeback.models import ChargeLine, Driver, LineKind, Period

UNALLOCATED_ACCOUNT_ID = "UNALLOCATED"
UNALLOCATED_ACCOUNT_NAME = "Unallocated"
SHARED_SERVICE_NAME = "Shared infrastructure"
ADJUSTMENTS_SERVICE_NAME = "Adjustments"
TAG_PREFIX = "cmdb/"  # provider-defined tag keys carry the provider's prefix (FOCUS Tags)
UNIT_PRICE_PLACES = Decimal("1e-10")  # a unit price derived by division, when it does not end
SIX_PLACES = Decimal("0.000001")  # a CI's share of a quantity, when it does not end

FOCUS_VERSION = "1.2"

# The FOCUS columns first (alphabetical), then the custom x_ columns (ColumnHandling).
FOCUS_SPEC_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)

FOCUS_CUSTOM_COLUMNS: tuple[str, ...] = (
    "x_LineId",
    "x_Kind",
    "x_Source",
    "x_Share",
    "x_Path",
    "x_Driver",
    "x_Pool",
    "x_RateVersion",
    "x_Adjusts",
    "x_CorrectsLine",
    "x_SubscriptionId",
    "x_CatalogueItem",
    "x_Invoiced",
    "x_ServiceId",
    "x_ServiceName",
    "x_Recovery",
)

FOCUS_COLUMNS: tuple[str, ...] = FOCUS_SPEC_COLUMNS + FOCUS_CUSTOM_COLUMNS
assert set(FOCUS_COLUMNS) >= FOCUS_NUMERIC_COLUMNS
# The columns FOCUS 1.2 requires in every cost and usage dataset, and those it requires for a
# provider with the features described in the module docstring.
FOCUS_MANDATORY_COLUMNS: frozenset[str] = frozenset({
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
})
FOCUS_CONDITIONAL_COLUMNS: frozenset[str] = frozenset({
    "ConsumedQuantity", "ConsumedUnit",  # usage measurement
    "SubAccountId", "SubAccountName",  # sub accounts
    "ResourceId", "ResourceName", "ResourceType",  # provisioned resources with types
    "ListUnitPrice", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId",  # price lists
    "ContractedUnitPrice",  # negotiated pricing (equal to the list price here)
    "Tags",  # provider-defined tags
})
FOCUS_RECOMMENDED_COLUMNS: frozenset[str] = frozenset({
    "ChargeFrequency", "InvoiceId", "ServiceSubcategory",
})

CHARGE_CATEGORY: dict[LineKind, str] = {
    LineKind.USAGE: "Usage",
    LineKind.POOL: "Usage",
    LineKind.UNALLOCATED: "Usage",
    LineKind.RECURRING_FEE: "Purchase",
    LineKind.ONE_OFF_FEE: "Purchase",
    LineKind.ADJUSTMENT: "Adjustment",
}

CHARGE_FREQUENCY: dict[LineKind, str] = {
    LineKind.USAGE: "Usage-Based",
    LineKind.POOL: "Usage-Based",  # a share that follows the consumer's use of the pool
    LineKind.UNALLOCATED: "Usage-Based",
    LineKind.RECURRING_FEE: "Recurring",
    LineKind.ONE_OFF_FEE: "One-Time",
    LineKind.ADJUSTMENT: "One-Time",
}

# Allowed ServiceCategory / ServiceSubcategory pairs of FOCUS 1.2 that internal IT costs map to.
COMPUTE_VMS = ("Compute", "Virtual Machines")
END_USER = ("Compute", "End User Computing")
BLOCK_STORAGE = ("Storage", "Block Storage")
STORAGE = ("Storage", "Other (Storage)")
BACKUP = ("Storage", "Backup Storage")
PRODUCTIVITY = ("Business Applications", "Productivity and Collaboration")
OTHER = ("Other", "Other (Other)")

_TIME_UNITS = {"year": "Year", "month": "Month", "day": "Day", "hour": "Hour",
               "minute": "Minute", "second": "Second"}


def focus_unit(unit: str) -> str:
    """A meter's unit in FOCUS UnitFormat: ``vCPU-hour`` -> ``vCPU-Hours``, ``GB-month`` ->
    ``GB-Months``, ``GB/hour`` -> ``GB/Hour``, ``hour`` -> ``Hours``; count units as they are."""
    text = unit.strip()
    for sep, plural in (("-", True), ("/", False)):
        head, found, tail = text.rpartition(sep)
        if found and head:
            singular = tail.strip().lower().removesuffix("s")
            if singular in _TIME_UNITS:
                return f"{head}{sep}{_TIME_UNITS[singular]}{'s' if plural else ''}"
            return text
    singular = text.lower().removesuffix("s")
    if singular in _TIME_UNITS:
        return _TIME_UNITS[singular] + "s"
    return text


def _by_words(text: str) -> tuple[str, str] | None:
    words = text.lower()
    if any(w in words for w in ("desktop", "vdi", "session")):
        return END_USER
    if "backup" in words:
        return BACKUP
    if any(w in words for w in ("cpu", "virtual machine", "virtualmachine", "server")) \
            or "vm" in re.split(r"[^a-z0-9]+", words):
        return COMPUTE_VMS
    if any(w in words for w in ("storage", "volume", "disk", "gb-month", "tb-month")):
        return STORAGE
    if any(w in words for w in ("mailbox", "email", "e-mail", "sharepoint", "collaboration")):
        return PRODUCTIVITY
    return None


def offering(line: ChargeLine) -> tuple[str, tuple[str, str]]:
    """FOCUS ServiceName (what the provider offers and the consumer pays for) with its
    ServiceCategory and ServiceSubcategory.

    FOCUS gives every ServiceName one and only one ServiceCategory, so the name is taken from
    what the cost comes from and the category from that alone: the meter of usage, the cost
    pool of a share or of idle capacity (its driver decides), the catalogue item (or service)
    of a fee. The consuming business service is carried in ``x_ServiceId``/``x_ServiceName``.
    """
    if line.meter:
        return line.meter, _by_words(f"{line.meter} {line.unit or ''}") or OTHER
    if line.pool:
        by_driver = {Driver.VCPU: COMPUTE_VMS, Driver.STORAGE_GB: BLOCK_STORAGE,
                     Driver.SESSIONS: END_USER, Driver.SESSION_HOURS: END_USER}
        category = by_driver.get(line.driver) if line.driver is not None else None
        return line.pool, category or _by_words(line.pool) or OTHER
    name = line.item_name or line.service_name
    if name:
        return name, _by_words(name) or OTHER
    if line.kind is LineKind.ADJUSTMENT:
        return ADJUSTMENTS_SERVICE_NAME, OTHER
    return SHARED_SERVICE_NAME, OTHER


def _default_unit(line: ChargeLine) -> str:
    if line.kind is LineKind.RECURRING_FEE:
        # a pro-rated fee counts active days; without them it is one month of the fee
        return "Days" if line.quantity else "Month"
    return "Unit"


def _pricing(line: ChargeLine) -> tuple[Decimal, str, Decimal] | None:
    """PricingQuantity, PricingUnit and the unit price (list = contracted) of a line, or None
    for a line with no price (an adjustment)."""
    if line.kind is LineKind.ADJUSTMENT:
        return None
    q = line.quantity
    unit = focus_unit(line.unit) if line.unit else _default_unit(line)
    if q is None or (q == 0 and line.amount != 0):
        # Nothing measured: the charge is one unit of what it is for (a one-off fee, a month of
        # a subscription), priced at its amount.
        return Decimal(1), unit if q is not None else _default_unit(line), line.amount
    if line.unit_price is not None:
        return q, unit, line.unit_price
    if q == 0:
        return q, unit, Decimal(0)
    price = (line.amount / q).normalize()
    if price * q != line.amount:  # the division does not end: keep ten decimals
        price = (line.amount / q).quantize(UNIT_PRICE_PLACES)
    return q, unit, price


def _tags(line: ChargeLine) -> str:
    tags: dict[str, str] = {f"{TAG_PREFIX}kind": line.kind.value,
                            f"{TAG_PREFIX}source": line.source}
    for key, value in (("costCentre", line.cost_centre), ("user", line.user),
                       ("service", line.service_id), ("catalogueItem", line.item_id),
                       ("subscription", line.subscription_id), ("meter", line.meter),
                       ("pool", line.pool), ("adjusts", line.adjusts)):
        if value is not None:
            tags[TAG_PREFIX + key] = value
    return json.dumps(tags, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _sku_meter(line: ChargeLine) -> str:
    if line.meter:
        return line.meter
    if line.driver is not None:
        return f"{line.driver.value} share"
    if line.kind is LineKind.RECURRING_FEE:
        return "Recurring fee"
    if line.kind is LineKind.ONE_OFF_FEE:
        return "One-off fee"
    return line.kind.value


def invoice_id(period: str, cost_centre: str) -> str:
    """The internal invoice a chargeback cost centre gets for a period: the invoiced lines of
    both carry it, so that BilledCost sums to the invoice (showback lines have none)."""
    return f"{period}/{cost_centre}"


def focus_row(period: Period, line: ChargeLine, cost_centre_names: Mapping[str, str],
              provider: str = "CMDB internal IT") -> dict[str, str]:
    """One charge line as a FOCUS 1.2 cost and usage row (column -> text, "" for null)."""
    kind = line.kind
    if line.cost_centre is None:
        account_id, account_name = UNALLOCATED_ACCOUNT_ID, UNALLOCATED_ACCOUNT_NAME
    else:
        account_id = line.cost_centre
        account_name = cost_centre_names.get(line.cost_centre, line.cost_centre)
    invoiced = line.invoiced and line.cost_centre is not None
    sku_id = line.meter or line.pool or line.item_id or line.source
    service_name, (svc_category, svc_subcategory) = offering(line)
    has_resource = line.ci_id is not None
    return {
        "BilledCost": money(line.amount if invoiced else Decimal(0)),
        "BillingAccountId": account_id,
        "BillingAccountName": account_name,
        "BillingCurrency": line.currency,
        "BillingPeriodEnd": utc_text(period.end),
        "BillingPeriodStart": utc_text(period.start),
        "ChargeCategory": CHARGE_CATEGORY[kind],
        "ChargeClass": "Correction" if line.adjusts is not None else "",
        "ChargeDescription": line.description,
        "ChargeFrequency": CHARGE_FREQUENCY[kind],
        "ChargePeriodEnd": utc_text(line.charge_end),
        "ChargePeriodStart": utc_text(line.charge_start),
        **_price_columns(line),
        "EffectiveCost": money(line.amount),
        "InvoiceId": invoice_id(line.period, account_id) if invoiced else "",
        "InvoiceIssuerName": provider,
        "ProviderName": provider,
        "PublisherName": provider,
        "ResourceId": text(line.ci_id),
        "ResourceName": text(line.ci_name) if has_resource else "",
        "ResourceType": (line.ci_class or "ConfigurationItem") if has_resource else "",
        "ServiceCategory": svc_category,
        "ServiceName": service_name,
        "ServiceSubcategory": svc_subcategory,
        "SkuId": sku_id,
        "SkuMeter": _sku_meter(line),
        "SkuPriceDetails": "",
        "SkuPriceId": line.rate_card_id or sku_id,
        "SubAccountId": text(line.user),
        "SubAccountName": text(line.user),
        "Tags": _tags(line),
        **_custom_columns(line),
    }


def _price_columns(line: ChargeLine) -> dict[str, str]:
    """The pricing and consumption columns of a line (an adjustment has no price: its list
    and contracted cost are its amount)."""
    pricing = _pricing(line)
    if pricing is None:
        amount = money(line.amount)
        return {"ConsumedQuantity": "", "ConsumedUnit": "", "ContractedCost": amount,
                "ContractedUnitPrice": "", "ListCost": amount, "ListUnitPrice": "",
                "PricingCategory": "", "PricingQuantity": "", "PricingUnit": ""}
    pq, unit, price = pricing
    # A whole number is written with a fraction ("21.0"): readers that infer column types
    # from CSV would otherwise take the column as integer, not Decimal.
    pricing_quantity, unit_price = fractional(quantity(pq)), quantity(price)
    # ListCost = ListUnitPrice x PricingQuantity exactly (FOCUS); it differs from the amount
    # only by the rounding of the amount to the cent.
    list_cost = money(price * pq)
    usage = CHARGE_CATEGORY[line.kind] == "Usage"
    return {"ConsumedQuantity": pricing_quantity if usage else "",
            "ConsumedUnit": unit if usage else "", "ContractedCost": list_cost,
            "ContractedUnitPrice": unit_price, "ListCost": list_cost,
            "ListUnitPrice": unit_price, "PricingCategory": "Standard",
            "PricingQuantity": pricing_quantity, "PricingUnit": unit}


def _custom_columns(line: ChargeLine) -> dict[str, str]:
    """The x_ columns: what the line is and where its cost came from."""
    return {
        "x_LineId": line.id,
        "x_Kind": line.kind.value,
        "x_Source": line.source,
        "x_Share": text(line.share),
        "x_Path": PATH_SEPARATOR.join(line.path),
        "x_Driver": line.driver.value if line.driver is not None else "",
        "x_Pool": text(line.pool),
        "x_RateVersion": text(line.rate_version),
        "x_Adjusts": text(line.adjusts),
        "x_CorrectsLine": text(line.corrects_line),
        "x_SubscriptionId": text(line.subscription_id),
        "x_CatalogueItem": text(line.item_id),
        "x_Invoiced": "true" if line.invoiced else "false",
        "x_ServiceId": text(line.service_id),
        "x_ServiceName": text(line.service_name),
        "x_Recovery": text(line.recovery),
    }


def per_resource(line: ChargeLine) -> Iterator[ChargeLine]:
    """A usage line summing several CIs as one line per CI, each with its own amount,
    quantity reaching the payer, unit price and path (they add up to the line); any other
    line as it is."""
    if not line.holders or line.holders[0].amount is None:
        yield line
        return
    for h in line.holders:
        reach = Fraction(h.reaching)
        q = h.quantity if reach == 1 else _six_places(Fraction(h.quantity) * reach)
        yield line.model_copy(update={
            "amount": h.amount, "quantity": q, "unit_price": h.unit_price, "ci_id": h.id,
            "ci_name": h.name, "ci_class": h.ci_class, "share": h.reaching,
            "path": list(h.path), "holders": []})


def _six_places(f: Fraction) -> Decimal:
    exact = Decimal(f.numerator) / Decimal(f.denominator)
    return exact if exact == exact.quantize(SIX_PLACES) else exact.quantize(SIX_PLACES)


def focus_rows(period: Period, lines: Iterable[ChargeLine], cost_centre_names: Mapping[str, str],
               provider: str = "CMDB internal IT") -> Iterator[dict[str, str]]:
    """The FOCUS 1.2 cost and usage dataset of a period: one row per charge line, and per CI
    for a usage line of several CIs (FOCUS rows are per resource; ``x_LineId`` names the
    line they add up to)."""
    for line in lines:
        for one in per_resource(line):
            yield focus_row(period, one, cost_centre_names, provider)
