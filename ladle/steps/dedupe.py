"""dedupe: keep one row per key within a batch; the destination does the same across batches.

The pipeline reads :attr:`Dedupe.key`, :attr:`Dedupe.keep` and :attr:`Dedupe.order_by`
to apply the same choice when merging batches in the destination, so the winner does
not depend on how records fell into batches.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, model_validator

from ladle.batch import ROW, StepResult
from ladle.errors import StepError
from ladle.schema import normalize_name
from ladle.steps import StepContext
from ladle.steps.columns import resolve

_RANK = "_ladle_rank"


class DedupeOptions(BaseModel):
    """Which rows are duplicates (``on``, default the primary key) and which one wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: list[str] | None = None
    """The columns that make the key; not set: the resource's ``primary_key``."""
    keep: Literal["first", "last"] = "last"
    """Which row of a key survives: the first or the last, by ``order_by``, then source order."""
    order_by: str | None = None
    """The column that orders a key's rows (nulls rank lowest); not set: source order."""

    @model_validator(mode="before")
    @classmethod
    def _bare_key(cls, value: Any) -> Any:
        """``- dedupe:`` with nothing after it means the defaults."""
        return {} if value is None else value


class Dedupe:
    """Keep one row per key: the first or last by ``order_by``, then by source order.

    Nulls in ``order_by`` rank lowest. A row whose key has a null is never a duplicate
    (as in SQL, null equals nothing). Survivors keep their source order; removed rows
    are counted in ``deduplicated``.
    """

    def __init__(self, options: DedupeOptions | None, context: StepContext) -> None:
        options = options or DedupeOptions()
        key = options.on or list(context.primary_key)
        if not key:
            raise StepError(
                "no key to dedupe on: set `on: [column, ...]` on the step, or the resource's "
                "`primary_key`",
                resource=context.resource,
                step="dedupe",
            )
        self.key: tuple[str, ...] = tuple(normalize_name(k) for k in key)
        self.keep: Literal["first", "last"] = options.keep
        self.order_by: str | None = normalize_name(options.order_by) if options.order_by else None
        self._declared_key = tuple(key)
        self._declared_order = options.order_by

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Drop the rows that lose to another row with the same key."""
        key = [resolve(k, frame.columns) for k in self._declared_key]
        if frame.height == 0 or any(k is None for k in key):
            return StepResult(frame=frame)  # an absent key column is all nulls: no duplicates
        columns = [k for k in key if k is not None]
        order = resolve(self._declared_order, frame.columns) if self._declared_order else None
        by = [pl.col(order).rank("dense").fill_null(0)] if order else []
        # Each row's place in (order_by, ROW) order, nulls lowest; computed over the whole
        # batch first, because a rank inside a window would restart in every key group.
        ranked = frame.with_columns(pl.struct([*by, pl.col(ROW)]).rank("ordinal").alias(_RANK))
        rank = pl.col(_RANK)
        best = rank.max() if self.keep == "last" else rank.min()
        null_key = pl.any_horizontal(pl.col(c).is_null() for c in columns)
        kept = ranked.filter((rank == best.over(columns)) | null_key).drop(_RANK)
        return StepResult(frame=kept, deduplicated=frame.height - kept.height)
