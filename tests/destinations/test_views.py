"""What `ladle runs` and `ladle quarantine list` ask a destination: the last N runs, and the
quarantine counted in the database, on every destination."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polars as pl
import psycopg
import pytest

from ladle.batch import Counts
from ladle.config import WriteMode
from ladle.destinations import LoadTarget, connect
from ladle.errors import NoLedger
from ladle.ledger import RunEntry
from ladle.quarantine import QUARANTINE, position_key, storable_json

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _record(url: str, pipeline: str, run_id: str, resources: list[str], *, hour: int) -> None:
    dest = connect(url)
    try:
        for i, resource in enumerate(resources):
            dest.record_run(
                RunEntry(
                    run_id=run_id,
                    pipeline=pipeline,
                    resource=resource,
                    table_name=resource,
                    write_mode="append",
                    config_hash="c0ffee",
                    ladle_version="0.1.0",
                    counts=Counts(fetched=1_000_000, inserted=1_000_000),
                    status="succeeded",
                    started_at=START + timedelta(hours=hour, minutes=i),
                    finished_at=START + timedelta(hours=hour, minutes=i + 1),
                )
            )
    finally:
        dest.close()


def test_recent_runs_counts_runs_not_ledger_rows(destination_url: str) -> None:
    """The last 2 runs are every resource of the 2 newest runs of the pipeline, newest first."""
    for hour, run_id in enumerate(["run-1", "run-2", "run-3"]):
        _record(destination_url, "shop", run_id, ["orders", "customers", "refunds"], hour=hour)
    _record(destination_url, "other", "run-9", ["orders"], hour=9)
    dest = connect(destination_url, read_only=True)
    try:
        rows = dest.recent_runs("shop", 2)
        everyone = dest.recent_runs(None, 1)
    finally:
        dest.close()
    assert rows.select("run_id", "resource").rows() == [
        ("run-3", "refunds"),
        ("run-3", "customers"),
        ("run-3", "orders"),
        ("run-2", "refunds"),
        ("run-2", "customers"),
        ("run-2", "orders"),
    ]
    assert everyone.get_column("run_id").to_list() == ["run-9"]


POSITIONS = ["f:12514", "f:2", "f:12-80", "f:100", "c10.csv:1", "c2.csv:100", "f:07", "f:7"]


def _quarantine(url: str, run_id: str, resource: str, positions: list[str]) -> None:
    errors = [
        [{"field": "amount", "rule": "min", "value": "-1", "message": "too small"}],
        [
            {"field": "amount", "rule": "min", "value": "-1", "message": "too small"},
            {"field": None, "rule": "parse", "value": None, "message": "bad JSON"},
        ],
    ]
    rows = pl.DataFrame(
        {
            "position": positions,
            "raw": [storable_json({"n": i}) for i in range(len(positions))],
            "errors": [storable_json(errors[i % 2]) for i in range(len(positions))],
        }
    )
    dest = connect(url)
    try:
        load = dest.begin(LoadTarget("shop", resource, WriteMode.APPEND))
        load.write_quarantine(rows, run_id=run_id, resource=resource)
        load.commit()
    finally:
        dest.close()


def test_quarantine_summary_is_counted_by_the_database(destination_url: str) -> None:
    """Per run and resource: records, the first position as numbers read (`c2.csv` before
    `c10.csv`, `f:2` before `f:12514`), and each error counted under its `field: rule`."""
    _quarantine(destination_url, "run-1", "orders", POSITIONS)
    _quarantine(destination_url, "run-1", "refunds", ["r:10", "r:9"])
    _quarantine(destination_url, "run-2", "orders", ["f:3"])
    dest = connect(destination_url, read_only=True)
    try:
        everything = dest.quarantine_summary(pipeline="shop")
        one_run = dest.quarantine_summary(pipeline="shop", run_id="run-2")
        nobody = dest.quarantine_summary(pipeline="other")
    finally:
        dest.close()
    assert min(POSITIONS, key=position_key) == "c2.csv:100"
    assert everything == [
        {
            "run_id": "run-1",
            "resource": "orders",
            "records": 8,
            "first_position": "c2.csv:100",
            "reasons": {"amount: min": 8, "parse": 4},
        },
        {
            "run_id": "run-1",
            "resource": "refunds",
            "records": 2,
            "first_position": "r:9",
            "reasons": {"amount: min": 2, "parse": 1},
        },
        {
            "run_id": "run-2",
            "resource": "orders",
            "records": 1,
            "first_position": "f:3",
            "reasons": {"amount: min": 1},
        },
    ]
    assert one_run == everything[2:]
    assert nobody == []


def test_read_only_creates_no_file(tmp_path: Path) -> None:
    """Opened to read, a DuckDB file that does not exist is `no runs yet`, and stays absent."""
    path = tmp_path / "nothing.duckdb"
    with pytest.raises(NoLedger) as caught:
        connect(f"duckdb:///{path}", read_only=True)
    assert str(caught.value) == f"no runs yet: {path} does not exist"
    assert list(tmp_path.iterdir()) == []


def test_read_only_postgres_creates_no_table(postgres_url: str) -> None:
    """Opened to read, PostgreSQL reads missing ledger tables as empty and creates none."""
    dest = connect(postgres_url, read_only=True)
    try:
        assert dest.recent_runs("shop", 5).height == 0
        assert dest.quarantine_summary(pipeline="shop") == []
    finally:
        dest.close()
    schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
    conninfo = postgres_url.split("?", maxsplit=1)[0]
    with psycopg.connect(conninfo) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchone()
    assert found == (0,)


# ---------------------------------------------------------------- memory

RECORDS = 300_000

_MEASURE = textwrap.dedent(
    """
    import re, sys
    from pathlib import Path
    from ladle.destinations import connect
    from ladle.quarantine import QUARANTINE


    def peak_mb():
        # This process's own peak: ru_maxrss would start at the parent's (Linux keeps the
        # pre-exec peak in it), and pytest's may already be past what is measured here.
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024


    url, how = sys.argv[1], sys.argv[2]
    dest = connect(url, read_only=True)
    dest.read("_ladle_runs", {})  # warm up (imports, a first query) without the quarantine
    before = peak_mb()
    if how == "summary":
        groups = dest.quarantine_summary(pipeline="shop")
    else:  # what `quarantine list` did before: every row, counted here
        groups = dest.read(QUARANTINE.name, {"pipeline": "shop"}).group_by("run_id").len()
    print(peak_mb() - before, len(groups))
    """
)


def _fill(url: str) -> None:
    """RECORDS quarantined records of ~600 bytes each, written by the database itself."""
    connect(url).close()
    raw = "'{\"note\": \"' || repeat('x', 560) || '\", \"n\": ' || i || '}'"
    errors = '\'[{"field": "amount", "rule": "min", "value": "-1", "message": "low"}]\''
    columns = "run_id, pipeline, resource, position, raw, errors, quarantined_at"
    if url.startswith("duckdb"):
        import duckdb

        with duckdb.connect(urlsplit(url).path[1:]) as con:
            con.execute(
                f"INSERT INTO {QUARANTINE.name} ({columns}) SELECT 'run-' || (i % 3), 'shop', "
                f"'orders', 'data/orders.jsonl:' || i, {raw}, {errors}, now() "
                f"FROM range(1, {RECORDS + 1}) AS t(i)"
            )
        return
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    with psycopg.connect(url.split("?", maxsplit=1)[0]) as conn:
        conn.execute(
            f"INSERT INTO \"{schema}\".{QUARANTINE.name} ({columns}) SELECT 'run-' || (i % 3), "
            f"'shop', 'orders', 'data/orders.jsonl:' || i, ({raw})::jsonb, ({errors})::jsonb, "
            f"now() FROM generate_series(1, {RECORDS}) AS i"
        )


def _grown_mb(url: str, how: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, url, how],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    grown, groups = result.stdout.split()
    assert int(groups) == 3
    return int(grown)


def test_quarantine_summary_memory_is_flat(destination_url: str) -> None:
    """Listing 300k quarantined records grows the process by less than 50 MB (DuckDB's capped
    buffer pool), a fifth or less of what reading the records (the old way) grows it by."""
    _fill(destination_url)
    dest = connect(destination_url, read_only=True)
    try:
        (group, *_) = dest.quarantine_summary(pipeline="shop")
    finally:
        dest.close()
    assert (group["records"], group["first_position"]) == (RECORDS // 3, "data/orders.jsonl:3")
    summary, rows = _grown_mb(destination_url, "summary"), _grown_mb(destination_url, "rows")
    # Measured: summary 0 MB (PostgreSQL) and 30 MB (DuckDB: its buffer pool, capped at 32 MB
    # when only reading); rows ~290 MB (DuckDB) and ~800 MB (PostgreSQL).
    shown = json.dumps({"summary": summary, "rows": rows})
    assert summary < 50, shown
    assert summary * 5 < rows, shown
