"""Exports of charge lines: a plain CSV for finance tools (here) and the FinOps FOCUS 1.2 cost
and usage dataset (``focus``). Pure functions over the models: the callers (REST endpoints, the
CLI) read the lines and stream the rows out with :func:`write_csv`. Every cell goes out through
:class:`CsvWriter`, which keeps a spreadsheet from running text as a formula (CSV injection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import UnionType
from typing import IO, Protocol, Union, get_args, get_origin

from pydantic import BaseModel

from cmdb.chargeback.models import CENT, ChargeLine, PoolHolder

PATH_SEPARATOR = " > "


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


def fractional(text: str) -> str:
    """A number's text with a fraction ("21" -> "21.0")."""
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


def text(value: object) -> str:
    """A cell's text ("" for None)."""
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

    def write_rows(self, rows: Iterable[Sequence[str]]) -> int:
        count = 0
        for row in rows:
            self._write(self.cells(row))
            count += 1
        return count


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
    return writer.write_rows(rows)


def write_dict_csv(header: Sequence[str], rows: Iterable[Mapping[str, str]],
                   stream: IO[str]) -> int:
    """Write rows keyed by column (as ``focus.focus_rows`` makes them) in the header's
    order."""
    return write_csv(header, ([row.get(column, "") for column in header] for row in rows), stream)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]], *,
             with_header: bool = True) -> str:
    """Rows (and the header) as CSV text through :class:`CsvWriter`, for a response piece."""
    buffer = _Buffer()
    writer = CsvWriter(header, buffer)
    if with_header:
        writer.write_header()
    writer.write_rows(rows)
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


# The FOCUS dataset's (``focus``) number columns.
FOCUS_NUMERIC_COLUMNS: frozenset[str] = frozenset({
    "BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "ListCost", "ListUnitPrice", "PricingQuantity", "x_RateVersion",
})

# The columns of the product's CSV exports whose cells are numbers; every other cell is text
# (see CsvWriter). Dates and times are text: they begin with a digit.
NUMERIC_COLUMNS: frozenset[str] = LINE_CSV_NUMERIC_COLUMNS | FOCUS_NUMERIC_COLUMNS
