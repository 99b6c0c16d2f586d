"""Flattening nested records into ``parent__child`` columns, from Python and from Arrow."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.sources.flatten import (
    MAX_COLUMNS,
    ColumnClash,
    TooManyColumns,
    flatten_frame,
    records_to_frame,
)


def test_nested_objects_flatten_recursively() -> None:
    """Objects become ``a__b__c`` columns, in order of first appearance."""
    frame = records_to_frame([{"id": 1, "a": {"b": {"c": "x"}, "d": 2}}])
    assert frame.columns == ["id", "a__b__c", "a__d"]
    assert frame.row(0) == (1, "x", 2)


def test_lists_become_compact_json_text() -> None:
    """Lists of anything become compact JSON text, with non-ASCII kept as is."""
    frame = records_to_frame([{"tags": ["x", "é"], "lines": [{"a": 1}], "n": [1, 2.5, None]}])
    assert frame.schema == {"tags": pl.String, "lines": pl.String, "n": pl.String}
    assert frame.row(0) == ('["x","é"]', '[{"a":1}]', "[1,2.5,null]")


def test_empty_object_flattens_to_nothing() -> None:
    """An empty object adds no column; the record still gives a row."""
    frame = records_to_frame([{"id": 1, "meta": {}}, {"id": 2, "meta": {}}])
    assert frame.columns == ["id"]
    assert frame.height == 2


def test_record_without_fields_still_counts() -> None:
    """A batch of empty records is a frame of that many rows and no columns."""
    assert records_to_frame([{}, {}, {}]).shape == (3, 0)


def test_missing_fields_are_null_and_late_fields_are_kept() -> None:
    """A field seen only in the last record is a column; records without it get null."""
    records: list[dict[str, Any]] = [{"a": 1}] * 500 + [{"a": 2, "late": "x"}]
    frame = records_to_frame(records)
    assert frame.columns == ["a", "late"]
    assert frame.get_column("late").null_count() == 500
    assert frame.get_column("late").to_list()[-1] == "x"


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([1, 2], pl.Int64, [1, 2]),
        ([1, 2.5], pl.Float64, [1.0, 2.5]),
        ([True, None], pl.Boolean, [True, None]),
        ([None, None], pl.String, [None, None]),
        ([1, "x"], pl.String, ["1", "x"]),
        ([True, 3], pl.String, ["true", "3"]),
        ([1.5, "x"], pl.String, ["1.5", "x"]),
        (["s", {"x": 1}], pl.String, ["s", '{"x":1}']),
        (["s", [1, "x"]], pl.String, ["s", '[1,"x"]']),
        ([2**63, 1], pl.Decimal(38, 0), [Decimal(2**63), Decimal(1)]),
        ([2**130, 1], pl.String, [str(2**130), "1"]),
    ],
)
def test_types_are_decided_over_the_whole_batch(
    values: list[Any], dtype: pl.DataType, expected: list[Any]
) -> None:
    """One type per column; mixed types become text with non-strings JSON-encoded."""
    series = records_to_frame([{"v": value} for value in values]).get_column("v")
    assert series.dtype == dtype
    assert series.to_list() == expected


def test_object_in_one_record_and_text_in_another_is_text() -> None:
    """A field that is an object only sometimes is not flattened: it is JSON text."""
    frame = records_to_frame([{"a": {"x": 1, "y": [2]}}, {"a": "plain"}, {"a": None}])
    assert frame.columns == ["a"]
    assert frame.get_column("a").to_list() == ['{"x":1,"y":[2]}', "plain", None]


def test_key_and_nested_field_with_the_same_flat_name_clash() -> None:
    """A key ``a__b`` next to an object ``a`` with key ``b`` is an error, never an overwrite."""
    with pytest.raises(ColumnClash) as info:
        records_to_frame([{"a__b": 1, "a": {"b": 2}}])
    assert str(info.value) == (
        "two fields flatten to the column 'a__b' (a key with '__' in its name and a nested "
        "object); rename one of them in the data"
    )


def test_flatten_frame_unnests_structs_and_encodes_lists() -> None:
    """Arrow structs become columns and Arrow lists JSON text, as for Python records."""
    frame = pl.DataFrame(
        {
            "id": [1, 2],
            "site": [{"geo": {"lat": 1.5}, "tags": ["a"]}, None],
            "empty": [{}, {}],
            "nothing": [None, None],
        }
    )
    flat = flatten_frame(frame)
    assert flat.columns == ["id", "site__geo__lat", "site__tags", "nothing"]
    assert flat.rows() == [(1, 1.5, '["a"]', None), (2, None, None, None)]
    assert flat.schema["nothing"] == pl.String


def test_flatten_frame_without_leaves_keeps_the_rows() -> None:
    """A frame whose only column is an empty struct keeps its height."""
    assert flatten_frame(pl.DataFrame({"e": [{}, {}]})).shape == (2, 0)


_KEYS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="_"), min_size=1, max_size=6
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)
_RECORDS = st.dictionaries(_KEYS, _VALUES, max_size=5)


def _pruned(value: Any) -> Any:
    """What survives flattening: objects without their empty (or emptied) children."""
    if not isinstance(value, dict):
        return value
    kept = {key: _pruned(child) for key, child in value.items()}
    return {key: child for key, child in kept.items() if child != {}}


def _unflatten(row: dict[str, Any], list_columns: set[str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name, value in row.items():
        *parents, leaf = name.split("__")
        node = record
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = json.loads(value) if name in list_columns and value is not None else value
    return record


@settings(deadline=None)
@given(_RECORDS)
def test_flattening_one_record_loses_nothing(record: dict[str, Any]) -> None:
    """Unflattening the row (split names on ``__``, parse list text) gives the record back."""
    frame = records_to_frame([record])
    list_columns = {
        name for name, value in frame.row(0, named=True).items() if _is_list(record, name)
    }
    assert _unflatten(frame.row(0, named=True), list_columns) == _pruned(record)


def _is_list(record: dict[str, Any], name: str) -> bool:
    node: Any = record
    for key in name.split("__"):
        node = node[key]
    return isinstance(node, list)


def test_empty_key_keeps_its_name_wherever_it_is() -> None:
    """A key ``""`` stays ``""`` in the frame (the pipeline names it and says so); Polars
    alone would call it ``column_<index>``, a name that moves with its position."""
    assert records_to_frame([{"id": 1, "": 2}]).columns == ["id", ""]
    assert records_to_frame([{"": 2, "id": 1}]).columns == ["", "id"]
    nested = pl.DataFrame({"id": [1], "a": [{"": 2}]})
    assert flatten_frame(nested).columns == ["id", "a__"]


def test_a_table_has_at_most_1600_columns() -> None:
    """1,600 fields make a frame; one more is refused before its series are built."""
    fields = {f"k{i}": i for i in range(MAX_COLUMNS)}
    assert records_to_frame([fields]).width == MAX_COLUMNS
    with pytest.raises(TooManyColumns):
        records_to_frame([fields, {"one_more": 1}])
