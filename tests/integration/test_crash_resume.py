"""Crash safety: `ladle run` killed with SIGKILL at random moments, again and again, then run
to completion — the tables equal the sources exactly, and the ledger tells the truth.

One pipeline reads a file glob, a PostgreSQL table and an HTTP API into PostgreSQL,
appending (so a record loaded twice would show as a duplicate row) and committing every
1,000 records with a checkpoint. A seeded schedule aims each run's kill at a resource
not finished yet, at a random moment in it: while fetching and staging, or just after a
chunk commit (landing in the next chunk's staging or commit).
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
PER_SOURCE = 20_000
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
    parts = 5
    assert PER_SOURCE % parts == 0
    for n in range(parts):
        share = PER_SOURCE // parts
        lines = [json.dumps(_record("files", n * share + i)) for i in range(share)]
        (directory / f"part-{n}.jsonl").write_text("\n".join(lines) + "\n")


class _Schedule:
    """Where to kill each run: inside each resource in turn, at a random moment in it.

    Resources run in file order, so each run is aimed at the first one that has not had
    its share of kills yet (the ones before it complete in that run). Aiming at a
    resource rather than at a time since start makes every source take its kills
    whatever the machine's speed; the moment within it is random: while fetching (after
    its k-th batch, plus a random delay), or just after a chunk commit (inside the next
    chunk's staging or commit).
    """

    def __init__(self, seed: int, share: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not security
        self.finished: set[str] = set()
        self.kills = dict.fromkeys(RESOURCES, 0)
        self.share = share

    def next_target(self) -> str | None:
        """The first resource still to be killed in, or None when every one had its share."""
        left = [n for n in RESOURCES if n not in self.finished and self.kills[n] < self.share]
        return left[0] if left else None

    def run_and_kill(self, pipeline: Path, target: str) -> int | None:
        """Start `ladle run`, SIGKILL it inside ``target``; its pid if it was still running."""
        process = subprocess.Popen(
            [LADLE, "run", str(pipeline)],
            cwd=pipeline.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        after_commit = self.rng.random() < 0.5
        wanted = self.rng.randint(1, 2) if after_commit else self.rng.randint(1, 3)
        for line in process.stderr:
            event = json.loads(line)
            if event.get("event") == "resource finished" and event.get("status") == "succeeded":
                self.finished.add(str(event.get("resource")))
            if event.get("resource") != target:
                continue
            kind = "chunk committed" if after_commit else "batch staged"
            if event.get("event") == kind:
                wanted -= 1
                if wanted == 0:
                    time.sleep(self.rng.uniform(0, 0.01 if after_commit else 0.02))
                    break
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        if killed:
            self.kills[target] += 1
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
        schedule = _Schedule(20261124, share=KILLED_RUNS // len(RESOURCES))
        killed: list[int] = []
        while len(killed) < KILLED_RUNS and (target := schedule.next_target()) is not None:
            pid = schedule.run_and_kill(pipeline, target)
            if pid is not None:
                killed.append(pid)
        assert len(killed) >= 20, f"only {len(killed)} runs were killed before the load ended"
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
