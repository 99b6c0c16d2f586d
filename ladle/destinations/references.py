"""Keys looked up in a referenced table (the fk step): typed like the table, answered as given.

Both destinations answer :meth:`~ladle.destinations.Destination.existing_keys` the same
way. Each key column is cast to its table column's type as the ``cast`` step would cast
it, so ``'42'`` finds ``42`` in a bigint column and ``'abc'`` finds nothing there. The
database says which typed keys exist, and the answer is given back in the caller's own
values. A column whose type ladle does not know is compared as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ladle.schema import ColumnType, Kind
from ladle.steps.cast import caster_for
from ladle.steps.datetimes import TEMPORAL_KINDS, DatetimeParser


@dataclass(frozen=True)
class KeyLookup:
    """The caller's distinct keys, each with its typed twin (``_ladle_key_0``, …)."""

    columns: tuple[str, ...]
    types: tuple[ColumnType, ...]
    pairs: pl.DataFrame
    """Original columns, then the typed ones; only rows whose typed key has no null."""

    @property
    def typed_names(self) -> list[str]:
        """Names of the typed columns, in key order."""
        return [typed_name(i) for i in range(len(self.columns))]

    @property
    def typed(self) -> pl.DataFrame:
        """The distinct typed keys to send to the database."""
        return self.pairs.select(self.typed_names).unique(maintain_order=True)

    def as_text(self, index: int) -> bool:
        """Whether key column ``index`` is compared as text (its type is text, or unknown)."""
        return self.types[index].kind is Kind.TEXT

    def present(self, found: pl.DataFrame) -> pl.DataFrame:
        """The caller's keys whose typed form is among ``found`` (typed columns)."""
        found = found.select(self.typed_names).cast(self.pairs.select(self.typed_names).schema)
        return self.pairs.join(found, on=self.typed_names, how="semi").select(self.columns)


def typed_name(index: int) -> str:
    """The name of the typed twin of key column ``index``."""
    return f"_ladle_key_{index}"


def key_lookup(
    keys: pl.DataFrame, columns: Sequence[str], table_types: Mapping[str, ColumnType] | None
) -> KeyLookup | None:
    """Type ``keys`` like ``columns`` of the table; None when no key can exist.

    No key exists when the table is missing (``table_types`` is None), when it lacks one
    of the columns, or when every key has a null once typed.
    """
    if table_types is None or any(c not in table_types for c in columns):
        return None
    types = tuple(table_types[c] for c in columns)
    distinct = keys.select(columns).unique(maintain_order=True)
    typed = [
        _typed(distinct.get_column(c), kind).alias(typed_name(i))
        for i, (c, kind) in enumerate(zip(columns, types, strict=True))
    ]
    pairs = distinct.with_columns(typed).drop_nulls()
    if pairs.height == 0:
        return None
    return KeyLookup(tuple(columns), types, pairs)


def empty_keys(keys: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """No keys, in the caller's columns and types."""
    return keys.select(columns).clear()


def _typed(values: pl.Series, target: ColumnType) -> pl.Series:
    """``values`` cast to ``target`` as the cast step does; what does not fit becomes null."""
    if target.kind in TEMPORAL_KINDS:
        parsed, _ = DatetimeParser(target.kind, timezone="UTC")(values)
        return parsed
    cast, _ = caster_for(target)(values)
    return cast
