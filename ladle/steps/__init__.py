"""Steps: vectorized transformations of a batch, named by their key in the pipeline file.

A step is a small callable (like a structlog processor): it decides once in
``__init__`` from its options and the resource's declarations, then works per batch
in ``__call__``, returning a :class:`~ladle.batch.StepResult`. A row that fails a
rule becomes a reject with {field, rule, value, message}; it never fails the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

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
