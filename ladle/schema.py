"""Column types, name normalization and the type map shared by destinations.

A pipeline file names types in ladle's words (``bigint``, ``timestamptz``,
``decimal(12,2)``); this module turns them into Polars dtypes for casting and into
each destination's SQL type, and maps inferred Polars dtypes back to ladle types.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
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


MAX_NAME_BYTES = 63
"""The longest table or column name, in UTF-8 bytes: PostgreSQL cuts longer identifiers
(so two long names could become one). ladle shortens them itself, by the same rule on
every destination, so DuckDB and PostgreSQL give a pipeline the same names."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_UNDERSCORES = re.compile(r"_+")
_HASH_LENGTH = 6
# Latin letters that NFKD leaves whole (they are not a base letter plus an accent).
_LETTERS = str.maketrans(
    {
        "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
        "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
        "\u0131": "i", "ŋ": "ng", "Ŋ": "NG", "ħ": "h", "Ħ": "H",
    }
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def normalize_name(name: str) -> str:
    """The stored name of a table or column from the data: ``TKT-Ticket ID`` -> ``tkt_ticket_id``.

    :func:`snake_case`, then :func:`fit_name`: the result is at most
    :data:`MAX_NAME_BYTES` long, and normalizing it again changes nothing.
    """
    return fit_name(snake_case(name))


def snake_case(name: str) -> str:
    """snake_case a name, at any length: ``Unità di misura`` -> ``unita_di_misura``.

    Accented Latin letters lose their accents (``città`` -> ``citta``, ``Straße`` ->
    ``strasse``); letters of scripts that do not transliterate (``名前``, ``имя``) are kept.
    Double underscores (the flattening separator) are kept. A name that would start with a
    digit gets a leading underscore; one with no letter or digit at all becomes ``column_``
    and a hash of it, so two such names do not collide.
    """
    parts = []
    for part in name.split("__"):
        words = "".join(_word_char(c) for c in unicodedata.normalize("NFC", part))
        snake = _UNDERSCORES.sub("_", _CAMEL.sub("_", words)).strip("_").lower()
        if snake:
            parts.append(snake)
    if not parts:
        return f"column_{_digest(name)}"
    result = "__".join(parts)
    return f"_{result}" if result[0].isdigit() else result


def _word_char(char: str) -> str:
    """One character of a name: ASCII as is, accented Latin without its accent, a letter or
    digit of another script as is, anything else (space, punctuation, NUL) an underscore."""
    if char.isascii():
        return char if char.isalnum() else "_"
    if "\u0300" <= char <= "\u036f":
        return ""  # an accent NFC could not join to its letter (x + U+0301)
    plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if plain.isascii() and plain.isalnum():
        return plain  # é -> e, ﬁ -> fi, full-width letters -> ASCII
    if char.translate(_LETTERS) != char:
        return char.translate(_LETTERS)
    if char.isalnum() or unicodedata.category(char).startswith("M"):
        return char  # another script: its vowel signs and marks are part of the word
    return "_"


def fit_name(name: str) -> str:
    """``name`` if it is at most :data:`MAX_NAME_BYTES` long, else a prefix of it, ``_`` and
    six hex digits of its SHA-256: deterministic, and two long names stay two names."""
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    keep = MAX_NAME_BYTES - _HASH_LENGTH - 1
    # errors="ignore" drops a character the cut went through the middle of.
    prefix = encoded[:keep].decode(errors="ignore").rstrip("_")
    return f"{prefix}_{_digest(name)}"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]


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
