"""Column types, name normalization and the type map shared by destinations.

A pipeline file names types in ladle's words (``bigint``, ``timestamptz``,
``decimal(12,2)``); this module turns them into Polars dtypes for casting and into
each destination's SQL type, and maps inferred Polars dtypes back to ladle types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

import polars as pl


class Kind(StrEnum):
    """The column types a pipeline file may declare."""

    TEXT = "text"
    INT = "int"
    BIGINT = "bigint"
    DOUBLE = "double"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    JSON = "json"


_ALIASES = {
    "string": Kind.TEXT,
    "varchar": Kind.TEXT,
    "integer": Kind.INT,
    "int4": Kind.INT,
    "int8": Kind.BIGINT,
    "long": Kind.BIGINT,
    "float": Kind.DOUBLE,
    "float8": Kind.DOUBLE,
    "numeric": Kind.DECIMAL,
    "boolean": Kind.BOOL,
    "datetime": Kind.TIMESTAMP,
    "jsonb": Kind.JSON,
}
_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
DEFAULT_DECIMAL = (38, 9)


@dataclass(frozen=True)
class ColumnType:
    """A declared or inferred column type; decimal carries precision and scale."""

    kind: Kind
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.kind is Kind.DECIMAL:
            return f"decimal({self.precision},{self.scale})"
        return self.kind.value

    @property
    def polars(self) -> pl.DataType:
        """The Polars dtype a batch column of this type has after casting."""
        return _POLARS[self.kind](self)

    @property
    def duckdb(self) -> str:
        """The DuckDB SQL type of a table column of this type."""
        if self.kind is Kind.DECIMAL:
            return f"DECIMAL({self.precision},{self.scale})"
        return _DUCKDB[self.kind]

    @property
    def postgres(self) -> str:
        """The PostgreSQL SQL type of a table column of this type."""
        if self.kind is Kind.DECIMAL:
            return f"numeric({self.precision},{self.scale})"
        return _POSTGRES[self.kind]


_POLARS: dict[Kind, Callable[[ColumnType], pl.DataType]] = {
    Kind.TEXT: lambda t: pl.String(),
    Kind.INT: lambda t: pl.Int32(),
    Kind.BIGINT: lambda t: pl.Int64(),
    Kind.DOUBLE: lambda t: pl.Float64(),
    Kind.DECIMAL: lambda t: pl.Decimal(t.precision, t.scale or 0),
    Kind.BOOL: lambda t: pl.Boolean(),
    Kind.DATE: lambda t: pl.Date(),
    Kind.TIMESTAMP: lambda t: pl.Datetime("us"),
    Kind.TIMESTAMPTZ: lambda t: pl.Datetime("us", "UTC"),
    Kind.JSON: lambda t: pl.String(),
}
_DUCKDB = {
    Kind.TEXT: "VARCHAR",
    Kind.INT: "INTEGER",
    Kind.BIGINT: "BIGINT",
    Kind.DOUBLE: "DOUBLE",
    Kind.BOOL: "BOOLEAN",
    Kind.DATE: "DATE",
    Kind.TIMESTAMP: "TIMESTAMP",
    Kind.TIMESTAMPTZ: "TIMESTAMPTZ",
    Kind.JSON: "JSON",
}
_POSTGRES = {
    Kind.TEXT: "text",
    Kind.INT: "integer",
    Kind.BIGINT: "bigint",
    Kind.DOUBLE: "double precision",
    Kind.BOOL: "boolean",
    Kind.DATE: "date",
    Kind.TIMESTAMP: "timestamp",
    Kind.TIMESTAMPTZ: "timestamptz",
    Kind.JSON: "jsonb",
}


def parse_type(text: str) -> ColumnType:
    """Parse a declared type (``bigint``, ``decimal(12,2)``); ValueError if unknown."""
    name = text.strip().lower()
    match = _DECIMAL.match(name)
    if match:
        precision = int(match.group(1))
        scale = int(match.group(2) or 0)
        if not 1 <= precision <= 38 or scale > precision:  # noqa: PLR2004 - DuckDB's decimal limit
            raise ValueError(
                f"decimal precision must be 1..38 and scale <= precision, got {text!r}"
            )
        return ColumnType(Kind.DECIMAL, precision, scale)
    if name in _ALIASES:
        kind = _ALIASES[name]
    else:
        try:
            kind = Kind(name)
        except ValueError:
            known = ", ".join(k.value for k in Kind)
            raise ValueError(f"unknown type {text!r}; use one of {known}") from None
    if kind is Kind.DECIMAL:
        return ColumnType(kind, *DEFAULT_DECIMAL)
    return ColumnType(kind)


def infer_type(dtype: pl.DataType) -> ColumnType:
    """The ladle type for a column whose type came from the data rather than a declaration."""
    if isinstance(dtype, pl.Decimal):
        return ColumnType(Kind.DECIMAL, dtype.precision or DEFAULT_DECIMAL[0], dtype.scale)
    if isinstance(dtype, pl.Datetime):
        return ColumnType(Kind.TIMESTAMPTZ if dtype.time_zone else Kind.TIMESTAMP)
    if isinstance(dtype, pl.Int128 | pl.UInt64 | pl.UInt128):
        return ColumnType(Kind.DECIMAL, DEFAULT_DECIMAL[0], 0)  # beyond bigint's range
    kind = (
        Kind.BIGINT if dtype.is_integer()
        else Kind.DOUBLE if dtype.is_float()
        else Kind.BOOL if isinstance(dtype, pl.Boolean)
        else Kind.DATE if isinstance(dtype, pl.Date)
        else Kind.JSON if isinstance(dtype, pl.List | pl.Array | pl.Struct)
        else Kind.TEXT
    )  # fmt: skip
    return ColumnType(kind)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def normalize_name(name: str) -> str:
    """snake_case a name from the data: ``TKT-Ticket ID`` -> ``tkt_ticket_id``.

    Double underscores (the flattening separator) are kept. A name that would start
    with a digit gets a leading underscore; an empty one becomes ``_``.
    """
    parts = name.split("__")
    cleaned = []
    for part in parts:
        snake = _NON_WORD.sub("_", _CAMEL.sub("_", part)).strip("_").lower()
        cleaned.append(snake)
    result = "__".join(p for p in cleaned if p) or "_"
    return f"_{result}" if result[0].isdigit() else result


def quote(name: str) -> str:
    """Quote an identifier for DuckDB or PostgreSQL: a name from data can never inject SQL."""
    return '"' + name.replace('"', '""') + '"'


_WIDENS_TO: dict[Kind, set[Kind]] = {
    Kind.INT: {Kind.BIGINT, Kind.DOUBLE},
    Kind.DATE: {Kind.TIMESTAMP, Kind.TIMESTAMPTZ},
    Kind.TEXT: {Kind.JSON},
}
_WHOLE_DIGITS = {Kind.INT: 10, Kind.BIGINT: 19}
"""Digits an integer type's values may have: what a decimal must hold for them."""

