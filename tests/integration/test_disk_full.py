"""PostgreSQL's disk fills up under a load: `ladle run` fails and says so, leaving the table
as it was and a balanced ledger row; `ladle worker` waits with its batch in hand until there
is room again, and dead-letters nothing.

The full disk is real: the target table is moved to a tablespace on a small tmpfs, and the
rest of the tmpfs is filled with a file. That needs root (to mount) and a server on this
machine (the tablespace's directory is the server's); these tests are marked ``faults``
(``make test-faults``) and fail saying so where either is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE
from ladle.worker import Worker, WorkerOptions
from tests.integration.test_worker import _add, _balanced, _rows
from tests.integration.test_worker_faults import (
    WAITING,
    _count,
    _dead_letters,
    _env,
    _pipeline,
    _until,
    _Worker,
)

pytestmark = pytest.mark.faults

TMPFS_MB = 8


@dataclass
class SmallDisk:
    """A tablespace on a tmpfs of :data:`TMPFS_MB`; ``fill()`` leaves ``room`` bytes free."""

    name: str
    mount: Path
    server: str
    schema: str

    def move(self, table: str) -> None:
        """Put ``table`` and its indexes on the small disk."""
        with psycopg.connect(self.server, autocommit=True) as conn:
            qualified = f'"{self.schema}"."{table}"'
            conn.execute(f'ALTER TABLE {qualified} SET TABLESPACE "{self.name}"')
            for (index,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                (self.schema, table),
            ).fetchall():
                conn.execute(f'ALTER INDEX "{self.schema}"."{index}" SET TABLESPACE "{self.name}"')

    def fill(self, room: int = 64 * 1024) -> None:
        stat = os.statvfs(self.mount)
        free = stat.f_bavail * stat.f_frsize
        (self.mount / "filler").write_bytes(b"\0" * max(free - room, 0))

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.mount / "filler").unlink()


@pytest.fixture
def small_disk(postgres_url: str) -> Iterator[SmallDisk]:
    server, schema = postgres_url.rsplit("?", 1)[0], postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(server, autocommit=True) as conn:
        (data_dir,) = conn.execute("SHOW data_directory").fetchone() or ("",)
    if os.geteuid() != 0 or not os.path.isdir(data_dir):
        pytest.fail(
            "the full-disk tests mount a tmpfs for a PostgreSQL tablespace: run them as root, "
            f"against a server on this machine (its data directory {data_dir!r} is not here)"
        )
    # Not under tmp_path: the server's user must reach the directory (pytest's are 0700).
    mount = Path(tempfile.mkdtemp(prefix="ladle-small-disk-"))
    mount.chmod(0o755)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=755", "tmpfs", str(mount)],
        check=True,
    )
    location = mount / "tablespace"
    location.mkdir()
    owner = os.stat(data_dir)
    os.chown(location, owner.st_uid, owner.st_gid)
    disk = SmallDisk(f"ladle_small_{uuid.uuid4().hex[:8]}", mount, server, schema)
    try:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE \"{disk.name}\" LOCATION '{location}'")
        yield disk
    finally:
        disk.free()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP TABLESPACE IF EXISTS "{disk.name}"')
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


PIPELINE = """\
pipeline: full
resources:
  events:
    source: {type: file, path: events.jsonl}
    primary_key: [id]
    write: merge
    batch_size: 5000
    columns: {id: bigint, note: text}
"""


def _events(path: Path, count: int, version: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": i, "note": f"version {version} " + "x" * 80}) + "\n")


def test_a_run_that_fills_the_disk_fails_and_leaves_the_table_as_it_was(
    tmp_path: Path, postgres_url: str, small_disk: SmallDisk
) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    _events(tmp_path / "events.jsonl", 1000, version=1)
    pipeline = Pipeline.from_yaml(tmp_path / "pipeline.yaml")
    assert pipeline.run(RunOptions(destination=postgres_url)).ok
    small_disk.move("events")
    small_disk.fill()
    _events(tmp_path / "events.jsonl", 60_000, version=2)
    ladle = Path(sys.executable).parent / "ladle"
    run = subprocess.run(
        [str(ladle), "run", "pipeline.yaml", "--destination", postgres_url],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    small_disk.free()
    assert run.returncode == 1, run.stdout + run.stderr
    said = " ".join(run.stdout.split())  # the terminal wraps long lines
    assert "the server is out of a resource (disk, memory or connections)" in said
    dest = connect(postgres_url)
    try:
        ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
        rows = dest.read("events", {}, order_by=["id"]).to_dicts()
        quarantined = dest.read(QUARANTINE.name, {}).height
    finally:
        dest.close()
    assert [r["status"] for r in ledger] == ["succeeded", "failed"]
    parts = ("inserted", "updated", "unchanged", "deduplicated", "quarantined", "rolled_back")
    assert all(r["fetched"] == sum(r[k] for k in parts) for r in ledger)
    failed = ledger[-1]
    assert (failed["fetched"], failed["rolled_back"], failed["inserted"]) == (60_000, 60_000, 0)
    assert "No space left on device" in str(failed["error"]) or "out of a resource" in str(
        failed["error"]
    )
    assert quarantined == 0
    assert [r["id"] for r in rows] == list(range(1000))
    assert {r["note"].split(" x")[0] for r in rows} == {"version 1"}


def test_a_worker_waits_for_room_and_dead_letters_nothing(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_stream_key: str,
    small_disk: SmallDisk,
) -> None:
    client = redis.Redis.from_url(redis_url)
    _add(client, redis_stream_key, [{"id": i, "amount": 1.0} for i in range(10)])
    path = _pipeline(
        tmp_path,
        destination=postgres_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=2000,
    )
    Worker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=1)).run()  # creates the table
    assert _count(postgres_url, "payments") == 10
    small_disk.move("payments")
    small_disk.fill(room=8 * 1024)
    _add(client, redis_stream_key, [{"id": i, "amount": 2.5} for i in range(10, 20_010)])
    worker = _Worker(path, "a", env=_env())
    try:
        _until(
            lambda: len(worker.events(WAITING)) >= 2,
            timeout=120,
            what="two waits for room on the disk",
            detail=lambda: str(worker.log[-3:]),
        )
        assert worker.alive
        small_disk.free()
        _until(
            lambda: (
                client.xpending(redis_stream_key, "loaders")["pending"] == 0
                and _count(postgres_url, "payments") == 20_010
            ),
            timeout=120,
            what="every entry to load once there is room",
        )
    finally:
        code = worker.stop()
        client.close()
    assert code == 0
    waits = worker.events(WAITING)
    assert "out of a resource" in waits[0]["error"], waits[0]
    assert _dead_letters(client, redis_stream_key) == []
    assert _count(postgres_url, QUARANTINE.name) == 0
    rows = _rows(postgres_url, "payments")
    assert sorted(r["id"] for r in rows) == list(range(20_010))
    assert all(_balanced(row) for row in _rows(postgres_url, RUNS.name))
