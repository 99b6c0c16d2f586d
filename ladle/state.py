"""Pipeline state, ``_ladle_state``: what a resource has done so far, as JSON by key.

State is written in the same transaction as the data it describes, so it can never
claim more (or less) than what was committed.
"""

from __future__ import annotations

from ladle.schema import ColumnType, Kind, TableDef

STATE = TableDef(
    "_ladle_state",
    (
        ("pipeline", ColumnType(Kind.TEXT)),
        ("resource", ColumnType(Kind.TEXT)),
        ("key", ColumnType(Kind.TEXT)),
        ("value", ColumnType(Kind.JSON)),
        ("run_id", ColumnType(Kind.TEXT)),
        ("updated_at", ColumnType(Kind.TIMESTAMPTZ)),
    ),
    ("pipeline", "resource", "key"),
)

LAST_RUN = "last_run"
"""Key of the state entry every successful load writes: run id, rows and table."""

CURSOR = "cursor"
"""The incremental cursor's high-water mark, written when a run completes."""

CHECKPOINT = "checkpoint"
"""An interrupted run's last committed chunk: source position and cursor; null once a run
completes. The next run resumes from it."""

FILES = "files"
"""File sources: every file loaded (size, mtime, content hash), so a re-run reads only new
or changed files."""

RESERVED = frozenset({LAST_RUN, CURSOR, CHECKPOINT})
"""Keys the pipeline owns; the others belong to the resource's source."""
