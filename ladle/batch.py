"""The unit of work between source, steps and destination.

A source yields :class:`SourceBatch` objects: a Polars frame of records as read,
their positions, and the records it could not parse at all. Steps see only the
frame, which carries :data:`ROW` (the row's index in its source batch) so that
any record a step rejects can be traced back to its position and raw values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import polars as pl

ROW = "_ladle_row"
"""Column every frame carries through the steps: the row's index in its source batch."""

SEQ = "_ladle_seq"
"""Column every staged batch carries: the record's order within the whole load."""

REJECT_SCHEMA: dict[str, pl.DataType] = {
    ROW: pl.Int64(),
    "field": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
    "message": pl.String(),
}
"""Columns of a rejects frame: one row per failed rule; a record may fail several."""


@dataclass(frozen=True)
class Unreadable:
    """A record the source could not parse: it goes to quarantine with its position."""

    position: str
    raw: str
    message: str
    rule: str = "parse"


class LinePositions(Sequence[str]):
    """``name:LINE`` for each row of a batch, spelled only when asked: most rows are never
    quarantined, and a string per row cost a tenth of reading a JSON Lines file."""

    def __init__(self, name: str, lines: Sequence[int]) -> None:
        self._name = name
        self._lines = lines

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> LinePositions: ...
    def __getitem__(self, index: int | slice) -> str | LinePositions:
        if isinstance(index, slice):
            return LinePositions(self._name, self._lines[index])
        return f"{self._name}:{self._lines[index]}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __repr__(self) -> str:
        return f"LinePositions({self._name!r}, {self._lines!r})"


@dataclass(frozen=True)
class SourceBatch:
    """Records as read, with one position per row (``file:line``, ``file#index``)."""

    frame: pl.DataFrame
    positions: Sequence[str]
    unreadable: list[Unreadable] = field(default_factory=list)
    bytes_read: int = 0
    checkpoint: Any = None
    """Where the source stands after this batch (JSON-serialisable); None if it cannot resume."""
    bytes_total: int | None = None
    """All the bytes this run's source reads, when it knows (files: their sizes on disk,
    compressed as they are), so progress can show a share and an ETA; None if unknown."""

    def __post_init__(self) -> None:
        if len(self.positions) != self.frame.height:
            raise ValueError(
                f"a source batch needs one position per row ({self.frame.height} rows, "
                f"{len(self.positions)} positions)"
            )

    @property
    def fetched(self) -> int:
        """Every record this batch accounts for: parsed ones and unreadable ones."""
        return self.frame.height + len(self.unreadable)


@dataclass(frozen=True)
class StepResult:
    """What a step returns: the rows that go on, and what it took out and why.

    Every row missing from ``frame`` must appear in ``rejects`` (by :data:`ROW`) or be
    counted in ``deduplicated``; the pipeline checks this.
    """

    frame: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=lambda: empty_rejects())  # noqa: PLW0108 - defined below
    deduplicated: int = 0


def empty_rejects() -> pl.DataFrame:
    """A rejects frame with no rows."""
    return pl.DataFrame(schema=REJECT_SCHEMA)


def reject_rows(
    frame: pl.DataFrame,
    failed: pl.Series,
    *,
    field: str | None,
    rule: str,
    message: str | pl.Expr,
) -> pl.DataFrame:
    """Build rejects for the rows of ``frame`` where the boolean ``failed`` is true.

    The offending value is rendered as text by :func:`as_text` (null stays null) so
    every rule's rejects share one schema. ``message`` may be an expression over the
    reject's own columns, e.g. ``pl.format("cannot parse '{}' as int", pl.col("value"))``.
    """
    mask = failed.fill_null(False)
    rows = frame.filter(mask)
    values = (
        rows.select(as_text(pl.col(field), rows.schema[field]).alias("value")).to_series()
        if field is not None and field in rows.columns
        else pl.Series("value", [None] * rows.height, dtype=pl.String)
    )
    rejects = pl.DataFrame(
        {
            ROW: rows.get_column(ROW).cast(pl.Int64),
            "field": pl.Series([field] * rows.height, dtype=pl.String),
            "rule": pl.Series([rule] * rows.height, dtype=pl.String),
            "value": values.alias("value"),
        },
    )
    text = message if isinstance(message, pl.Expr) else pl.lit(message)
    return rejects.with_columns(text.cast(pl.String).alias("message")).cast(
        pl.Schema(REJECT_SCHEMA)
    )


def as_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Render a column of ``dtype`` as text: lists and structs as compact JSON.

    Polars cannot cast nested values to strings; a quarantined value or a coalesced
    column must still be readable, so they become the JSON a destination would store.
    """
    if isinstance(dtype, pl.String):
        return column
    if isinstance(dtype, pl.List | pl.Array | pl.Struct):
        return json_text(column)
    return column.cast(pl.String, strict=False)


def json_text(column: pl.Expr) -> pl.Expr:
    """Each value as compact JSON (text becomes a JSON string); null stays null."""
    # json_encode works on structs only: wrap the value and peel the wrapper off.
    wrapped = pl.struct(column.alias("v")).struct.json_encode()
    encoded = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.when(column.is_not_null()).then(encoded)


def without_rejected(frame: pl.DataFrame, rejects: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``frame`` that no reject names."""
    if rejects.height == 0:
        return frame
    return frame.join(rejects.select(ROW).unique(), on=ROW, how="anti", maintain_order="left")


def split(frame: pl.DataFrame, rejects: list[pl.DataFrame]) -> StepResult:
    """Combine several rules' rejects and drop the rejected rows from ``frame``."""
    combined = pl.concat(rejects) if rejects else empty_rejects()
    return StepResult(frame=without_rejected(frame, combined), rejects=combined)


@dataclass
class Counts:
    """The run ledger's counts for one resource: the invariant's terms and bytes read."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deduplicated: int = 0
    quarantined: int = 0
    bytes_read: int = 0
    rolled_back: int = 0
    """Records of a failed run's chunk in hand: fetched, then undone with its transaction
    (what steps quarantined or deduplicated in it included). Zero for a run that succeeded."""

    @property
    def balanced(self) -> bool:
        """The invariant: every fetched record ended in exactly one place."""
        return self.fetched == self.placed + self.rolled_back

    @property
    def placed(self) -> int:
        """Records whose place is committed: inserted, updated, unchanged, deduplicated,
        quarantined."""
        return self.inserted + self.updated + self.unchanged + self.deduplicated + self.quarantined

    def verify(self, resource: str) -> None:
        """Raise before commit when the invariant does not hold (a bug, never bad data)."""
        if not self.balanced:
            from ladle.errors import LadleError

            raise LadleError(
                f"resource {resource!r}: the ledger does not balance (fetched {self.fetched} != "
                f"inserted {self.inserted} + updated {self.updated} + unchanged "
                f"{self.unchanged} + deduplicated {self.deduplicated} + quarantined "
                f"{self.quarantined} + rolled back {self.rolled_back}); nothing was committed"
            )
