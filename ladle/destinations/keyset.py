"""The keys a load has seen, as 64-bit hashes: 8 bytes a key, membership in O(log² n).

A merge into an empty table copies rows straight into it as long as their key is new
to the load, and a staged load skips its dedupe pass when no key repeated. Both need
to ask "seen before?" for every row of every batch. Rebuilding a hash set from all
earlier keys for each batch would cost O(n²/batch); instead the hashes live in sorted
runs whose sizes halve (a log-structured merge), searched with binary search.
A hash collision can only make a new key look seen, which sends its row the slow,
always-correct way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl


def key_hashes(
    frame: pl.DataFrame, key: Sequence[str], stored: Mapping[str, pl.DataType] | None = None
) -> pl.Series:
    """One 64-bit hash per row of the key columns (nulls hash too, consistently).

    With ``stored`` (the table's types of the key columns), each column is hashed as the
    table holds it, so that the same key reads alike in every batch: 1 as Int32 and as
    Int64, 1.5 at scale 1 and at scale 2.
    """
    stored = stored or {}
    columns = [pl.col(k).cast(stored[k], strict=False) if k in stored else pl.col(k) for k in key]
    return frame.select(pl.struct(columns).hash().alias("h")).get_column("h")


class KeySet:
    """Hashes seen so far in one load."""

    def __init__(self) -> None:
        self._runs: list[pl.Series] = []
        self.repeated = False
        """Whether any key has been seen twice (in one batch or across batches)."""

    def __len__(self) -> int:
        return sum(run.len() for run in self._runs)

    def add(self, hashes: pl.Series) -> pl.Series:
        """Add a batch's hashes; return a mask of the rows whose key was new to the load."""
        fresh = hashes.is_first_distinct()
        for run in self._runs:
            fresh &= ~_contains(run, hashes)
        if not fresh.all():
            self.repeated = True
        self._push(hashes.filter(fresh).sort())
        return fresh

    def _push(self, run: pl.Series) -> None:
        if run.len() == 0:
            return
        while self._runs and self._runs[-1].len() <= run.len():
            run = pl.concat([self._runs.pop(), run]).sort()
        self._runs.append(run)


def _contains(run: pl.Series, values: pl.Series) -> pl.Series:
    """Which of ``values`` are in the sorted ``run``, by binary search."""
    at = run.search_sorted(values).clip(upper_bound=run.len() - 1)
    return (run.gather(at) == values).fill_null(False)
