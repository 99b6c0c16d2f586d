"""The datetime parser behind date, timestamp and timestamptz casts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladle.schema import Kind
from ladle.steps.datetimes import DatetimeParser

PARIS = "Europe/Paris"


def parse(values: list[Any], kind: Kind = Kind.TIMESTAMPTZ, **options: Any) -> list[Any]:
    """Parse ``values`` and return the Python values, None where null or failed."""
    options.setdefault("timezone", "UTC")
    parsed, _ = DatetimeParser(kind, **options)(pl.Series("v", values))
    return parsed.to_list()


def failures(values: list[Any], kind: Kind = Kind.TIMESTAMPTZ, **options: Any) -> list[bool]:
    """The failure mask for ``values``."""
    options.setdefault("timezone", "UTC")
    _, failed = DatetimeParser(kind, **options)(pl.Series("v", values))
    return failed.to_list()


def utc(year: int, month: int, day: int, *time: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day).replace(tzinfo=UTC) + timedelta(
        **dict(zip(("hours", "minutes", "seconds", "microseconds"), time, strict=False))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", utc(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02T03:04:05.123456789+02:00", utc(2024, 1, 2, 1, 4, 5, 123456)),
        ("2024-01-02 03:04:05+0200", utc(2024, 1, 2, 1, 4, 5)),
        ("2024-01-02 03:04:05 -03", utc(2024, 1, 2, 6, 4, 5)),
        ("2024-01-02T03:04:05,5z", utc(2024, 1, 2, 3, 4, 5, 500000)),
        ("2024-01-02T03:04+05:30", utc(2024, 1, 1, 21, 34)),
        ("2024-01-02T03:04:05", utc(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02 03:04", utc(2024, 1, 2, 3, 4)),
        ("2024-01-02", utc(2024, 1, 2)),
        ("  2024-01-02T03:04:05Z  ", utc(2024, 1, 2, 3, 4, 5)),
        ("1704164645", utc(2024, 1, 2, 3, 4, 5)),
        ("1704164645123", utc(2024, 1, 2, 3, 4, 5, 123000)),
        ("1704164645.25", utc(2024, 1, 2, 3, 4, 5, 250000)),
        ("-86400", utc(1969, 12, 31)),
    ],
)
def test_iso_and_epoch_text_into_timestamptz(text: str, expected: datetime) -> None:
    """Every accepted shape of text becomes the UTC instant it denotes."""
    assert parse([text]) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "2024-02-30",
        "2024-13-01T00:00:00Z",
        "2024-01-02T25:00:00Z",
        "2024-01-02T03:04:05+24:00",
        "2024-01-02T03:04:05.1234567890Z1",
        "2024/01/02",
        "100000000000000",
        "1e9",
    ],
)
def test_text_that_is_not_a_datetime_fails(text: str) -> None:
    """An unparseable value is null and flagged, never an exception."""
    assert parse([text]) == [None]
    assert failures([text]) == [True]


def test_null_and_blank_are_missing_not_failures() -> None:
    """A null or blank value stays null and is not a failure."""
    assert parse([None, "", "   "]) == [None, None, None]
    assert failures([None, "", "   "]) == [False, False, False]


def test_naive_values_are_read_in_the_zone_then_stored_in_utc() -> None:
    """Wall-clock readings are located in the column's zone before conversion to UTC."""
    assert parse(["2024-01-02 03:04:05", "2024-07-02"], timezone=PARIS) == [
        utc(2024, 1, 2, 2, 4, 5),
        utc(2024, 7, 1, 22, 0),
    ]


def test_a_reading_in_a_dst_gap_fails_and_an_ambiguous_one_takes_the_earlier() -> None:
    """02:30 never happened on the spring-forward night, and happened twice on the fall-back one."""
    values = ["2024-03-31 02:30:00", "2024-10-27 02:30:00"]
    assert parse(values, timezone=PARIS) == [None, utc(2024, 10, 27, 0, 30)]
    assert failures(values, timezone=PARIS) == [True, False]


