"""The quarantine, ``_ladle_quarantine``: records that failed, with every reason and position.

A record lands here with its raw values as read (JSON) and the list of errors
{field, rule, value, message}, so that it can be found in the source and replayed.
It is written in the same transaction as the run's data.
"""

from __future__ import annotations

import json
import re
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
    rejects: pl.DataFrame, source: pl.DataFrame, positions: list[str]
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


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMA)
