"""Incremental loads: the bound a run starts from and the high-water mark it ends at.

``incremental: {cursor: updated_at, initial: "2024-01-01T00:00:00Z", lag: 5m}`` makes a
run fetch only records whose cursor is past the stored mark minus the lag (the lag
re-reads a window, to catch records written late with an older cursor value; a merge
counts them as unchanged). The mark is the largest cursor value the run fetched; it is
stored in ``_ladle_state`` only when the run completes, in the same transaction as the
data, so a failed or killed run never moves it.

Sources push the bound down where they can (a SQL ``WHERE``, an HTTP parameter); every
batch is filtered here as well, which is what makes the cursor work on files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator

from ladle.batch import SourceBatch
from ladle.schema import ColumnType, Kind, normalize_name
from ladle.sources import CursorBound, CursorValue
from ladle.steps.datetimes import TEMPORAL_KINDS, DatetimeParser

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or a number of seconds, as a timedelta."""
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"])


class IncrementalSpec(BaseModel):
    """A resource's ``incremental:``: which column is the cursor, where to start, how far back."""

    model_config = ConfigDict(extra="forbid")

    cursor: str
    """The column whose value grows as records change (``updated_at``, an id, a sequence)."""
    initial: str | int | float | None = None
    """Where a first run starts (exclusive); without it a first run fetches everything."""
    lag: str | int | float | None = None
    """How far before the stored mark to start again: a duration (``5m``) for timestamps,
    a number for numeric cursors."""

    @field_validator("cursor")
    @classmethod
    def _cursor_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("cursor must name a column, e.g. updated_at")
        return value

    @field_validator("lag")
    @classmethod
    def _lag_readable(cls, value: str | float | None) -> str | float | None:
        if isinstance(value, str):
            parse_duration(value)
        return value


class CursorKind(StrEnum):
    """How cursor values compare: as instants, as numbers, or as text."""

    TIMESTAMP = "timestamp"
    NUMBER = "number"
    TEXT = "text"


def encode(value: CursorValue | None, kind: CursorKind | None) -> dict[str, Any] | None:
    """A cursor value as stored in ``_ladle_state`` (timestamps as ISO 8601 in UTC)."""
    if value is None or kind is None:
        return None
    stored = value.isoformat() if isinstance(value, datetime) else value
    return {"kind": kind.value, "value": stored}


def decode(stored: Any) -> tuple[CursorValue | None, CursorKind | None]:
    """The value and kind :func:`encode` stored; (None, None) for nothing stored."""
    if not isinstance(stored, dict) or stored.get("value") is None:
        return None, None
    kind = CursorKind(stored["kind"])
    value = stored["value"]
    if kind is CursorKind.TIMESTAMP:
        return datetime.fromisoformat(value).astimezone(UTC), kind
    return value, kind


