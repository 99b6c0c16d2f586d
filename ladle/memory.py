"""Keeping a run under ``memory_limit_mb``: batches that adapt, and records that cannot fit.

Three things share the limit: the interpreter with its libraries (about 170 MB for
``ladle run``, which is why the limit is at least :data:`MIN_LIMIT_MB`); the destination
(DuckDB gets a share of the limit as its own ``memory_limit``, see
:mod:`ladle.destinations.duckdb`); and the batch in hand, read, stepped and staged. Only
the batch grows with the data, so it is what adapts:

- a batch may take 1/32 of the limit (its frame's ``estimated_size()``, as read or as
  staged, whichever is larger): measured, a batch in hand costs about six times its
  frame (the lines, the parse, the steps' copies, the Arrow hand-over). The reader also
  ends a batch at that many bytes of input, so the first batch is bounded before
  anything has been measured;
- after every batch, the next may hold as many rows as fit that share at the size rows
  have had so far, at most ``batch_size``; the count shrinks at once and grows back at
  most twofold per batch;
- when the process's resident memory is over 85 % of the limit after a batch, the share
  halves (down to 1/256 of the limit); under 70 %, it grows back by a quarter per batch;
- a record larger than 1/16 of the limit cannot go through within it: the run fails with
  a message naming its position and the sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ladle.errors import SourceError

MB = 1024 * 1024
MIN_LIMIT_MB = 256
"""The smallest ``memory_limit_mb`` a run stays within (peak RSS at most 10 % over it).

Measured with GNU time's ``%M`` (2 cores, 2026-12-05): importing ladle takes about
170 MB resident (Polars 53, Arrow 55, DuckDB 21, psycopg and pgpq 13, the rest 30); a
one-record run peaks at 182 MB into DuckDB, 208 MB into PostgreSQL; a load of 300,000 or
3,000,000 records of 10 fields (JSON Lines or CSV) peaks at 223-258 MB *whatever the
limit* (128 to 288), since the batches are then a small part of it. So at 128 a run
went 74-97 % over; at 192, 20-32 %; at 224, up to 15 %; at 256, at most 1 % (258 MB at
most across destinations, formats, sizes and ``write: merge``). 256 rather than the
bare 235 (258 / 1.10) leaves room for the few MB peaks vary from run to run."""
_BATCH_SHARE = 32
_RECORD_SHARE = 16
_FLOOR_SHARE = 256
_HIGH, _LOW = 0.85, 0.70
"""Resident memory above HIGH of the limit shrinks batches; below LOW they may grow back."""

log = structlog.get_logger("ladle")


def check_limit(value: int | None) -> int | None:
    """Validate ``memory_limit_mb``: a limit ladle could never stay under is refused."""
    if value is not None and value < MIN_LIMIT_MB:
        raise ValueError(
            f"{value} MB is less than ladle can stay under (with Python, Polars, Arrow, DuckDB "
            "and psycopg loaded it takes about 170 MB, and a load peaks at up to about 260 MB "
            f"whatever the limit); give at least {MIN_LIMIT_MB}"
        )
    return value


@dataclass
class BatchBudget:
    """What the next batch may hold; the pipeline changes it between batches.

    A source reads it before every batch: a batch ends at ``rows`` records or once its
    input reaches ``max_bytes``; a single record over ``max_record_bytes`` stops the run.
    """

    rows: int
    max_bytes: int | None = None
    max_record_bytes: int | None = None
    limit_mb: int | None = None
    """The ``memory_limit_mb`` the sizes come from, for messages."""

    @property
    def sizes(self) -> bool:
        """Whether record sizes matter (a source may skip measuring them when not)."""
        return self.max_bytes is not None or self.max_record_bytes is not None

    def full(self, rows: int, size: int) -> bool:
        """Whether a batch of ``rows`` records and ``size`` bytes of input is complete."""
        return rows >= self.rows or (self.max_bytes is not None and size >= self.max_bytes)

    def check_record(self, size: int, position: str) -> None:
        """Raise when one record of ``size`` bytes is more than the limit lets through."""
        if self.max_record_bytes is not None and size > self.max_record_bytes:
            raise self.too_large(size, position)

    def too_large(self, size: int, position: str) -> SourceError:
        """The error for a record of ``size`` bytes at ``position`` that cannot fit."""
        return SourceError(
            f"a record of {_mb(size)} does not fit in memory_limit_mb: {self.limit_mb} (a "
            f"record may take at most 1/{_RECORD_SHARE} of it, {_mb(self.max_record_bytes or 0)}"
            "); raise memory_limit_mb, or split the record",
            position=position,
        )


class MemoryGovernor:
    """Sizes each next batch of one resource from the last one's memory and the process's RSS.

    Built once per resource run; ``budget`` goes to the source, :meth:`observe` is called
    after every batch. ``resident`` reads the process's resident memory in bytes. Changes
    are logged as ``batch size adapted``.
    """

    def __init__(
        self,
        limit_mb: int,
        batch_size: int,
        *,
        resource: str,
        resident: Callable[[], int] | None = None,
    ) -> None:
        self.limit_mb = limit_mb
        self._limit = limit_mb * MB
        self._full = self._limit // _BATCH_SHARE
        self._floor = self._limit // _FLOOR_SHARE
        self._share = self._full
        self._batch_size = batch_size
        self._resource = resource
        self._resident = resident or resident_bytes
        self.budget = BatchBudget(
            batch_size,
            max_bytes=self._share,
            max_record_bytes=self._limit // _RECORD_SHARE,
            limit_mb=limit_mb,
        )

    def observe(self, rows: int, frame_bytes: float) -> None:
        """After a batch of ``rows`` records whose frames took ``frame_bytes``: size the next."""
        rss = self._resident()
        if rss > _HIGH * self._limit:
            self._share = max(self._share // 2, self._floor)
        elif rss < _LOW * self._limit:
            self._share = min(self._share * 5 // 4, self._full)
        self.budget.max_bytes = self._share
        per_row = max(frame_bytes / max(rows, 1), 1.0)
        wanted = max(1, min(self._batch_size, int(self._share / per_row)))
        current = self.budget.rows
        # Shrink at once; grow only for a real gain (a quarter more), at most twofold.
        if wanted < current or wanted > current * 1.25:
            self.budget.rows = min(wanted, current * 2)
            log.info(
                "batch size adapted",
                resource=self._resource,
                rows=self.budget.rows,
                was=current,
                row_bytes=round(per_row),
                rss_mb=round(rss / MB, 1),
                limit_mb=self.limit_mb,
            )


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``); 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"
