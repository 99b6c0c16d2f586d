"""cast: declared types, and rejects for values that do not fit."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
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
    # A float goes into a decimal by its shortest text, as it prints: 1.005 is 1.005.
    assert cast([1.005], "decimal(10,2)") == ([Decimal("1.01")], [False])


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


# -- exact numbers -------------------------------------------------------------------------


def refusals(values: list[Any], type_: str, dtype: Any = None) -> list[tuple[str, str]]:
    """Cast one Series to ``type_`` through the step: (rule, message) of each rejected value."""
    context = StepContext(resource="t")
    frame = pl.DataFrame({ROW: range(len(values)), "v": pl.Series(values, dtype=dtype)})
    rejects = Cast({"v": type_}, context)(frame).rejects.sort(ROW)
    return list(zip(rejects.get_column("rule"), rejects.get_column("message"), strict=True))


@pytest.mark.parametrize(
    ("text", "type_", "expected"),
    [
        ("9007199254740993.0", "bigint", 9007199254740993),
        ("9223372036854775807.000", "bigint", 2**63 - 1),
        ("-9223372036854775808", "bigint", -(2**63)),
        ("-922337203685477580.8e1", "bigint", -(2**63)),
        ("12.000", "int", 12),
        ("1.2e3", "int", 1200),
        ("+7", "bigint", 7),
        (" 12 ", "int", 12),
        ("2147483647", "int", 2**31 - 1),
        ("-2147483648.0", "int", -(2**31)),
        ("0.0e-999999", "bigint", 0),
    ],
)
def test_integers_are_read_exactly_from_text(text: str, type_: str, expected: int) -> None:
    """Integral text becomes its integer exactly, whatever way it is written: no float between."""
    assert cast([text], type_) == ([expected], [False])


def test_integers_are_read_exactly_from_numbers() -> None:
    """Whole floats, decimals and wide integers become integers; nothing is truncated or wrapped."""
    assert cast([12.0, -0.0, 2.0**62], "bigint", pl.Float64) == ([12, 0, 2**62], [False] * 3)
    assert cast([float(-(2**63)), 2.0**63], "bigint") == ([-(2**63), None], [False, True])
    big = Decimal("9223372036854775807.0000000000")
    decimals = [big, Decimal("12.5"), Decimal("-3")]
    assert cast(decimals, "bigint", pl.Decimal(38, 10)) == ([2**63 - 1, None, -3], [0, 1, 0])
    wide = [2**63 - 1, 2**63, -(2**63) - 1, 5]
    assert cast(wide, "bigint", pl.Int128) == ([2**63 - 1, None, None, 5], [0, 1, 1, 0])
    assert cast([2**31, 7], "int", pl.Int128) == ([None, 7], [True, False])


@pytest.mark.parametrize(
    ("values", "type_", "dtype", "expected"),
    [
        (["1.5"], "bigint", None, [("range", "'1.5' is not a whole number (bigint)")]),
        ([" 1.5 "], "int", None, [("range", "' 1.5 ' is not a whole number (int)")]),
        ([1.5], "bigint", pl.Float64, [("range", "'1.5' is not a whole number (bigint)")]),
        (
            [Decimal("12.50")],
            "int",
            pl.Decimal(38, 2),
            [("range", "'12.50' is not a whole number (int)")],
        ),
        (
            ["-9223372036854775809"],
            "bigint",
            None,
            [("range", "'-9223372036854775809' is out of range for bigint")],
        ),
        (
            ["9223372036854775808.0"],
            "bigint",
            None,
            [("range", "'9223372036854775808.0' is out of range for bigint")],
        ),
        (["2147483648"], "int", None, [("range", "'2147483648' is out of range for int")]),
        ([2**31], "int", pl.Int64, [("range", "'2147483648' is out of range for int")]),
        (
            [2**63],
            "bigint",
            pl.Int128,
            [("range", "'9223372036854775808' is out of range for bigint")],
        ),
        ([1e20], "bigint", pl.Float64, [("range", "'1e+20' is out of range for bigint")]),
        (["1e30"], "bigint", None, [("range", "'1e30' is out of range for bigint")]),
        (["1e999999999999"], "int", None, [("range", "'1e999999999999' is out of range for int")]),
        (["abc"], "bigint", None, [("type", "cannot parse 'abc' as bigint")]),
        (["1_000"], "bigint", None, [("type", "cannot parse '1_000' as bigint")]),
        (["١٢"], "int", None, [("type", "cannot parse '١٢' as int")]),
        ([math.nan], "int", pl.Float64, [("type", "cannot parse 'NaN' as int")]),
        (["1e309"], "double", None, [("range", "'1e309' is out of range for double")]),
        (["-1e309"], "double", None, [("range", "'-1e309' is out of range for double")]),
        (
            ["1e-400"],
            "double",
            None,
            [("range", "'1e-400' is too close to zero for double (it would be 0)")],
        ),
        (["twelve"], "double", None, [("type", "cannot parse 'twelve' as double")]),
        (
            ["123456789012.5"],
            "decimal(12,2)",
            None,
            [
                (
                    "range",
                    "'123456789012.5' does not fit decimal(12,2) (at most 10 digits before the "
                    "point)",
                )
            ],
        ),
        (
            [123456789012.5],
            "decimal(12,2)",
            pl.Float64,
            [
                (
                    "range",
                    "'123456789012.5' does not fit decimal(12,2) (at most 10 digits before the "
                    "point)",
                )
            ],
        ),
        (
            [Decimal("123456789012.5")],
            "decimal(12,2)",
            pl.Decimal(38, 1),
            [
                (
                    "range",
                    "'123456789012.5' does not fit decimal(12,2) (at most 10 digits before the "
                    "point)",
                )
            ],
        ),
        (
            [10**12],
            "decimal(12,2)",
            pl.Int128,
            [
                (
                    "range",
                    "'1000000000000' does not fit decimal(12,2) (at most 10 digits before the "
                    "point)",
                )
            ],
        ),
        (
            ["99.995"],
            "decimal(4,2)",
            None,
            [("range", "'99.995' does not fit decimal(4,2) (at most 2 digits before the point)")],
        ),
        (["NaN"], "decimal(4,2)", None, [("type", "cannot parse 'NaN' as decimal(4,2)")]),
        (
            ["-9999999999.995"],
            "decimal(12,2)",
            None,
            [
                (
                    "range",
                    "'-9999999999.995' does not fit decimal(12,2) (at most 10 digits before the "
                    "point)",
                )
            ],
        ),
    ],
)
def test_refused_numbers_say_why(
    values: list[Any], type_: str, dtype: Any, expected: list[tuple[str, str]]
) -> None:
    """A value that is not a number, or does not fit, is refused with its rule and reason."""
    assert refusals(values, type_, dtype) == expected
    assert cast(values, type_, dtype) == ([None] * len(values), [True] * len(values))


def test_double_keeps_the_values_the_databases_store() -> None:
    """NaN and infinities as written, zeros as written, the nearest double for the rest."""
    texts = ["NaN", "inf", "-inf", "Infinity", "0e-400", "-0.0", "4.9e-324", "0.1", "1e308"]
    values, failed = cast(texts, "double")
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, math.inf, 0.0, -0.0, 5e-324, 0.1, 1e308]
    assert not any(failed)


def test_double_from_decimals_is_the_nearest_double() -> None:
    """A decimal becomes the double nearest its exact value."""
    exact = Decimal("12345678901234567890.1234567890")
    values, failed = cast([exact, Decimal("0.1")], "double", pl.Decimal(38, 10))
    assert (values, failed) == ([float(exact), 0.1], [False, False])


@pytest.mark.parametrize(
    ("text", "type_", "expected"),
    [
        ("12345678901234567890.1234567890", "decimal(38,10)", "12345678901234567890.1234567890"),
        ("1.005", "decimal(10,2)", "1.01"),
        ("-1.005", "decimal(10,2)", "-1.01"),
        ("1.004", "decimal(10,2)", "1.00"),
        ("1.015", "decimal(10,2)", "1.02"),
        ("1.025", "decimal(10,2)", "1.03"),
        ("2.5", "decimal(5,0)", "3"),
        ("-2.5", "decimal(5,0)", "-3"),
        ("1.0049999999999999999999", "decimal(10,2)", "1.00"),
        ("1.0050000000000000000001e0", "decimal(10,2)", "1.01"),
        ("1.2355e1", "decimal(10,2)", "12.36"),
        ("25e-3", "decimal(10,2)", "0.03"),
        ("-0.001", "decimal(10,2)", "0.00"),
        ("1e-999999", "decimal(10,2)", "0.00"),
        ("0e999999", "decimal(2,2)", "0.00"),
        ("99.994", "decimal(4,2)", "99.99"),
        (".5", "decimal(1,1)", "0.5"),
        ("7", "decimal(4,1)", "7.0"),
        ("9999999999.99", "decimal(12,2)", "9999999999.99"),
        ("  12.50 ", "decimal(12,2)", "12.50"),
        ("0000000000001.50", "decimal(3,2)", "1.50"),
        ("9999999999.994999", "decimal(12,2)", "9999999999.99"),
        ("-9999999999.9949999999999999999999999", "decimal(12,2)", "-9999999999.99"),
        (
            "0.12345678901234567890123456789012345678",
            "decimal(38,38)",
            "0.12345678901234567890123456789012345678",
        ),
        (
            "12345678901234567890123456789012345678.5",
            "decimal(38,0)",
            "12345678901234567890123456789012345679",
        ),
        ("1.5", "decimal(38,0)", "2"),
    ],
)
def test_decimals_are_exact_and_round_half_away_from_zero(
    text: str, type_: str, expected: str
) -> None:
    """Decimal text is read exactly; excess decimals round half away from zero, as PostgreSQL."""
    assert cast([text], type_) == ([Decimal(expected)], [False])


def test_decimals_from_decimals_and_integers() -> None:
    """Decimals and integers go into a decimal exactly, rounded half away from zero."""
    exact = Decimal("12345678901234567890.1234567890")
    assert cast([exact], "decimal(38,10)", pl.Decimal(38, 10)) == ([exact], [False])
    halves = [Decimal("1.005"), Decimal("-1.005"), Decimal("1.004"), Decimal("1.015")]
    expected = [Decimal(d) for d in ("1.01", "-1.01", "1.00", "1.02")]
    assert cast(halves, "decimal(10,2)", pl.Decimal(38, 3)) == (expected, [False] * 4)
    assert cast([Decimal("1.5")], "decimal(10,2)", pl.Decimal(38, 1)) == (
        [Decimal("1.50")],
        [False],
    )
    wide = [10**30, -7]
    assert cast(wide, "decimal(38,2)", pl.Int128) == ([Decimal(10**30), Decimal(-7)], [0, 0])
    assert cast([True, None], "decimal(3,1)") == ([Decimal("1.0"), None], [False, False])


def test_rounding_at_the_edge_of_a_decimal_never_raises() -> None:
    """Rounding that carries past the input's precision (Polars raises there) is done exactly."""
    edge = Decimal("999999999999999999999999999999999999.5")
    rounded = Decimal("1000000000000000000000000000000000000")
    assert cast([edge, Decimal("-1.5")], "decimal(38,0)", pl.Decimal(38, 1)) == (
        [rounded, Decimal(-2)],
        [False, False],
    )
    assert cast([edge], "bigint", pl.Decimal(38, 1)) == ([None], [True])
    assert cast([Decimal("-9.5"), Decimal("-9")], "int", pl.Decimal(38, 37)) == (
        [None, -9],
        [True, False],
    )
    nines = Decimal("9999999999.9995")
    assert refusals([nines], "decimal(12,2)", pl.Decimal(15, 4)) == [
        ("range", f"'{nines}' does not fit decimal(12,2) (at most 10 digits before the point)")
    ]
    assert refusals(["99999999999.999", "9999999999.995"], "decimal(12,2)") == [
        (
            "range",
            "'99999999999.999' does not fit decimal(12,2) (at most 10 digits before the point)",
        ),
        (
            "range",
            "'9999999999.995' does not fit decimal(12,2) (at most 10 digits before the point)",
        ),
    ]


