"""validate: declared constraints and SQL checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from ladle.batch import ROW
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.steps import StepContext
from ladle.steps.validate import Check, Validate
from tests.steps.conftest import Batch


def validator(checks: list[Check] | None = None, /, **columns: dict[str, Any]) -> Validate:
    """A Validate step for columns declared as keyword arguments."""
    specs = {name: ColumnSpec.model_validate(spec) for name, spec in columns.items()}
    return Validate(checks, StepContext(resource="tickets", columns=specs))


def rejected(step: Validate, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The rejects of one call, sorted by row and rule."""
    return step(frame).rejects.sort(ROW, "rule").to_dicts()


def reject(
    row: int, field: str | None, rule: str, value: str | None, message: str
) -> dict[str, Any]:
    return {ROW: row, "field": field, "rule": rule, "value": value, "message": message}


def test_required_rejects_null_and_blank(batch: Batch) -> None:
    """Null and whitespace-only text are missing; everything else is present."""
    step = validator(name={"required": True})
    frame = batch(name=["a", None, "  ", "0"])
    assert rejected(step, frame) == [
        reject(1, "name", "required", None, "value is required"),
        reject(2, "name", "required", "  ", "value is required"),
    ]
    assert step(frame).frame.get_column(ROW).to_list() == [0, 3]


def test_required_rejects_every_row_when_the_column_is_absent(batch: Batch) -> None:
    """A batch where no record had the field fails required on every row."""
    step = validator(**{"Ticket ID": {"required": True}})
    assert rejected(step, batch(other=[1, 2])) == [
        reject(0, "ticket_id", "required", None, "value is required"),
        reject(1, "ticket_id", "required", None, "value is required"),
    ]


def test_other_rules_pass_nulls_and_absent_columns(batch: Batch) -> None:
    """Only required looks at missing values."""
    spec = {"in": ["a"], "min": 1, "max_length": 1, "regex": "^x$", "unique": True}
    step = validator(v=spec)
    assert rejected(step, batch(v=[None, None])) == []
    assert rejected(step, batch(other=[1])) == []


def test_in_compares_text_with_the_listed_values(batch: Batch) -> None:
    """A value outside the list is rejected with the list in the message."""
    step = validator(status={"in": ["open", "pending"]})
    assert rejected(step, batch(status=["open", "x", "Open"])) == [
        reject(1, "status", "in", "x", "'x' is not one of ['open', 'pending']"),
        reject(2, "status", "in", "Open", "'Open' is not one of ['open', 'pending']"),
    ]


def test_in_compares_numbers_and_bools_in_their_type(batch: Batch) -> None:
    """Listed values are cast to the column's type; text columns compare their spelling."""
    assert rejected(validator(n={"in": [1, 2]}), batch(n=[1, 3])) == [
        reject(1, "n", "in", "3", "'3' is not one of [1, 2]"),
    ]
    assert rejected(validator(n={"in": [1, True]}), batch(n=["1", "true", "2"])) == [
        reject(2, "n", "in", "2", "'2' is not one of [1, True]"),
    ]


def test_min_and_max_on_numbers(batch: Batch) -> None:
    """Numbers outside the bounds are rejected; the bounds are inclusive."""
    step = validator(n={"min": 0, "max": 10.5})
    assert rejected(step, batch(n=[-5, 0, 10.5, 11])) == [
        reject(0, "n", "min", "-5.0", "-5.0 is less than min 0"),
        reject(3, "n", "max", "11.0", "11.0 is greater than max 10.5"),
    ]


def test_min_on_numeric_text_compares_numbers(batch: Batch) -> None:
    """Uncast numeric text is compared as numbers; text that is no number is cast's job."""
    step = validator(n={"min": 2})
    assert rejected(step, batch(n=["10", " 1 ", "abc"])) == [
        reject(1, "n", "min", " 1 ", " 1  is less than min 2"),
    ]


