"""``ladle worker`` under faults: a record whose processing raises, a destination outage.

Real worker processes against real Redis and PostgreSQL. The outage puts a TCP proxy
(:mod:`tests.tcp_proxy`) between the workers and PostgreSQL and stops it; that test is
marked ``faults`` and runs with ``make test-faults``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import psycopg
import pytest
import redis

from ladle import Pipeline
from ladle.ledger import RUNS, SUCCEEDED
from ladle.quarantine import QUARANTINE
from ladle.worker import Worker, WorkerOptions
from tests.integration.test_worker import LADLE, _add, _balanced, _rows
from tests.tcp_proxy import TcpProxy, through

PIPELINE = """\
pipeline: faults
destination: {destination}
resources:
  payments:
    source:
      type: redis_stream
      url: {redis}
      stream: {stream}
      group: loaders
      block_ms: 100
      claim_idle_ms: {claim_idle_ms}
      max_deliveries: 2
      retry_max_ms: 500
    primary_key: [id]
    write: merge
    batch_size: {batch_size}
    columns:
      id: {{type: bigint, required: true}}
      amount: {{type: double}}
    steps:{steps}
"""

WAITING = "waiting for the destination; the batch in hand stays with this worker"

PLUGIN = '''\
import polars as pl


def to_decimal(frame, *, column):
    """What a strict decimal(12,2) cast does: a value too large raises for the whole batch."""
    return frame.with_columns(pl.col(column).cast(pl.Decimal(12, 2)).cast(pl.Float64))
'''


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client for the test's own keys."""
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A directory holding an installed step package (``to_decimal``), for PYTHONPATH."""
    site = tmp_path / "site"
    dist = site / "ladle_faults-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "ladle_faults.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ladle-faults\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ladle.steps]\nto_decimal = ladle_faults:to_decimal\n")
    return str(site)


def _pipeline(
    tmp_path: Path,
    *,
    destination: str,
    redis_url: str,
    stream: str,
    batch_size: int,
    claim_idle_ms: int = 300,
    steps: str = " []",
) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        PIPELINE.format(
            destination=destination,
            redis=redis_url,
            stream=stream,
            batch_size=batch_size,
            claim_idle_ms=claim_idle_ms,
            steps=steps,
        )
    )
    return path


class _Worker:
    """A ``ladle worker`` process whose JSON log lines are collected as they come."""

    def __init__(self, path: Path, consumer: str, *extra: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [LADLE, "worker", str(path), "--consumer", consumer, *extra],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                self.lines.put({"event": line.rstrip()})

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines so far whose event is ``name``."""
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return [line for line in self.log if line.get("event") == name]

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then the exit status (after at most 60 s)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.alive:
                self.process.kill()
                self.process.wait()
            self._reader.join(timeout=10)
            assert self.process.stderr is not None
            self.process.stderr.close()


def _until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    detail: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} {detail()}")
        time.sleep(0.1)


def _env(*paths: str) -> dict[str, str]:
    current = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([current] if current else [])])}


