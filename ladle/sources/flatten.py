"""Turn nested records into flat columns: objects become ``parent__child``, lists JSON text.

Destinations take flat tables, so nesting is resolved here, once, for every file
format. A field is typed over the whole batch, never from its first rows:

- an object in every record that has the field: its keys become columns (an empty
  object contributes none);
- a list (of anything): compact JSON text, ``["x","y"]``;
- one scalar type: that type (integers and floats together become floats; integers
  beyond Int64 become Int128, as Polars reads them, and beyond that exact text);
- anything else (an integer here, a string there; an object here, a string there):
  text, with the non-strings JSON-encoded (``123`` -> ``"123"``, ``true`` -> ``"true"``).

Column names are kept as the data spells them; the pipeline normalizes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from ladle.batch import json_text

SEPARATOR = "__"
"""Joins the keys of a nested field into one column name."""

_INT64 = (-(2**63), 2**63 - 1)
_INT128 = (-(2**127), 2**127 - 1)


class ColumnClash(Exception):
    """Two fields flatten to the same column name (a key ``a__b`` and a nested ``a`` -> ``b``)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"two fields flatten to the column {name!r} (a key with {SEPARATOR!r} in its name "
            "and a nested object); rename one of them in the data"
        )
        self.name = name


def to_json_text(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is: the one spelling of nested values in a column."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
    return pl.DataFrame(list(columns.values()))


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
    columns[name] = _series(name, kinds, values)


def _series(name: str, kinds: set[type], values: list[Any]) -> pl.Series:
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds == {int}:
        return _integers(name, values)
    if kinds <= {int, float} and kinds:
        return pl.Series(name, [None if v is None else float(v) for v in values], pl.Float64)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    texts = [v if v is None or isinstance(v, str) else to_json_text(v) for v in values]
    return pl.Series(name, texts, dtype=pl.String)


def _integers(name: str, values: list[Any]) -> pl.Series:
    """Int64, or Int128 as Polars reads such JSON; wider still stays exact as text."""
    present = [v for v in values if v is not None]
    low, high = min(present), max(present)
    if _INT64[0] <= low and high <= _INT64[1]:
        return pl.Series(name, values, dtype=pl.Int64)
    if _INT128[0] <= low and high <= _INT128[1]:
        return pl.Series(name, values, dtype=pl.Int128)
    return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)


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
    """Every non-struct field, depth first; an empty struct has none. Raises ColumnClash."""
    found: list[Leaf] = []
    for series in frame.get_columns():
        _collect_leaves(found, (series.name,), series)
    names = [leaf.name for leaf in found]
    if len(set(names)) != len(names):
        raise ColumnClash(next(name for name in names if names.count(name) > 1))
    return found


def _collect_leaves(found: list[Leaf], path: tuple[str, ...], series: pl.Series) -> None:
    if isinstance(series.dtype, pl.Struct):
        for child in series.struct.unnest().get_columns():
            _collect_leaves(found, (*path, child.name), child)
    else:
        found.append(Leaf(path, series))


def flat_series(leaf: Leaf) -> pl.Series:
    """The leaf as a flat column: lists as JSON text, all-null columns as text."""
    values = leaf.values
    if isinstance(values.dtype, pl.List | pl.Array):
        values = list_to_json(values)
    elif isinstance(values.dtype, pl.Null):
        values = values.cast(pl.String)
    return values.alias(leaf.name)


def list_to_json(values: pl.Series) -> pl.Series:
    """Encode a list column as compact JSON text, vectorized; a null list stays null."""
    return values.to_frame("v").select(json_text(pl.col("v"))).to_series()


def flatten_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Unnest struct columns into ``parent__child`` columns and encode lists as JSON text."""
    found = leaves(frame)
    if not found:
        return pl.DataFrame(height=frame.height)
    return pl.DataFrame([flat_series(leaf) for leaf in found])