def test_min_and_max_on_dates_and_timestamps(batch: Batch) -> None:
    """Bounds are read by the datetime parser, naive ones in the column's zone."""
    step = validator(
        day={"min": "2024-01-01"}, at={"max": "2024-01-02 00:00", "timezone": "Asia/Tokyo"}
    )
    frame = batch(
        day=[date(2023, 12, 31), date(2024, 1, 1)],
        at=[datetime(2024, 1, 1, 15, 1, tzinfo=UTC), datetime(2024, 1, 1, 15, tzinfo=UTC)],
    )
    at = "2024-01-01 15:01:00.000000+00:00"
    assert rejected(step, frame) == [
        reject(0, "at", "max", at, f"{at} is greater than max 2024-01-02 00:00"),
        reject(0, "day", "min", "2023-12-31", "2023-12-31 is less than min 2024-01-01"),
    ]


def test_min_on_a_bool_column_is_a_step_error(batch: Batch) -> None:
    """A bound that cannot apply to the column's type stops the run with a hint."""
    with pytest.raises(StepError) as error:
        validator(flag={"min": 1})(batch(flag=[True]))
    assert str(error.value) == (
        "resource 'tickets', step 'validate': column 'flag': min applies to numbers, dates, "
        "timestamps and text, but the column holds Boolean; cast it first"
    )


def test_a_bound_that_does_not_parse_is_a_step_error(batch: Batch) -> None:
    """A date bound that is not a date is reported with the column."""
    with pytest.raises(StepError) as error:
        validator(day={"max": "soon"})(batch(day=[date(2024, 1, 1)]))
    assert str(error.value) == (
        "resource 'tickets', step 'validate': column 'day': max 'soon' is not a date"
    )


def test_lengths(batch: Batch) -> None:
    """Text shorter or longer than allowed is rejected; list lengths count items."""
    step = validator(code={"min_length": 2, "max_length": 3}, tags={"max_length": 1})
    frame = batch(code=["a", "ab", "abcd"], tags=[["x"], ["x", "y"], None])
    assert rejected(step, frame) == [
        reject(0, "code", "min_length", "a", "'a' is shorter than min_length 2"),
        reject(1, "tags", "max_length", '["x","y"]', """'["x","y"]' is longer than max_length 1"""),
        reject(2, "code", "max_length", "abcd", "'abcd' is longer than max_length 3"),
    ]


def test_regex_searches_unless_anchored(batch: Batch) -> None:
    """An unanchored pattern matches anywhere; anchors demand the whole value."""
    assert rejected(validator(v={"regex": "[0-9]"}), batch(v=["a1", "b"])) == [
        reject(1, "v", "regex", "b", "'b' does not match regex '[0-9]'"),
    ]
    assert rejected(validator(v={"regex": "^[0-9]+$"}), batch(v=["a1", "12"])) == [
        reject(0, "v", "regex", "a1", "'a1' does not match regex '^[0-9]+$'"),
    ]


def test_a_regex_polars_cannot_run_is_refused_up_front() -> None:
    """Back-references are valid Python but not Rust regex; the error says so at build time."""
    with pytest.raises(StepError) as error:
        validator(v={"regex": r"(a)\1"})
    assert str(error.value).startswith(
        "resource 'tickets', step 'validate': column 'v': regex '(a)\\\\1' is not supported: "
    )
    assert "backreferences are not supported" in str(error.value)


def test_unique_within_a_batch_keeps_the_first(batch: Batch) -> None:
    """Later occurrences are rejected; nulls never are."""
    step = validator(id={"unique": True})
    frame = batch(id=[1, 2, 1, None, None, 1])
    message = "'1' is not unique: it appeared earlier in this run"
    assert rejected(step, frame) == [
        reject(2, "id", "unique", "1", message),
        reject(5, "id", "unique", "1", message),
    ]


def test_unique_holds_across_batches(batch: Batch) -> None:
    """A value let through in one batch is rejected in the next."""
    step = validator(id={"unique": True})
    assert step(batch(id=[1, 2])).frame.height == 2
    result = step(batch(id=[2, 3, 3]))
    assert result.frame.get_column("id").to_list() == [3]
    assert result.rejects.get_column(ROW).to_list() == [0, 2]