def test_naive_timestamp_keeps_readings_and_converts_instants_to_utc() -> None:
    """A naive column keeps wall-clock readings as written and instants in UTC."""
    values = ["2024-01-02 03:04:05", "2024-01-02T03:04:05+02:00", "1704164645"]
    assert parse(values, Kind.TIMESTAMP, timezone=PARIS) == [
        datetime(2024, 1, 2, 3, 4, 5),
        datetime(2024, 1, 2, 1, 4, 5),
        datetime(2024, 1, 2, 3, 4, 5),
    ]


def test_date_reads_the_date_as_written_and_an_instant_in_the_zone() -> None:
    """Text dates are as written (offset ignored); epoch instants take the zone's date."""
    values = ["2024-01-02", "2024-01-02T00:30:00+02:00", "2024-01-02 23:59:59", "1704150000"]
    assert parse(values, Kind.DATE, timezone="America/New_York") == [
        date(2024, 1, 2),
        date(2024, 1, 2),
        date(2024, 1, 2),
        date(2024, 1, 1),
    ]


def test_formats_are_tried_in_order_and_before_epoch_numbers() -> None:
    """A declared ``%Y%m%d`` wins over reading 20240102 as seconds."""
    values = ["02/01/2024", "20240102", "02/01/2024 10:30 +0100", "1704164645"]
    formats = ["%d/%m/%Y", "%Y%m%d", "%d/%m/%Y %H:%M %z"]
    assert parse(values, formats=formats) == [
        utc(2024, 1, 2),
        utc(2024, 1, 2),
        utc(2024, 1, 2, 9, 30),
        utc(2024, 1, 2, 3, 4, 5),
    ]


def test_numbers_are_epoch_seconds_or_milliseconds() -> None:
    """Below 1e11 a number is seconds, from 1e11 milliseconds, from 1e14 a failure."""
    ints = [1704164645, 1704164645123, -1, 10**14, None]
    assert parse(ints) == [
        utc(2024, 1, 2, 3, 4, 5),
        utc(2024, 1, 2, 3, 4, 5, 123000),
        utc(1969, 12, 31, 23, 59, 59),
        None,
        None,
    ]
    assert failures(ints) == [False, False, False, True, False]
    assert parse([1704164645.5, float("nan")]) == [utc(2024, 1, 2, 3, 4, 5, 500000), None]


def test_temporal_columns_are_converted_not_parsed() -> None:
    """Date and Datetime columns keep their meaning: naive ones are readings in the zone."""
    zoned = pl.Series([datetime(2024, 1, 2, 3, 0)]).dt.replace_time_zone("Asia/Tokyo")
    parser = DatetimeParser(Kind.TIMESTAMPTZ, timezone=PARIS)
    assert parser(zoned)[0].to_list() == [utc(2024, 1, 1, 18, 0)]
    assert parser(pl.Series([date(2024, 1, 2)]))[0].to_list() == [utc(2024, 1, 1, 23, 0)]
    naive = pl.Series([datetime(2024, 1, 2, 3, 0)]).dt.cast_time_unit("ns")
    assert parser(naive)[0].to_list() == [utc(2024, 1, 2, 2, 0)]


def test_values_of_other_types_fail() -> None:
    """Booleans and lists are not datetimes."""
    assert failures([True, None]) == [True, False]
    assert failures([[1], None]) == [True, False]


def test_output_dtypes_match_the_declared_types() -> None:
    """date, timestamp and timestamptz have the dtypes destinations expect."""
    values = pl.Series(["2024-01-02"])
    assert DatetimeParser(Kind.DATE, timezone="UTC")(values)[0].dtype == pl.Date()
    assert DatetimeParser(Kind.TIMESTAMP, timezone="UTC")(values)[0].dtype == pl.Datetime("us")
    tz = DatetimeParser(Kind.TIMESTAMPTZ, timezone="UTC")(values)[0].dtype
    assert tz == pl.Datetime("us", "UTC")


