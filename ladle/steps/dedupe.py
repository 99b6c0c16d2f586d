"""dedupe: keep one row per key within a batch; the destination does the same across batches.

The pipeline reads :attr:`Dedupe.key`, :attr:`Dedupe.keep` and :attr:`Dedupe.order_by`
to apply the same choice when merging batches in the destination, so the winner does
not depend on how records fell into batches. When a later step drops an ``order_by``
column, the destination cannot order by it: the step then remembers each key's winner
across the batches of the run (:meth:`Dedupe.remember_winners`), so every row it lets
through beats the earlier ones and the load keeps the last one staged.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ladle.batch import ROW, StepResult
from ladle.errors import StepError
from ladle.schema import normalize_name
from ladle.steps import StepContext
from ladle.steps.columns import resolve

_RANK = "_ladle_rank"
_BEST = "_ladle_best_{}"
_KEY = "_ladle_key_{}"
_SEEN = "_ladle_seen"


class DedupeOptions(BaseModel):
    """Which rows are duplicates (``on``, default the primary key) and which one wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: list[str] | None = None
    """The columns that make the key; not set: the resource's ``primary_key``."""
    keep: Literal["first", "last"] = "last"
    """Which row of a key survives: the first or the last, by ``order_by``, then source order."""
    order_by: list[str] | None = None
    """The column, or list of columns, that orders a key's rows (compared in turn, nulls
    lowest); rows equal in all of them keep their source order. Not set: source order."""

    @model_validator(mode="before")
    @classmethod
    def _bare_key(cls, value: Any) -> Any:
        """``- dedupe:`` with nothing after it means the defaults."""
        return {} if value is None else value

    @field_validator("order_by", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Dedupe:
    """Keep one row per key: the first or last by ``order_by``, then by source order.

    ``order_by`` columns compare in turn; nulls rank lowest. Rows equal in all of them
    are ordered as the source yielded them, so ``keep: last`` keeps the later record and
    ``keep: first`` the earlier one. A row whose key has a null is never a duplicate (as
    in SQL, null equals nothing). Survivors keep their source order; removed rows are
    counted in ``deduplicated``.
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
        self.order_by: tuple[str, ...] = tuple(normalize_name(c) for c in options.order_by or ())
        self._declared_key = tuple(key)
        self._declared_order = tuple(options.order_by or ())
        self._winners: pl.DataFrame | None = None
        """Under :meth:`remember_winners`: each key's best order values so far in the run."""

    def remember_winners(self) -> None:
        """Compare each batch's winners with those of the earlier batches of this run too.

        A row that does not beat its key's earlier winner is deduplicated here, so the load
        may keep the last row staged per key without the ``order_by`` columns (which a
        later step drops). Costs memory for one entry per distinct key of the run.
        """
        if self._winners is None:
            self._winners = pl.DataFrame()

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Drop the rows that lose to another row with the same key."""
        key = [resolve(k, frame.columns) for k in self._declared_key]
        if frame.height == 0 or any(k is None for k in key):
            return StepResult(frame=frame)  # an absent key column is all nulls: no duplicates
        columns = [k for k in key if k is not None]
        orders = [resolve(c, frame.columns) for c in self._declared_order]
        # An absent order column is all nulls: it orders nothing.
        by = [pl.col(c).rank("dense").fill_null(0) for c in orders if c is not None]
        # Each row's place in (order_by..., ROW) order, nulls lowest; computed over the whole
        # batch first, because a rank inside a window would restart in every key group.
        ranked = frame.with_columns(pl.struct([*by, pl.col(ROW)]).rank("ordinal").alias(_RANK))
        rank = pl.col(_RANK)
        best = rank.max() if self.keep == "last" else rank.min()
        null_key = pl.any_horizontal(pl.col(c).is_null() for c in columns)
        kept = ranked.filter((rank == best.over(columns)) | null_key).drop(_RANK)
        if self._winners is not None:
            kept = self._beating_earlier(kept, columns, orders)
        return StepResult(frame=kept, deduplicated=frame.height - kept.height)

    def _beating_earlier(
        self, kept: pl.DataFrame, columns: list[str], orders: list[str | None]
    ) -> pl.DataFrame:
        """Of a batch's survivors, those that beat their key's winner in earlier batches."""
        assert self._winners is not None  # noqa: S101 - only called under remember_winners
        keys = [pl.col(c).alias(_KEY.format(i)) for i, c in enumerate(columns)]
        values = [
            (pl.col(c) if c is not None else pl.lit(None)).alias(_BEST.format(i))
            for i, c in enumerate(orders)
        ]
        mine = kept.select(*keys, *values)
        has_key = pl.all_horizontal(pl.col(_KEY.format(i)).is_not_null() for i in range(len(keys)))
        earlier = self._winners
        if earlier.height:
            # One type per column for both sides (a batch's all-null column has none).
            both = pl.concat([mine, earlier], how="vertical_relaxed")
            mine, earlier = both.head(mine.height), both.tail(earlier.height)
            joined = mine.join(
                earlier.with_columns(pl.lit(value=True).alias(_SEEN)),
                on=[_KEY.format(i) for i in range(len(keys))],
                how="left",
                maintain_order="left",
                suffix="_earlier",
            )
            new = [pl.col(_BEST.format(i)) for i in range(len(orders))]
            old = [pl.col(_BEST.format(i) + "_earlier") for i in range(len(orders))]
            wins = pl.col(_SEEN).is_null() | _beats(new, old, keep_last=self.keep == "last")
            passed = joined.select(wins.fill_null(value=True)).to_series()
            kept, mine = kept.filter(passed), mine.filter(passed)
        winners = mine.filter(has_key)
        on = [_KEY.format(i) for i in range(len(keys))]
        if earlier.height:
            earlier = earlier.join(winners, on=on, how="anti")
            winners = pl.concat([earlier, winners], how="vertical_relaxed")
        self._winners = winners
        return kept


def _beats(new: list[pl.Expr], old: list[pl.Expr], *, keep_last: bool) -> pl.Expr:
    """Whether the ``new`` order values win over the ``old`` ones (nulls lowest).

    In turn per column: higher wins under ``keep: last``, lower under ``keep: first``;
    all equal: the newer (later) row wins under ``keep: last`` only.
    """
    result = pl.lit(keep_last)
    for n, o in reversed(list(zip(new, old, strict=True))):
        if keep_last:
            better = n.is_not_null() & (o.is_null() | (n > o))
        else:
            better = (n.is_null() & o.is_not_null()) | (n < o)
        result = better.fill_null(value=False) | (n.eq_missing(o) & result)
    return result
