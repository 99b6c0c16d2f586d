"""Running a pipeline: per resource, source -> steps -> destination, every record accounted for.

The policy lives here, in layers that each add one concern: :meth:`Pipeline.run`
opens the destination and walks the resources; :func:`_run_resource` owns the ledger
row and the transaction (commit on success, rollback and a ``failed`` row otherwise);
:func:`process_batch` runs the steps over one batch and routes every record to the
load, the quarantine or the deduplicated count. The invariant is checked before commit.
"""

from __future__ import annotations

import resource as _rusage
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl
import structlog

from ladle.batch import ROW, SEQ, Counts, SourceBatch, empty_rejects
from ladle.columns import ColumnSpec
from ladle.config import (
    DEFAULT_MAX_SHRINK,
    PipelineConfig,
    Resource,
    WriteMode,
    from_mapping,
    load,
)
from ladle.destinations import Destination, Load, LoadTarget, connect, default_url
from ladle.errors import (
    ConfigError,
    DestinationError,
    LadleError,
    ShrinkRefused,
    SourceError,
    StepError,
)
from ladle.incremental import Cursor, encode
from ladle.kinds import SOURCES, STEPS
from ladle.ledger import FAILED, QUEUED, RUNNING, RUNS, SUCCEEDED, RunEntry
from ladle.memory import MemoryGovernor
from ladle.quarantine import rows_from_rejects, rows_from_unreadable
from ladle.read_ahead import read_ahead
from ladle.redact import mask
from ladle.schema import MAX_NAME_BYTES, ColumnType, Kind, fit_name, normalize_name, snake_case
from ladle.sources import Report, SharedResources, Source, SourceContext, StatefulSource
from ladle.state import CHECKPOINT, CURSOR, LAST_RUN, RESERVED
from ladle.steps import FinishingStep, Step, StepContext
from ladle.steps.cast import Cast
from ladle.steps.columns import dropped_at
from ladle.steps.dedupe import Dedupe, DedupeOptions
from ladle.steps.foreign_keys import load_order
from ladle.steps.nul import NulCheck
from ladle.steps.validate import Validate

_SHAPING = frozenset({"rename", "select", "drop"})
log = structlog.get_logger("ladle")


def ladle_version() -> str:
    """The installed version of ladle, as the ledger records it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ladle")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


@dataclass(frozen=True)
class RunOptions:
    """What ``ladle run`` may change about a run."""

    resources: tuple[str, ...] = ()
    """Only these resources (all when empty)."""
    destination: str | None = None
    """Overrides the pipeline file's destination."""
    full_refresh: bool = False
    """Ignore stored state (cursors, processed files) and load everything again."""
    dry_run: bool = False
    """Read, check and transform, but write nothing."""
    strict: bool = False
    """Fail a resource whose source reports a problem (a doc type with no document)."""
    allow_shrink: bool = False
    """Let a ``write: replace`` remove any share of its table's rows (``--allow-shrink``);
    otherwise a resource's ``replace: {max_shrink: …}`` (default half) is the limit."""


@dataclass
class ResourceResult:
    """How one resource's load ended."""

    resource: str
    table: str
    status: str
    counts: Counts
    seconds: float
    error: str | None = None
    ready: int = 0
    """Rows that reached the load (after steps); in a dry run, what would have been loaded."""
    notices: list[str] = field(default_factory=list)
    """What the user should know about the run (a resumed checkpoint, a changed file)."""
    reports: list[Report] = field(default_factory=list)
    """Tables of findings its source left (a documents coverage report)."""

    @property
    def quality(self) -> float | None:
        """Share of fetched records that passed every rule: 1 - quarantined / fetched.

        Records deduplicated away are not bad data, so they do not lower it. None when
        nothing was fetched.
        """
        fetched = self.counts.fetched
        return (fetched - self.counts.quarantined) / fetched if fetched else None