@dataclass
class Cursor:
    """One resource's cursor during a run: the bound it filters by and the mark it reached."""

    column: str
    kind: CursorKind | None
    after: CursorValue | None
    """Fetch only records past this (the stored mark minus the lag, or ``initial``)."""
    high: CursorValue | None
    """The stored mark, raised to every cursor value this run fetched."""
    timezone: str = "UTC"

    @classmethod
    def start(
        cls,
        spec: IncrementalSpec,
        stored: Any,
        *,
        declared: ColumnType | None,
        timezone: str,
    ) -> Cursor:
        """The cursor a run starts with, from the spec and the stored mark (if any)."""
        mark, kind = decode(stored)
        kind = _kind_of_type(declared) or kind
        if mark is None:
            initial, initial_kind = _typed(spec.initial, kind, timezone)
            kind = kind or initial_kind
            return cls(spec.cursor, kind, initial, None, timezone)
        after: CursorValue = mark
        if spec.lag is not None:
            if isinstance(mark, datetime):
                after = mark - parse_duration(spec.lag)
            elif isinstance(mark, int | float) and isinstance(spec.lag, int | float):
                after = mark - spec.lag
            else:
                raise ValueError(
                    f"lag {spec.lag!r} does not apply to the cursor value {mark!r}: use a "
                    "duration for timestamps and a number for numeric cursors"
                )
        return cls(spec.cursor, kind, after, mark, timezone)

    @classmethod
    def resumed(cls, spec: IncrementalSpec, checkpoint: dict[str, Any], timezone: str) -> Cursor:
        """The cursor of an interrupted run, as its last checkpoint saved it."""
        after, kind = decode(checkpoint.get("after"))
        high, high_kind = decode(checkpoint.get("high"))
        return cls(spec.cursor, kind or high_kind, after, high, timezone)

    @property
    def bound(self) -> CursorBound:
        """What the source is told: the column and the value to fetch past."""
        return CursorBound(self.column, self.after)

    def saved(self) -> dict[str, Any]:
        """This cursor's bound and mark, for a checkpoint."""
        return {"after": encode(self.after, self.kind), "high": encode(self.high, self.kind)}

    def filter(self, batch: SourceBatch) -> SourceBatch:
        """Drop the records at or before the bound and raise the mark to the batch's largest.

        A record whose cursor is missing or unreadable is kept: the steps decide about it
        (a required cursor quarantines it); it never moves the mark.
        """
        name = _column(batch.frame, self.column)
        if name is None:
            return batch
        values = self._typed_column(batch.frame.get_column(name))
        if self.after is None:
            keep = pl.repeat(True, len(values), eager=True)
        else:
            keep = (values.is_null() | (values > self.after)).fill_null(True)
        kept = values.filter(keep)
        largest = kept.max()
        if largest is not None and (self.high is None or largest > self.high):  # type: ignore[operator]
            self.high = largest  # type: ignore[assignment]
        if bool(keep.all()):
            return batch
        rows = keep.arg_true().to_list()
        return replace(
            batch,
            frame=batch.frame.filter(keep),
            positions=[batch.positions[i] for i in rows],
        )

    def _typed_column(self, values: pl.Series) -> pl.Series:
        """The cursor values as instants (UTC), numbers or text; null where unreadable."""
        if self.kind is None:
            self.kind = _kind_of_values(values, self.timezone)
        if self.kind is CursorKind.TIMESTAMP:
            parsed, _ = DatetimeParser(Kind.TIMESTAMPTZ, timezone=self.timezone)(values)
            return parsed
        if self.kind is CursorKind.NUMBER:
            return (
                values.cast(pl.Float64, strict=False) if not values.dtype.is_numeric() else values
            )
        return values.cast(pl.String, strict=False)


def _column(frame: pl.DataFrame, cursor: str) -> str | None:
    """The frame's column for the cursor: its exact name, or one that normalizes to it."""
    if cursor in frame.columns:
        return cursor
    wanted = normalize_name(cursor)
    return next((c for c in frame.columns if normalize_name(c) == wanted), None)


def _kind_of_type(declared: ColumnType | None) -> CursorKind | None:
    if declared is None:
        return None
    if declared.kind in TEMPORAL_KINDS:
        return CursorKind.TIMESTAMP
    if declared.kind in (Kind.INT, Kind.BIGINT, Kind.DOUBLE, Kind.DECIMAL):
        return CursorKind.NUMBER
    return CursorKind.TEXT


def _kind_of_values(values: pl.Series, timezone: str) -> CursorKind:
    """Guess from the first batch: temporal and numeric dtypes say it; text that all parses
    as timestamps is timestamps."""
    if values.dtype.is_temporal():
        return CursorKind.TIMESTAMP
    if values.dtype.is_numeric():
        return CursorKind.NUMBER
    present = values.drop_nulls()
    if present.len() and isinstance(values.dtype, pl.String):
        _, failed = DatetimeParser(Kind.TIMESTAMPTZ, timezone=timezone)(present)
        if not bool(failed.any()):
            return CursorKind.TIMESTAMP
    return CursorKind.TEXT


def _typed(
    value: str | float | None, kind: CursorKind | None, timezone: str
) -> tuple[CursorValue | None, CursorKind | None]:
    """``initial:`` as a cursor value: a number stays one, text that reads as a time is one."""
    if value is None:
        return None, kind
    if isinstance(value, int | float) and kind in (None, CursorKind.NUMBER):
        return value, CursorKind.NUMBER
    text = str(value)
    if kind in (None, CursorKind.TIMESTAMP):
        parsed, failed = DatetimeParser(Kind.TIMESTAMPTZ, timezone=timezone)(pl.Series([text]))
        if not failed[0]:
            moment = parsed[0]
            if isinstance(moment, date) and not isinstance(moment, datetime):
                moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
            return moment, CursorKind.TIMESTAMP
        if kind is CursorKind.TIMESTAMP:
            raise ValueError(f"initial {text!r} is not a timestamp")
    return text, kind or CursorKind.TEXT
