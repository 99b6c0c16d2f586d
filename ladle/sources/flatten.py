"""Turn nested records into flat columns: objects become ``parent__child``, lists JSON text.

Destinations take flat tables, so nesting is resolved here, once, for every file
format. A field is typed over the whole batch, never from its first rows:

- an object in every record that has the field: its keys become columns (an empty
  object contributes none);
- a list (of anything): compact JSON text, ``["x","y"]``;
- booleans, or strings: that type; numbers: see below;
- anything else (an integer here, a string there; an object here, a string there):
  text, with the non-strings JSON-encoded (``123`` -> ``"123"``, ``true`` -> ``"true"``).

How numbers are read: from their text, exactly; never through a binary float unless
the value survives one. A number is *exact in a double* when it is an integer of at
most 2**53 in size, or when its value equals the shortest spelling of the nearest
double (``1.5``, ``0.1``, ``2.5e-3``; not ``0.10000000000000001``, ``9007199254740993.0``
nor ``2**64``, which a double holds but prints as ``1.8446744073709552e+19``): the
number reads back the same from the double. Per column, over the batch:

1. integers only, all within Int64: ``Int64`` (``bigint``);
2. integers only, some beyond Int64, none over 38 digits: ``Decimal(38, 0)``;
3. any fraction or exponent, every value exact in a double: ``Float64`` (``double``);
4. otherwise, when every value fits 38 digits with the largest scale seen ``s``:
   ``Decimal(38, s)`` (``2**62 + 1`` beside ``1.5`` gives ``decimal(38,1)``);
5. otherwise: exact text, the number as written (``1E+400``: Python's decimal spelling,
   which keeps every digit and writes the exponent as ``E+``/``E-``).

``NaN`` and ``Infinity`` are not JSON; the readers refuse them. Across batches the
destinations widen an undeclared column's table type the same way (see
:mod:`ladle.destinations.evolve`).

Column names are kept as the data spells them; the pipeline normalizes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl
from polars.datatypes import DataTypeClass

from ladle.batch import json_text
from ladle.schema import (
    INT64,
    MAX_DIGITS,
    WIDE_INTEGERS,
    decimal_shape,
    exact_in_double,
    wide_integers,
)

SEPARATOR = "__"
"""Joins the keys of a nested field into one column name."""


class ColumnClash(Exception):
    """Two fields flatten to the same column name (a key ``a__b`` and a nested ``a`` -> ``b``)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"two fields flatten to the column {name!r} (a key with {SEPARATOR!r} in its name "
            "and a nested object); rename one of them in the data"
        )
        self.name = name


MAX_COLUMNS = 1600
"""The most columns a batch may flatten to: PostgreSQL's limit on a table's columns."""


class TooManyColumns(ColumnClash):
    """The records flatten to more columns than a table holds: their keys are data (ids,
    dates), and a frame of them would take memory in proportion to columns x rows."""

    def __init__(self, count: int | None = None) -> None:
        found = f"{count:,} distinct fields" if count is not None else "more distinct fields"
        Exception.__init__(
            self,
            f"the records hold {found} (nested ones counted) than the {MAX_COLUMNS:,} "
            "columns a table may have; keys that are data (ids, dates) belong in values: "
            "declare such a field `type: json` to keep it whole",
        )
        self.name = ""


