"""Exports of charge lines: a plain CSV for finance tools and the FinOps FOCUS 1.2 cost and usage
dataset. Pure functions over the models: the callers (REST endpoints, the CLI) read the lines and
stream the rows out with :func:`write_csv`. Every cell goes out through :class:`CsvWriter`,
which keeps a spreadsheet from running text as a formula (CSV injection).

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from types import UnionType
from typing import IO, Protocol, Union, get_args, get_origin

from pydantic import BaseModel

from cmdb.chargeback.models import CENT, ChargeLine, Driver, LineKind, Period, PoolHolder

PATH_SEPARATOR = " > "
UNALLOCATED_ACCOUNT_ID = "UNALLOCATED"
UNALLOCATED_ACCOUNT_NAME = "Unallocated"
SHARED_SERVICE_NAME = "Shared infrastructure"
ADJUSTMENTS_SERVICE_NAME = "Adjustments"
TAG_PREFIX = "cmdb/"  # provider-defined tag keys carry the provider's prefix (FOCUS Tags)
UNIT_PRICE_PLACES = Decimal("1e-10")  # a unit price derived by division, when it does not end
SIX_PLACES = Decimal("0.000001")  # a CI's share of a quantity, when it does not end


# --- helpers -----------------------------------------------------------------------------------


def _decimal(value: Decimal) -> str:
    """Plain decimal text: no exponent, no sign on zero, trailing zeros of the fraction kept."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value == 0:
        value = abs(value)
    return format(value, "f")


def money(value: Decimal) -> str:
    """A money amount as decimal text with two decimals, or more when they are not zeros:
    ("0.10", "-12.00", "9.0180225")."""
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        return _decimal(value.quantize(CENT))
    return _decimal(value.normalize())


def quantity(value: Decimal) -> str:
    """A quantity or unit price as the shortest exact decimal text ("730.5", "0.012", "3")."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        normal = normal.quantize(Decimal(1))
    return _decimal(normal)


def _fractional(text: str) -> str:
    return text if "." in text else text + ".0"


def utc_text(at: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second: ``2026-11-01T00:00:00Z`` (FOCUS DateTimeFormat)."""
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no time zone")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_utc(at: datetime) -> str:
    """ISO 8601 in UTC with a Z, keeping fractions of a second when there are any."""
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no time zone")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _text(value: object) -> str:
    return "" if value is None else str(value)


# --- spreadsheet formulas ----------------------------------------------------------------------

# A spreadsheet opening a CSV runs a cell that begins with one of these as a formula (OWASP,
# "CSV Injection"); some also skip whitespace before it.
FORMULA_STARTS = frozenset("=+-@\t\r")
FORMULA_ESCAPE = "'"
_NUMBER = re.compile(r"-?\d+(\.\d+)?")  # the numbers money() and quantity() write


def formula_like(text: str) -> bool:
    """Whether a spreadsheet could take a text cell for a formula: it begins with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return, either right away or after whitespace."""
    if text[:1] in FORMULA_STARTS:
        return True
    rest = text.lstrip()
    return rest != text and rest[:1] in FORMULA_STARTS


def neutralise(text: str) -> str:
    """A text cell a spreadsheet shows as text and never runs: a single quote before a cell that
    is :func:`formula_like`, and before a cell that already begins with a quote, so that taking
    one leading quote off every text cell that has one always gives the text back."""
    if formula_like(text) or text.startswith(FORMULA_ESCAPE):
        return FORMULA_ESCAPE + text
    return text


def unneutralise(text: str) -> str:
    """The text a cell written by :func:`neutralise` stands for."""
    return text.removeprefix(FORMULA_ESCAPE)


