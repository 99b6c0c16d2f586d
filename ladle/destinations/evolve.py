"""Schema evolution shared by every destination: which type a batch column has, and
whether it fits the table that exists.

Declared types win over inferred ones; a column whose inferred type is unknown (all
nulls) fits anything. A type that does not fit raises SchemaConflict *before* the
batch is written.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from ladle.batch import SEQ
from ladle.errors import SchemaConflict
from ladle.schema import ColumnType, Kind, fits, infer_type

TEXT = ColumnType(Kind.TEXT)


def batch_types(
    frame: pl.DataFrame, declared: Mapping[str, ColumnType]
) -> dict[str, ColumnType | None]:
    """The type of each data column in ``frame``: declared, inferred, or None if all null."""
    types: dict[str, ColumnType | None] = {}
    for column, dtype in frame.schema.items():
        if column == SEQ:
            continue
        if column in declared:
            types[column] = declared[column]
        else:
            types[column] = None if dtype == pl.Null else infer_type(dtype)
    return types


def new_columns(
    table: str,
    existing: Mapping[str, ColumnType],
    types: Mapping[str, ColumnType | None],
) -> dict[str, ColumnType]:
    """Columns to add to ``table``; raise SchemaConflict for a type that does not fit."""
    added: dict[str, ColumnType] = {}
    for column, new in types.items():
        old = existing.get(column)
        if old is None:
            added[column] = new or TEXT
        elif new is not None and not fits(new, old):
            raise SchemaConflict(
                table=table, column=column, existing=str(old).upper(), new=str(new).upper()
            )
    return added