def to_json_text(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is: the one spelling of nested values in a column.

    Exact numbers (``Decimal``, as the JSON readers give them) keep every digit.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        return _json_with_decimals(value)


def _json_with_decimals(value: Any) -> str:
    # json.dumps has no hook that writes a raw number; Decimal's str is valid JSON.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        items = (f"{to_json_text(str(k))}:{_json_with_decimals(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_with_decimals(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# Numbers


def number_series(name: str, values: Sequence[Any]) -> pl.Series:
    """A column of numbers (int, float, Decimal or None) typed by the rule in the module doc."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, int) for v in present):
        if not present or (INT64[0] <= min(present) and max(present) <= INT64[1]):
            return pl.Series(name, values, dtype=pl.Int64)
    elif all(exact_in_double(v) for v in present):
        return pl.Series(name, [None if v is None else float(v) for v in values], pl.Float64)
    scale = fitting_scale(present)
    if scale is not None:
        exact = [None if v is None else _as_decimal(v) for v in values]
        return pl.Series(name, exact, dtype=pl.Decimal(MAX_DIGITS, scale))
    return pl.Series(name, [None if v is None else number_text(v) for v in values], pl.String)


def fitting_scale(numbers: Iterable[int | float | Decimal]) -> int | None:
    """The largest scale among ``numbers`` if all fit ``decimal(38, scale)``; else None."""
    whole, scale = 0, 0
    for value in numbers:
        digits, places = decimal_shape(value)
        whole, scale = max(whole, digits), max(scale, places)
    return scale if whole + scale <= MAX_DIGITS else None


def number_text(value: int | float | Decimal) -> str:
    """A number as exact text: integers and decimals digit for digit, floats as repr."""
    return repr(value) if isinstance(value, float) else str(value)


def _as_decimal(value: int | float | Decimal) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


# ---------------------------------------------------------------------------------------
# Records already in Python: JSON documents and the per-line road of JSONL.


def records_to_frame(
    records: Sequence[Mapping[str, Any]], *, whole: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """A flat frame with one row per record, typed over the whole batch (see module doc).

    Top-level fields named in ``whole`` (declared ``type: json``) are not flattened: each
    value becomes one compact JSON text.
    """
    columns: dict[str, pl.Series] = {}
    rest = [{k: v for k, v in r.items() if k not in whole} for r in records] if whole else records
    _add_objects(columns, (), list(rest))
    for key in dict.fromkeys(k for r in records for k in r if k in whole):
        values = [None if r.get(key) is None else to_json_text(r[key]) for r in records]
        columns[key] = pl.Series(key, values, dtype=pl.String)
    if not columns:
        return pl.DataFrame(height=len(records))
    return frame_of(list(columns.values()))


def frame_of(series: list[pl.Series]) -> pl.DataFrame:
    """A frame of these columns, each keeping its name: ``pl.DataFrame([...])`` renames a
    series named ``""`` to ``column_<index>``, a name that would depend on its position."""
    frame = pl.DataFrame(series)
    frame.columns = [s.name for s in series]
    return frame


def _add_objects(columns: dict[str, pl.Series], path: tuple[str, ...], objects: list[Any]) -> None:
    keys = dict.fromkeys(key for obj in objects if obj is not None for key in obj)
    for key in keys:
        values = [None if obj is None else obj.get(key) for obj in objects]
        _add_values(columns, (*path, key), values)


def _add_values(columns: dict[str, pl.Series], path: tuple[str, ...], values: list[Any]) -> None:
    kinds = {type(value) for value in values if value is not None}
    if kinds == {dict}:
        _add_objects(columns, path, values)
        return
    name = SEPARATOR.join(path)
    if name in columns:
        raise ColumnClash(name)
    if len(columns) >= MAX_COLUMNS:
        raise TooManyColumns()
    columns[name] = _series(name, kinds, values)


def _series(name: str, kinds: set[type], values: list[Any]) -> pl.Series:
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int, float, Decimal} and kinds:
        return number_series(name, values)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    texts = [v if v is None or isinstance(v, str) else to_json_text(v) for v in values]
    return pl.Series(name, texts, dtype=pl.String)


# ---------------------------------------------------------------------------------------
# Frames whose nesting came from Arrow: Parquet, and the vectorized road of JSONL.


@dataclass(frozen=True)
class Leaf:
    """A column of the flat frame: the keys leading to it, and its values as Arrow typed them."""

    path: tuple[str, ...]
    values: pl.Series

    @property
    def name(self) -> str:
        """The flat column name, ``parent__child``."""
        return SEPARATOR.join(self.path)


# Leaves are reached through Series, never through pl.col(name): a key from the data may
# be "*" or "^...$", which expressions would read as a wildcard or a regex.


def leaves(frame: pl.DataFrame) -> list[Leaf]:
    """Every non-struct field, depth first; an empty struct has none. Raises ColumnClash
    (TooManyColumns past :data:`MAX_COLUMNS`)."""
    count = sum(leaf_count(dtype) for dtype in frame.schema.values())
    if count > MAX_COLUMNS:
        raise TooManyColumns(count)
    found: list[Leaf] = []
    for series in frame.get_columns():
        _collect_leaves(found, (series.name,), series)
    names = [leaf.name for leaf in found]
    if len(set(names)) != len(names):
        raise ColumnClash(next(name for name in names if names.count(name) > 1))
    return found


def leaf_count(dtype: pl.DataType | DataTypeClass) -> int:
    """How many flat columns a value of ``dtype`` becomes (a struct: its leaves)."""
    if isinstance(dtype, pl.Struct):
        return sum(leaf_count(field.dtype) for field in dtype.fields)
    return 1


def leaf_names(schema: pl.Schema) -> set[str]:
    """The flat column names a frame of ``schema`` becomes, read off the schema alone."""
    names: set[str] = set()

    def walk(path: str, dtype: pl.DataType | DataTypeClass) -> None:
        if isinstance(dtype, pl.Struct):
            for fld in dtype.fields:
                walk(f"{path}{SEPARATOR}{fld.name}", fld.dtype)
        else:
            names.add(path)

    for name, dtype in schema.items():
        walk(name, dtype)
    return names


def _collect_leaves(found: list[Leaf], path: tuple[str, ...], series: pl.Series) -> None:
    if isinstance(series.dtype, pl.Struct):
        for child in series.struct.unnest().get_columns():
            _collect_leaves(found, (*path, child.name), child)
    else:
        found.append(Leaf(path, series))


def flat_series(leaf: Leaf) -> pl.Series:
    """The leaf as a flat column: lists as JSON text, all-null columns as text, integers
    wider than Int64 as ``Decimal(38, 0)`` (or exact text beyond 38 digits)."""
    values = leaf.values
    if isinstance(values.dtype, pl.List | pl.Array):
        values = list_to_json(values)
    elif isinstance(values.dtype, pl.Null):
        values = values.cast(pl.String)
    elif isinstance(values.dtype, WIDE_INTEGERS):
        values = wide_integers(values)
    return values.alias(leaf.name)


def list_to_json(values: pl.Series) -> pl.Series:
    """Encode a list column as compact JSON text, vectorized; a null list stays null."""
    return values.to_frame("v").select(json_text(pl.col("v"))).to_series()


def flatten_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Unnest struct columns into ``parent__child`` columns and encode lists as JSON text."""
    found = leaves(frame)
    if not found:
        return pl.DataFrame(height=frame.height)
    return frame_of([flat_series(leaf) for leaf in found])