def _numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a model that hold numbers (``Decimal`` or ``int``, possibly None)."""
    out = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        types = set(get_args(kind)) - {type(None)} if get_origin(kind) in (Union, UnionType) \
            else {kind}
        if types and types <= {Decimal, int}:
            out.add(name)
    return frozenset(out)


class Writable(Protocol):
    def write(self, text: str, /) -> object: ...


class CsvWriter:
    """Rows of an export under its header. The one place CSV cells are written: every cell is
    text and :func:`neutralise`-d, except a number in a column of :data:`NUMERIC_COLUMNS`
    (a credit's ``-12.00`` stays a number). A new column is therefore text unless it is named
    there; a cell of a numeric column that is not a plain number is treated as text."""

    def __init__(self, header: Sequence[str], stream: Writable) -> None:
        self.header = tuple(header)
        self._numeric = tuple(column in NUMERIC_COLUMNS for column in self.header)
        self._stream = stream

    def _write(self, cells: Iterable[str]) -> None:
        # RFC 4180 with "\n" line ends. Not csv.writer: with that line end it leaves a field
        # holding a lone carriage return unquoted, and readers then split the row there.
        self._stream.write(",".join(_field(cell) for cell in cells) + "\n")

    def write_header(self) -> None:
        self._write(self.header)

    def cells(self, row: Sequence[str]) -> list[str]:
        return [cell if numeric and _NUMBER.fullmatch(cell) else neutralise(cell)
                for numeric, cell in zip(self._numeric, row, strict=True)]

    def write_row(self, row: Sequence[str]) -> None:
        self._write(self.cells(row))


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _field(cell: str) -> str:
    """One CSV field: in double quotes (doubled inside) when it holds a comma, a quote or a
    line break."""
    if _NEEDS_QUOTES.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_csv(header: Sequence[str], rows: Iterable[Sequence[str]], stream: IO[str]) -> int:
    """Write a header and rows of text cells as CSV (``\\n`` line endings) through
    :class:`CsvWriter`; returns the rows."""
    writer = CsvWriter(header, stream)
    writer.write_header()
    count = 0
    for row in rows:
        writer.write_row(row)
        count += 1
    return count


def write_dict_csv(header: Sequence[str], rows: Iterable[Mapping[str, str]],
                   stream: IO[str]) -> int:
    """Write rows keyed by column (as :func:`focus_rows` makes them) in the header's order."""
    return write_csv(header, ([row.get(column, "") for column in header] for row in rows), stream)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]], *,
             with_header: bool = True) -> str:
    """Rows (and the header) as CSV text through :class:`CsvWriter`, for a response piece."""
    buffer = _Buffer()
    writer = CsvWriter(header, buffer)
    if with_header:
        writer.write_header()
    for row in rows:
        writer.write_row(row)
    return buffer.take()


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[str]],
               batch: int = 500) -> Iterator[str]:
    """CSV text in chunks of ``batch`` rows, for a streaming HTTP response."""
    buffer = _Buffer()
    writer = CsvWriter(header, buffer)
    writer.write_header()
    pending = 1
    for row in rows:
        writer.write_row(row)
        pending += 1
        if pending >= batch:
            yield buffer.take()
            pending = 0
    if pending:
        yield buffer.take()


