"""dedupe: one row per key within a batch."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from ladle.batch import ROW
from ladle.errors import StepError
from ladle.steps import StepContext
from ladle.steps.dedupe import Dedupe, DedupeOptions
from tests.steps.conftest import Batch, make_batch

KEYED = StepContext(resource="tickets", primary_key=("id",))


def kept_rows(options: dict[str, Any], frame: Any, context: StepContext = KEYED) -> list[int]:
    result = Dedupe(DedupeOptions.model_validate(options), context)(frame)
    assert result.deduplicated == frame.height - result.frame.height
    return list(result.frame.get_column(ROW))


def test_keep_last_by_source_order_is_the_default(batch: Batch) -> None:
    """Without order_by the last row of a key in the batch wins."""
    frame = batch(id=[1, 2, 1, 2, 3])
    assert kept_rows({}, frame) == [2, 3, 4]


def test_keep_first(batch: Batch) -> None:
    """keep: first keeps each key's first row."""
    frame = batch(id=[1, 2, 1, 2, 3])
    assert kept_rows({"keep": "first"}, frame) == [0, 1, 4]


def test_order_by_picks_the_winner_and_output_keeps_source_order(batch: Batch) -> None:
    """The highest order_by value wins for keep: last; survivors stay in source order."""
    frame = batch(id=[1, 1, 2, 1, 2], updated=[5, 9, 1, 7, 0])
    assert kept_rows({"order_by": "updated"}, frame) == [1, 2]
    assert kept_rows({"order_by": "updated", "keep": "first"}, frame) == [0, 4]


def test_null_order_by_ranks_lowest(batch: Batch) -> None:
    """A row without an order_by value loses to any row with one under keep: last."""
    frame = batch(id=[1, 1, 1], updated=[3, None, 2])
    assert kept_rows({"order_by": "updated"}, frame) == [0]
    assert kept_rows({"order_by": "updated", "keep": "first"}, frame) == [1]


def test_ties_are_broken_by_source_order(batch: Batch) -> None:
    """Equal order_by values fall back to the row's place in the source."""
    frame = batch(id=[1, 1, 1], updated=[2, 2, 1])
    assert kept_rows({"order_by": "updated"}, frame) == [1]
    assert kept_rows({"order_by": "updated", "keep": "first"}, frame) == [2]


def test_rows_with_a_null_in_the_key_are_never_removed(batch: Batch) -> None:
    """Null equals nothing, as in SQL."""
    frame = batch(a=[1, 1, None, None], b=["x", "x", "y", "y"])
    assert kept_rows({"on": ["a", "b"]}, frame) == [1, 2, 3]


def test_on_overrides_the_primary_key_and_may_be_spelled_raw(batch: Batch) -> None:
    """``on`` names columns as the data spells them or normalized."""
    frame = batch(id=[1, 2], email_address=["a@x", "a@x"])
    assert kept_rows({"on": ["Email Address"]}, frame) == [1]


def test_an_absent_key_column_removes_nothing(batch: Batch) -> None:
    """A batch without the key field has only null keys."""
    frame = batch(other=[1, 1])
    assert kept_rows({}, frame) == [0, 1]


def test_an_absent_order_by_column_falls_back_to_source_order(batch: Batch) -> None:
    """A batch without the order_by field still dedupes, by row order."""
    frame = batch(id=[1, 1])
    assert kept_rows({"order_by": "updated"}, frame) == [1]


def test_an_empty_batch(batch: Batch) -> None:
    """No rows, nothing removed."""
    assert kept_rows({}, batch(id=[])) == []


def test_the_resolved_options_are_public() -> None:
    """The pipeline reads key, keep and order_by to dedupe across batches in the destination."""
    step = Dedupe(DedupeOptions(on=["Ticket ID"], keep="first", order_by=["Updated At"]), KEYED)
    assert (step.key, step.keep, step.order_by) == (("ticket_id",), "first", ("updated_at",))
    default = Dedupe(DedupeOptions(), KEYED)
    assert (default.key, default.keep, default.order_by) == (("id",), "last", ())