def _dead_letters(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(f"{stream}:dlq")  # type: ignore[assignment]
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def _count(url: str, table: str) -> int:
    try:
        return len(_rows(url, table))
    except Exception:  # the table does not exist yet
        return 0


# ---------------------------------------------------------------- a raising record


def test_one_raising_record_is_dead_lettered_alone_and_its_batch_mates_load(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_stream_key: str,
    client: redis.Redis,
    *,
    plugin_path: str,
) -> None:
    """2,000 entries, one of which makes a step raise: two workers stay up, 1,999 rows load,
    and exactly that entry is dead-lettered (after max_deliveries) with the step's error."""
    records = [{"id": i, "amount": i + 0.25} for i in range(2000)]
    records[1234]["amount"] = 123456789012.5
    ids = _add(client, redis_stream_key, records)
    path = _pipeline(
        tmp_path,
        destination=postgres_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=500,
        steps="\n      - to_decimal: {column: amount}",
    )
    workers = [_Worker(path, name, env=_env(plugin_path)) for name in ("a", "b")]
    try:
        _until(
            lambda: (
                len(_dead_letters(client, redis_stream_key)) == 1
                and client.xpending(redis_stream_key, "loaders")["pending"] == 0
            ),
            timeout=60,
            what="the dead letter",
        )
        time.sleep(0.5)  # a second dead letter would have come by now
        assert all(w.alive for w in workers), "a worker stopped"
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    (dead,) = _dead_letters(client, redis_stream_key)
    expected = (
        "failed 2 times; last error: resource 'payments', step 'to_decimal': "
        "ladle_faults.to_decimal raised ComputeError: decimal precision 12 can't fit values "
        "with 14 digits"
    )
    assert (dead["id"], dead["reason"]) == (ids[1234], "poison")
    assert json.loads(dead["errors"])[0]["message"].startswith(expected)
    assert json.loads(json.loads(dead["raw"])["text"]) == records[1234]
    loaded = sorted(row["id"] for row in _rows(postgres_url, "payments"))
    assert loaded == [i for i in range(2000) if i != 1234]
    (quarantined,) = _rows(postgres_url, QUARANTINE.name)
    assert quarantined["position"] == ids[1234]
    ledger = _rows(postgres_url, RUNS.name)
    assert all(_balanced(row) and row["status"] == "succeeded" for row in ledger)
    assert sum(row["fetched"] for row in ledger) == 2000
    assert sum(row["inserted"] for row in ledger) == 1999
    assert sum(row["quarantined"] for row in ledger) == 1
    assert sum(row["bytes_read"] for row in ledger) > 2000 * len('data{"id": 0, "amount": 0.25}')
    splits = [
        e
        for w in workers
        for e in w.events("batch failed; splitting it to isolate the entries that fail")
    ]
    assert splits, "the batch was bisected"


class _BuggyStep:
    """A step with a bug: a KeyError (not a ladle error) for one id."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, frame: pl.DataFrame) -> Any:
        if self.bad in frame.get_column("id").to_list():
            raise KeyError("no rate for region 'xx'")
        from ladle.batch import StepResult

        return StepResult(frame)


class _BuggyWorker(Worker):
    def _prepare(self, destination: Any) -> None:
        super()._prepare(destination)
        self.steps.append(("buggy", _BuggyStep(7)))


def test_an_error_that_is_no_ladle_error_is_isolated_too(
    tmp_path: Path, duckdb_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Any exception (here a KeyError from a step) is isolated like a ladle error."""
    ids = _add(client, redis_stream_key, [{"id": i, "amount": 1.5} for i in range(40)])
    path = _pipeline(
        tmp_path,
        destination=duckdb_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=40,
        claim_idle_ms=100,
    )
    entry = _BuggyWorker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=1.5)).run()
    (dead,) = _dead_letters(client, redis_stream_key)
    assert dead["id"] == ids[7]
    assert json.loads(dead["errors"])[0]["message"] == (
        "failed 2 times; last error: KeyError: \"no rate for region 'xx'\""
    )
    assert sorted(r["id"] for r in _rows(duckdb_url, "payments")) == [
        i for i in range(40) if i != 7
    ]
    counts = entry.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (40, 39, 1)
    assert counts.balanced


def test_entries_delivered_too_often_load_alone_and_only_a_repeat_killer_is_dead_lettered(
    tmp_path: Path, duckdb_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Entries that Redis delivered past max_deliveries (their workers died) are not
    dead-lettered for that: each loads alone. Only one that was alone in hand at
    max_deliveries deaths (counted by ladle) is dead-lettered, unloaded."""
    ids = _add(client, redis_stream_key, [{"id": i, "amount": 1.0} for i in range(10)])
    client.xgroup_create(redis_stream_key, "loaders", id="0")
    client.xreadgroup("loaders", "ghost", {redis_stream_key: ">"})
    for _ in range(3):  # three more workers took them over and died; this one is the 5th
        client.xclaim(redis_stream_key, "loaders", "ghost", 0, list(ids))
    attempts = f"{redis_stream_key}:loaders:attempts"
    client.hset(attempts, ids[3], 2)  # twice alone in hand when a worker died
    path = _pipeline(
        tmp_path,
        destination=duckdb_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=100,
        claim_idle_ms=100,
    )
    time.sleep(0.2)
    entry = Worker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=1)).run()
    (dead,) = _dead_letters(client, redis_stream_key)
    assert (dead["id"], dead["reason"]) == (ids[3], "poison")
    assert json.loads(dead["errors"])[0]["message"] == (
        "delivered 5 times; a worker stopped while it was loading this entry alone 2 times"
    )
    assert sorted(r["id"] for r in _rows(duckdb_url, "payments")) == [
        i for i in range(10) if i != 3
    ]
    assert client.exists(attempts) == 0
    counts = entry.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (10, 9, 1)
    assert counts.balanced


def test_an_entry_that_is_not_utf8_is_quarantined_with_a_message_for_streams(
    tmp_path: Path, duckdb_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Bad bytes in an entry's JSON: the message asks for UTF-8 from the producer (there is
    no file whose `encoding:` to set); the ledger counts the entries' bytes."""
    client.xadd(redis_stream_key, {"data": b'{"id": 1, "amount": 2.5}'})
    added = client.xadd(redis_stream_key, {"data": b'{"id": 2, "note": "caf\xe9"}'})
    bad = added.decode() if isinstance(added, bytes) else added
    path = _pipeline(
        tmp_path,
        destination=duckdb_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=100,
    )
    entry = Worker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=0.5)).run()
    (quarantined,) = _rows(duckdb_url, QUARANTINE.name)
    assert quarantined["position"] == bad
    assert json.loads(quarantined["errors"]) == [
        {
            "field": None,
            "rule": "encoding",
            "value": None,
            "message": "cannot decode byte 0xe9 as UTF-8; a stream entry must be UTF-8: "
            "fix its producer",
        }
    ]
    size = len(b'data{"id": 1, "amount": 2.5}') + len(b'data{"id": 2, "note": "caf\xe9"}')
    (ledger,) = _rows(duckdb_url, RUNS.name)
    assert ledger["bytes_read"] == entry.counts.bytes_read == size


