"""Every step accounts for every row of any batch, whatever types its columns arrived in."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.batch import ROW, StepResult
from ladle.columns import ColumnSpec
from ladle.schema import parse_type
from ladle.steps import Step, StepContext
from ladle.steps.cast import Cast
from ladle.steps.columns import Rename
from ladle.steps.dedupe import Dedupe, DedupeOptions
from ladle.steps.validate import Validate

TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["1", " 2 ", "1e3", "2024-01-02", "2024-01-02T03:04:05Z", "yes", "[1]"]),
)
VALUES: dict[str, tuple[pl.DataType, st.SearchStrategy[Any]]] = {
    "null": (pl.Null(), st.none()),
    "text": (pl.String(), TEXT),
    "int": (pl.Int64(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    "float": (pl.Float64(), st.floats()),
    "bool": (pl.Boolean(), st.booleans()),
    "list": (pl.List(pl.Int64()), st.lists(st.integers(-5, 5), max_size=3)),
}


@st.composite
def batches(draw: st.DrawFn) -> pl.DataFrame:
    """A batch of up to 8 rows with columns ``a`` and ``b`` of drawn types, nulls included."""
    height = draw(st.integers(min_value=0, max_value=8))
    columns: dict[str, pl.Series] = {ROW: pl.Series(ROW, range(height), dtype=pl.Int64)}
    for name in ("a", "b"):
        dtype, values = VALUES[draw(st.sampled_from(sorted(VALUES)))]
        items = draw(st.lists(st.one_of(st.none(), values), min_size=height, max_size=height))
        columns[name] = pl.Series(name, items, dtype=dtype)
    return pl.DataFrame(columns)


def accounted(step: Step, frame: pl.DataFrame) -> StepResult:
    """Run ``step`` and check that each input row is kept, rejected or deduplicated."""
    result = step(frame)
    rejected = set(result.rejects.get_column(ROW).to_list())
    kept = set(result.frame.get_column(ROW).to_list())
    assert not rejected & kept
    assert len(kept) + len(rejected) + result.deduplicated == frame.height
    assert kept | rejected <= set(frame.get_column(ROW).to_list())
    return result


TYPES = ["text", "int", "bigint", "double", "decimal(10,2)", "bool", "date", "timestamp"]
TYPES += ["timestamptz", "json"]


@settings(max_examples=60)
@given(frame=batches(), type_=st.sampled_from(TYPES))
def test_cast_accounts_for_every_row(frame: pl.DataFrame, type_: str) -> None:
    """Casting either column to any type keeps or rejects each row, and types the column."""
    context = StepContext(resource="r", columns={"a": ColumnSpec(type=parse_type(type_))})
    result = accounted(Cast(None, context), frame)
    assert result.frame.schema["a"] == parse_type(type_).polars
    accounted(Cast({"b": type_}, context), frame)


@settings(max_examples=60)
@given(frame=batches())
def test_validate_accounts_for_every_row(frame: pl.DataFrame) -> None:
    """Type-agnostic constraints never raise, whatever the column holds."""
    spec = ColumnSpec.model_validate(
        {"required": True, "in": [1, "x", True], "min_length": 1, "regex": "^[0-9]", "unique": True}
    )
    accounted(Validate(None, StepContext(resource="r", columns={"a": spec, "b": spec})), frame)


@settings(max_examples=60)
@given(frame=batches(), keep=st.sampled_from(["first", "last"]))
def test_dedupe_and_rename_account_for_every_row(frame: pl.DataFrame, keep: str) -> None:
    """Deduping on any column type, and coalescing any pair of types, lose no row."""
    options = DedupeOptions.model_validate({"on": ["a"], "keep": keep, "order_by": "b"})
    accounted(Dedupe(options, StepContext(resource="r")), frame)
    result = accounted(Rename({"v": ["a", "b"]}, StepContext(resource="r")), frame)
    assert result.frame.columns == [ROW, "v"]
