"""Replaying quarantined records through the pipeline as it is now: ``ladle quarantine replay``.

Once the pipeline is fixed (a rule relaxed, a rename added), the records a run
quarantined go through the resource's *current* steps again, with their original
positions. Each resource is one transaction, as in a run: the records that now pass are
loaded by the resource's write mode, every replayed record leaves the replayed run's
quarantine, and those that still fail are quarantined again under the replay's own run
id with their current errors (so ``ladle quarantine show <replay run>`` shows what is
left, and can be replayed in turn). The replay gets its own ledger rows, marked
``replay_of`` the replayed run, whose counts balance: fetched = the records replayed.
It writes no state: cursors, loaded files and checkpoints stay as they are.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import polars as pl
import structlog

from ladle.batch import ROW, Counts, SourceBatch, Unreadable
from ladle.config import Resource, WriteMode
from ladle.destinations import Destination, Load, LoadTarget, connect
from ladle.errors import LadleError
from ladle.ledger import FAILED, RUNNING, RUNS, SUCCEEDED, RunEntry
from ladle.outage import describe, destination_unavailable
from ladle.pipeline import (
    Pipeline,
    ResourceResult,
    RunSummary,
    build_steps,
    finish_load,
    load_target,
    peak_memory_mb,
    process_batch,
    record_entry,
    run_entry,
    sequenced,
)
from ladle.quarantine import QUARANTINE, rows_from_unreadable
from ladle.redact import mask
from ladle.sources.flatten import ColumnClash, records_to_frame
from ladle.steps import FinishingStep, Step
from ladle.steps.foreign_keys import load_order

log = structlog.get_logger("ladle")

_REPARSED_RULES = frozenset({"parse", "type", "poison"})
"""Rules of records the source could not read whose stored text may be JSON worth reading
again: a line that was not an object, a database row with a misfit value, a worker's poison
entry. Text with undecodable bytes (``encoding``) is shown escaped and is never loaded."""


def replay(
    pipeline: Pipeline,
    run_id: str,
    *,
    resource: str | None = None,
    destination: str | None = None,
) -> RunSummary:
    """Re-run the records ``run_id`` quarantined through ``pipeline``'s current steps.

    Loads those that pass and takes every replayed record out of the run's quarantine;
    those that still fail stay quarantined under the replay's run id. ``resource`` limits
    the replay to one resource. Raises LadleError for an unknown run or nothing to replay.
    """
    url = pipeline.destination_url(destination)
    dest = connect(url, base_dir=pipeline.config.base_dir)
    try:
        return replay_into(pipeline, run_id, dest, resource=resource)
    finally:
        dest.close()


def replay_into(
    pipeline: Pipeline, run_id: str, dest: Destination, *, resource: str | None = None
) -> RunSummary:
    """:func:`replay` into a destination the caller has opened (and closes)."""
    _check_run(pipeline, run_id, dest)
    by_resource = _quarantined(pipeline, run_id, dest, resource)
    summary = RunSummary(uuid.uuid4().hex[:12], pipeline.name, dest.url, dry_run=False)
    config = pipeline.config
    for res in load_order([config.resources[name] for name in by_resource]):
        rows = by_resource[res.name]
        log.info("replay started", resource=res.name, replay_of=run_id, records=len(rows))
        result = _replay_resource(pipeline, res, rows, dest, run_id=summary.run_id, of=run_id)
        summary.resources.append(result)
        log.info("replay finished", resource=res.name, status=result.status, error=result.error)
    return summary


# ---------------------------------------------------------------- what to replay


def _check_run(pipeline: Pipeline, run_id: str, dest: Destination) -> None:
    runs = dest.read(RUNS.name, {"run_id": run_id})
    if runs.height == 0:
        raise LadleError(f"no run {run_id!r} in {dest.url}; `ladle runs` lists the runs")
    owner = runs.get_column("pipeline")[0]
    if owner != pipeline.name:
        raise LadleError(
            f"run {run_id!r} belongs to pipeline {owner!r}, not {pipeline.name!r}; "
            "replay it with that pipeline's file"
        )


def _quarantined(
    pipeline: Pipeline, run_id: str, dest: Destination, resource: str | None
) -> dict[str, list[dict[str, Any]]]:
    """The run's quarantine rows by resource, in the order they were read."""
    resources = pipeline.config.resources
    if resource is not None and resource not in resources:
        raise LadleError(
            f"no resource {resource!r} in pipeline {pipeline.name!r}; it has {', '.join(resources)}"
        )
    where = {"run_id": run_id, **({"resource": resource} if resource else {})}
    frame = dest.read(QUARANTINE.name, where)
    if frame.height == 0:
        only = f" of resource {resource!r}" if resource else ""
        raise LadleError(
            f"run {run_id!r} has no quarantined records{only} (left); "
            "`ladle quarantine list` shows the runs that have some"
        )
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        by_resource.setdefault(row["resource"], []).append(row)
    gone = [name for name in by_resource if name not in resources]
    if gone:
        raise LadleError(
            f"run {run_id!r} quarantined records of {', '.join(map(repr, gone))}, which "
            f"pipeline {pipeline.name!r} no longer has; replay the others with --resource"
        )
    for rows in by_resource.values():
        rows.sort(key=lambda r: (r["quarantined_at"], _natural(r["position"])))
    return by_resource