class _Buffer:
    """The smallest writable the csv module needs, emptied by :meth:`take`."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        return text


# --- plain CSV of charge lines -----------------------------------------------------------------

LINE_CSV_COLUMNS: tuple[str, ...] = tuple(ChargeLine.model_fields)
# amount, quantity, unit price, seq, rate version: the line's number fields
LINE_CSV_NUMERIC_COLUMNS: frozenset[str] = _numeric_fields(ChargeLine)


def _line_cell(line: ChargeLine, field: str) -> str:
    value = getattr(line, field)
    if value is None:
        return ""
    if field == "amount":
        return money(value)
    if isinstance(value, Decimal):
        return quantity(value)
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if field == "holders":  # what a line sums, as a JSON array (empty: none)
        return json.dumps([_holder_json(h) for h in value], separators=(",", ":")) \
            if value else ""
    if isinstance(value, list):
        return PATH_SEPARATOR.join(value)
    return str(value)


def _holder_json(h: PoolHolder) -> dict[str, object]:
    out: dict[str, object] = {"id": h.id, "name": h.name, "class": h.ci_class,
                              "quantity": quantity(h.quantity), "reaching": h.reaching,
                              "share": h.share, "path": h.path}
    if h.amount is not None:
        out["amount"] = money(h.amount)
    if h.unit_price is not None:
        out["unitPrice"] = quantity(h.unit_price)
    return out


def line_csv_rows(lines: Iterable[ChargeLine]) -> Iterator[list[str]]:
    """One row per charge line, cells in :data:`LINE_CSV_COLUMNS` order."""
    for line in lines:
        yield [_line_cell(line, field) for field in LINE_CSV_COLUMNS]


# --- FOCUS 1.2 ---------------------------------------------------------------------------------

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
FOCUS_NUMERIC_COLUMNS: frozenset[str] = frozenset({
    "BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "ListCost", "ListUnitPrice", "PricingQuantity", "x_RateVersion",
})

# The columns of the product's CSV exports whose cells are numbers; every other cell is text
# (see CsvWriter). Dates and times are text: they begin with a digit.
NUMERIC_COLUMNS: frozenset[str] = LINE_CSV_NUMERIC_COLUMNS | FOCUS_NUMERIC_COLUMNS

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
    category = CHARGE_CATEGORY[kind]
    correction = line.adjusts is not None
    if line.cost_centre is None:
        account_id, account_name = UNALLOCATED_ACCOUNT_ID, UNALLOCATED_ACCOUNT_NAME
    else:
        account_id = line.cost_centre
        account_name = cost_centre_names.get(line.cost_centre, line.cost_centre)
    invoiced = line.invoiced and line.cost_centre is not None
    billed = line.amount if invoiced else Decimal(0)

    pricing = _pricing(line)
    if pricing is None:
        pricing_quantity = pricing_unit = unit_price = list_cost = ""
        consumed_quantity = consumed_unit = pricing_category = ""
    else:
        pq, unit, price = pricing
        # A whole number is written with a fraction ("21.0"): readers that infer column
        # types from CSV would otherwise take the column as integer, not Decimal.
        pricing_quantity, pricing_unit, unit_price = _fractional(quantity(pq)), unit, \
            quantity(price)
        # ListCost = ListUnitPrice x PricingQuantity exactly (FOCUS); it differs from the amount
        # only by the rounding of the amount to the cent.
        list_cost = money(price * pq)
        pricing_category = "Standard"
        if category == "Usage":
            consumed_quantity, consumed_unit = pricing_quantity, pricing_unit
        else:
            consumed_quantity = consumed_unit = ""
    if not list_cost:
        list_cost = money(line.amount)

    sku_id = line.meter or line.pool or line.item_id or line.source
    service_name, (svc_category, svc_subcategory) = offering(line)
    has_resource = line.ci_id is not None

    return {
        "BilledCost": money(billed),
        "BillingAccountId": account_id,
        "BillingAccountName": account_name,
        "BillingCurrency": line.currency,
        "BillingPeriodEnd": utc_text(period.end),
        "BillingPeriodStart": utc_text(period.start),
        "ChargeCategory": category,
        "ChargeClass": "Correction" if correction else "",
        "ChargeDescription": line.description,
        "ChargeFrequency": CHARGE_FREQUENCY[kind],
        "ChargePeriodEnd": utc_text(line.charge_end),
        "ChargePeriodStart": utc_text(line.charge_start),
        "ConsumedQuantity": consumed_quantity,
        "ConsumedUnit": consumed_unit,
        "ContractedCost": list_cost,
        "ContractedUnitPrice": unit_price,
        "EffectiveCost": money(line.amount),
        "InvoiceId": invoice_id(line.period, account_id) if invoiced else "",
        "InvoiceIssuerName": provider,
        "ListCost": list_cost,
        "ListUnitPrice": unit_price,
        "PricingCategory": pricing_category,
        "PricingQuantity": pricing_quantity,
        "PricingUnit": pricing_unit,
        "ProviderName": provider,
        "PublisherName": provider,
        "ResourceId": _text(line.ci_id),
        "ResourceName": _text(line.ci_name) if has_resource else "",
        "ResourceType": (line.ci_class or "ConfigurationItem") if has_resource else "",
        "ServiceCategory": svc_category,
        "ServiceName": service_name,
        "ServiceSubcategory": svc_subcategory,
        "SkuId": sku_id,
        "SkuMeter": _sku_meter(line),
        "SkuPriceDetails": "",
        "SkuPriceId": line.rate_card_id or sku_id,
        "SubAccountId": _text(line.user),
        "SubAccountName": _text(line.user),
        "Tags": _tags(line),
        "x_LineId": line.id,
        "x_Kind": kind.value,
        "x_Source": line.source,
        "x_Share": _text(line.share),
        "x_Path": PATH_SEPARATOR.join(line.path),
        "x_Driver": line.driver.value if line.driver is not None else "",
        "x_Pool": _text(line.pool),
        "x_RateVersion": _text(line.rate_version),
        "x_Adjusts": _text(line.adjusts),
        "x_CorrectsLine": _text(line.corrects_line),
        "x_SubscriptionId": _text(line.subscription_id),
        "x_CatalogueItem": _text(line.item_id),
        "x_Invoiced": "true" if line.invoiced else "false",
        "x_ServiceId": _text(line.service_id),
        "x_ServiceName": _text(line.service_name),
        "x_Recovery": _text(line.recovery),
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
