"""cast: declared types, and rejects for values that do not fit."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladle.batch import ROW
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.schema import parse_type
from ladle.steps import StepContext
from ladle.steps.cast import Cast, caster_for
from tests.steps.conftest import Batch


def cast(values: list[Any], type_: str, dtype: Any = None) -> tuple[list[Any], list[bool]]:
    """Cast one Series to ``type_``: its values and its failure mask."""
    result, failed = caster_for(parse_type(type_))(pl.Series("v", values, dtype=dtype))
    return result.to_list(), failed.to_list()


@pytest.mark.parametrize(
    ("text", "type_", "expected"),
    [
        ("12", "int", 12),
        (" 12 ", "bigint", 12),
        ("+7", "int", 7),
        ("1e3", "int", 1000),
        ("12.0", "bigint", 12),
        ("-0", "int", 0),
        ("99999999999", "bigint", 99999999999),
        ("12.50", "double", 12.5),
        (" 1e3 ", "double", 1000.0),
        ("12.50", "decimal(10,2)", Decimal("12.50")),
        ("1.235", "decimal(10,2)", Decimal("1.24")),
        ("7", "decimal(4,1)", Decimal("7.0")),
    ],
)
def test_numbers_from_text(text: str, type_: str, expected: Any) -> None:
    """Trimmed numeric text becomes the number it spells."""
    assert cast([text], type_) == ([expected], [False])


@pytest.mark.parametrize(
    ("text", "type_"),
    [
        ("abc", "int"),
        ("12.5", "int"),
        ("99999999999", "int"),
        ("1,000", "bigint"),
        ("0x10", "bigint"),
        ("1e30", "bigint"),
        ("twelve", "double"),
        ("123456789.99", "decimal(10,2)"),
        ("[1, 2]", "double"),
    ],
)
def test_numbers_that_do_not_fit_fail(text: str, type_: str) -> None:
    """Text that is not a number of the type, or overflows it, fails."""
    assert cast([text], type_) == ([None], [True])


def test_numbers_from_numbers() -> None:
    """Floats go into integers only when integral; out-of-range ints fail instead of wrapping."""
    assert cast([1.0, 1.5, math.nan, None], "int") == ([1, None, None, None], [0, 1, 1, 0])
    assert cast([1, 2**40], "int") == ([1, None], [False, True])
    assert cast([1, 2**40], "bigint") == ([1, 2**40], [False, False])
    assert cast([True, False], "int") == ([1, 0], [False, False])
    assert cast([1, 2], "double") == ([1.0, 2.0], [False, False])
    assert cast([1.005], "decimal(10,2)") == ([Decimal("1.00")], [False])


@pytest.mark.parametrize(
    "words",
    [
        ("true", "yes", "y", "t", "1", "on", "TRUE", " Yes "),
        ("false", "no", "n", "f", "0", "off", "False", "OFF"),
    ],
)
def test_bool_words(words: tuple[str, ...]) -> None:
    """Every accepted word, in any case and with spaces around, is a bool."""
    expected = words[0] == "true"
    assert cast(list(words), "bool") == ([expected] * len(words), [False] * len(words))


def test_bool_from_numbers_and_bad_words() -> None:
    """0 and 1 are bools; other numbers and words fail."""
    assert cast([1, 0, 2, None], "bool") == ([True, False, None, None], [0, 0, 1, 0])
    assert cast(["maybe", "2"], "bool") == ([None, None], [True, True])


def test_text_keeps_text_and_renders_other_values() -> None:
    """Text is not trimmed; lists and structs become compact JSON."""
    assert cast([" a ", None], "text") == ([" a ", None], [False, False])
    assert cast([[1, 2], None], "text") == (["[1,2]", None], [False, False])
    assert cast([{"a": 1}], "text") == (['{"a":1}'], [False])
    assert cast([True], "text") == (["true"], [False])


def test_json_keeps_valid_json_text_and_encodes_other_text() -> None:
    """Valid JSON text is kept; anything else becomes a JSON string."""
    values = ['{"a": 1}', "[1, 2]", "12", "true", "null", '"q"', "abc", "[1,]", "NaN", 'say "hi"']
    expected = ['{"a": 1}', "[1, 2]", "12", "true", "null", '"q"', '"abc"', '"[1,]"', '"NaN"']
    expected.append('"say \\"hi\\""')
    assert cast(values, "json") == (expected, [False] * len(values))


def test_json_from_nested_and_scalar_values() -> None:
    """Lists, structs, numbers and bools become JSON; NaN cannot and fails."""
    assert cast([[1, 2], [], None], "json") == (["[1,2]", "[]", None], [False] * 3)
    assert cast([{"a": 1, "b": None}], "json") == (['{"a":1,"b":null}'], [False])
    assert cast([1.5, math.nan, 2], "json") == (["1.5", None, "2.0"], [False, True, False])
    assert cast([True, None], "json") == (["true", None], [False, False])


def test_null_stays_null_and_blank_text_is_null() -> None:
    """Missing values are not failures, for every type but text."""
    for type_ in ("int", "double", "decimal(5,2)", "bool", "json", "date", "timestamptz"):
        spec = ColumnSpec(type=parse_type(type_))
        context = StepContext(resource="t", columns={"v": spec})
        frame = pl.DataFrame({ROW: [0, 1, 2], "v": [None, "", "  "]})
        result = Cast(None, context)(frame)
        assert result.frame.get_column("v").to_list() == [None, None, None]
        assert result.frame.get_column("v").dtype == parse_type(type_).polars
        assert result.rejects.height == 0


def test_cast_rejects_rows_with_values_that_do_not_parse(
    batch: Batch, context: StepContext
) -> None:
    """The row goes to the rejects with rule, field, original value and message."""
    frame = batch(id=["1", "abc", "3"], n=["x", "2", "3"])
    result = Cast({"id": "bigint", "n": "int"}, context)(frame)
    assert result.frame.get_column(ROW).to_list() == [2]
    assert result.frame.get_column("id").to_list() == [3]
    assert result.rejects.sort(ROW).to_dicts() == [
        {ROW: 0, "field": "n", "rule": "type", "value": "x", "message": "cannot parse 'x' as int"},
        {
            ROW: 1,
            "field": "id",
            "rule": "type",
            "value": "abc",
            "message": "cannot parse 'abc' as bigint",
        },
    ]


def test_a_row_failing_two_columns_has_two_rejects(batch: Batch, context: StepContext) -> None:
    """Each failed value is reported; the row leaves once."""
    frame = batch(a=["x"], b=["maybe"])
    result = Cast({"a": "int", "b": "bool"}, context)(frame)
    assert result.frame.height == 0
    assert sorted(result.rejects.get_column("field").to_list()) == ["a", "b"]


def test_a_list_value_is_rejected_with_its_json(batch: Batch, context: StepContext) -> None:
    """A nested value that cannot become a number is quoted in the reject as JSON."""
    frame = batch(a=[[1, 2]])
    result = Cast({"a": "int"}, context)(frame)
    assert result.rejects.get_column("message").to_list() == ["cannot parse '[1,2]' as int"]


def test_no_options_cast_the_declared_columns(batch: Batch) -> None:
    """Without options every declared column with a type is cast; others are left alone."""
    columns = {
        "id": ColumnSpec(type=parse_type("bigint")),
        "note": ColumnSpec(required=True),
        "Created At": ColumnSpec(type=parse_type("timestamptz"), timezone="Europe/Paris"),
    }
    context = StepContext(resource="t", columns=columns)
    frame = batch(id=["7"], note=[" 1 "], created_at=["2024-01-02 03:00"])
    result = Cast(None, context)(frame)
    assert result.frame.to_dicts() == [
        {ROW: 0, "id": 7, "note": " 1 ", "created_at": datetime(2024, 1, 2, 2, tzinfo=UTC)},
    ]


def test_an_absent_declared_column_is_added_with_its_type(batch: Batch) -> None:
    """Every batch leaves cast with every declared column, typed."""
    context = StepContext(
        resource="t", columns={"Amount": ColumnSpec(type=parse_type("decimal(8,2)"))}
    )
    result = Cast({}, context)(batch(id=[1]))
    assert result.frame.schema["amount"] == pl.Decimal(8, 2)
    assert result.frame.get_column("amount").to_list() == [None]


def test_declared_formats_and_zone_apply_to_options_too(batch: Batch) -> None:
    """A column cast through options still uses its declared formats and zone."""
    spec = ColumnSpec(formats=["%d/%m/%Y %H:%M"], timezone="Asia/Tokyo")
    context = StepContext(resource="t", columns={"seen": spec})
    result = Cast({"seen": "timestamp"}, context)(batch(seen=["02/01/2024 09:00"]))
    assert result.frame.get_column("seen").to_list() == [datetime(2024, 1, 2, 9)]
    result = Cast({"seen": "timestamptz"}, context)(batch(seen=["02/01/2024 09:00"]))
    assert result.frame.get_column("seen").to_list() == [datetime(2024, 1, 2, tzinfo=UTC)]


def test_the_context_zone_applies_when_the_column_names_none(batch: Batch) -> None:
    """A naive reading is located in the resource's zone."""
    context = StepContext(resource="t", timezone="America/New_York")
    result = Cast({"at": "timestamptz"}, context)(batch(at=["2024-01-02 00:00"]))
    assert result.frame.get_column("at").to_list() == [datetime(2024, 1, 2, 5, tzinfo=UTC)]


