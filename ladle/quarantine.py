"""The quarantine, ``_ladle_quarantine``: records that failed, with every reason and position.

A record lands here with its raw values as read (JSON) and the list of errors
{field, rule, value, message}, so that it can be found in the source and replayed.
It is written in the same transaction as the run's data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from ladle.batch import ROW, Unreadable
from ladle.schema import ColumnType, Kind, TableDef

_T = ColumnType(Kind.TEXT)

QUARANTINE = TableDef(
    "_ladle_quarantine",
    (
        ("run_id", _T),
        ("pipeline", _T),
        ("resource", _T),
        ("position", _T),
        ("raw", ColumnType(Kind.JSON)),
        ("errors", ColumnType(Kind.JSON)),
        ("quarantined_at", ColumnType(Kind.TIMESTAMPTZ)),
    ),
)


def rows_from_rejects(
    rejects: pl.DataFrame, source: pl.DataFrame, positions: Sequence[str]
) -> pl.DataFrame:
    """One row per rejected record: its position, raw values and the list of its errors.

    ``source`` is the batch as the source yielded it (with :data:`ROW`), so the raw record
    is what was read, not what a step had made of it. Rejects are few next to the rows
    loaded, so plain ``json`` is fast enough here.
    """
    if rejects.height == 0:
        return _empty()
    errors: dict[int, list[dict[str, Any]]] = {}
    for reject in rejects.iter_rows(named=True):
        row = reject.pop(ROW)
        errors.setdefault(row, []).append(reject)
    rows = list(errors)
    raw_by_row = {
        record.pop(ROW): record
        for record in source.filter(pl.col(ROW).is_in(rows)).iter_rows(named=True)
    }
    return pl.DataFrame(
        {
            "position": [positions[row] for row in rows],
            "raw": [storable_json(raw_by_row[row]) for row in rows],
            "errors": [storable_json(errors[row]) for row in rows],
        },
        schema=_SCHEMA,
    )


def rows_from_unreadable(records: list[Unreadable]) -> pl.DataFrame:
    """Rows for records the source could not parse: the raw text and the parser's message."""
    return pl.DataFrame(
        {
            "position": [r.position for r in records],
            "raw": [storable_json({"text": r.raw}) for r in records],
            "errors": [
                storable_json(
                    [{"field": None, "rule": r.rule, "value": None, "message": r.message}]
                )
                for r in records
            ],
        },
        schema=_SCHEMA,
    )


_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable_json(value: Any) -> str:
    """``value`` as JSON that PostgreSQL's jsonb accepts: a NUL character (which it refuses,
    even escaped) is written as the six characters ``\\u0000``, so the record still lands."""
    return _ESCAPED_NUL.sub(r"\1\\\\u0000", json.dumps(value, default=str))


_SCHEMA = {"position": pl.String, "raw": pl.String, "errors": pl.String}

_NUMBER = re.compile(r"([0-9]+)")


def position_key(position: str) -> tuple[tuple[tuple[str, int], ...], str]:
    """Sort key that reads a position's numbers as numbers, file name first: ``f:2`` before
    ``f:12514``, ``f:12-80`` before ``f:100``, ``f#[9]`` before ``f#[10]``, ``c2.csv`` before
    ``c10.csv``. Text sorts as text; the position itself breaks ties (``f:07`` and ``f:7``)."""
    parts = _NUMBER.split(position)
    pairs = tuple(
        (parts[i], int(parts[i + 1]) if i + 1 < len(parts) else -1) for i in range(0, len(parts), 2)
    )
    return pairs, position


def in_position_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows by resource, then by position read as :func:`position_key` reads it."""
    keys = [
        (resource or "", position_key(position or ""))
        for resource, position in rows.select("resource", "position").iter_rows()
    ]
    return rows[sorted(range(rows.height), key=keys.__getitem__)]


SHAPE_SQL = "regexp_replace(position, '[0-9]', '#', 'g')"
"""A position with each digit as ``#``. Within one shape, digit runs line up and have equal
lengths, so the smallest position as text is the first in :func:`position_key` order: the
database finds it per shape, and :func:`summarize` picks among a handful of shapes."""


def summarize(
    shapes: Iterable[tuple[str, str, int, str, Any]], reasons: Iterable[tuple[str, str, str, int]]
) -> list[dict[str, Any]]:
    """What ``ladle quarantine list`` shows, per run and resource: how many records, the first
    position in :func:`position_key` order, and how many errors each ``field: rule`` made.

    ``shapes`` holds (run, resource, records, smallest position, first quarantined at) per
    :data:`SHAPE_SQL` shape, ``reasons`` (run, resource, reason, errors), both counted by
    the database; the groups come in the order they were first quarantined.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    first_at: dict[tuple[str, str], Any] = {}
    for run_id, resource, records, position, at in shapes:
        key = (run_id, resource)
        group = groups.setdefault(
            key,
            {"run_id": run_id, "resource": resource, "records": 0, "first_position": position},
        )
        group["records"] += int(records)
        if position_key(position) < position_key(group["first_position"]):
            group["first_position"] = position
        first_at[key] = at if key not in first_at else min(first_at[key], at)
    for group in groups.values():
        group["reasons"] = {}
    for run_id, resource, reason, count in sorted(reasons, key=lambda r: (-int(r[3]), r[2])):
        if (run_id, resource) in groups:
            groups[run_id, resource]["reasons"][reason] = int(count)
    order = sorted(groups, key=lambda key: (first_at[key], key[1]))
    return [groups[key] for key in order]


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMA)