@dataclass
class RunSummary:
    """What ``Pipeline.run`` returns: one result per resource."""

    run_id: str
    pipeline: str
    destination: str
    dry_run: bool
    resources: list[ResourceResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every resource succeeded."""
        return all(r.status == SUCCEEDED for r in self.resources)


class RunObserver(Protocol):
    """Told about progress; the CLI draws progress bars or logs from it."""

    def resource_started(self, resource: str) -> None:
        """A resource begins."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """A batch went through; ``counts`` are the resource's running totals."""

    def resource_finished(self, result: ResourceResult) -> None:
        """A resource ended (succeeded or failed)."""


@runtime_checkable
class SizedObserver(RunObserver, Protocol):
    """An observer that also wants to know how many bytes a resource's source will read
    (the progress bars' total and ETA); told again whenever the source revises it."""

    def input_sized(self, resource: str, total_bytes: int) -> None:
        """The source reads ``total_bytes`` in all (``Counts.bytes_read`` counts them)."""


class _LogObserver:
    """Default observer: structured log lines."""

    def resource_started(self, resource: str) -> None:
        log.info("resource started", resource=resource)

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        log.info("batch staged", resource=resource, fetched=counts.fetched)

    def resource_finished(self, result: ResourceResult) -> None:
        log.info(
            "resource finished",
            resource=result.resource,
            status=result.status,
            error=result.error,
            **vars(result.counts),
        )


class PipelineBuilder:
    """Builds a pipeline in code, resource by resource, with the file's keys as arguments."""

    def __init__(self, name: str, destination: str | None = None) -> None:
        self._data: dict[str, Any] = {"pipeline": name, "resources": {}}
        if destination is not None:
            self._data["destination"] = destination
        self._base_dir: str | Path = "."

    def base_dir(self, path: str | Path) -> PipelineBuilder:
        """Where relative paths resolve (default: the working directory)."""
        self._base_dir = path
        return self

    def timezone(self, zone: str) -> PipelineBuilder:
        """The zone for naive datetimes (the file's ``timezone:``)."""
        self._data["timezone"] = zone
        return self

    def resource(self, name: str, *, source: Mapping[str, Any], **keys: Any) -> PipelineBuilder:
        """Add a resource: ``source`` and any key of a file's resource (``primary_key``, …)."""
        self._data["resources"][name] = {"source": dict(source), **keys}
        return self

    def build(self) -> Pipeline:
        """Validate and return the pipeline; a mistake raises ConfigError naming the key."""
        return Pipeline.from_dict(self._data, base_dir=self._base_dir)


class Pipeline:
    """A validated pipeline file, ready to run."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        load_order(list(config.resources.values()))  # a cycle of fk checks is a ConfigError
        for res in config.resources.values():
            refuse_dropped_keys(res)

    @classmethod
    def from_yaml(cls, path: str | Path, *, destination: str | None = None) -> Pipeline:
        """Load and validate a pipeline file; ConfigError names file, line and key.

        ``destination`` replaces the file's destination before its ``${VAR}`` is read.
        """
        return cls(load(path, destination=destination))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str | Path = ".") -> Pipeline:
        """A pipeline from the mapping a file would hold, validated the same way.

        Relative paths (files, references) resolve against ``base_dir``.
        """
        return cls(from_mapping(data, base_dir=base_dir))

    @staticmethod
    def builder(name: str, *, destination: str | None = None) -> PipelineBuilder:
        """Start a pipeline in code: ``Pipeline.builder("shop").resource(...).build()``."""
        return PipelineBuilder(name, destination)

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self.config.name

    def destination_url(self, override: str | None = None) -> str:
        """The destination this run writes to: override, file, or the DuckDB default."""
        return override or self.config.spec.destination or default_url(self.name)

    def run(
        self,
        options: RunOptions | None = None,
        observer: RunObserver | None = None,
        *,
        destination: Destination | None = None,
    ) -> RunSummary:
        """Load every (selected) resource; a failed resource does not stop the others.

        A ``destination`` passed in is used as it is and left open (the caller owns it);
        otherwise one is opened from the URL and closed at the end.
        """
        options = options or RunOptions()
        observer = observer or _LogObserver()
        selected = self._select(options.resources)
        url = destination.url if destination else self.destination_url(options.destination)
        summary = RunSummary(uuid.uuid4().hex[:12], self.name, mask(url), options.dry_run)
        owned = destination is None and not options.dry_run
        if options.dry_run:
            destination = None
        elif destination is None:
            limits = [m for res in selected if (m := _memory_limit_mb(self.config, res))]
            limit = min(limits, default=None)
            destination = connect(url, base_dir=self.config.base_dir, memory_limit_mb=limit)
        shared = SharedResources()
        try:
            if destination is not None:
                # Every resource of the run is in the ledger from the start: a run killed
                # before reaching one shows it as died, not as never attempted.
                for res in selected:
                    record_entry(destination, run_entry(self.config, res, summary.run_id, QUEUED))
            for res in selected:
                observer.resource_started(res.name)
                memory = _governor(self.config, res)
                run = _ResourceRun(self.config, res, summary.run_id, options, shared, memory)
                result = _run_resource(run, destination, observer)
                summary.resources.append(result)
                observer.resource_finished(result)
        finally:
            try:
                shared.close()
            finally:
                if owned and destination is not None:
                    destination.close()
        return summary

    def _select(self, names: tuple[str, ...]) -> list[Resource]:
        resources = self.config.resources
        unknown = [n for n in names if n not in resources]
        if unknown:
            from ladle.errors import ConfigError

            raise ConfigError(
                f"no resource named {', '.join(map(repr, unknown))}; "
                f"the file has {', '.join(resources)}",
                file=str(self.config.path),
            )
        chosen = [resources[n] for n in names] if names else resources.values()
        # Parents first: a resource whose fk step references another's table runs after it.
        return load_order(list(chosen))


@dataclass(frozen=True)
class _ResourceRun:
    """What one resource's run needs besides the destination."""

    config: PipelineConfig
    res: Resource
    run_id: str
    options: RunOptions
    shared: SharedResources
    memory: MemoryGovernor | None = None
    """Under ``memory_limit_mb``: sizes the source's batches to stay under it."""


def _memory_limit_mb(config: PipelineConfig, res: Resource) -> int | None:
    """The resource's ``memory_limit_mb``, else the pipeline's (None: no limit)."""
    return res.spec.memory_limit_mb or config.spec.memory_limit_mb


def _governor(config: PipelineConfig, res: Resource) -> MemoryGovernor | None:
    limit = _memory_limit_mb(config, res)
    if limit is None:
        return None
    return MemoryGovernor(limit, res.spec.batch_size, resource=res.name)


def run_entry(
    config: PipelineConfig,
    res: Resource,
    run_id: str,
    status: str,
    *,
    replay_of: str | None = None,
) -> RunEntry:
    """The ledger row of ``res`` in run ``run_id`` (a replay's names the run it replays)."""
    return RunEntry(
        run_id=run_id,
        pipeline=config.name,
        resource=res.name,
        table_name=res.table,
        write_mode=res.spec.write.value,
        config_hash=config.config_hash,
        ladle_version=ladle_version(),
        status=status,
        replay_of=replay_of,
    )


def _run_resource(
    run: _ResourceRun, destination: Destination | None, observer: RunObserver
) -> ResourceResult:
    """One resource, with connection accounting around it: a connection not returned is a leak.

    The count of checked-out connections is logged at the start and end of the load; a
    higher count at the end is logged as a leak and written to the ledger row.
    """
    res = run.res
    entry = run_entry(run.config, res, run.run_id, RUNNING)
    if destination is None:
        return _load_resource(run, None, entry, observer)
    before = destination.connections_in_use()
    log.debug("connections in use", resource=res.name, phase="load start", count=before)
    result = _load_resource(run, destination, entry, observer)
    after = destination.connections_in_use()
    log.debug("connections in use", resource=res.name, phase="load end", count=after)
    if after > before:
        entry.leaked_connections = after - before
        log.warning("connection leak", resource=res.name, leaked=entry.leaked_connections)
        record_entry(destination, entry)
    return result


def _load_resource(
    run: _ResourceRun,
    destination: Destination | None,
    entry: RunEntry,
    observer: RunObserver,
) -> ResourceResult:
    """One resource: committed with its ledger row (at the end, or chunk by chunk), or rolled
    back to its last commit with a ``failed`` row."""
    res = run.res
    started = time.monotonic()
    committer: _Committer | None = None
    notices: list[str] = table_notices(res)
    reports: list[Report] = []
    ready = 0
    try:
        steps = build_steps(run.config, res, destination)
        target = load_target(run.config, res, steps, allow_shrink=run.options.allow_shrink)
        stored = {}
        if destination is not None and not run.options.full_refresh:
            stored = destination.read_state(run.config.name, res.name)
        plan = _plan(run, stored, notices)
        if destination is not None:
            destination.record_run(entry)
            committer = _Committer(destination, target, run, entry, plan.cursor)
        source = _source(run, plan, stored, notices, reports)
        ready = _stream(
            run, steps, source, plan, committer=committer, entry=entry, observer=observer,
            names=ColumnNames(notices),
        )  # fmt: skip
        notices += [note.message for note in entry.notes]
        _check_strict(run, reports)
        if committer is not None:
            final = source.final_state() if isinstance(source, StatefulSource) else {}
            notices += committer.finish(final)
        entry.status = SUCCEEDED
        seconds = time.monotonic() - started
        return ResourceResult(
            res.name,
            res.table,
            SUCCEEDED,
            entry.counts,
            seconds,
            ready=ready,
            notices=notices,
            reports=reports,
        )
    except Exception as exc:
        message = (
            mask(str(exc)) if isinstance(exc, LadleError) else mask(f"{type(exc).__name__}: {exc}")
        )
        if committer is not None and committer.settle():
            notices.append(
                f"committing reported an error, but the commit landed (the ledger row written "
                f"with the data says so): {message}"
            )
            seconds = time.monotonic() - started
            return ResourceResult(
                res.name, res.table, SUCCEEDED, entry.counts, seconds,
                ready=ready, notices=notices, reports=reports,
            )  # fmt: skip
        if committer is not None:
            committer.rollback()
            message = committer.explain(message, exc)
        if destination is not None:
            entry.status, entry.error = FAILED, message
            entry.finished_at = _now()
            entry.peak_memory_mb = peak_memory_mb()
            record_entry(destination, entry)
        if not isinstance(exc, LadleError):
            raise
        seconds = time.monotonic() - started
        return ResourceResult(
            res.name,
            res.table,
            FAILED,
            entry.counts,
            seconds,
            message,
            notices=notices,
            reports=reports,
        )


def _check_strict(run: _ResourceRun, reports: list[Report]) -> None:
    """Under ``--strict``, a problem a source reports (a missing doc type) fails the resource."""
    problems = [problem for report in reports for problem in report.problems]
    if run.options.strict and problems:
        raise SourceError(
            "; ".join(problems) + "; nothing of this resource was loaded", position="--strict"
        )


def record_entry(destination: Destination, entry: RunEntry) -> None:
    """Write a ledger row outside the load; if even that fails, say so in the log."""
    try:
        destination.record_run(entry)
    except LadleError as exc:
        log.warning("could not write the ledger", resource=entry.resource, error=str(exc))


@dataclass(frozen=True)
class _Plan:
    """Where a resource's run starts: the cursor, and a checkpoint to resume after."""

    cursor: Cursor | None
    resume: Any


def _plan(run: _ResourceRun, stored: Mapping[str, Any], notices: list[str]) -> _Plan:
    """Read the stored cursor and an interrupted run's checkpoint into a starting point."""
    res = run.res
    spec = res.spec.incremental
    checkpoint = stored.get(CHECKPOINT)
    timezone = run.config.spec.timezone
    if isinstance(checkpoint, dict):
        notices.append(
            f"resuming after the last checkpoint of run {checkpoint.get('run_id')} "
            f"({checkpoint.get('fetched', 0)} records were committed before it stopped)"
        )
        cursor = Cursor.resumed(spec, checkpoint, timezone) if spec else None
        return _Plan(cursor, checkpoint.get("position"))
    if spec is None:
        return _Plan(None, None)
    declared = _declared_type(res, spec.cursor)
    try:
        cursor = Cursor.start(spec, stored.get(CURSOR), declared=declared, timezone=timezone)
    except ValueError as exc:
        raise StepError(str(exc), resource=res.name, step="incremental") from exc
    return _Plan(cursor, None)


def _declared_type(res: Resource, column: str) -> ColumnType | None:
    spec = res.spec.columns.get(column) or res.spec.columns.get(normalize_name(column))
    return spec.type if spec is not None else None


def _source(
    run: _ResourceRun,
    plan: _Plan,
    stored: Mapping[str, Any],
    notices: list[str],
    reports: list[Report],
) -> Source:
    """Build the resource's source, told the cursor bound, the resume point and its state."""
    res = run.res
    # A replace reloads everything: the source must not skip what an earlier run read.
    keeps_state = res.spec.write is not WriteMode.REPLACE
    context = SourceContext(
        res.name,
        res.spec.batch_size,
        run.config.base_dir,
        cursor=plan.cursor.bound if plan.cursor else None,
        resume=plan.resume,
        order_by=tuple(res.spec.primary_key),
        state={k: v for k, v in stored.items() if k not in RESERVED} if keeps_state else {},
        shared=run.shared,
        notices=notices,
        reports=reports,
        build_source=partial(_parent_source, run.config),
        json_columns=frozenset(
            k for k, spec in res.spec.columns.items() if str(spec.type) == "json"
        ),
        budget=run.memory.budget if run.memory else None,
    )
    source: Source = SOURCES[res.source_type].build(res.source_options, context)
    return source


def _parent_source(config: PipelineConfig, name: str, context: SourceContext) -> Source:
    """Resource ``name``'s source, reading on behalf of ``context``'s resource (a ``children``
    source reads its parent's input again): that resource's state, resume point and notices,
    the parent's own options and batch size, and no cursor (it is the child's column)."""
    parent = config.resources[name]
    inner = replace(
        context,
        resource=parent.name,
        batch_size=parent.spec.batch_size,
        cursor=None,
        order_by=tuple(parent.spec.primary_key),
    )
    source: Source = SOURCES[parent.source_type].build(parent.source_options, inner)
    return source


def _stream(
    run: _ResourceRun,
    steps: list[tuple[str, Step]],
    source: Source,
    plan: _Plan,
    *,
    committer: _Committer | None,
    entry: RunEntry,
    observer: RunObserver,
    names: ColumnNames,
) -> int:
    """Read every batch, run the steps, stage the survivors; return how many reached the load."""
    res = run.res
    counts = entry.counts
    seq = 0
    ready = 0
    sized = observer if isinstance(observer, SizedObserver) else None
    total: int | None = None
    for read in _batches(source, run):
        if sized is not None and read.bytes_total is not None and read.bytes_total != total:
            total = read.bytes_total
            sized.input_sized(res.name, total)
        batch = plan.cursor.filter(read) if plan.cursor else read
        frame, quarantined, deduplicated = process_batch(res, steps, batch, names=names)
        counts.fetched += batch.fetched
        counts.bytes_read += read.bytes_read
        counts.deduplicated += deduplicated
        counts.quarantined += quarantined.height
        staged = sequenced(frame, seq)
        seq += batch.frame.height
        ready += staged.height
        if committer is not None:
            committer.add(staged, quarantined, read.checkpoint, position=last_position(read))
        if run.memory is not None:
            size = max(read.frame.estimated_size(), staged.estimated_size())
            run.memory.observe(read.fetched, size)
        observer.batch_loaded(res.name, counts)
    for _, step in steps:
        if isinstance(step, FinishingStep):
            entry.notes += step.finish()
    return ready


def _batches(source: Source, run: _ResourceRun) -> Iterator[SourceBatch]:
    """The source's batches, read one ahead on a second thread when the source allows it
    (:mod:`ladle.read_ahead`). Not under ``memory_limit_mb``: there a batch is sized to
    the limit as if it were alone, and reading ahead would hold two."""
    if run.memory is None and getattr(source, "reads_ahead", False):
        return read_ahead(source.batches())
    return source.batches()


def last_position(batch: SourceBatch) -> str | None:
    """Where the batch's last record stands in its source (``file.jsonl:30000``)."""
    if batch.unreadable:
        return batch.unreadable[-1].position
    return batch.positions[-1] if batch.positions else None


def process_batch(
    res: Resource,
    steps: list[tuple[str, Step]],
    batch: SourceBatch,
    *,
    names: ColumnNames | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Run the steps over one batch: (rows to load, quarantine rows, rows deduplicated).

    ``names`` keeps the resource's column names the same from batch to batch. Last, every
    batch passes :class:`NulCheck`, whatever its steps: text no destination may refuse.
    """
    names = names if names is not None else ColumnNames()
    source = batch.frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    frame = source.rename(names(batch.frame.columns))
    rejects = [empty_rejects()]
    deduplicated = 0
    final = ("nul", _stored_text(res))
    refused: _Refused | None = None
    for name, step in [*steps, final]:
        before = frame.height
        result = step(frame)
        if refused is not None and isinstance(step, Validate):
            rejects.append(step.check_refused(refused.frame, refused.rejects))
        refused = _Refused.of(step, frame, result.rejects) if isinstance(step, Cast) else None
        removed = before - result.frame.height
        rejected = result.rejects.get_column(ROW).n_unique() if result.rejects.height else 0
        if removed != rejected + result.deduplicated:
            raise StepError(
                f"{removed} rows left the batch but {rejected} were rejected and "
                f"{result.deduplicated} deduplicated; a step must account for every row",
                resource=res.name,
                step=name,
            )
        frame = result.frame
        rejects.append(result.rejects)
        deduplicated += result.deduplicated
    frame = frame.rename(names.fit(frame.columns))
    quarantined = pl.concat(
        [
            rows_from_rejects(pl.concat(rejects), source, batch.positions),
            rows_from_unreadable(batch.unreadable),
        ]
    )
    return frame, quarantined, deduplicated


@dataclass(frozen=True)
class _Refused:
    """The records ``cast`` refused, as cast left them (each refused value null), kept for
    the ``validate`` right after it: their quarantine row then lists every error at once."""

    frame: pl.DataFrame
    rejects: pl.DataFrame

    @classmethod
    def of(cls, cast: Step, frame: pl.DataFrame, rejects: pl.DataFrame) -> _Refused | None:
        """Cast the refused rows of ``frame`` again with their refused values set to null."""
        if rejects.height == 0:
            return None
        rows = frame.filter(pl.col(ROW).is_in(rejects.get_column(ROW).implode()))
        for field_name in rejects.get_column("field").drop_nulls().unique():
            if field_name in rows.columns:
                bad = rejects.filter(pl.col("field") == field_name).get_column(ROW)
                blanked = pl.when(pl.col(ROW).is_in(bad.implode())).then(None)
                rows = rows.with_columns(blanked.otherwise(pl.col(field_name)).alias(field_name))
        return cls(cast(rows).frame, rejects)


def _stored_text(res: Resource) -> NulCheck:
    """The final check, told which columns are declared ``json`` (stored as jsonb)."""
    declared = [
        n for n, spec in res.spec.columns.items() if spec.type and spec.type.kind is Kind.JSON
    ]
    return NulCheck([*declared, *map(normalize_name, declared)])


def sequenced(frame: pl.DataFrame, seq: int) -> pl.DataFrame:
    """A batch's rows as staged: the row's index in its batch (``ROW``) becomes its order in
    the whole load (``SEQ``), counted on from ``seq``."""
    return frame.with_columns((pl.col(ROW).cast(pl.Int64) + seq).alias(SEQ)).drop(ROW)


class _Committer:
    """Owns a resource's load: stages batches, commits chunks with their checkpoint, finishes.

    Without ``commit_every`` the whole resource is one transaction. With it, every chunk of
    about that many records is merged and committed together with the checkpoint (where
    the source stands, the cursor so far) and the ledger row's running counts, so a killed
    run loses at most the chunk in hand and the next run resumes right after.
    """

    def __init__(
        self,
        destination: Destination,
        target: LoadTarget,
        run: _ResourceRun,
        entry: RunEntry,
        cursor: Cursor | None,
    ) -> None:
        self._destination = destination
        self._target = target
        self._run = run
        self._entry = entry
        self._cursor = cursor
        self._every = run.res.spec.commit_every
        self._pending = 0
        self._committed = Counts()
        self._chunks = 0
        """Chunks committed so far (with ``commit_every``)."""
        self._position: str | None = None
        """Where the last record staged stands in its source."""
        self._committed_position: str | None = None
        self._placed = False
        self._unplaced = False
        self._in_flight: tuple[Counts, str] | None = None
        """The counts and status a commit under way writes, until it returns."""
        self._unknown = False
        """Whether a commit that raised may have landed: its ledger row could not be read."""
        self._load: Load | None = destination.begin(target)

    def add(
        self,
        staged: pl.DataFrame,
        quarantined: pl.DataFrame,
        checkpoint: Any,
        *,
        position: str | None = None,
    ) -> None:
        """Stage one batch; commit a chunk when enough records have gathered."""
        load = self._current()
        load.stage(staged)
        load.write_quarantine(quarantined, run_id=self._run.run_id, resource=self._run.res.name)
        self._position = position or self._position
        self._pending += staged.height + quarantined.height
        if self._every is not None and self._pending >= self._every:
            self._commit_chunk(checkpoint)

    def _commit_chunk(self, checkpoint: Any) -> None:
        res = self._run.res
        if checkpoint is None:
            # The source cannot say where it stands here (or it has just ended): the
            # chunk grows until it can, or until the load finishes.
            self._unplaced = True
            return
        self._placed = True
        load = self._merge()
        saved = {
            "run_id": self._run.run_id,
            "position": checkpoint,
            "fetched": self._entry.counts.fetched,
            **(self._cursor.saved() if self._cursor else {}),
        }
        load.write_state(res.name, CHECKPOINT, saved, run_id=self._run.run_id)
        load.write_ledger(self._entry)
        self._commit(load)
        self._committed = replace(self._entry.counts)
        self._chunks += 1
        self._committed_position = self._position
        self._pending = 0
        log.info("chunk committed", resource=res.name, fetched=self._entry.counts.fetched)

    def finish(self, source_state: Mapping[str, Any]) -> list[str]:
        """Merge the last chunk, then write cursor, source state and ledger, and commit.

        Returns notices for the user (commit_every that could not be honoured).
        """
        res, run_id, entry = self._run.res, self._run.run_id, self._entry
        load = self._merge()
        counts = entry.counts
        entry.status = SUCCEEDED
        entry.finished_at = _now()
        entry.peak_memory_mb = peak_memory_mb()
        if self._cursor is not None:
            mark = encode(self._cursor.high, self._cursor.kind)
            if mark is not None:
                load.write_state(res.name, CURSOR, mark, run_id=run_id)
        for key, value in source_state.items():
            load.write_state(res.name, key, value, run_id=run_id)
        load.write_state(res.name, CHECKPOINT, None, run_id=run_id)
        rows = counts.inserted + counts.updated
        state = {"run_id": run_id, "table": res.table, "rows": rows}
        load.write_state(res.name, LAST_RUN, state, run_id=run_id)
        load.write_ledger(entry)
        self._commit(load)
        if self._unplaced and not self._placed:
            return [
                f"commit_every was not applied: this {res.source_type} source cannot say where "
                "it stands after a batch (a sql source needs a primary_key or an incremental "
                "cursor to order by), so the load was one transaction"
            ]
        return []

    def _commit(self, load: Load) -> None:
        """Commit; one that raises may have landed all the same (see :meth:`settle`)."""
        self._in_flight = (replace(self._entry.counts), self._entry.status)
        load.commit()
        self._in_flight = None
        self._load = None

    def settle(self) -> bool:
        """After a failure, if a commit was in flight when it came (the connection lost while
        committing), read back the ledger row that went with it: a chunk that landed counts
        as committed; True if the whole load landed. Unknown if the row cannot be read."""
        if self._in_flight is None:
            return False
        (counts, status), self._in_flight = self._in_flight, None
        self._load = None  # a commit that raised has ended the transaction, either way
        where = {"run_id": self._run.run_id, "resource": self._run.res.name}
        try:
            rows = self._destination.read(RUNS.name, where).to_dicts()
        except LadleError as exc:
            self._unknown = True
            log.warning(
                "could not read back the ledger", resource=where["resource"], error=str(exc)
            )
            return False
        if not rows or rows[0]["status"] != status or rows[0]["fetched"] != counts.fetched:
            return False
        if status == SUCCEEDED:
            return True
        self._committed = counts
        self._chunks += 1
        self._committed_position = self._position
        return False

    def rollback(self) -> None:
        """Undo the chunk in hand. The ledger row keeps the counts that were committed, and
        every other record fetched (staged, quarantined or deduplicated in the chunk in
        hand) is counted as rolled back, so that the row still balances."""
        if self._load is not None:
            try:
                self._load.rollback()
            except LadleError as rollback_error:
                log.warning(
                    "rollback failed", resource=self._run.res.name, error=str(rollback_error)
                )
            self._load = None
        counts = self._entry.counts
        self._entry.counts = replace(
            self._committed,
            fetched=counts.fetched,
            bytes_read=counts.bytes_read,
            rolled_back=counts.fetched - self._committed.placed,
        )

    def explain(self, message: str, error: BaseException) -> str:
        """``message`` with what of the load committed and what did not, after a rollback.

        Said for every destination error and whenever chunks were committed; other errors
        of a load that committed nothing keep their own words."""
        if not self._chunks and not isinstance(error, DestinationError):
            return message
        if isinstance(error, ShrinkRefused):  # refused before anything was written
            return message
        if self._unknown:
            return message + (
                "; the ledger could not be read back to tell whether that commit landed: if it "
                "did, the ledger row written with it says so (ladle runs)"
            )
        rolled_back = self._entry.counts.rolled_back
        if not self._chunks:
            again = "; run it again" if getattr(error, "transient", False) else ""
            return f"{message}; nothing of this load was committed{again}"
        records = self._committed.fetched
        where = f", up to {self._committed_position}" if self._committed_position else ""
        chunks = "1 chunk was" if self._chunks == 1 else f"{self._chunks:,} chunks were"
        return (
            f"{message}; {chunks} committed ({records:,} records{where}); the chunk in hand "
            f"({rolled_back:,} records) was rolled back; the next run resumes after the last "
            "checkpoint"
        )

    def _current(self) -> Load:
        if self._load is None:
            self._load = self._destination.begin(self._target)
        return self._load

    def _merge(self) -> Load:
        load = self._current()
        finish_load(load, self._entry.counts, self._run.res.name)
        return load


def finish_load(load: Load, counts: Counts, resource: str) -> None:
    """Merge what is staged, add the database's counts, and check the invariant (before
    any commit, so a ledger that does not balance commits nothing)."""
    result = load.finish()
    counts.inserted += result.inserted
    counts.updated += result.updated
    counts.unchanged += result.unchanged
    counts.deduplicated += result.deduplicated
    counts.verify(resource)


def build_steps(
    config: PipelineConfig, res: Resource, destination: Destination | None = None
) -> list[tuple[str, Step]]:
    """The resource's steps, with cast and validate of the declared columns put in.

    Unless the file lists ``cast`` / ``validate`` itself, both run right after the
    leading rename/select/drop steps: types are known before ``derive`` and ``dedupe``.
    Steps that read the destination (fk, lookup) get ``destination``.
    """
    ordered = [(name, options) for name, options, _ in _ordered_steps(res)]
    return _built(config, res, ordered, destination)


def validation_steps(config: PipelineConfig, res: Resource) -> list[tuple[str, Step]]:
    """The steps that decide whether a record is valid as it arrives: the leading
    rename/select/drop, then cast and validate (what ``ladle serve`` checks before it
    accepts a record)."""
    ordered = _ordered_steps(res)
    chosen = [(n, o) for n, o, leading in ordered if leading or n in ("cast", "validate")]
    return _built(config, res, chosen)


def _ordered_steps(res: Resource) -> list[tuple[str, Any, bool]]:
    """(name, options, is one of the leading shaping steps), implicit cast/validate put in."""
    configured = [(s.name, s.options) for s in res.steps]
    names = {name for name, _ in configured}
    lead = 0
    while lead < len(configured) and configured[lead][0] in _SHAPING:
        lead += 1
    implicit = [(n, None) for n in ("cast", "validate") if n not in names]
    return [
        *((n, o, True) for n, o in configured[:lead]),
        *((n, o, False) for n, o in implicit + configured[lead:]),
    ]


def _built(
    config: PipelineConfig,
    res: Resource,
    steps: list[tuple[str, Any]],
    destination: Destination | None = None,
) -> list[tuple[str, Step]]:
    context = StepContext(
        resource=res.name,
        columns=_columns_with_key_required(res),
        primary_key=tuple(res.spec.primary_key),
        timezone=config.spec.timezone,
        destination=destination,
        base_dir=config.base_dir,
        table=res.table,
        replaces_table=res.spec.write is WriteMode.REPLACE,
    )
    built = []
    for name, options in steps:
        try:
            built.append((name, STEPS[name].build(options, context)))
        except LadleError:
            raise
        except Exception as exc:
            raise StepError(str(exc), resource=res.name, step=name) from exc
    return built


def _columns_with_key_required(res: Resource) -> Mapping[str, ColumnSpec]:
    columns = dict(res.spec.columns)
    for key in res.spec.primary_key:
        spec = columns.get(key, ColumnSpec())
        columns[key] = spec.model_copy(update={"required": True})
    return columns


def load_target(
    config: PipelineConfig,
    res: Resource,
    steps: list[tuple[str, Step]],
    *,
    allow_shrink: bool = False,
) -> LoadTarget:
    """What the load writes and how it dedupes, as the resource's steps leave the batch;
    ``allow_shrink`` lifts a replace's shrink limit.

    Order columns of the dedupe that a later step drops cannot reach the load: the dedupe
    step then keeps each key's winner across batches itself
    (:meth:`Dedupe.remember_winners`) and the load keeps the last row staged.
    """
    # A name the file spells in full (a long header, snake_cased) is stored shortened.
    declared: dict[str, ColumnType] = {
        fit_name(name): spec.type
        for name, spec in res.spec.columns.items()
        if spec.type is not None
    }
    target = LoadTarget(
        pipeline=config.name,
        table=res.table,
        write=res.spec.write,
        primary_key=tuple(fit_name(key) for key in res.spec.primary_key),
        declared=declared,
        max_shrink=None if allow_shrink else _max_shrink(res),
    )
    dedupes = [step for _, step in steps if isinstance(step, Dedupe)]
    if dedupes:
        last = dedupes[-1]
        after = 1 + max((i for i, s in enumerate(res.steps) if s.name == "dedupe"), default=-1)
        order_by, keep = last.order_by, last.keep
        if any(dropped_at(c, res.steps[after:]) is not None for c in order_by):
            last.remember_winners()
            order_by, keep = (), "last"
        target = replace(target, dedupe_on=last.key, dedupe_keep=keep, dedupe_order_by=order_by)
    if res.spec.write is WriteMode.MERGE and not target.primary_key:  # pragma: no cover
        raise StepError("merge needs a primary_key", resource=res.name, step="write")
    return target


def _max_shrink(res: Resource) -> float:
    """The resource's ``replace: {max_shrink: …}``, else the default (half the table)."""
    return res.spec.replace.max_shrink if res.spec.replace else DEFAULT_MAX_SHRINK


def refuse_dropped_keys(res: Resource) -> None:
    """A ConfigError, before anything runs, for a step that drops a column the load needs:
    the primary key of a merge, or the key of the last dedupe (after that step)."""
    if res.spec.write is WriteMode.MERGE:
        _refuse_dropped(res, res.spec.primary_key, 0, "the primary_key that merge matches rows on")
    at = max((i for i, s in enumerate(res.steps) if s.name == "dedupe"), default=None)
    if at is not None:
        options = res.steps[at].options or DedupeOptions()
        key = options.on or res.spec.primary_key
        _refuse_dropped(res, key, at + 1, "the key of dedupe, to dedupe across batches")


def _refuse_dropped(res: Resource, columns: Sequence[str], start: int, needs: str) -> None:
    """A ConfigError at the step (from ``start`` on) that drops one of ``columns``."""
    for column in columns:
        index = dropped_at(column, res.steps[start:])
        if index is not None:
            step = res.steps[start + index]
            file, _, line = step.where.rpartition(":")
            raise ConfigError(
                f"{'renames' if step.name == 'rename' else 'drops'} column {column!r}, which "
                f"the load needs ({needs}); remove it from this step",
                file=file,
                line=int(line),
                key=f"resources.{res.name}.steps[{start + index}].{step.name}",
            )


def normalized_names(columns: list[str]) -> dict[str, str]:
    """snake_case every column name; a clash gets a numeric suffix rather than losing data."""
    return ColumnNames()(columns)


def table_notices(res: Resource) -> list[str]:
    """A notice when the resource's table name had to be shortened."""
    full = res.spec.table or snake_case(res.name)
    if full == res.table:
        return []
    return [f"table {full!r} of resource {res.name!r} is stored as {res.table!r} ({_TOO_LONG})"]


class ColumnNames:
    """The stored name of each of a resource's columns, fixed when a batch first brings it.

    A later batch that lacks a column cannot shift the names of the others (``a b`` and
    ``a_b`` stay ``a_b`` and ``a_b_2`` whichever batches bring them). Every name ladle had
    to make up (shortened, generated, numbered after a clash) is told once in ``notices``.
    """

    def __init__(self, notices: list[str] | None = None) -> None:
        self.notices: list[str] = [] if notices is None else notices
        self._stored: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, columns: list[str]) -> dict[str, str]:
        """Original name -> stored name for every column of a batch."""
        for position, column in enumerate(columns, start=1):
            if column not in self._stored:
                self._add(column, position)
        return {column: self._stored[column] for column in columns}

    def fit(self, columns: list[str]) -> dict[str, str]:
        """Renames for the names a step made (``rename``, ``derive``) that are too long."""
        renames = {c: fit_name(c) for c in columns if fit_name(c) != c}
        for column, fitted in renames.items():
            self._tell(f"column {column!r} is stored as {fitted!r} ({_TOO_LONG})")
        return renames

    def _add(self, column: str, position: int) -> None:
        name = normalize_name(column)
        candidate, n = name, 2
        while candidate in self._taken:
            candidate, n = fit_name(f"{name}_{n}"), n + 1
        self._taken.add(candidate)
        self._stored[column] = candidate
        reasons = []
        if "\x00" in column:
            reasons.append("a name cannot hold a NUL byte")
        if not any(c.isalnum() for c in column):
            reasons.append("it has no letter or digit to make a name of")
        elif fit_name(snake_case(column)) != snake_case(column):
            reasons.append(_TOO_LONG)
        if candidate != name:
            reasons.append(f"{name!r} is the name of an earlier column")
            self._tell(
                f"column {position} {column!r} is stored as {candidate!r} ({'; '.join(reasons)})"
            )
        elif reasons:
            self._tell(f"column {column!r} is stored as {candidate!r} ({'; '.join(reasons)})")

    def _tell(self, notice: str) -> None:
        if notice not in self.notices:
            self.notices.append(notice)


_TOO_LONG = f"names are at most {MAX_NAME_BYTES} bytes"


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB.

    On Linux, VmHWM from /proc: ``ru_maxrss`` keeps the high-water mark of the process
    that forked us across exec, so a ladle started by a large parent would report the
    parent's memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = _rusage.getrusage(_rusage.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
