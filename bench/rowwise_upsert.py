"""Method (e): the loader people write first: one ``INSERT … ON CONFLICT`` per JSON line.

Reads the first ``--limit`` lines, parses each with :mod:`json`, and executes one
upsert per record on one psycopg connection, committing once at the end (a commit
per row would be slower still). The benchmark extrapolates its time linearly to N.
"""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

FIELDS = (
    "ticket_id", "subject", "description", "status", "priority", "assignee", "channel",
    "created_at", "updated_at", "resolved_at", "score", "is_escalated", "tags",
)  # fmt: skip


def upsert_statement(schema: str, table: str) -> sql.Composed:
    """Insert one ticket; on a known id update it, unless nothing changed."""
    columns = [sql.Identifier(f) for f in FIELDS]
    values = columns[1:]
    return sql.SQL(
        "INSERT INTO {table} AS t ({columns}) VALUES ({marks}) "
        "ON CONFLICT (ticket_id) DO UPDATE SET ({values}) = ROW({excluded}) "
        "WHERE ({current}) IS DISTINCT FROM ({excluded})"
    ).format(
        table=sql.Identifier(schema, table),
        columns=sql.SQL(", ").join(columns),
        marks=sql.SQL(", ").join(sql.Placeholder() * len(FIELDS)),
        values=sql.SQL(", ").join(values),
        excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in values),
        current=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in values),
    )


def main(argv: list[str] | None = None) -> None:
    """Upsert the first ``--limit`` records of ``--file`` into ``--schema.tickets``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--limit", type=int, default=50_000)
    args = parser.parse_args(argv)
    statement = upsert_statement(args.schema, "tickets")
    count = 0
    with psycopg.connect(args.url) as con, con.cursor() as cur, args.file.open() as lines:
        for line in islice(lines, args.limit):
            record = json.loads(line)
            params = [record.get(f) for f in FIELDS]
            params[-1] = Jsonb(params[-1])
            cur.execute(statement, params)
            count += 1
        con.commit()
    print(json.dumps({"rows": count}))


if __name__ == "__main__":
    main()
