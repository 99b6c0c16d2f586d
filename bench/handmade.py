"""Methods (f): the loads a user would write by hand instead of ladle, into PostgreSQL.

Each loads the base JSONL into an empty ``tickets`` table that already has its primary
key (like (a)'s), as one measured process; the table is then checked against (a)'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import database as db
from measure import run_measured
from methods import BENCH, Bench, Result, compare, failed

LABELS = {
    "pgpq": "by hand: Polars `read_ndjson` → Arrow → pgpq binary COPY",
    "adbc": "by hand: Polars `read_ndjson` → ADBC `adbc_ingest`",
    "duckdb": "DuckDB postgres extension: `INSERT … SELECT FROM read_json`",
}


def _prepare(schema: str) -> str:
    db.reset_schema(schema)
    db.create_reference_table(schema)
    db.settle()
    return f"{schema}.{db.TABLE}"


def by_hand(bench: Bench, mode: str, reference: db.Checksum | None) -> Result:
    """(f pgpq), (f adbc): ``bench/by_hand.py`` in ladle's venv."""
    result = Result(f"f {mode}", LABELS[mode], bench.rows)
    table = _prepare(f"bench_by_hand_{mode}")
    command = [str(bench.venv_bin / "python"), str(BENCH / "by_hand.py"), "--mode", mode]
    command += ["--file", str(bench.files.tickets_jsonl), "--url", db.url(), "--table", table]
    measured = run_measured(command, timeout=bench.limit(bench.rows), database=db.DATABASE)
    if not measured.ok:
        return failed(result, measured)
    result.measured = measured
    return compare(result, db.checksum(table.split(".")[0]), reference)


def duckdb_to_postgres(bench: Bench, python: Path, reference: db.Checksum | None) -> Result:
    """(f duckdb): ``bench/duckdb_load.py --mode postgres`` in ``bench/.venv-duckdb-pg``.

    That venv holds the DuckDB release the PyPI package of the postgres extension was
    built for; DuckDB itself would download the extension from its own site, which only
    a machine with internet access can reach.
    """
    result = Result("f duckdb", LABELS["duckdb"], bench.rows)
    if not python.exists():
        result.error = f"not run: {python.parent.parent} is missing (`make bench` makes it)"
        return result
    table = _prepare("bench_duckdb_pg")
    dsn = f"host={db.HOST} port={db.PORT} user={db.USER} dbname={db.DATABASE}"
    command = [str(python), str(BENCH / "duckdb_load.py"), "--mode", "postgres"]
    command += ["--file", str(bench.files.tickets_jsonl), "--dsn", dsn, "--table", table]
    measured = run_measured(command, timeout=bench.limit(bench.rows), database=db.DATABASE)
    if not measured.ok:
        return failed(result, measured)
    result.measured = measured
    done = json.loads(measured.stdout.strip().splitlines()[-1])
    result.note = f"DuckDB {done['duckdb']}, extension from {done['extension']}"
    return compare(result, db.checksum(table.split(".")[0]), reference)