def test_an_unknown_type_is_a_step_error(context: StepContext) -> None:
    """A type that does not exist is reported with the known ones."""
    with pytest.raises(StepError) as error:
        Cast({"id": "integerr"}, context)
    assert str(error.value) == (
        "resource 'tickets', step 'cast': column 'id': unknown type 'integerr'; use one of "
        "text, int, bigint, double, decimal, bool, date, timestamp, timestamptz, json"
    )


def test_an_unknown_zone_is_a_step_error() -> None:
    """A declared zone that does not exist stops the run before any batch."""
    context = StepContext(
        resource="t", columns={"at": ColumnSpec(type=parse_type("date"), timezone="Mars")}
    )
    with pytest.raises(StepError) as error:
        Cast(None, context)
    assert str(error.value) == (
        "resource 't', step 'cast': column 'at': unknown time zone 'Mars'; use an IANA name "
        "such as 'Europe/Paris'"
    )


def test_cast_handles_an_empty_batch(context: StepContext) -> None:
    """No rows in, no rows and no rejects out, with the declared dtypes."""
    frame = pl.DataFrame({ROW: [], "id": []}, schema={ROW: pl.Int64, "id": pl.String})
    result = Cast({"id": "int", "at": "date"}, context)(frame)
    assert result.frame.schema == pl.Schema({ROW: pl.Int64, "id": pl.Int32, "at": pl.Date})
    assert result.rejects.height == 0


