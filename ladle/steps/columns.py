"""rename, select and drop: the shape of a batch, stable across batches.

Sources normalize column names, but a pipeline file may name a column the way the
data spells it (``"TKT-Ticket ID"``). :func:`resolve` finds either spelling. A batch
may lack a column entirely (no record had the field), so these steps never fail on
an absent column: ``rename`` skips it and ``select`` adds it as a null column, so the
schema that reaches the destination does not depend on which batch came first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import polars as pl

from ladle.batch import ROW, StepResult, as_text
from ladle.errors import StepError
from ladle.schema import normalize_name
from ladle.steps import StepContext

if TYPE_CHECKING:
    from ladle.config import StepConfig

RenameOptions = dict[str, str | list[str]]
"""``{old: new}`` renames; ``{new: [alias, ...]}`` coalesces the aliases into ``new``."""

ColumnList = list[str]
"""The columns ``select`` keeps or ``drop`` removes."""


def resolve(name: str, columns: Iterable[str]) -> str | None:
    """The frame column ``name`` refers to: itself if present, else its normalized form."""
    present = set(columns)
    if name in present:
        return name
    normalized = normalize_name(name)
    return normalized if normalized in present else None


def resolve_or_new(name: str, columns: Iterable[str]) -> str:
    """Like :func:`resolve`, but an absent column gets its normalized name.

    Sources normalize names, so a column added for an absent field must be spelled the
    way it would have been had a record carried the field.
    """
    return resolve(name, columns) or normalize_name(name)


def refuse_row_column(names: Iterable[str], *, context: StepContext, step: str) -> None:
    """Raise if options name the row column: every step must carry it through untouched."""
    for name in names:
        if name == ROW or normalize_name(name) == ROW:
            raise StepError(
                f"{name!r} is ladle's row column and cannot be renamed, selected, dropped "
                "or overwritten; choose another name",
                resource=context.resource,
                step=step,
            )


def coalesce(frame: pl.DataFrame, candidates: list[str], target: str) -> pl.DataFrame:
    """Replace ``candidates`` by one column ``target``: per row, the first non-null of them.

    The result takes the place of the first candidate. When the candidates' types differ
    (a field that is a number in one record and a string in another), every candidate is
    rendered as text first, so no value is lost to a failed cast.
    """
    if not candidates:
        return frame.with_columns(pl.lit(None).alias(target))
    dtypes = {frame.schema[c] for c in candidates} - {pl.Null()}
    if len(dtypes) > 1:
        exprs = [as_text(pl.col(c), frame.schema[c]) for c in candidates]
    else:
        exprs = [pl.col(c) for c in candidates]
    first, rest = candidates[0], candidates[1:]
    merged = frame.with_columns(pl.coalesce(exprs).alias(first)).drop(rest)
    return merged.rename({first: target}) if first != target else merged


class Rename:
    """Rename columns, or gather a field's aliases into one column.

    ``{old: new}`` renames ``old`` (absent: nothing happens). ``{new: [a, b]}`` makes
    ``new`` the first non-null of the present aliases and drops them; with none present
    ``new`` is a null column. A column already named ``new`` keeps priority over the
    values renamed into it, so data under either name survives. Entries apply in order.
    """

    def __init__(self, options: RenameOptions, context: StepContext) -> None:
        self._entries: list[tuple[str, list[str], bool]] = []
        for key, value in options.items():
            if isinstance(value, list):
                self._entries.append((key, list(value), True))
            else:
                self._entries.append((value, [key], False))
        names = [n for target, sources, _ in self._entries for n in (target, *sources)]
        refuse_row_column(names, context=context, step="rename")

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Apply each rename or alias entry in order."""
        for target, sources, aliases in self._entries:
            frame = _rename(frame, target, sources, aliases=aliases)
        return StepResult(frame=frame)


def _rename(frame: pl.DataFrame, target: str, sources: list[str], *, aliases: bool) -> pl.DataFrame:
    present = [c for c in (resolve(s, frame.columns) for s in sources) if c is not None]
    if not present and not aliases:
        return frame  # renaming an absent column: nothing to do
    existing = resolve(target, frame.columns)
    candidates = list(dict.fromkeys([*([existing] if existing else []), *present]))
    return coalesce(frame, candidates, existing or target)


class Select:
    """Keep only the listed columns (and the row column); an absent one is added as nulls."""

    def __init__(self, options: ColumnList, context: StepContext) -> None:
        refuse_row_column(options, context=context, step="select")
        self._names = list(options)

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Project the batch onto the listed columns, in the listed order."""
        names = list(dict.fromkeys(resolve_or_new(n, frame.columns) for n in self._names))
        exprs = [pl.col(n) if n in frame.columns else pl.lit(None).alias(n) for n in names]
        return StepResult(frame=frame.select(pl.col(ROW), *exprs))


class Drop:
    """Remove the listed columns that are present; the row column always stays."""

    def __init__(self, options: ColumnList, context: StepContext) -> None:
        refuse_row_column(options, context=context, step="drop")
        self._names = list(options)

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Drop the present ones among the listed columns."""
        present = [c for c in (resolve(n, frame.columns) for n in self._names) if c is not None]
        return StepResult(frame=frame.drop(present))


def dropped_at(column: str, steps: Sequence[StepConfig]) -> int | None:
    """Index of the step that leaves ``column`` out of the batch for good, or None.

    Read off the pipeline file, before anything runs: ``drop`` and ``select`` remove a
    column, ``rename`` moves it away; a later ``rename`` to it or ``derive`` of it makes it
    again. A user's own step is not looked into.
    """
    name = normalize_name(column)
    at: int | None = None
    for index, step in enumerate(steps):
        if step.name in ("drop", "select"):
            listed = {normalize_name(n) for n in step.options}
            if (name in listed) == (step.name == "drop"):
                at = index
            elif step.name == "select":
                at = None  # selected: kept, or added back (as nulls)
        elif step.name == "rename":
            for key, value in step.options.items():
                sources = value if isinstance(value, list) else [key]
                target = key if isinstance(value, list) else value
                if normalize_name(target) == name:
                    at = None
                elif name in {normalize_name(s) for s in sources}:
                    at = index
        elif step.name == "derive" and name in {normalize_name(n) for n in step.options}:
            at = None
    return at
