"""Sources: where records come from. Each yields :class:`~ladle.batch.SourceBatch` objects.

A source is chosen by the ``type:`` key of a resource's ``source:``; the registry maps
that key to an options model (pydantic, validated with the rest of the pipeline file)
and a factory. Sources stream: a batch is at most ``batch_size`` records, and nothing
holds a whole input in memory.

Incremental loads and resumption are shared work: the pipeline tells a source the
cursor bound (``context.cursor``) and, after a killed run, the position of the last
committed chunk (``context.resume``); a source that can push the bound down (a SQL
``WHERE``, an HTTP query parameter) does, and every source says where each batch ends
(``SourceBatch.checkpoint``) so that a run can commit in chunks and resume exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from ladle.batch import SourceBatch
from ladle.memory import BatchBudget

_T = TypeVar("_T")

CursorValue = datetime | int | float | str
"""A cursor's value: timestamps are timezone-aware (UTC) datetimes."""


@dataclass(frozen=True)
class CursorBound:
    """Fetch only records whose ``column`` is greater than ``after``.

    ``column`` is the cursor as the source names it. ``after`` is None on a first run
    with no ``initial:`` (everything is fetched). The pipeline filters every batch by
    the bound anyway, so pushing it down is an optimisation a source may skip.
    """

    column: str
    after: CursorValue | None


class SharedResources:
    """Objects several sources of one run share (one SQL engine per URL), closed at its end."""

    def __init__(self) -> None:
        self._items: dict[Hashable, tuple[Any, Callable[[Any], None]]] = {}

    def get(self, key: Hashable, create: Callable[[], _T], close: Callable[[_T], None]) -> _T:
        """The object under ``key``, created on first use; ``close`` runs when the run ends."""
        if key not in self._items:
            self._items[key] = (create(), cast("Callable[[Any], None]", close))
        return cast("_T", self._items[key][0])

    def close(self) -> None:
        """Close everything, last created first; every close runs even if one fails."""
        errors: list[BaseException] = []
        while self._items:
            _, (item, close) = self._items.popitem()
            try:
                close(item)
            except Exception as exc:  # reported below, after closing the rest
                errors.append(exc)
        if errors:
            raise errors[0]


class Report(Protocol):
    """A table of findings a source leaves about its run (documents: coverage per doc type).

    It is shown under the run summary; its ``problems`` fail the resource under
    ``ladle run --strict``.
    """

    @property
    def title(self) -> str:
        """The table's title."""
        ...

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's column headings."""
        ...

    @property
    def problems(self) -> list[str]:
        """What makes the run incomplete (a doc type with no document), one line each."""
        ...

    def rows(self, *, limit: int | None = None) -> list[tuple[str, ...]]:
        """The table's rows; lists inside a cell cut after ``limit`` items."""
        ...


@dataclass(frozen=True)
class SourceContext:
    """What a source needs to know about the resource that reads it."""

    resource: str
    batch_size: int
    base_dir: Path
    """Directory of the pipeline file: relative paths resolve against it."""
    cursor: CursorBound | None = None
    """The incremental bound, when the resource has ``incremental:``."""
    resume: Any = None
    """The ``checkpoint`` of the last batch a killed run committed: start right after it."""
    order_by: tuple[str, ...] = ()
    """Columns that identify a record (the primary key): a source that must order its
    records to checkpoint them (SQL) orders by the cursor, then these."""
    state: Mapping[str, Any] = field(default_factory=dict)
    """The resource's stored state entries (e.g. ``files``), empty on ``--full-refresh``."""
    shared: SharedResources = field(default_factory=SharedResources)
    """Run-scoped objects to share between resources (engines, HTTP clients)."""
    notices: list[str] = field(default_factory=list)
    """Things the user should hear about (a file that changed): shown in the run summary."""
    reports: list[Report] = field(default_factory=list)
    """Tables of findings (a documents coverage report): shown under the run summary."""
    build_source: Callable[[str, SourceContext], Source] | None = None
    """Builds another resource's source (by name) to read on behalf of the given context's
    resource (its state, resume point and notices; no cursor): how a ``children`` source
    reads its parent's records. None outside ``ladle run``."""
    json_columns: frozenset[str] = frozenset()
    """Columns the resource declares ``type: json``: a JSON source keeps each such field's
    value whole, as one JSON text, instead of flattening it."""
    budget: BatchBudget | None = None
    """Under ``memory_limit_mb``: what the next batch may hold (rows, input bytes). The
    pipeline changes it between batches, so a source that honours it reads it before each
    batch (file sources read one batch ahead: a change applies from the batch after next);
    None: batches of ``batch_size``."""


class Source(Protocol):
    """Anything that yields batches of records with their positions."""

    def batches(self) -> Iterator[SourceBatch]:
        """Yield the records in batches of at most ``batch_size`` rows.

        Each batch's ``checkpoint`` (JSON-serialisable) is where the source stands after
        it: a new source given that value as ``context.resume`` yields exactly the
        records that follow. A source that cannot resume leaves it None.
        """
        ...


@runtime_checkable
class StatefulSource(Source, Protocol):
    """A source that keeps state between runs besides the cursor (files keep what they read)."""

    def final_state(self) -> Mapping[str, Any]:
        """State entries to store when the run completes, by key."""
        ...