def test_without_a_key_the_step_says_what_to_set() -> None:
    """Neither ``on`` nor a primary key: the error names both ways out."""
    with pytest.raises(StepError) as error:
        Dedupe(DedupeOptions(), StepContext(resource="tickets"))
    assert str(error.value) == (
        "resource 'tickets', step 'dedupe': no key to dedupe on: set `on: [column, ...]` on "
        "the step, or the resource's `primary_key`"
    )


def test_options_accept_a_bare_key_and_refuse_unknown_keys() -> None:
    """``- dedupe:`` means the defaults; a misspelled option is an error."""
    adapter = TypeAdapter(DedupeOptions)
    assert adapter.validate_python(None) == DedupeOptions()
    with pytest.raises(ValidationError, match="order"):
        adapter.validate_python({"order": "x"})
    with pytest.raises(ValidationError, match="keep"):
        adapter.validate_python({"keep": "newest"})


def test_order_by_takes_a_list_compared_in_turn(batch: Batch) -> None:
    """A tie in the first order column goes to the second; a full tie to source order."""
    frame = batch(id=[1, 1, 1, 2, 2], at=[5, 5, 4, 1, 1], mods=[2, 1, 9, 3, 3])
    assert kept_rows({"order_by": ["at", "mods"]}, frame) == [0, 4]
    assert kept_rows({"order_by": ["at", "mods"], "keep": "first"}, frame) == [2, 3]


def test_remembered_winners_decide_across_batches(batch: Batch) -> None:
    """Under remember_winners a row that loses to an earlier batch's winner is deduplicated;
    one that beats it, or ties it under keep: last, passes."""
    step = Dedupe(DedupeOptions(order_by=["rev"]), KEYED)
    step.remember_winners()
    assert step(batch(id=[1, 2, None], rev=[3, 1, 1])).deduplicated == 0
    later = step(batch(id=[1, 2, None, 3], rev=[2, 1, 0, None]))
    assert (list(later.frame.get_column(ROW)), later.deduplicated) == ([1, 2, 3], 1)
    last = step(batch(id=[1, 3], rev=[4, None]))
    assert (list(last.frame.get_column(ROW)), last.deduplicated) == ([0, 1], 0)


def test_remembered_winners_under_keep_first_pass_only_strictly_lower_rows(batch: Batch) -> None:
    """keep: first lets a later batch's row through only when it orders strictly lower."""
    step = Dedupe(DedupeOptions(order_by=["rev"], keep="first"), KEYED)
    step.remember_winners()
    step(batch(id=[1, 2], rev=[3, 3]))
    later = step(batch(id=[1, 2], rev=[3, 2]))
    assert (list(later.frame.get_column(ROW)), later.deduplicated) == ([1], 1)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.none() | st.integers(0, 3), st.none() | st.integers(0, 2)),
        max_size=24,
    ),
    size=st.integers(1, 6),
    keep=st.sampled_from(["first", "last"]),
)
def test_remembered_winners_match_one_batch_whatever_the_batches(
    rows: list[tuple[int, int | None, int | None]], size: int, keep: str
) -> None:
    """With remember_winners, the last row let through per key is the row one batch of all
    records keeps: the load may keep the last one staged."""
    options = DedupeOptions.model_validate({"order_by": ["a", "b"], "keep": keep})
    ids, a, b = ([r[i] for r in rows] for i in range(3))
    whole = Dedupe(options, KEYED)(make_batch(id=ids, a=a, b=b)).frame
    expected = dict(zip(whole.get_column("id"), whole.get_column(ROW), strict=True))
    step = Dedupe(options, KEYED)
    step.remember_winners()
    last: dict[int, int] = {}
    for start in range(0, len(rows), size):
        part = make_batch(
            id=ids[start : start + size], a=a[start : start + size], b=b[start : start + size]
        )
        kept = step(part.with_columns(pl.col(ROW) + start)).frame
        last |= dict(zip(kept.get_column("id"), kept.get_column(ROW), strict=True))
    assert last == expected