def _natural(position: str) -> tuple[Any, ...]:
    """``file:10`` after ``file:9``: numbers in a position compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", position))


# ---------------------------------------------------------------- one resource


def _replay_resource(
    pipeline: Pipeline,
    res: Resource,
    rows: list[dict[str, Any]],
    dest: Destination,
    *,
    run_id: str,
    of: str,
) -> ResourceResult:
    """One resource's replay in one transaction: load, re-quarantine, discard, ledger."""
    config = pipeline.config
    entry = run_entry(config, res, run_id, RUNNING, replay_of=of)
    started = time.monotonic()
    load: Load | None = None
    try:
        dest.record_run(entry)
        steps = build_steps(config, res, dest)
        load = dest.begin(_target(load_target(config, res, steps), res))
        ready = _load(res, steps, rows, load, entry, run_id=run_id)
        _discard(load, res, rows, of=of)
        entry.status, entry.finished_at = SUCCEEDED, _now()
        entry.peak_memory_mb = peak_memory_mb()
        load.write_ledger(entry)
        load.commit()
    except Exception as exc:
        message = mask(str(exc) if isinstance(exc, LadleError) else f"{type(exc).__name__}: {exc}")
        if load is not None:
            _rollback(load, res)
        entry.counts = Counts(bytes_read=entry.counts.bytes_read)
        entry.status, entry.error, entry.finished_at = FAILED, message, _now()
        entry.peak_memory_mb = peak_memory_mb()
        record_entry(dest, entry)
        if not isinstance(exc, LadleError):
            raise
        seconds = time.monotonic() - started
        return ResourceResult(res.name, res.table, FAILED, entry.counts, seconds, message)
    seconds = time.monotonic() - started
    notices = [f"replay of run {of}: {len(rows)} quarantined records through the current steps"]
    if entry.counts.quarantined:
        notices.append(
            f"{entry.counts.quarantined} still fail; they are quarantined under run {run_id} "
            f"with their current errors (`ladle quarantine show {run_id}`)"
        )
    return ResourceResult(
        res.name, res.table, SUCCEEDED, entry.counts, seconds, ready=ready, notices=notices
    )


def _load(
    res: Resource,
    steps: list[tuple[str, Step]],
    rows: list[dict[str, Any]],
    load: Load,
    entry: RunEntry,
    *,
    run_id: str,
) -> int:
    """Steps over the records batch by batch, survivors staged, failures re-quarantined.

    A record that makes a step raise is found by splitting its batch and stays in
    quarantine (under this replay, rule ``poison``, with the error); the others go on.
    When every record raises, the steps are at fault, not the records: the replay fails.
    """
    counts = entry.counts
    seq = ready = 0
    originals = {row["position"]: row for row in rows}
    failed: list[tuple[str, BaseException]] = []
    for batch in _batches(rows, res.spec.batch_size):
        for piece in _isolated(res, steps, batch, failed):
            frame, quarantined, deduplicated = piece.processed
            if res.source_type == "redis_stream" and res.spec.write is WriteMode.APPEND:
                from ladle.worker import with_message_ids

                frame = with_message_ids(frame, piece.batch)
            counts.fetched += piece.batch.fetched
            counts.deduplicated += deduplicated
            counts.quarantined += quarantined.height
            staged = sequenced(frame, seq)
            seq += piece.batch.frame.height
            ready += staged.height
            load.stage(staged)
            load.write_quarantine(quarantined, run_id=run_id, resource=res.name)
    if failed and len(failed) == sum(1 for r in rows if not isinstance(_record_of(r), Unreadable)):
        raise failed[0][1]
    _quarantine_failed(res, failed, originals, load, counts, run_id=run_id)
    for _, step in steps:
        if isinstance(step, FinishingStep):
            entry.notes += step.finish()
    finish_load(load, counts, res.name)
    return ready


@dataclass(frozen=True)
class _Piece:
    """Part of a batch that went through the steps, with what they made of it."""

    batch: SourceBatch
    processed: tuple[pl.DataFrame, pl.DataFrame, int]


