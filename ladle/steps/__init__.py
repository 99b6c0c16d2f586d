"""Steps: vectorized transformations of a batch, named by their key in the pipeline file.

A step is a small callable (like a structlog processor): it decides once in
``__init__`` from its options and the resource's declarations, then works per batch
in ``__call__``, returning a :class:`~ladle.batch.StepResult`. A row that fails a
rule becomes a reject with {field, rule, value, message}; it never fails the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import polars as pl
from pydantic import TypeAdapter

from ladle.batch import StepResult
from ladle.columns import ColumnSpec
from ladle.ledger import Note

if TYPE_CHECKING:
    from ladle.destinations import Destination


@dataclass(frozen=True)
class StepContext:
    """What a step may know about its resource."""

    resource: str
    columns: Mapping[str, ColumnSpec] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    timezone: str = "UTC"
    """Zone for naive datetimes cast to ``timestamptz`` when a column names none."""
    destination: Destination | None = None
    """The run's destination, for steps that read from it (fk checks, lookups of a
    destination table); None in a dry run or where records are only checked."""
    base_dir: Path | None = None
    """Directory of the pipeline file: relative paths (lookup files) resolve against it;
    None: the working directory."""
    table: str = ""
    """The table the resource loads into (an fk check of it sees the rows of the run)."""
    replaces_table: bool = False
    """``write: replace``: the table's rows before the run will be gone after it."""


class Step(Protocol):
    """A transformation of one batch."""

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Transform ``frame``; rows taken out are rejects or counted as deduplicated."""
        ...


@runtime_checkable
class FinishingStep(Step, Protocol):
    """A step with something to report once a run's batches are done (lookup's unmatched)."""

    def finish(self) -> list[Note]:
        """Called once after the last batch of a resource's run, unless the run failed;
        returns what the run summary and the ledger row should tell."""
        ...


StepFactory = Callable[[Any, StepContext], Step]


@dataclass(frozen=True)
class StepKind:
    """A registered step key: how its options validate and how to build it."""

    options: TypeAdapter[Any]
    build: StepFactory


def registry() -> dict[str, StepKind]:
    """Every step by its key in the pipeline file."""
    from ladle.steps import cast, columns, dedupe, derive, foreign_keys, lookup, validate

    kinds = {
        "rename": StepKind(TypeAdapter(columns.RenameOptions), columns.Rename),
        "select": StepKind(TypeAdapter(columns.ColumnList), columns.Select),
        "drop": StepKind(TypeAdapter(columns.ColumnList), columns.Drop),
        "cast": StepKind(TypeAdapter(cast.CastOptions), cast.Cast),
        "derive": StepKind(TypeAdapter(derive.DeriveOptions), derive.Derive),
        "validate": StepKind(TypeAdapter(validate.ValidateOptions), validate.Validate),
        "dedupe": StepKind(TypeAdapter(dedupe.DedupeOptions), dedupe.Dedupe),
        "fk": StepKind(TypeAdapter(foreign_keys.FkOptions), foreign_keys.ForeignKeys),
        "lookup": StepKind(TypeAdapter(lookup.LookupOptions), lookup.Lookup),
    }
    return kinds | _user_kinds(set(kinds))


def _user_kinds(builtin: set[str]) -> dict[str, StepKind]:
    """Steps registered with ``@ladle.step`` or by an installed package's entry point."""
    from ladle.errors import LadleError
    from ladle.plugins import FunctionStep, step_options, user_steps

    found = user_steps()
    clash = sorted(builtin & set(found))
    if clash:
        raise LadleError(f"user steps may not take the built-in names {clash}")

    def factory(name: str, function: Any) -> StepFactory:
        return lambda options, context: FunctionStep(name, function, options, context.resource)

    return {name: StepKind(step_options(), factory(name, f)) for name, f in found.items()}