# ---------------------------------------------------------------- a destination outage


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_worker_that_starts_while_the_destination_is_down_says_what_to_do(
    tmp_path: Path, redis_url: str, redis_stream_key: str
) -> None:
    """No destination at start: exit 1 with one line that says why the worker does not
    wait (a wrong URL shows at once) and what to do."""
    path = _pipeline(
        tmp_path,
        destination="postgresql://u:pw@127.0.0.1:1/x",
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=10,
    )
    done = subprocess.run(
        [LADLE, "worker", str(path)], capture_output=True, text=True, env=_env(), check=False
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: the worker did not start: PostgreSQL error while connecting to "
        "postgresql://u:***@127.0.0.1:1/x: connection failed: connection to server at "
        '"127.0.0.1", port 1 failed: Connection refused Is the server running on that host '
        "and accepting TCP/IP connections?; check that the destination is up and its URL "
        "right, then start the worker again (a worker waits out an outage once connected, "
        "not at start, so that a wrong URL shows at once)"
    )


def test_entries_in_hand_stay_the_workers_while_its_pool_waits_for_a_connection(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """The destination gone, the worker blocks ``pool_timeout`` (3 s, five times
    ``claim_idle_ms``) in its pool, then retries: meanwhile another consumer claiming idle
    entries gets none of its batch, and each entry is delivered once and loaded once."""
    port = urlsplit(postgres_url).port or 5432
    with TcpProxy(port) as proxy:
        path = _pipeline(
            tmp_path,
            destination=through(postgres_url, proxy, pool_timeout=3),
            redis_url=redis_url,
            stream=redis_stream_key,
            batch_size=100,
            claim_idle_ms=600,
        )
        worker = Worker(Pipeline.from_yaml(path), WorkerOptions(consumer="a"))
        running = threading.Thread(target=worker.run)
        running.start()
        try:
            _until(lambda: _count(postgres_url, RUNS.name) == 1, timeout=30, what="the start")
            proxy.stop()
            _add(client, redis_stream_key, [{"id": i, "amount": 1.0} for i in range(10)])
            _until(
                lambda: client.xpending(redis_stream_key, "loaders")["pending"] > 0,
                timeout=10,
                what="the batch in hand",
            )
            stolen: list[Any] = []
            until = time.monotonic() + 4  # the pool's 3 s, and retries after it
            while time.monotonic() < until:
                reply = client.xautoclaim(redis_stream_key, "loaders", "thief", min_idle_time=600)
                stolen.extend(reply[1])
                time.sleep(0.05)
            proxy.start()
            _until(
                lambda: client.xpending(redis_stream_key, "loaders")["pending"] == 0,
                timeout=30,
                what="the batch to load",
            )
        finally:
            worker.stop()
            running.join(timeout=30)
    assert stolen == []
    assert sorted(row["id"] for row in _rows(postgres_url, "payments")) == list(range(10))
    (ledger,) = _rows(postgres_url, RUNS.name)
    assert (ledger["fetched"], ledger["inserted"], ledger["status"]) == (10, 10, SUCCEEDED)


def test_a_lock_held_on_the_table_is_waited_out_and_nothing_is_dead_lettered(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """A session holds an ACCESS EXCLUSIVE lock on the table: each load gives up after
    ``lock_timeout`` (1 s here), and the worker waits and retries the batch in hand as in
    an outage, naming the lock; once the lock goes, every entry loads once, none is
    dead-lettered, and the ledger balances."""
    _add(client, redis_stream_key, [{"id": i, "amount": 1.0} for i in range(10)])
    path = _pipeline(
        tmp_path,
        destination=f"{postgres_url}&lock_timeout=1s",
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=100,
    )
    Worker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=1)).run()  # creates the table
    assert _count(postgres_url, "payments") == 10
    server, schema = postgres_url.rsplit("?", 1)[0], postgres_url.rsplit("schema=", 1)[1]
    holder = psycopg.connect(server, application_name="forgotten psql")
    try:
        holder.execute(f'LOCK TABLE "{schema}".payments IN ACCESS EXCLUSIVE MODE')
        _add(client, redis_stream_key, [{"id": i, "amount": 2.0} for i in range(10, 40)])
        worker = _Worker(path, "a", env=_env())
        try:
            _until(
                lambda: len(worker.events(WAITING)) >= 2,
                timeout=60,
                what="two waits on the lock",
                detail=lambda: str(worker.log[-3:]),
            )
            assert worker.alive
            holder.commit()  # the lock goes
            _until(
                lambda: (
                    client.xpending(redis_stream_key, "loaders")["pending"] == 0
                    and _count(postgres_url, "payments") == 40
                ),
                timeout=60,
                what="the batch to load",
            )
        finally:
            code = worker.stop()
    finally:
        holder.close()
    assert code == 0
    waits = worker.events(WAITING)
    assert "waited 1 s for a lock on table" in waits[0]["error"], waits[0]
    assert "forgotten psql" in waits[0]["error"], waits[0]
    assert _dead_letters(client, redis_stream_key) == []
    assert _count(postgres_url, QUARANTINE.name) == 0
    rows = _rows(postgres_url, "payments")
    assert sorted(r["id"] for r in rows) == list(range(40))
    ledger = _rows(postgres_url, RUNS.name)
    assert all(_balanced(row) for row in ledger)
    assert sum(row["inserted"] for row in ledger) == 40


