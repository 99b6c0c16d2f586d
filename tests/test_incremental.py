"""The cursor: durations, stored values, bounds and the per-batch filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladle.batch import SourceBatch
from ladle.incremental import Cursor, CursorKind, IncrementalSpec, decode, encode, parse_duration
from ladle.schema import ColumnType, Kind


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations read as their number of seconds."""
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_bad_duration_says_how_to_write_one() -> None:
    """A duration that does not parse names the accepted forms."""
    with pytest.raises(ValueError, match=r"^'5 minutes' is not a duration; write e.g. 30s, 5m"):
        parse_duration("5 minutes")


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_round_trip_through_state(moment: datetime) -> None:
    """A timestamp mark stored and read back is the same instant."""
    assert decode(encode(moment, CursorKind.TIMESTAMP)) == (moment, CursorKind.TIMESTAMP)


def test_stored_mark_minus_lag_is_the_bound() -> None:
    """A stored mark with a lag starts the run that much earlier; the mark stays."""
    spec = IncrementalSpec(cursor="updated_at", lag="10m")
    stored = encode(datetime(2026, 1, 1, 12, tzinfo=UTC), CursorKind.TIMESTAMP)
    cursor = Cursor.start(spec, stored, declared=None, timezone="UTC")
    assert cursor.after == datetime(2026, 1, 1, 11, 50, tzinfo=UTC)
    assert cursor.high == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_a_numeric_lag_on_a_timestamp_is_refused_in_words() -> None:
    """A lag that does not fit the cursor's kind is an error naming both."""
    spec = IncrementalSpec(cursor="id", lag="5m")
    with pytest.raises(ValueError, match="lag '5m' does not apply to the cursor value 7"):
        Cursor.start(spec, {"kind": "number", "value": 7}, declared=None, timezone="UTC")


def test_filter_keeps_newer_and_unreadable_records() -> None:
    """Records past the bound and ones without a readable cursor stay; the mark rises."""
    spec = IncrementalSpec(cursor="updatedAt", initial="2024-01-01")
    cursor = Cursor.start(spec, None, declared=None, timezone="Europe/Berlin")
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "updatedAt": [
                "2023-12-31T22:30:00Z",
                "2024-01-01T00:00",
                None,
                "soon",
                "2024-02-01T00:00Z",
            ],
        }
    )
    batch = cursor.filter(SourceBatch(frame, ["a", "b", "c", "d", "e"]))
    # The bound is midnight in Berlin (23:00 UTC): 22:30 UTC is before it, midnight is it.
    assert batch.positions == ["c", "d", "e"]
    assert cursor.high == datetime(2024, 2, 1, tzinfo=UTC)


def test_declared_numeric_cursor_compares_as_numbers() -> None:
    """A cursor declared bigint compares 10 after 9, not as text."""
    spec = IncrementalSpec(cursor="seq", initial=9)
    cursor = Cursor.start(spec, None, declared=ColumnType(Kind.BIGINT), timezone="UTC")
    batch = cursor.filter(SourceBatch(pl.DataFrame({"seq": ["8", "10", "9"]}), ["a", "b", "c"]))
    assert batch.positions == ["b"]
    assert cursor.high == 10