def test_a_decimal_that_does_not_fit_never_raises(batch: Batch, context: StepContext) -> None:
    """Too many digits before the point is a reject of that row, not an error for the run."""
    frame = batch(amount=[12.5, 123456789012.5], id=[1, 2])
    result = Cast({"amount": "decimal(12,2)"}, context)(frame)
    assert result.frame.get_column("amount").to_list() == [Decimal("12.50")]
    assert result.rejects.to_dicts() == [
        {
            ROW: 1,
            "field": "amount",
            "rule": "range",
            "value": "123456789012.5",
            "message": "'123456789012.5' does not fit decimal(12,2) (at most 10 digits before "
            "the point)",
        }
    ]


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


BIGINT = (-(2**63), 2**63 - 1)
NUMBER_TEXT = r"\A[+-]?(?:[0-9]{1,25}\.?[0-9]{0,25}|\.[0-9]{1,25})(?:[eE][+-]?[0-9]{1,3})?\Z"


def _spellings(number: int) -> list[str]:
    """Ways a source may write an integer: plain, signed, padded, with zero decimals, in E form."""
    return [str(number), f" {number:+d} ", f"{number}.000", f"{Decimal(number):E}", f"{number}e0"]


@given(number=st.integers(min_value=BIGINT[0], max_value=BIGINT[1]))
def test_any_bigint_round_trips_however_written(number: int) -> None:
    """Every 64-bit integer, however it is written, and as Int128, Float-free, casts to itself."""
    texts = _spellings(number)
    assert cast(texts, "bigint") == ([number] * len(texts), [False] * len(texts))
    assert cast([number], "bigint", pl.Int128) == ([number], [False])
    assert cast([Decimal(number)], "bigint", pl.Decimal(38, 0)) == ([number], [False])


