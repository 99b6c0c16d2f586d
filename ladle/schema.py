"""Column types, name normalization and the type map shared by destinations.

A pipeline file names types in ladle's words (``bigint``, ``timestamptz``,
``decimal(12,2)``); this module turns them into Polars dtypes for casting and into
each destination's SQL type, and maps inferred Polars dtypes back to ladle types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
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
    Kind.INT: {Kind.BIGINT, Kind.DOUBLE, Kind.DECIMAL},
    Kind.BIGINT: {Kind.DOUBLE, Kind.DECIMAL},
    Kind.DATE: {Kind.TIMESTAMP, Kind.TIMESTAMPTZ},
    Kind.TEXT: {Kind.JSON},
}


def fits(new: ColumnType, existing: ColumnType) -> bool:
    """Whether values of type ``new`` load into a column of type ``existing`` without loss.

    Anything fits a text column (it is written as text); a narrower number fits a wider
    one. Everything else is a :class:`~ladle.errors.SchemaConflict`.
    """
    if new.kind is existing.kind or existing.kind is Kind.TEXT:
        return True
    return existing.kind in _WIDENS_TO.get(new.kind, set())


@dataclass(frozen=True)
class TableDef:
    """A table ladle itself owns (ledger, quarantine, state), defined once for every destination."""

    name: str
    columns: tuple[tuple[str, ColumnType], ...]
    primary_key: tuple[str, ...] = ()