def _isolated(
    res: Resource,
    steps: list[tuple[str, Step]],
    batch: SourceBatch,
    failed: list[tuple[str, BaseException]],
) -> list[_Piece]:
    """The batch through the steps; if they raise, each half in turn, down to the single
    records that raise (added to ``failed`` with their error). A destination outage is
    raised: it says nothing about the records."""
    try:
        return [_Piece(batch, process_batch(res, steps, batch))]
    except Exception as exc:
        if destination_unavailable(exc):
            raise
        height = batch.frame.height
        if height <= 1 and not batch.unreadable:
            failed.extend((position, exc) for position in batch.positions)
            return []
        half = max(height // 2, 1)
        parts = [
            SourceBatch(batch.frame.clear(), [], batch.unreadable),
            SourceBatch(batch.frame.head(half), batch.positions[:half]),
            SourceBatch(batch.frame.slice(half), batch.positions[half:]),
        ]
        log.warning(
            "replay batch failed; splitting it to isolate the records that fail",
            resource=res.name,
            records=height,
            error=describe(exc),
        )
        pieces = [_Piece(parts[0], _unreadable_only(parts[0]))] if batch.unreadable else []
        for part in parts[1:]:
            if part.frame.height:
                pieces += _isolated(res, steps, part, failed)
        return pieces


def _unreadable_only(batch: SourceBatch) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """What process_batch makes of a batch of unreadable records only, without the steps."""
    return (
        pl.DataFrame({ROW: []}, schema={ROW: pl.Int64}),
        rows_from_unreadable(batch.unreadable),
        0,
    )


def _quarantine_failed(
    res: Resource,
    failed: list[tuple[str, BaseException]],
    originals: Mapping[str, Mapping[str, Any]],
    load: Load,
    counts: Counts,
    *,
    run_id: str,
) -> None:
    """The records that raised alone: quarantined again, as they were stored, with the error."""
    if not failed:
        return
    unreadable = []
    for position, error in failed:
        record = _record_of(originals[position])
        text = json.dumps(record) if isinstance(record, dict) else record.raw
        unreadable.append(Unreadable(position, text, describe(error), rule="poison"))
        log.warning("record failed; it stays quarantined", resource=res.name, position=position)
    load.write_quarantine(rows_from_unreadable(unreadable), run_id=run_id, resource=res.name)
    counts.fetched += len(failed)
    counts.quarantined += len(failed)


def _discard(load: Load, res: Resource, rows: list[dict[str, Any]], *, of: str) -> None:
    """Take the replayed records out of the replayed run's quarantine, with the load."""
    positions = [r["position"] for r in rows]
    discarded = load.discard_quarantine(run_id=of, resource=res.name, positions=positions)
    if discarded != len(rows):
        raise LadleError(
            f"the quarantine of run {of!r} changed during the replay ({len(rows)} records "
            f"read, {discarded} found to remove): another replay? nothing was committed"
        )


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[SourceBatch]:
    """Source batches of the stored records, each at its original position."""
    for start in range(0, len(rows), size):
        records: list[dict[str, Any]] = []
        positions: list[str] = []
        unreadable: list[Unreadable] = []
        for row in rows[start : start + size]:
            record = _record_of(row)
            if isinstance(record, Unreadable):
                unreadable.append(record)
            else:
                records.append(record)
                positions.append(row["position"])
        try:
            frame = records_to_frame(records)
        except ColumnClash as exc:
            raise LadleError(f"cannot replay these records: {exc}") from exc
        yield SourceBatch(frame, positions, unreadable)


def _record_of(row: Mapping[str, Any]) -> dict[str, Any] | Unreadable:
    """The stored record, or the source's text read again as JSON when the source could not
    read it; text that is still no JSON object stays unreadable with its original error."""
    raw = _json(row["raw"])
    errors = _json(row["errors"]) or []
    unread = (
        isinstance(raw, dict)
        and list(raw) == ["text"]
        and errors
        and all(e.get("field") is None for e in errors)
    )
    if isinstance(raw, dict) and not unread:
        return raw
    text = raw["text"] if unread else json.dumps(raw)
    first = errors[0] if errors else {}
    rule = str(first.get("rule") or "parse")
    message = str(first.get("message") or "the stored record is not a JSON object")
    if rule in _REPARSED_RULES and isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return Unreadable(row["position"], str(text), message, rule=rule)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _target(target: LoadTarget, res: Resource) -> LoadTarget:
    """As ``ladle worker`` loads an appending stream resource: merged on the entry id. A
    ``write: replace`` resource gets its replayed records appended: swapping in a table of
    only those records would throw away the rest of the run's rows."""
    if res.source_type == "redis_stream":
        from ladle.worker import stream_target

        return stream_target(target, res)
    if target.write is WriteMode.REPLACE:
        return replace(target, write=WriteMode.APPEND)
    return target


def _rollback(load: Load, res: Resource) -> None:
    try:
        load.rollback()
    except LadleError as exc:
        log.warning("rollback failed", resource=res.name, error=str(exc))


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