@given(number=st.one_of(st.integers(max_value=BIGINT[0] - 1), st.integers(min_value=BIGINT[1] + 1)))
def test_any_integer_out_of_bigint_is_refused(number: int) -> None:
    """An integer beyond 64 bits is refused under rule range, never wrapped or clamped."""
    for text in _spellings(number):
        message = f"'{text}' is out of range for bigint"
        assert refusals([text], "bigint") == [("range", message)]


@given(
    number=st.decimals(
        min_value=Decimal("-9999999999.999"),
        max_value=Decimal("9999999999.999"),
        places=3,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_any_decimal_round_trips(number: Decimal) -> None:
    """Every decimal(13,3) value, as text or as a Polars decimal, casts to itself exactly."""
    texts = [str(number), f"{number:f}", f" {number:E} "]
    assert cast(texts, "decimal(13,3)") == ([number] * 3, [False] * 3)
    assert cast([number], "decimal(13,3)", pl.Decimal(38, 3)) == ([number], [False])
    assert cast([number], "decimal(38,10)", pl.Decimal(13, 3)) == ([number], [False])


@given(
    whole=st.integers(min_value=10**10, max_value=10**40),
    sign=st.sampled_from(["", "-"]),
    fraction=st.sampled_from(["", ".5", ".001"]),
)
def test_any_decimal_too_wide_is_refused(whole: int, sign: str, fraction: str) -> None:
    """More digits before the point than the type holds is refused, never altered."""
    text = f"{sign}{whole}{fraction}"
    message = f"'{text}' does not fit decimal(13,3) (at most 10 digits before the point)"
    assert refusals([text], "decimal(13,3)") == [("range", message)]


def _expected(text: str, type_: str) -> Any:
    """What exact arithmetic says ``text`` is as ``type_``: a value, or None when refused."""
    number = Decimal(text)
    if type_ in ("int", "bigint"):
        bits = 31 if type_ == "int" else 63
        whole = number == number.to_integral_value()
        return int(number) if whole and -(2**bits) <= number < 2**bits else None
    if type_ == "double":
        value = float(number)
        return None if math.isinf(value) or (value == 0 and number != 0) else value
    target = parse_type(type_)
    scale = target.scale or 0
    with localcontext() as exact:
        exact.prec = 2000  # enough for any text NUMBER_TEXT spells, at any scale
        rounded = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return rounded if abs(rounded) < 10 ** ((target.precision or 38) - scale) else None


@given(
    text=st.from_regex(NUMBER_TEXT),
    type_=st.sampled_from(
        ["int", "bigint", "double", "decimal(13,3)", "decimal(38,0)", "decimal(38,37)"]
    ),
)
def test_any_number_text_is_read_as_exact_arithmetic_says(text: str, type_: str) -> None:
    """Every number text casts to what Decimal arithmetic makes of it, or is refused for range."""
    expected = _expected(text, type_)
    values, failed = cast([text], type_)
    assert (values, failed) == ([expected], [expected is None])
    if expected is None:
        assert [rule for rule, _ in refusals([text], type_)] == ["range"]


@given(
    coefficient=st.integers(min_value=-(10**37) + 1, max_value=10**37 - 1),
    scale=st.integers(min_value=0, max_value=37),
    type_=st.sampled_from(
        ["int", "bigint", "double", "decimal(13,3)", "decimal(38,0)", "decimal(38,37)"]
    ),
)
def test_any_polars_decimal_is_cast_as_exact_arithmetic_says(
    coefficient: int, scale: int, type_: str
) -> None:
    """Every Polars decimal casts to what Decimal arithmetic makes of it, or is refused."""
    number = Decimal(coefficient).scaleb(-scale)
    expected = _expected(str(number), type_)
    values, failed = cast([number], type_, pl.Decimal(38, scale))
    assert (values, failed) == ([expected], [expected is None])


@given(
    number=st.floats(allow_nan=False, allow_infinity=False),
    type_=st.sampled_from(["int", "bigint", "decimal(13,3)", "decimal(38,10)"]),
)
def test_any_float_is_cast_as_postgresql_casts_it(number: float, type_: str) -> None:
    """A float goes into an integer by its exact value, into a decimal by its shortest text."""
    if type_ in ("int", "bigint"):
        expected = _expected(str(Decimal(number)), type_)  # the float's exact binary value
    else:
        expected = _expected(repr(number), type_)
    assert cast([number], type_, pl.Float64) == ([expected], [expected is None])
