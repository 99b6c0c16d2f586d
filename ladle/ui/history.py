"""What the pages show, read from the destination: ledger rows, runs, quarantined records.

Only :meth:`Destination.read` is used, so the pages work the same on DuckDB and
PostgreSQL. Each function takes an open destination; the app opens one per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ladle.destinations import Destination
from ladle.ledger import RUNS, display_status
from ladle.quarantine import QUARANTINE
from ladle.ui.chart import RunPoint

COUNTS = ("fetched", "inserted", "updated", "unchanged", "deduplicated", "quarantined")
"""The invariant's terms, in the order the pages show them."""
_EXCERPT = 160


@dataclass(frozen=True)
class LedgerRow:
    """One resource of one run, as ``_ladle_runs`` has it, with the status to show."""

    values: dict[str, Any]
    status: str
    """``died`` for a row left ``running`` by a process that is gone."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def counts(self) -> list[tuple[str, int]]:
        """The invariant's counts, by name."""
        return [(name, int(self.values.get(name) or 0)) for name in COUNTS]

    @property
    def balanced(self) -> bool:
        """fetched = inserted + updated + unchanged + deduplicated + quarantined + rolled_back
        (records of a failed run's chunk in hand)."""
        counts = dict(self.counts)
        rolled_back = int(self.values.get("rolled_back") or 0)
        return counts["fetched"] == rolled_back + sum(
            v for k, v in counts.items() if k != "fetched"
        )

    @property
    def seconds(self) -> float | None:
        """How long the resource took; None while it runs (or if it died)."""
        started, finished = self.values.get("started_at"), self.values.get("finished_at")
        if started is None or finished is None:
            return None
        return float((finished - started).total_seconds())

    @property
    def excerpt(self) -> str:
        """The error's first line, at most 160 characters."""
        error = str(self.values.get("error") or "")
        first = error.splitlines()[0] if error else ""
        return first if len(first) <= _EXCERPT else first[: _EXCERPT - 1] + "…"


def ledger(dest: Destination, pipeline: str, *, limit: int) -> list[LedgerRow]:
    """The pipeline's newest ledger rows, newest first."""
    frame = dest.read(
        RUNS.name, {"pipeline": pipeline}, order_by=["-started_at", "resource"], limit=limit
    )
    return [_row(values) for values in frame.iter_rows(named=True)]


def run_rows(dest: Destination, pipeline: str, run_id: str) -> list[LedgerRow]:
    """The ledger rows of one run (one per resource), in load order."""
    frame = dest.read(RUNS.name, {"pipeline": pipeline, "run_id": run_id}, order_by=["started_at"])
    return [_row(values) for values in frame.iter_rows(named=True)]


def replays_of(dest: Destination, pipeline: str, run_id: str) -> list[LedgerRow]:
    """Ledger rows of the replays of ``run_id``."""
    frame = dest.read(
        RUNS.name, {"pipeline": pipeline, "replay_of": run_id}, order_by=["started_at"]
    )
    return [_row(values) for values in frame.iter_rows(named=True)]


def _row(values: dict[str, Any]) -> LedgerRow:
    return LedgerRow(values, display_status(values["status"], values["host"], values["pid"]))


def points(rows: list[LedgerRow]) -> list[RunPoint]:
    """One chart point per run: rows loaded and wall time over all its resources."""
    runs: dict[str, list[LedgerRow]] = {}
    for row in rows:
        runs.setdefault(row.run_id, []).append(row)
    found = []
    for run_id, resources in runs.items():
        started = min(r.started_at for r in resources)
        ends = [r.finished_at for r in resources]
        seconds = None
        if all(end is not None for end in ends):
            seconds = float((max(ends) - started).total_seconds())
        loaded = sum(int(r.inserted or 0) + int(r.updated or 0) for r in resources)
        found.append(RunPoint(run_id, started, loaded, seconds, run_status(resources)))
    return found


def run_status(rows: list[LedgerRow]) -> str:
    """A run's status from its resources': the worst of them."""
    statuses = {r.status for r in rows}
    for status in ("died", "failed", "running", "queued"):
        if status in statuses:
            return status
    return "succeeded" if statuses else "unknown"


# ---------------------------------------------------------------- quarantine


@dataclass(frozen=True)
class QuarantinedRecord:
    """A quarantined record as the page shows it."""

    resource: str
    position: str
    errors: list[dict[str, Any]]
    raw: str
    """The record as read, indented JSON (or the source's text, for a record it could not
    parse)."""
    quarantined_at: datetime | None


def quarantined(
    dest: Destination, run_id: str, resource: str | None, *, page: int, size: int
) -> tuple[list[QuarantinedRecord], bool]:
    """Page ``page`` (from 1) of the run's quarantined records, and whether more follow.

    The destination protocol has no offset, so the pages before are read and dropped:
    fine for browsing, where pages are few.
    """
    where = {"run_id": run_id, **({"resource": resource} if resource else {})}
    frame = dest.read(
        QUARANTINE.name, where, order_by=["resource", "position"], limit=page * size + 1
    )
    rows = list(frame.iter_rows(named=True))[(page - 1) * size :]
    return [_record(r) for r in rows[:size]], len(rows) > size


def _record(row: dict[str, Any]) -> QuarantinedRecord:
    raw = _json(row["raw"])
    errors = _json(row["errors"])
    if isinstance(raw, dict) and list(raw) == ["text"] and isinstance(raw["text"], str):
        text = raw["text"]
    else:
        text = json.dumps(raw, indent=2, ensure_ascii=False, default=str)
    return QuarantinedRecord(
        row["resource"],
        row["position"],
        [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
        text,
        row.get("quarantined_at"),
    )


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