# -- properties ---------------------------------------------------------------------------

TYPES = ["int", "bigint", "double", "decimal(12,3)", "bool", "text", "json"]


@given(texts=st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=20))
def test_arbitrary_text_never_raises(texts: list[str | None]) -> None:
    """Whatever text arrives, every cast returns values and a mask, never an exception."""
    for type_ in TYPES:
        values, failed = cast(texts, type_, pl.String)
        assert len(values) == len(failed) == len(texts)
        assert all(v is None for v, f in zip(values, failed, strict=True) if f)


@given(number=st.integers(min_value=-(2**31), max_value=2**31 - 1), pad=st.sampled_from(["", " "]))
def test_int_text_round_trips(number: int, pad: str) -> None:
    """An int written as text casts back to itself."""
    assert cast([f"{pad}{number}{pad}"], "int") == ([number], [False])


@given(number=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_bigint_text_round_trips(number: int) -> None:
    """A 64-bit integer written as text casts back to itself, exactly."""
    assert cast([str(number)], "bigint") == ([number], [False])


@given(number=st.integers().filter(lambda n: not -(2**31) <= n < 2**31))
def test_int_overflow_fails(number: int) -> None:
    """An integer outside int32 fails rather than wraps."""
    assert cast([str(number)], "int") == ([None], [True])


@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_double_text_round_trips(number: float) -> None:
    """A float written with repr casts back to the same float."""
    assert cast([repr(number)], "double") == ([number], [False])


@given(
    word=st.sampled_from(["true", "yes", "y", "t", "1", "on", "false", "no", "n", "f", "0", "off"]),
    case=st.sampled_from([str.lower, str.upper, str.title]),
)
def test_bool_words_round_trip(word: str, case: Any) -> None:
    """Each accepted word in any case is the bool it names."""
    expected = word in {"true", "yes", "y", "t", "1", "on"}
    assert cast([case(word)], "bool") == ([expected], [False])


@given(texts=st.lists(st.text(max_size=20), min_size=1, max_size=10))
def test_json_cast_always_yields_valid_json(texts: list[str]) -> None:
    """Whatever the text, what json produces parses as JSON."""
    values, _ = cast(texts, "json")
    for value in values:
        if value is not None:
            json.loads(value)
