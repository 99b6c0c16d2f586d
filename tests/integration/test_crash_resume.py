"""Crash safety: `ladle run` killed with SIGKILL at random moments, again and again, then run
to completion — the tables equal the sources exactly, and the ledger tells the truth.

One pipeline reads a file glob, a PostgreSQL table and an HTTP API into PostgreSQL,
appending (so a record loaded twice would show as a duplicate row) and committing every
1,000 records with a checkpoint. A seeded random schedule kills each run either after a
random delay (while starting, fetching, loading or committing) or right after a chunk
commit is logged (to land in the next chunk's staging or commit).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS, display_status
from tests.fake_api import FakeApi, Reply

LADLE = str(Path(sys.executable).parent / "ladle")
PER_SOURCE = 9_000
KILLED_RUNS = 21
RESOURCES = ("files", "rows", "api")

PIPELINE = """\
pipeline: crashy
destination: {destination}
resources:
  files:
    source: {{type: file, path: "data/*.jsonl"}}
    write: append
    batch_size: 400
    commit_every: 1000
    columns: {{id: bigint, v: text}}
  rows:
    source: {{type: sql, url: "{sql_url}", table: {table}}}
    write: append
    incremental: {{cursor: id}}
    batch_size: 400
    commit_every: 1000
    columns: {{id: bigint, v: text}}
  api:
    source:
      type: http
      url: {api_url}
      paginate: {{style: page, param: page, size_param: per_page, size: 400}}
      retry: {{attempts: 3, initial: 0.05}}
      circuit_breaker: {{failures: 5}}
    write: append
    incremental: {{cursor: id}}
    batch_size: 400
    commit_every: 1000
    columns: {{id: bigint, v: text}}
"""


def _record(source: str, i: int) -> dict[str, Any]:
    return {"id": i, "v": f"{source}-{i}", "payload": "x" * (i % 50)}


@pytest.fixture
def source_table(postgres_server: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL table of PER_SOURCE rows in a schema of its own: (SQLAlchemy URL, table)."""
    schema = f"ladle_src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".items (id bigint PRIMARY KEY, v text, payload text)')
        with conn.cursor().copy(f'COPY "{schema}".items (id, v, payload) FROM STDIN') as copy:
            for i in range(PER_SOURCE):
                record = _record("rows", i)
                copy.write_row((record["id"], record["v"], record["payload"]))
    parts = urlsplit(postgres_server)
    yield parts._replace(scheme="postgresql+psycopg").geturl(), f"{schema}.items"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _files(directory: Path) -> None:
    directory.mkdir()
    for n in range(6):
        share = PER_SOURCE // 6
        lines = [json.dumps(_record("files", n * share + i)) for i in range(share)]
        (directory / f"part-{n}.jsonl").write_text("\n".join(lines) + "\n")


def _kill_at_random(pipeline: Path, rng: random.Random, number: int) -> int | None:
    """Start `ladle run` and SIGKILL it; return its pid if it was killed before it ended."""
    process = subprocess.Popen(
        [LADLE, "run", str(pipeline)],
        cwd=pipeline.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    if number % 2:
        # After a random delay: anywhere in start-up, fetching, staging or committing.
        time.sleep(rng.uniform(0.7, 2.5))
    else:
        # Right after the k-th chunk commit, plus a few milliseconds: inside the next chunk.
        wanted = rng.randint(1, 8)
        for line in process.stderr:
            if json.loads(line).get("event") == "chunk committed":
                wanted -= 1
                if wanted == 0:
                    time.sleep(rng.uniform(0, 0.05))
                    break
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    return process.pid if killed else None


def test_random_sigkills_then_completion_leave_exact_tables(
    tmp_path: Path, postgres_url: str, source_table: tuple[str, str]
) -> None:
    """Twenty-odd SIGKILLs at random moments, then a full run: no duplicate, no gap, true ledger."""
    sql_url, table = source_table
    _files(tmp_path / "data")
    api_records = [_record("api", i) for i in range(PER_SOURCE)]
    with FakeApi(api_records, style="page", page_size=400) as api:
        # A few transient failures along the way: retried, never fatal.
        api.fail(Reply(503, retry_after="0"), Reply(503))
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(
            PIPELINE.format(destination=postgres_url, sql_url=sql_url, table=table, api_url=api.url)
        )
        rng = random.Random(20261124)  # noqa: S311 - a reproducible schedule, not security
        killed: list[int] = []
        attempts = 0
        while len(killed) < KILLED_RUNS and attempts < KILLED_RUNS * 3:
            attempts += 1
            pid = _kill_at_random(pipeline, rng, attempts)
            if pid is not None:
                killed.append(pid)
        assert len(killed) >= 20, f"only {len(killed)} of {attempts} runs were still running"
        final = Pipeline.from_yaml(pipeline).run(RunOptions())
    assert final.ok, [r.error for r in final.resources]
    dest = connect(postgres_url)
    try:
        tables = {name: dest.read(name, {}) for name in RESOURCES}
        ledger = dest.read(RUNS.name, {}).to_dicts()
    finally:
        dest.close()
    for name, frame in tables.items():
        source = "files" if name == "files" else ("rows" if name == "rows" else "api")
        rows = sorted(zip(frame.get_column("id"), frame.get_column("v"), strict=True))
        assert rows == [(i, f"{source}-{i}") for i in range(PER_SOURCE)], name
    died_in: list[str] = []
    by_pid: dict[int, set[str]] = {}
    for row in ledger:
        parts = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
        assert row["fetched"] == sum(row[p] for p in parts), row
        status = display_status(row["status"], row["host"], row["pid"])
        by_pid.setdefault(row["pid"], set()).add(status)
        if status == "died":
            died_in.append(row["resource"])
    assert "failed" not in {s for statuses in by_pid.values() for s in statuses}
    for pid in killed:
        # Resources finished before the kill say succeeded; the others, died. A kill after
        # the last commit (while printing the summary) leaves a finished run.
        statuses = by_pid.get(pid, set())
        assert statuses in ({"died"}, {"succeeded", "died"}, {"succeeded"}, set()), statuses
    assert set(died_in) == set(RESOURCES), f"kills landed in {sorted(died_in)}"
    for name in RESOURCES:
        committed = sum(row["inserted"] for row in ledger if row["resource"] == name)
        assert committed == PER_SOURCE, f"{name}: the ledger says {committed} rows were inserted"