def test_unique_keeps_the_first_row_that_passes_everything_else(batch: Batch) -> None:
    """A duplicate of a quarantined row is not a duplicate of anything loaded."""
    step = validator(id={"unique": True}, status={"in": ["ok"]})
    result = step(batch(id=[1, 1, 1], status=["bad", "ok", "ok"]))
    assert result.frame.get_column(ROW).to_list() == [1]
    assert result.rejects.sort(ROW).select(ROW, "rule").rows() == [(0, "in"), (2, "unique")]
    assert step(batch(id=[1], status=["ok"])).frame.height == 0


def test_unique_compares_across_changing_types(batch: Batch) -> None:
    """A column that is text in one batch and int in another still compares by value."""
    step = validator(id={"unique": True})
    step(batch(id=[1, 2]))
    assert step(batch(id=["2", "3"])).frame.get_column("id").to_list() == ["3"]


def test_checks_reject_rows_where_the_expression_is_false(batch: Batch) -> None:
    """false fails; null passes; name, field and message are used when given."""
    checks = [
        Check(
            expr="closed_at >= opened_at",
            name="order",
            field="Closed At",
            message="closed before opened",
        ),
        Check(expr="priority < 5"),
    ]
    step = validator(checks)
    frame = batch(opened_at=[1, 5, None], closed_at=[2, 3, 1], priority=[1, 7, None])
    assert rejected(step, frame) == [
        reject(1, None, "check", None, "check failed: priority < 5"),
        reject(1, "closed_at", "order", "3", "closed before opened"),
    ]


def test_a_check_that_is_not_a_condition_is_a_step_error(batch: Batch) -> None:
    """An expression giving numbers cannot decide anything."""
    with pytest.raises(StepError) as error:
        validator([Check(expr="a + 1", name="sum")])(batch(a=[1]))
    assert str(error.value) == (
        "resource 'tickets', step 'validate': check 'sum' must be a condition, but 'a + 1' "
        "gives Int64 values"
    )


def test_a_check_with_bad_sql_is_a_step_error(batch: Batch) -> None:
    """DuckDB's error names the check."""
    with pytest.raises(StepError) as error:
        validator([Check(expr="nosuch > 1")])(batch(a=[1]))
    assert str(error.value).startswith(
        "resource 'tickets', step 'validate': check 'nosuch > 1': cannot evaluate 'nosuch > 1': "
        'Binder Error: Referenced column "nosuch" not found'
    )


def test_a_row_failing_several_rules_has_several_rejects(batch: Batch) -> None:
    """Every broken rule is reported; the row leaves once."""
    step = validator([Check(expr="n < 0", name="negative")], n={"max": 1, "in": [-5]})
    result = step(batch(n=[3]))
    assert result.frame.height == 0
    assert sorted(result.rejects.get_column("rule").to_list()) == ["in", "max", "negative"]


def test_check_options_forbid_unknown_keys() -> None:
    """A misspelled key in a check is a validation error, not ignored."""
    with pytest.raises(ValueError, match="exprr"):
        Check.model_validate({"expr": "a > 1", "exprr": "x"})


def test_validate_works_on_an_empty_batch(context: StepContext) -> None:
    """No rows, no rejects, with or without checks."""
    frame = pl.DataFrame({ROW: [], "a": []}, schema={ROW: pl.Int64, "a": pl.Int64})
    step = validator([Check(expr="a > 1")], a={"required": True, "unique": True, "min": 0})
    result = step(frame)
    assert result.frame.height == 0
    assert result.rejects.height == 0


def test_a_check_over_a_declared_absent_column_passes(batch: Batch) -> None:
    """With the field absent from the batch the check sees null, and null passes."""
    step = validator([Check(expr="closed_at > 0")], closed_at={"type": "bigint"})
    assert rejected(step, batch(a=[1])) == []
