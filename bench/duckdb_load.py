"""Methods (f duckdb), (g') and (h'): DuckDB alone, the SQL a user would write instead of ladle.

Imports only ``duckdb``, so it runs in ladle's venv (the DuckDB ladle uses) and in
``bench/.venv-duckdb-pg``, where a DuckDB matching the PostgreSQL extension on PyPI lives.

- ``initial``: ``read_json`` of the JSONL into a new DuckDB file's ``tickets`` table with
  its primary key, in one ``INSERT … SELECT``: the bar for ladle's DuckDB destination.
- ``merge``: the change file into that table with one ``MERGE INTO`` that inserts new ids
  and updates changed rows only, as ladle's merge does.
- ``postgres``: the JSONL into a PostgreSQL table through DuckDB's postgres extension,
  ``INSERT INTO pg.<schema>.tickets SELECT … FROM read_json(…)``.

Prints one JSON line: the mode and the rows inserted and updated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import duckdb

COLUMNS = {
    "ticket_id": "BIGINT",
    "subject": "VARCHAR",
    "description": "VARCHAR",
    "status": "VARCHAR",
    "priority": "INTEGER",
    "assignee": "VARCHAR",
    "channel": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
    "updated_at": "TIMESTAMPTZ",
    "resolved_at": "TIMESTAMPTZ",
    "score": "DOUBLE",
    "is_escalated": "BOOLEAN",
    "tags": "JSON",
}
"""The types ladle's DuckDB destination gives ``bench/tickets.yaml``'s columns."""

_VALUES = list(COLUMNS)[1:]


def read_json(path: Path) -> str:
    """``read_json`` of newline-delimited ``path`` with every column's type declared."""
    spec = ", ".join(f"{name}: '{kind}'" for name, kind in COLUMNS.items())
    quoted = str(path).replace("'", "''")
    return f"read_json('{quoted}', format = 'newline_delimited', columns = {{{spec}}})"


def initial(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, Any]:
    """Create ``tickets`` with its primary key and insert the file into it."""
    spec = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    con.execute(f"CREATE TABLE tickets ({spec}, PRIMARY KEY (ticket_id))")
    row = con.execute(f"INSERT INTO tickets SELECT * FROM {read_json(path)}").fetchone()
    return {"inserted": row[0] if row else 0, "updated": 0}


def merge(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, Any]:
    """One ``MERGE INTO``: new ids inserted, rows whose values differ updated, others left."""
    current = ", ".join(f"t.{c}" for c in _VALUES)
    incoming = ", ".join(f"c.{c}" for c in _VALUES)
    assign = ", ".join(f"{c} = c.{c}" for c in _VALUES)
    rows = con.execute(
        f"MERGE INTO tickets AS t USING (SELECT * FROM {read_json(path)}) AS c "
        "ON t.ticket_id = c.ticket_id "
        f"WHEN MATCHED AND ({current}) IS DISTINCT FROM ({incoming}) THEN UPDATE SET {assign} "
        "WHEN NOT MATCHED THEN INSERT * "
        "RETURNING merge_action"
    ).fetchall()
    actions = [r[0] for r in rows]
    return {"inserted": actions.count("INSERT"), "updated": actions.count("UPDATE")}


def _load_postgres_extension(con: duckdb.DuckDBPyConnection) -> str:
    """Load the postgres extension from its PyPI package, else from DuckDB's own directory.

    The package ships the binary DuckDB signs; loading it checks that signature.
    """
    try:
        import duckdb_extension_postgres_scanner as package
    except ImportError:
        con.execute("LOAD postgres")  # installed by hand, or fetched by DuckDB itself
        return "LOAD postgres"
    folder = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = folder / "postgres_scanner.duckdb_extension"
    con.execute(f"LOAD '{path}'")
    return f"duckdb-extension-postgres-scanner {path.parent.name}"


def to_postgres(path: Path, dsn: str, table: str) -> dict[str, Any]:
    """Insert the file into the existing PostgreSQL ``table`` through the postgres extension."""
    con = duckdb.connect()
    loaded = _load_postgres_extension(con)
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres)")
    row = con.execute(f"INSERT INTO pg.{table} SELECT * FROM {read_json(path)}").fetchone()
    return {"inserted": row[0] if row else 0, "updated": 0, "extension": loaded}


def main(argv: list[str] | None = None) -> None:
    """Run one mode and print what it did as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("initial", "merge", "postgres"), required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--database", type=Path, help="the DuckDB file (initial, merge)")
    parser.add_argument("--dsn", help="libpq key=value string (postgres)")
    parser.add_argument("--table", help="schema.table in PostgreSQL, already created")
    args = parser.parse_args(argv)
    if args.mode == "postgres":
        done = to_postgres(args.file, args.dsn, args.table)
    else:
        with duckdb.connect(str(args.database)) as con:
            con.execute("BEGIN")
            done = (initial if args.mode == "initial" else merge)(con, args.file)
            con.execute("COMMIT")
    print(json.dumps({"mode": args.mode, "duckdb": duckdb.__version__, **done}))


if __name__ == "__main__":
    main()