NUMBERS = frozenset({Kind.INT, Kind.BIGINT, Kind.DOUBLE, Kind.DECIMAL})


def fits(new: ColumnType, existing: ColumnType) -> bool:
    """Whether every value of type ``new`` loads into a column of type ``existing`` exactly.

    Anything fits a text column (it is written as text); an integer fits a wider integer,
    a decimal with room for its digits, or (``int`` only) a double; a decimal fits one
    with as many digits on each side of the point. ``bigint`` does not fit ``double``
    (2**53 + 1 has no double). When the types say no, the values may still fit: see
    :func:`ladle.destinations.evolve.evolve`.
    """
    if existing.kind is Kind.TEXT:
        return True
    if existing.kind is Kind.DECIMAL and new.kind in (Kind.INT, Kind.BIGINT, Kind.DECIMAL):
        whole, scale = decimal_room(new)
        return whole <= decimal_room(existing)[0] and scale <= decimal_room(existing)[1]
    if new.kind is existing.kind:
        return True
    return existing.kind in _WIDENS_TO.get(new.kind, set())


def decimal_room(kind: ColumnType) -> tuple[int, int]:
    """Digits before and after the point that values of an integer or decimal type may have."""
    if kind.kind is Kind.DECIMAL:
        precision = kind.precision or DEFAULT_DECIMAL[0]
        scale = kind.scale or 0
        return (precision - scale, scale)
    return (_WHOLE_DIGITS[kind.kind], 0)


# ---------------------------------------------------------------------------------------
# Numbers: what a double, a bigint and a decimal hold exactly (see ladle.sources.flatten)

INT64 = (-(2**63), 2**63 - 1)
MAX_DIGITS = 38
"""The widest decimal both destinations hold (DuckDB's limit); wider numbers are text."""
_DOUBLE_EXACT = 2**53
"""Every integer up to this size is exact in a double."""


def exact_in_double(value: int | float | Decimal) -> bool:
    """Whether a double holds this number as the data wrote it (see module doc)."""
    if isinstance(value, float):
        return True
    if isinstance(value, int):
        if -_DOUBLE_EXACT <= value <= _DOUBLE_EXACT:
            return True
        value = Decimal(value)
    if not value.is_finite():
        return False
    # Exact means the double *reads back* as the number: 2**64 is a double, but one that
    # prints as 1.8446744073709552e+19, so it is not exact here.
    nearest = float(value)  # beyond a double's range: inf, not an error
    return math.isfinite(nearest) and Decimal(repr(nearest)) == value


def decimal_shape(value: int | float | Decimal) -> tuple[int, int]:
    """Digits before the point and after it (the scale), as written: ``12.50`` -> (2, 2)."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return (MAX_DIGITS + 1, 0)
    exponent = int(number.as_tuple().exponent)
    scale = max(0, -exponent)
    whole = max(0, number.adjusted() + 1) if number else 0
    return (whole, scale)


WIDE_INTEGERS = (pl.Int128, pl.UInt64, pl.UInt128)
"""Integer dtypes that may hold values beyond Int64, which no destination column holds."""


def wide_integers(values: pl.Series) -> pl.Series:
    """Int64 when every value fits, else ``Decimal(38, 0)``, else exact text."""
    low, high = values.min(), values.max()
    if low is None or (INT64[0] <= low and high <= INT64[1]):  # type: ignore[operator]
        return values.cast(pl.Int64)
    if max(abs(low), abs(high)) < 10**MAX_DIGITS:  # type: ignore[arg-type]
        return values.cast(pl.Decimal(MAX_DIGITS, 0))
    return values.cast(pl.String)


@dataclass(frozen=True)
class TableDef:
    """A table ladle itself owns (ledger, quarantine, state), defined once for every destination."""

    name: str
    columns: tuple[tuple[str, ColumnType], ...]
    primary_key: tuple[str, ...] = ()
