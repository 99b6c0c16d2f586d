"""What ``ladle runs``, ``status``, ``quarantine list`` and ``run`` show, as plain rows.

Each view is a list of JSON-ready dicts (``--json`` prints them as they are) and the
columns a table draws them with (:mod:`ladle.terminal`), most important first by priority:
the run id, the resource, the status and the counts that prove the invariant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ladle.ledger import display_status
from ladle.redact import mask
from ladle.terminal import Column

if TYPE_CHECKING:
    import polars as pl

    from ladle.pipeline import RunSummary

_STATUS_STYLES = {"succeeded": "green", "failed": "red", "died": "red"}
_VERDICT_STYLES = {"ok": "green", "warn": "yellow", "error": "red", "never": "red"}
_COUNTS = ("fetched", "inserted", "updated", "unchanged", "deduplicated", "quarantined")


def _when(value: Any) -> str:
    """An ISO 8601 timestamp as the tables show it: ``2026-12-05 10:11:12``."""
    return "" if value is None else str(value)[:19].replace("T", " ")


def _seconds(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


# ---------------------------------------------------------------- ladle runs

RUN_COLUMNS = (
    Column("run_id", "run"),
    Column("resource", "resource"),
    Column("status", "status", styles={**_STATUS_STYLES, "running": "yellow", "queued": "yellow"}),
    Column("fetched", "fetched", 1, numeric=True),
    Column("inserted", "inserted", 1, numeric=True),
    Column("quarantined", "quarantined", 2, numeric=True),
    Column("updated", "updated", 3, numeric=True),
    Column("unchanged", "unchanged", 3, numeric=True),
    Column("started_at", "started (UTC)", 4, show=_when),
    Column("error", "error", 4, wrap=True),
    Column("seconds", "seconds", 5, numeric=True, show=_seconds),
    Column("deduplicated", "deduplicated", 6, numeric=True),
    Column("rolled_back", "rolled back", 6, numeric=True),
    Column("replay_of", "replay of", 6),
)


def ledger_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Ledger rows as ``ladle runs`` shows them: a dead process's row says ``died``, times
    are ISO 8601 in UTC, the error is masked."""
    rows = []
    for row in frame.iter_rows(named=True):
        started, finished = row["started_at"], row["finished_at"]
        rows.append(
            {
                "run_id": row["run_id"],
                "pipeline": row["pipeline"],
                "resource": row["resource"],
                "status": display_status(row["status"], row["host"], row["pid"]),
                **{k: row[k] for k in _COUNTS},
                "rolled_back": row.get("rolled_back") or 0,
                "started_at": _iso(started),
                "finished_at": _iso(finished),
                "seconds": (finished - started).total_seconds() if finished else None,
                "replay_of": row.get("replay_of"),
                "error": mask(row["error"]) if row["error"] else None,
            }
        )
    return rows


# ---------------------------------------------------------------- ladle run

SUMMARY_COLUMNS = (
    Column("resource", "resource"),
    Column("status", "status", styles=_STATUS_STYLES),
    Column("fetched", "fetched", 1, numeric=True),
    Column("inserted", "inserted", 1, numeric=True),
    Column("quarantined", "quarantined", 1, numeric=True),
    Column("rolled_back", "rolled back", 1, numeric=True),
    Column("updated", "updated", 2, numeric=True),
    Column("unchanged", "unchanged", 2, numeric=True),
    Column("deduplicated", "deduplicated", 3, numeric=True),
    Column("quality", "quality", 3, numeric=True),
    Column("table", "table", 4),
    Column("seconds", "seconds", 4, numeric=True, show=_seconds),
)


def summary_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """One row per resource of a run; ``rolled_back`` only when a resource rolled some back
    (a failed resource shows what committed; the rest of what it fetched was rolled back)."""
    rolled_back = any(r.counts.rolled_back for r in summary.resources)
    rows = []
    for r in summary.resources:
        c = r.counts
        quality = "-" if r.quality is None or r.status != "succeeded" else f"{r.quality:.1%}"
        row: dict[str, Any] = {"resource": r.resource, "table": r.table, "status": r.status}
        row |= {k: getattr(c, k) for k in _COUNTS}
        row |= {"quality": quality, "seconds": r.seconds}
        if rolled_back:
            row["rolled_back"] = c.rolled_back
        rows.append(row)
    return rows


LEDGER_COUNTS = (*_COUNTS, "rolled_back")
"""The counts of the ledger's sum: fetched = inserted + … + quarantined (+ rolled back)."""


def ledger_line(row: Mapping[str, Any]) -> str:
    """``orders: 7 fetched = 3 inserted + 0 updated + … + 3 quarantined``, for a summary
    row whose table could not show every count."""
    parts = [f"{row[k]:,} {k.replace('_', ' ')}" for k in LEDGER_COUNTS[1:] if k in row]
    return f"{row['resource']}: {row['fetched']:,} fetched = {' + '.join(parts)}"


def summary_columns(rows: list[dict[str, Any]]) -> tuple[Column, ...]:
    """The summary's columns: ``rolled back`` only if a row has it."""
    rolled_back = any("rolled_back" in row for row in rows)
    return tuple(c for c in SUMMARY_COLUMNS if c.key != "rolled_back" or rolled_back)


# ---------------------------------------------------------------- ladle status


def _age(seconds: Any) -> str:
    from ladle.status import format_age

    return "" if seconds is None else format_age(timedelta(seconds=seconds))


STATUS_COLUMNS = (
    Column("resource", "resource"),
    Column("table", "table", 5),
    Column("last_success_at", "last load (UTC)", 2, show=lambda v: _when(v) or "never"),
    Column("last_run_id", "run", 1),
    Column("age_seconds", "age", 1, show=_age),
    Column("rows", "rows", 3, numeric=True),
    Column("fetched", "fetched", 3, numeric=True),
    Column("latest_status", "latest run", 2, styles=_STATUS_STYLES),
    Column("verdict", "freshness", styles=_VERDICT_STYLES),
    Column("thresholds", "thresholds", 4),
)


def status_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """``ladle status --json``'s resources, each with its thresholds in one cell."""
    rows = []
    for resource in report["resources"]:
        limits = [f"{k[:-6]} {resource[k]}" for k in ("warn_after", "error_after") if resource[k]]
        rows.append({**resource, "thresholds": ", ".join(limits) or "-"})
    return rows


# ---------------------------------------------------------------- ladle quarantine list


def _reasons(reasons: Any) -> str:
    return ", ".join(f"{reason} ({count:,})" for reason, count in (reasons or {}).items())


QUARANTINE_COLUMNS = (
    Column("run_id", "run"),
    Column("resource", "resource"),
    Column("records", "records", numeric=True),
    Column("first_position", "first position", wrap=True),
    Column("reasons", "errors", 1, wrap=True, show=_reasons),
)
