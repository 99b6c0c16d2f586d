"""The run ledger, ``_ladle_runs``: one row per resource per run, the invariant's counts.

The row is written as ``running`` in its own transaction when a resource starts, and
rewritten as ``succeeded`` in the same transaction as the data it describes, or as
``failed`` (with the error) after a rollback. A process killed in between leaves
``running``; :func:`display_status` shows such a row as ``died``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ladle.batch import Counts
from ladle.schema import ColumnType, Kind, TableDef

RUNNING, SUCCEEDED, FAILED, DIED = "running", "succeeded", "failed", "died"
QUEUED = "queued"
"""A resource of a run that has started but not reached this resource yet."""

_T, _BIG, _F, _TS = (ColumnType(k) for k in (Kind.TEXT, Kind.BIGINT, Kind.DOUBLE, Kind.TIMESTAMPTZ))

RUNS = TableDef(
    "_ladle_runs",
    (
        ("run_id", _T), ("pipeline", _T), ("resource", _T), ("table_name", _T), ("status", _T),
        ("fetched", _BIG), ("inserted", _BIG), ("updated", _BIG), ("unchanged", _BIG),
        ("deduplicated", _BIG), ("quarantined", _BIG), ("bytes_read", _BIG),
        ("started_at", _TS), ("finished_at", _TS), ("error", _T), ("peak_memory_mb", _F),
        ("ladle_version", _T), ("config_hash", _T), ("host", _T), ("pid", _BIG),
        ("write_mode", _T), ("leaked_connections", _BIG), ("replay_of", _T),
        ("notes", _T),
        ("rolled_back", _BIG),
    ),
    ("run_id", "resource"),
)  # fmt: skip


@dataclass(frozen=True)
class Note:
    """A counted finding of a step (records a lookup matched nothing for), told in the run
    summary and kept, as JSON in the ledger row's ``notes``, with the counts."""

    step: str
    count: int
    message: str


@dataclass
class RunEntry:
    """The ledger row of one resource in one run."""

    run_id: str
    pipeline: str
    resource: str
    table_name: str
    write_mode: str
    config_hash: str
    ladle_version: str
    counts: Counts = field(default_factory=Counts)
    status: str = RUNNING
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    error: str | None = None
    peak_memory_mb: float | None = None
    leaked_connections: int = 0
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    replay_of: str | None = None
    """For ``ladle quarantine replay``: the run whose quarantined records this one replayed."""
    notes: list[Note] = field(default_factory=list)
    """What the steps counted besides the invariant (lookup misses, fk misses)."""

    def row(self) -> dict[str, Any]:
        """The values of the ledger row, by column name."""
        c = self.counts
        return {
            "run_id": self.run_id, "pipeline": self.pipeline, "resource": self.resource,
            "table_name": self.table_name, "status": self.status, "fetched": c.fetched,
            "inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged,
            "deduplicated": c.deduplicated, "quarantined": c.quarantined,
            "bytes_read": c.bytes_read, "started_at": self.started_at,
            "finished_at": self.finished_at, "error": self.error,
            "peak_memory_mb": self.peak_memory_mb, "ladle_version": self.ladle_version,
            "config_hash": self.config_hash, "host": self.host, "pid": self.pid,
            "write_mode": self.write_mode, "leaked_connections": self.leaked_connections,
            "replay_of": self.replay_of,
            "notes": json.dumps([asdict(n) for n in self.notes]) if self.notes else None,
            "rolled_back": c.rolled_back,
        }  # fmt: skip


def display_status(status: str, host: str | None, pid: int | None) -> str:
    """``died`` for a row still ``running`` (or ``queued``) whose process on this host is gone."""
    if status not in (RUNNING, QUEUED) or host != socket.gethostname() or pid is None:
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return DIED
    except PermissionError:
        return status
    return status
