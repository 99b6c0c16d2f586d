"""rename, select and drop."""

from __future__ import annotations

import polars as pl
import pytest

from ladle.batch import ROW
from ladle.errors import StepError
from ladle.steps import StepContext
from ladle.steps.columns import Drop, Rename, Select, resolve
from tests.steps.conftest import Batch


def test_resolve_prefers_the_exact_name_then_the_normalized_one() -> None:
    """A name is itself when present, else its snake_case form, else nothing."""
    assert resolve("TKT-Ticket ID", ["TKT-Ticket ID", "tkt_ticket_id"]) == "TKT-Ticket ID"
    assert resolve("TKT-Ticket ID", ["tkt_ticket_id"]) == "tkt_ticket_id"
    assert resolve("TKT-Ticket ID", ["ticket_id"]) is None


def test_rename_renames_in_place(batch: Batch, context: StepContext) -> None:
    """{old: new} renames the column and keeps its position and values."""
    frame = batch(a=[1, 2], b=["x", "y"], c=[True, False])
    result = Rename({"b": "label"}, context)(frame)
    assert result.frame.columns == [ROW, "a", "label", "c"]
    assert result.frame.get_column("label").to_list() == ["x", "y"]


def test_rename_finds_a_raw_name_by_its_normalized_form(batch: Batch, context: StepContext) -> None:
    """The source normalized ``TKT-Ticket ID``; the option may still spell it raw."""
    frame = batch(tkt_ticket_id=[7])
    result = Rename({"TKT-Ticket ID": "ticket_id"}, context)(frame)
    assert result.frame.columns == [ROW, "ticket_id"]


def test_rename_of_an_absent_column_does_nothing(batch: Batch, context: StepContext) -> None:
    """A batch without the field is left as it is."""
    frame = batch(a=[1])
    assert Rename({"missing": "other"}, context)(frame).frame.equals(frame)


def test_rename_into_an_existing_column_fills_its_nulls(batch: Batch, context: StepContext) -> None:
    """An existing target keeps priority; the renamed values fill its gaps; no data is lost."""
    frame = batch(id=[1, None, None], legacy_id=[10, 20, None])
    result = Rename({"legacy_id": "id"}, context)(frame)
    assert result.frame.columns == [ROW, "id"]
    assert result.frame.get_column("id").to_list() == [1, 20, None]


def test_aliases_coalesce_in_listed_order(batch: Batch, context: StepContext) -> None:
    """{new: [a, b]} takes the first non-null of a, b per row and drops the aliases."""
    frame = batch(a=[None, 2, None], b=[5, 6, None], y=["k", "l", "m"])
    result = Rename({"value": ["a", "b"]}, context)(frame)
    assert result.frame.columns == [ROW, "value", "y"]
    assert result.frame.get_column("value").to_list() == [5, 2, None]


def test_aliases_with_none_present_give_a_null_column(batch: Batch, context: StepContext) -> None:
    """The target exists in every batch, so the schema does not depend on the batch."""
    frame = batch(y=[1, 2])
    result = Rename({"value": ["a", "b"]}, context)(frame)
    assert result.frame.columns == [ROW, "y", "value"]
    assert result.frame.get_column("value").to_list() == [None, None]


def test_aliases_of_different_types_become_text(batch: Batch, context: StepContext) -> None:
    """An int alias and a string alias coalesce as text rather than failing a cast."""
    frame = batch(a=[1, None, None], b=["x", "y", None], c=[None, [1, 2], [3]])
    result = Rename({"value": ["a", "b", "c"]}, context)(frame)
    assert result.frame.get_column("value").to_list() == ["1", "y", "[3]"]


def test_aliases_include_the_target_itself_first(batch: Batch, context: StepContext) -> None:
    """A column already named like the target is the first candidate."""
    frame = batch(value=[None, 1], a=[9, 9])
    result = Rename({"value": ["a"]}, context)(frame)
    assert result.frame.columns == [ROW, "value"]
    assert result.frame.get_column("value").to_list() == [9, 1]


def test_entries_apply_in_order(batch: Batch, context: StepContext) -> None:
    """A later entry sees the result of an earlier one."""
    frame = batch(a=[1])
    result = Rename({"a": "b", "b": "c"}, context)(frame)
    assert result.frame.columns == [ROW, "c"]


@pytest.mark.parametrize(
    ("step", "options", "key", "name"),
    [
        (Rename, {ROW: "row"}, "rename", ROW),
        (Rename, {"row": [ROW]}, "rename", ROW),
        (Select, [ROW], "select", ROW),
        (Drop, [ROW], "drop", ROW),
    ],
)
def test_the_row_column_cannot_be_named(
    step: type, options: object, key: str, name: str, context: StepContext
) -> None:
    """Steps must carry the row column untouched, so options naming it are refused."""
    with pytest.raises(StepError) as error:
        step(options, context)
    assert str(error.value) == (
        f"resource 'tickets', step '{key}': '{name}' is ladle's row column and cannot be "
        "renamed, selected, dropped or overwritten; choose another name"
    )


def test_select_keeps_listed_columns_and_the_row_column(batch: Batch, context: StepContext) -> None:
    """The listed columns in the listed order, after the row column."""
    frame = batch(a=[1], b=[2], c=[3])
    result = Select(["c", "a"], context)(frame)
    assert result.frame.columns == [ROW, "c", "a"]


def test_select_adds_an_absent_column_as_nulls(batch: Batch, context: StepContext) -> None:
    """An absent column appears with its normalized name and null values."""
    frame = batch(a=[1, 2])
    result = Select(["a", "Ticket ID"], context)(frame)
    assert result.frame.columns == [ROW, "a", "ticket_id"]
    assert result.frame.get_column("ticket_id").to_list() == [None, None]


def test_drop_removes_present_columns_and_ignores_absent_ones(
    batch: Batch, context: StepContext
) -> None:
    """Dropping a column a batch does not have is not an error."""
    frame = batch(a=[1], b=[2])
    result = Drop(["B", "missing"], context)(frame)
    assert result.frame.columns == [ROW, "a"]


def test_shaping_steps_work_on_an_empty_batch(context: StepContext) -> None:
    """A batch with no rows keeps its schema through every shaping step."""
    frame = pl.DataFrame({ROW: [], "a": []}, schema={ROW: pl.Int64, "a": pl.String})
    assert Rename({"v": ["a"]}, context)(frame).frame.columns == [ROW, "v"]
    assert Select(["a", "z"], context)(frame).frame.columns == [ROW, "a", "z"]
    assert Drop(["a"], context)(frame).frame.columns == [ROW]
