"""Methods (g), (g'), (h), (h'): the DuckDB destination, ladle against DuckDB alone.

(g') creates a DuckDB file with ``bench/duckdb_load.py --mode initial`` (``read_json``
into a table with its primary key) and (g) runs ``ladle run`` with a ``duckdb:///`` URL;
(h') merges the change file into a copy of (g')'s file (copied untimed) with one
``MERGE INTO``, and (h) runs ``ladle run`` of the change file into (g)'s file. Both
engines' tables are compared by :data:`database.FINGERPRINT`, which PostgreSQL computes
alike for (a)'s table, so a DuckDB table is checked against the same reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import database as db
import duckdb
from measure import Measured, run_measured
from methods import (
    BENCH,
    LEDGER_SQL,
    REFERENCE_SCHEMA,
    Bench,
    Result,
    failed,
    ladle_run,
    ledger_counts,
    ledger_row,
)


def _file(bench: Bench, name: str) -> Path:
    return bench.out / f"{name}.duckdb"


def fingerprint(path: Path) -> tuple[int, ...]:
    """:data:`database.FINGERPRINT` of the ``tickets`` table in the DuckDB file ``path``."""
    statement = db.FINGERPRINT.format(
        bytes="strlen", json_length="json_array_length", table="tickets"
    )
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(statement).fetchone()
    return tuple(int(x or 0) for x in row or ())


def _ledger(path: Path) -> dict[str, Any]:
    with duckdb.connect(str(path), read_only=True) as con:
        return ledger_row(con.execute(LEDGER_SQL.format("")).fetchone())


def _check(result: Result, got: tuple[int, ...], want: tuple[int, ...] | None, name: str) -> None:
    result.verified = got == want
    result.check = f"{got[0]:,} rows, fingerprint " + ("= " if got == want else "≠ ") + name


def _duckdb_alone(
    bench: Bench, mode: str, source: Path, database: Path
) -> tuple[Measured, dict[str, Any]]:
    """Run ``bench/duckdb_load.py`` in ladle's venv; its JSON line, when it succeeded."""
    command = [str(bench.venv_bin / "python"), str(BENCH / "duckdb_load.py"), "--mode", mode]
    command += ["--file", str(source), "--database", str(database)]
    measured = run_measured(command, timeout=bench.limit(bench.rows))
    done = json.loads(measured.stdout.strip().splitlines()[-1]) if measured.ok else {}
    return measured, done


def alone_initial(bench: Bench) -> tuple[Result, tuple[int, ...] | None]:
    """(g') DuckDB alone: ``read_json`` into a new file's table with its primary key."""
    result = Result("g'", "DuckDB alone: `read_json` → table with PK", bench.rows)
    path = _file(bench, "duckdb_alone")
    path.unlink(missing_ok=True)
    db.settle()
    measured, _ = _duckdb_alone(bench, "initial", bench.files.tickets_jsonl, path)
    if not measured.ok:
        return failed(result, measured), None
    result.measured = measured
    got = fingerprint(path)
    _check(result, got, db.fingerprint(REFERENCE_SCHEMA), "(a)")
    return result, got


def ladle_initial(bench: Bench, alone: tuple[int, ...] | None) -> Result:
    """(g) ``ladle run`` merge of the JSONL into a new DuckDB file."""
    result = Result("g", "ladle run: merge JSONL → new DuckDB file", bench.rows)
    path = _file(bench, "duckdb_ladle")
    path.unlink(missing_ok=True)
    ladle_run(
        bench,
        result,
        source=bench.files.tickets_jsonl,
        schema="",
        destination=f"duckdb:///{path}",
        ledger=lambda: _ledger(path),
    )
    if result.measured is None or not result.measured.ok or result.error:
        return result
    ledger = result.extra["ledger"]
    _check(result, fingerprint(path), alone, "(g')")
    result.check += f"; ledger: {ledger_counts(ledger)}"
    result.verified &= ledger.get("inserted") == bench.rows and ledger.get("status") == "succeeded"
    return result


def alone_merge(bench: Bench) -> tuple[Result, tuple[int, ...] | None]:
    """(h') DuckDB alone: the change file into a copy of (g')'s file with one ``MERGE INTO``."""
    change_rows = int(bench.manifest["change_rows"])
    result = Result("h'", "DuckDB alone: `MERGE INTO` from `read_json`", change_rows)
    base, path = _file(bench, "duckdb_alone"), _file(bench, "duckdb_alone_merge")
    if not base.exists():
        result.error = "not run: it merges into (g')'s file, and (g') failed"
        return result, None
    shutil.copyfile(base, path)  # untimed, like (c')'s base load
    db.settle()
    measured, done = _duckdb_alone(bench, "merge", bench.files.changes_jsonl, path)
    if not measured.ok:
        return failed(result, measured), None
    result.measured = measured
    got = fingerprint(path)
    want = (int(bench.manifest["expected_inserted"]), int(bench.manifest["expected_updated"]))
    result.verified = (done["inserted"], done["updated"]) == want and got[0] == bench.rows + want[0]
    result.check = f"{done['inserted']:,} inserted, {done['updated']:,} updated; {got[0]:,} rows"
    return result, got


def ladle_merge(bench: Bench, after_alone: tuple[int, ...] | None, initial: Result) -> Result:
    """(h) ``ladle run`` merge of the change file into (g)'s DuckDB file."""
    change_rows = int(bench.manifest["change_rows"])
    result = Result("h", "ladle run: merge change file → DuckDB file", change_rows)
    if not initial.verified or initial.error:
        result.error = "not run: it merges into the file (g) loads, and (g) failed"
        return result
    path = _file(bench, "duckdb_ladle")
    ladle_run(
        bench,
        result,
        source=bench.files.changes_jsonl,
        schema="",
        destination=f"duckdb:///{path}",
        ledger=lambda: _ledger(path),
    )
    if result.measured is None or not result.measured.ok or result.error:
        return result
    ledger = result.extra["ledger"]
    want = (bench.manifest["expected_inserted"], bench.manifest["expected_updated"], 0)
    counts = (ledger.get("inserted"), ledger.get("updated"), ledger.get("unchanged"))
    _check(result, fingerprint(path), after_alone, "(h')")
    result.check = f"ledger: {ledger_counts(ledger)}; {result.check}"
    result.verified &= counts == want
    return result