def test_an_unknown_zone_is_refused() -> None:
    """A misspelled zone is a configuration error, raised once."""
    with pytest.raises(ValueError, match=r"^unknown time zone 'Europe/Pariss'; use an IANA name"):
        DatetimeParser(Kind.TIMESTAMPTZ, timezone="Europe/Pariss")


@pytest.mark.parametrize("fmt", ["%Q", "%H:%M", "dd/mm/yyyy"])
def test_a_format_that_cannot_parse_a_date_is_refused(fmt: str) -> None:
    """Polars would quietly return nulls for these; the parser refuses them up front."""
    with pytest.raises(ValueError, match="cannot be used to parse dates") as error:
        DatetimeParser(Kind.TIMESTAMPTZ, timezone="UTC", formats=[fmt])
    assert str(error.value) == (
        f"format {fmt!r} cannot be used to parse dates; use strftime codes with at least a "
        "date, such as '%d/%m/%Y %H:%M'"
    )


def test_a_non_temporal_kind_is_refused() -> None:
    """The parser only produces dates and timestamps."""
    with pytest.raises(ValueError, match=r"^int is not a date or timestamp type$"):
        DatetimeParser(Kind.INT, timezone="UTC")


# -- properties ---------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)


def _offset_text(moment: datetime, style: int) -> str:
    """Render ``moment``'s offset as ``Z`` (when zero), ``+HH:MM``, ``+HHMM`` or ``+HH``."""
    text = moment.strftime("%z")
    if style == 0 and text == "+0000":
        return "Z"
    if style == 2 and text.endswith("00"):
        return text[:3]
    return text if style == 1 else f"{text[:3]}:{text[3:]}"


@given(
    moment=moments,
    offset=offsets,
    separator=st.sampled_from(["T", " "]),
    style=st.integers(0, 2),
    spec=st.sampled_from(["seconds", "microseconds"]),
)
def test_iso_with_an_offset_round_trips_to_the_utc_instant(
    moment: datetime, offset: timezone, separator: str, style: int, spec: str
) -> None:
    """Any instant written as ISO 8601 with an offset parses back to that instant."""
    aware = moment.replace(tzinfo=offset)
    if spec == "seconds":
        aware = aware.replace(microsecond=0)
    text = aware.isoformat(sep=separator, timespec=spec)[:-6] + _offset_text(aware, style)
    expected = aware.astimezone(UTC)
    if not datetime(1, 1, 1, tzinfo=UTC) < expected < datetime(9999, 12, 31, tzinfo=UTC):
        return
    assert parse([text]) == [expected]


@given(moment=moments, separator=st.sampled_from(["T", " "]))
def test_naive_iso_round_trips_into_a_naive_timestamp(moment: datetime, separator: str) -> None:
    """A wall-clock reading written as ISO 8601 parses back to itself."""
    assert parse([moment.isoformat(sep=separator)], Kind.TIMESTAMP) == [moment]


@given(seconds=st.integers(min_value=-62_135_596_800, max_value=10**11 - 1))
def test_epoch_seconds_round_trip(seconds: int) -> None:
    """An integer below 1e11 is that many seconds from 1970-01-01 UTC, as text or number."""
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    assert parse([seconds]) == [expected]
    assert parse([str(seconds)]) == [expected]


@given(day=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_iso_dates_round_trip(day: date) -> None:
    """A date written as ISO 8601 parses back to itself."""
    assert parse([day.isoformat()], Kind.DATE) == [day]


@given(texts=st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=20))
def test_arbitrary_text_never_raises(texts: list[str | None]) -> None:
    """Whatever text arrives, parsing returns values and a consistent failure mask."""
    for kind in (Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        parser = DatetimeParser(kind, timezone=PARIS, formats=["%d/%m/%Y"])
        parsed, failed = parser(pl.Series("v", texts, dtype=pl.String))
        assert len(parsed) == len(failed) == len(texts)
        # Blank means what Polars strips; the property is about the mask, not whitespace.
        blank = pl.Series(texts, dtype=pl.String).str.strip_chars().fill_null("") == ""
        for is_blank, value, is_failed in zip(blank, parsed, failed, strict=True):
            assert is_failed == (not is_blank and value is None)
