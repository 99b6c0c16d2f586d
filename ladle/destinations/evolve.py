"""Schema evolution shared by every destination: which type a batch column has, whether
its values fit the table that exists, and how an undeclared column's table type widens.

Declared types win over inferred ones, and never widen: a declared column whose values
do not fit the table raises SchemaConflict *before* the batch is written. A column whose
inferred type is unknown (all nulls) fits anything.

An undeclared column's table type widens, losslessly, to hold every value the data
brings (``ALTER TABLE … ALTER COLUMN … TYPE``, on the staging table too):

    int < bigint < decimal(38, s) < text        double < text

- integers or decimals beyond the table's: ``decimal(38, s)``, ``s`` the largest scale
  of the table and the batch, when the digits fit 38; else ``text``;
- doubles into an integer or decimal column: the same, with each double's digits as
  its shortest spelling gives them (``0.1`` has scale 1); else ``text``;
- into a ``double`` column, values that a double holds exactly (``2``, ``10**17``) load
  as they are; others widen it to ``text``, since a decimal would need the scale of
  every double already stored.

Only numbers widen a column: text arriving in a numeric column is a SchemaConflict, as
it is for any other type.

Existing values keep their value: the destinations convert doubles through their
shortest text, and before a decimal's scale grows they look up the widest value stored
(target and staging), so that a scale that would not leave it room gives ``text``.
Columns whose values fit the table by type cost nothing; otherwise the values are
checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from ladle.batch import SEQ
from ladle.errors import SchemaConflict
from ladle.schema import (
    MAX_DIGITS,
    NUMBERS,
    WIDE_INTEGERS,
    ColumnType,
    Kind,
    decimal_room,
    decimal_shape,
    exact_in_double,
    fits,
    infer_type,
    wide_integers,
)

TEXT = ColumnType(Kind.TEXT)
DOUBLE = ColumnType(Kind.DOUBLE)


def batch_types(
    frame: pl.DataFrame, declared: Mapping[str, ColumnType]
) -> dict[str, ColumnType | None]:
    """The type of each data column in ``frame``: declared, inferred, or None if all null.

    An inferred decimal gets 38 digits of precision (its scale from the data), so that a
    table made from it has room for the next batches' numbers.
    """
    types: dict[str, ColumnType | None] = {}
    for column, dtype in frame.schema.items():
        if column == SEQ:
            continue
        if column in declared:
            types[column] = declared[column]
        elif dtype == pl.Null:
            types[column] = None
        elif isinstance(dtype, WIDE_INTEGERS):
            types[column] = infer_type(wide_integers(frame.get_column(column)).dtype)
        else:
            types[column] = infer_type(dtype)
    return types


@dataclass
class Evolution:
    """What a batch needs of the table, and the batch made ready to load into it."""

    frame: pl.DataFrame
    added: dict[str, ColumnType] = field(default_factory=dict)
    """New columns, to add."""
    widened: dict[str, tuple[ColumnType, ColumnType]] = field(default_factory=dict)
    """Existing undeclared columns whose type must widen: (from, to)."""


def evolve(
    table: str,
    existing: Mapping[str, ColumnType],
    frame: pl.DataFrame,
    *,
    types: Mapping[str, ColumnType | None],
    declared: Mapping[str, ColumnType],
    stored_whole: Callable[[str], int],
) -> Evolution:
    """Plan the columns to add and widen for ``frame``; raise SchemaConflict for a declared
    column (or a non-numeric one) whose values do not fit, before anything is written.

    ``stored_whole(column)`` is how many digits before the point the widest value stored
    in a decimal column has (asked only when its scale must grow)."""
    plan = Evolution(frame)
    converted: list[pl.Series] = []
    for column, new in types.items():
        old = existing.get(column)
        values = frame.get_column(column)
        if isinstance(values.dtype, WIDE_INTEGERS):
            values = wide_integers(values)
        if old is None:
            plan.added[column] = new or TEXT
            target = new or TEXT
        elif new is None or fits(new, old) or _values_fit(values, old):
            target = old
        elif column in declared or not _can_widen(old, values):
            raise SchemaConflict(
                table=table, column=column, existing=str(old).upper(), new=str(new).upper()
            )
        else:
            stored = stored_whole(column) if old.kind is Kind.DECIMAL else None
            target = widen(old, values, stored_whole=stored)
            plan.widened[column] = (old, target)
        ready = loadable(values, target)
        if ready.dtype != frame.schema[column]:
            converted.append(ready)
    if converted:
        plan.frame = frame.with_columns(converted)
    return plan


def _can_widen(old: ColumnType, values: pl.Series) -> bool:
    return old.kind in NUMBERS and values.dtype.is_numeric()


def widen(old: ColumnType, values: pl.Series, *, stored_whole: int | None = None) -> ColumnType:
    """The narrowest type that holds the numbers of ``old`` and ``values`` (module doc);
    for a decimal column, ``stored_whole`` digits before the point are already in use."""
    if old.kind is Kind.DOUBLE:
        return TEXT
    whole, scale = decimal_room(old)
    if old.kind is Kind.DECIMAL and stored_whole is not None:
        whole = stored_whole
    shape = _shape(values)
    if shape is None:
        return TEXT
    whole, scale = max(whole, shape[0]), max(scale, shape[1])
    if whole + scale > MAX_DIGITS:
        return TEXT
    return ColumnType(Kind.DECIMAL, MAX_DIGITS, scale)


def _values_fit(values: pl.Series, kind: ColumnType) -> bool:
    """Whether these numbers load into a column of ``kind`` exactly, value by value."""
    if not values.dtype.is_numeric() or kind.kind not in NUMBERS:
        return False
    present = values.drop_nulls()
    if present.is_empty():
        return True
    if kind.kind is Kind.DOUBLE:
        return values.dtype.is_float() or all(exact_in_double(v) for v in _numbers(present))
    if kind.kind in (Kind.INT, Kind.BIGINT):
        limit = _WHOLE_LIMIT[kind.kind]
        low, high = present.min(), present.max()
        return values.dtype.is_integer() and -limit <= low and high < limit  # type: ignore[operator]
    shape = _shape(present)
    room = decimal_room(kind)
    return shape is not None and shape[0] <= room[0] and shape[1] <= room[1]


_WHOLE_LIMIT = {Kind.INT: 2**31, Kind.BIGINT: 2**63}


def _shape(values: pl.Series) -> tuple[int, int] | None:
    """Digits before and after the point the numbers need; None if one has no decimal."""
    present = values.drop_nulls()
    if present.is_empty():
        return (0, 0)
    if values.dtype.is_integer():
        low, high = present.min(), present.max()
        return (max(len(str(abs(int(low)))), len(str(abs(int(high))))), 0)  # type: ignore[arg-type]
    if values.dtype.is_float() and not present.is_finite().all():
        return None  # NaN and infinities have no decimal
    whole, scale = 0, 0
    for value in _numbers(present.unique()):
        digits, places = decimal_shape(value)
        whole, scale = max(whole, digits), max(scale, places)
    return (whole, scale)


def _numbers(values: pl.Series) -> list[int | float | Decimal]:
    numbers: list[int | float | Decimal] = values.to_list()
    if isinstance(values.dtype, pl.Decimal):
        return [None if value is None else value.normalize() for value in numbers]  # type: ignore[union-attr]
    return numbers


def loadable(values: pl.Series, kind: ColumnType) -> pl.Series:
    """``values`` as the table column of ``kind`` takes them without a rounding cast.

    Doubles become decimals through their shortest text (a binary cast could add digits);
    numbers for a text column become text here, so both destinations spell them alike.
    """
    dtype = values.dtype
    if not dtype.is_numeric():
        return values
    if kind.kind is Kind.TEXT:
        return values.cast(pl.String)
    if kind.kind is Kind.DECIMAL and dtype.is_float():
        target = pl.Decimal(kind.precision or MAX_DIGITS, kind.scale or 0)
        return values.cast(pl.String).str.to_decimal(scale=kind.scale or 0).cast(target)
    if kind.kind is Kind.DOUBLE and not dtype.is_float():
        return values.cast(pl.Float64)
    return values