@pytest.mark.faults
def test_a_long_destination_outage_dead_letters_nothing(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """PostgreSQL unreachable for many retry cycles (well past max_deliveries): two workers
    wait with their batches in hand, no delivery is counted, and after it every entry is
    loaded exactly once with no dead letter.

    The outage starts once both workers have connected: a worker that cannot connect at
    start exits 1 on purpose. ``pool_timeout=2`` stands for the pool's 30 s."""
    port = urlsplit(postgres_url).port or 5432
    with TcpProxy(port) as proxy:
        path = _pipeline(
            tmp_path,
            destination=through(postgres_url, proxy, pool_timeout=2),
            redis_url=redis_url,
            stream=redis_stream_key,
            batch_size=500,
            claim_idle_ms=500,
        )
        metrics_ports = [_free_port(), _free_port()]
        workers = [
            _Worker(path, name, "--metrics-port", str(p), env=_env())
            for name, p in zip(("a", "b"), metrics_ports, strict=True)
        ]
        try:
            _until(
                lambda: all(w.events("worker started") for w in workers),
                timeout=60,
                what="both workers to connect",
                detail=lambda: str([w.log[-3:] for w in workers]),
            )
            _add(client, redis_stream_key, [{"id": i, "amount": 1.0} for i in range(1000)])
            _until(lambda: _count(postgres_url, "payments") == 1000, timeout=60, what="1,000 rows")
            proxy.stop()
            started = time.monotonic()
            _add(client, redis_stream_key, [{"id": i, "amount": 2.0} for i in range(1000, 3000)])
            retries = 25
            _until(
                lambda: all(len(w.events(WAITING)) >= retries for w in workers),
                timeout=120,
                what=f"{retries} retries by each worker",
                detail=lambda: str([(len(w.events(WAITING)), w.log[-3:]) for w in workers]),
            )
            outage = time.monotonic() - started
            assert all(w.alive for w in workers)
            pending = client.xpending_range(redis_stream_key, "loaders", "-", "+", 10_000)
            assert pending, "the workers hold batches"
            assert {p["consumer"] for p in pending} == {b"a", b"b"}, "each holds a batch"
            assert {int(p["times_delivered"]) for p in pending} == {1}
            assert all(_metric(p, "ladle_destination_up") == 0 for p in metrics_ports)
            assert all(
                _metric(p, "ladle_destination_retries_total") >= retries for p in metrics_ports
            )
            proxy.start()
            _until(
                lambda: (
                    client.xpending(redis_stream_key, "loaders")["pending"] == 0
                    and client.xinfo_groups(redis_stream_key)[0]["lag"] == 0
                ),
                timeout=120,
                what="the stream to drain",
            )
            assert all(w.alive for w in workers)
            assert all(_metric(p, "ladle_destination_up") == 1 for p in metrics_ports)
        finally:
            codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    assert _dead_letters(client, redis_stream_key) == []
    ids = sorted(row["id"] for row in _rows(postgres_url, "payments"))
    assert ids == list(range(3000))
    ledger = _rows(postgres_url, RUNS.name)
    assert all(_balanced(row) and row["status"] == "succeeded" for row in ledger)
    assert sum(row["fetched"] for row in ledger) == 3000
    assert sum(row["inserted"] for row in ledger) == 3000
    assert sum(row["quarantined"] for row in ledger) == 0
    waits = workers[0].events(WAITING)
    back = [
        *workers[0].events("reconnected to the destination"),
        *workers[0].events("the destination is back"),
    ]
    print(f"outage: {outage:.1f} s, {retries}+ retries per worker")
    for line in [*waits[:2], waits[-1], *back]:
        print(json.dumps(line))
