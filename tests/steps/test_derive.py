"""derive: SQL expressions evaluated by DuckDB over a batch."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from ladle.batch import ROW
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.schema import parse_type
from ladle.steps import StepContext
from ladle.steps.derive import Derive
from tests.steps.conftest import Batch


def test_derive_adds_columns(batch: Batch, context: StepContext) -> None:
    """Each expression becomes a column, row for row."""
    frame = batch(a=[1, 2, 3], b=[10, 20, None])
    result = Derive({"total": "a + b", "label": "'n' || a"}, context)(frame)
    assert result.frame.columns == [ROW, "a", "b", "total", "label"]
    assert result.frame.get_column("total").to_list() == [11, 22, None]
    assert result.frame.get_column("label").to_list() == ["n1", "n2", "n3"]


def test_a_later_expression_sees_an_earlier_one(batch: Batch, context: StepContext) -> None:
    """Expressions are evaluated in order."""
    frame = batch(a=[1, 2])
    result = Derive({"double": "a * 2", "quad": "double * 2"}, context)(frame)
    assert result.frame.get_column("quad").to_list() == [4, 8]


def test_row_order_survives_a_reordering_query(batch: Batch, context: StepContext) -> None:
    """A window function may reorder rows inside DuckDB; results still line up."""
    frame = batch(g=["b", "a", "b", "a"], v=[1, 2, 3, 4])
    result = Derive({"group_total": "sum(v) OVER (PARTITION BY g)"}, context)(frame)
    assert result.frame.get_column("group_total").to_list() == [4, 6, 4, 6]


def test_existing_columns_keep_their_exact_types(context: StepContext) -> None:
    """Zoned datetimes, decimals and lists are not round-tripped through DuckDB."""
    frame = pl.DataFrame(
        {
            ROW: [0],
            "at": [datetime(2024, 1, 2, 3, tzinfo=UTC)],
            "amount": [Decimal("1.50")],
            "tags": [["a", "b"]],
        },
        schema={
            ROW: pl.Int64,
            "at": pl.Datetime("ns", "UTC"),
            "amount": pl.Decimal(6, 2),
            "tags": pl.List(pl.String),
        },
    )
    result = Derive({"n": "len(tags)"}, context)(frame)
    assert result.frame.drop("n").equals(frame)
    assert result.frame.schema["at"] == pl.Datetime("ns", "UTC")


def test_the_session_zone_is_the_resources(batch: Batch) -> None:
    """dayofweek of a UTC instant is the local day in the resource's zone."""
    frame = batch(created=[datetime(2024, 1, 6, 23, 30)]).with_columns(
        pl.col("created").dt.replace_time_zone("UTC")
    )
    paris = StepContext(resource="t", timezone="Europe/Paris")
    expressions = {
        "dow": "dayofweek(created)",
        "hour": "hour(created)",
        "later": "created + INTERVAL 1 HOUR",
    }
    result = Derive(expressions, paris)(frame)
    assert result.frame.get_column("dow").to_list() == [0]  # Sunday in Paris, Saturday in UTC
    assert result.frame.get_column("hour").to_list() == [0]
    later = result.frame.get_column("later")
    assert later.dtype == pl.Datetime("us", "UTC")
    assert later.to_list() == [datetime(2024, 1, 7, 0, 30, tzinfo=UTC)]


def test_derive_may_replace_an_existing_column(batch: Batch, context: StepContext) -> None:
    """A derived column named like an existing one takes its place."""
    frame = batch(status=["open", None], n=[1, 2])
    result = Derive({"Status": "upper(status)"}, context)(frame)
    assert result.frame.columns == [ROW, "status", "n"]
    assert result.frame.get_column("status").to_list() == ["OPEN", None]


def test_derive_works_on_an_empty_batch(context: StepContext) -> None:
    """No rows in, no rows out, with the derived column typed."""
    frame = pl.DataFrame({ROW: [], "a": []}, schema={ROW: pl.Int64, "a": pl.Int64})
    result = Derive({"b": "a + 1"}, context)(frame)
    assert result.frame.schema == pl.Schema({ROW: pl.Int64, "a": pl.Int64, "b": pl.Int64})


def test_a_sql_error_names_the_column_and_the_expression(
    batch: Batch, context: StepContext
) -> None:
    """The error says which expression failed and what DuckDB said."""
    derive = Derive({"ok": "a + 1", "bad": "nosuch(a)"}, context)
    with pytest.raises(StepError) as error:
        derive(batch(a=[1]))
    assert str(error.value) == (
        "resource 'tickets', step 'derive': column 'bad': cannot evaluate 'nosuch(a)': "
        "Catalog Error: Scalar Function with name nosuch does not exist!"
    )


def test_a_failing_conversion_is_a_step_error(batch: Batch, context: StepContext) -> None:
    """An expression that fails on the data is reported with DuckDB's reason."""
    derive = Derive({"n": "CAST(a AS INTEGER)"}, context)
    with pytest.raises(StepError) as error:
        derive(batch(a=["x"]))
    assert str(error.value).startswith(
        "resource 'tickets', step 'derive': column 'n': cannot evaluate 'CAST(a AS INTEGER)': "
        "Conversion Error: Could not convert string 'x' to INT32"
    )


def test_an_expression_changing_the_row_count_is_refused(
    batch: Batch, context: StepContext
) -> None:
    """unnest would add rows, which a derived column cannot hold."""
    derive = Derive({"x": "unnest([1, 2])"}, context)
    with pytest.raises(StepError) as error:
        derive(batch(a=[1]))
    assert str(error.value) == (
        "resource 'tickets', step 'derive': the expressions returned 2 rows for 1; use scalar "
        "expressions (no unnest or set-returning functions)"
    )


def test_an_unknown_zone_is_refused_at_configuration() -> None:
    """The session zone is set once, when the step is built."""
    with pytest.raises(StepError) as error:
        Derive({"x": "1"}, StepContext(resource="t", timezone="Nowhere/Land"))
    assert str(error.value) == (
        "resource 't', step 'derive': cannot use time zone 'Nowhere/Land': "
        "Not implemented Error: Unknown TimeZone 'Nowhere/Land'!"
    )


def test_a_declared_column_absent_from_the_batch_reads_as_null(batch: Batch) -> None:
    """A batch in which no record had a declared field still evaluates, with nulls."""
    spec = ColumnSpec(type=parse_type("timestamptz"))
    context = StepContext(resource="t", columns={"Closed At": spec})
    result = Derive({"closed_day": "dayofweek(closed_at)"}, context)(batch(a=[1]))
    assert result.frame.columns == [ROW, "a", "closed_day"]
    assert result.frame.get_column("closed_day").to_list() == [None]


def test_an_undeclared_absent_column_is_an_error(batch: Batch, context: StepContext) -> None:
    """A name neither in the batch nor declared is more likely a typo than a missing field."""
    with pytest.raises(StepError) as error:
        Derive({"d": "dayofweek(closd_at)"}, context)(batch(a=[1]))
    assert str(error.value).startswith(
        "resource 'tickets', step 'derive': column 'd': cannot evaluate 'dayofweek(closd_at)': "
        'Binder Error: Referenced column "closd_at" not found in FROM clause!'
    )
