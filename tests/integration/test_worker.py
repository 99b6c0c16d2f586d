"""``ladle worker`` against real Redis and PostgreSQL: exactly once, reclaim, dead letters, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ladle import Pipeline
from ladle.destinations import connect
from ladle.ledger import RUNS, display_status
from ladle.quarantine import QUARANTINE
from ladle.worker import Worker, WorkerOptions

LADLE = str(Path(sys.executable).parent / "ladle")

PIPELINE = """\
pipeline: stream
destination: {destination}
resources:
  events:
    source:
      type: redis_stream
      url: {redis}
      stream: {stream}
      group: loaders
      block_ms: 100
      claim_idle_ms: {claim_idle_ms}
      max_deliveries: 2
    primary_key: [id]
    write: {write}
    batch_size: {batch_size}
    columns:
      id: {{type: bigint, required: true}}
      n: {{type: bigint, min: 0}}
"""


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client for the test's own keys."""
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def _pipeline(
    tmp_path: Path,
    *,
    destination: str,
    redis_url: str,
    stream: str,
    write: str = "merge",
    batch_size: int = 1000,
    claim_idle_ms: int = 1000,
) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        PIPELINE.format(
            destination=destination,
            redis=redis_url,
            stream=stream,
            write=write,
            batch_size=batch_size,
            claim_idle_ms=claim_idle_ms,
        )
    )
    return path


def _add(client: redis.Redis, stream: str, records: list[Any]) -> list[str]:
    """XADD each record as JSON (or a raw string as given) in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.xadd(stream, {"data": record if isinstance(record, str) else json.dumps(record)})
    return [i.decode() for i in pipe.execute()]


def _rows(url: str, table: str, **where: Any) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(table, where).to_dicts()
    finally:
        dest.close()


def _balanced(row: dict[str, Any]) -> bool:
    parts = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
    return bool(row["fetched"] == sum(row[k] for k in parts))


def _worker(path: Path, consumer: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LADLE, "worker", str(path), "--consumer", consumer, *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_batches(process: subprocess.Popen[str], count: int) -> None:
    """Read the worker's JSON log until it has loaded ``count`` batches."""
    assert process.stderr is not None
    seen = 0
    for line in process.stderr:
        if json.loads(line).get("event") == "batch loaded":
            seen += 1
            if seen == count:
                return
    pytest.fail(f"the worker ended after {seen} batches (exit {process.wait()})")


def test_two_workers_load_100000_messages_exactly_once(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Two workers in one group share 100,000 messages; each is loaded once, ledgers balance."""
    total = 100_000
    for start in range(0, total, 20_000):
        _add(client, redis_stream_key, [{"id": i, "n": i} for i in range(start, start + 20_000)])
    path = _pipeline(
        tmp_path, destination=postgres_url, redis_url=redis_url, stream=redis_stream_key
    )
    workers = [_worker(path, name, "--idle-exit", "2") for name in ("a", "b")]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    dest = connect(postgres_url)
    try:
        ids = dest.read("events", {}).get_column("id")
        ledger = dest.read(RUNS.name, {}).to_dicts()
    finally:
        dest.close()
    assert ids.len() == total
    assert ids.n_unique() == total
    assert len(ledger) == 2
    assert all(_balanced(row) and row["status"] == "succeeded" for row in ledger)
    assert sum(row["fetched"] for row in ledger) == total
    assert sum(row["inserted"] for row in ledger) == total
    assert all(row["fetched"] > 0 for row in ledger), "both workers took a share"
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 0


def test_killed_worker_messages_are_reclaimed_by_the_other(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """SIGKILL one worker mid-stream: the other claims its pending entries; the table is exact."""
    total = 30_000
    _add(client, redis_stream_key, [{"id": i, "n": i} for i in range(total)])
    path = _pipeline(
        tmp_path,
        destination=postgres_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=500,
        claim_idle_ms=1000,
    )
    victim = _worker(path, "victim")
    _wait_for_batches(victim, 3)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    pending = client.xpending(redis_stream_key, "loaders")
    survivor = _worker(path, "survivor", "--idle-exit", "3")
    _, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-2000:]
    ids = [row["id"] for row in _rows(postgres_url, "events")]
    assert sorted(ids) == list(range(total))
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 0
    if pending["pending"]:
        assert "claimed idle entries" in err
    ledger = _rows(postgres_url, RUNS.name)
    statuses = sorted(display_status(r["status"], r["host"], r["pid"]) for r in ledger)
    assert statuses == ["died", "succeeded"]
    assert all(_balanced(row) for row in ledger)
    assert sum(row["inserted"] for row in ledger) == total


def test_invalid_and_poison_messages_end_in_dead_letters_and_quarantine(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Invalid, malformed and poison entries are dead-lettered and quarantined, and nothing else."""
    good = _add(client, redis_stream_key, [{"id": i, "n": i, "size": i} for i in range(50)])
    invalid = _add(client, redis_stream_key, [{"id": 100 + i, "n": -1} for i in range(3)])
    malformed = _add(client, redis_stream_key, ["{not json", '["an", "array"]'])
    # `size` became a bigint column with the first batch: text in it cannot be loaded.
    poison = _add(client, redis_stream_key, [{"id": 200 + i, "size": "huge"} for i in range(2)])
    good += _add(client, redis_stream_key, [{"id": i, "n": i, "size": i} for i in range(50, 80)])
    path = _pipeline(
        tmp_path,
        destination=postgres_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=50,
        claim_idle_ms=100,
    )
    entry = Worker(Pipeline.from_yaml(path), WorkerOptions(idle_exit_s=1.5)).run()
    dead: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(f"{redis_stream_key}:dlq")  # type: ignore[assignment]
    dead_ids = {fields[b"id"].decode(): fields[b"reason"].decode() for _, fields in dead}
    expected = {i: "invalid" for i in invalid + malformed} | {i: "poison" for i in poison}
    assert dead_ids == expected
    assert len(dead) == len(expected)
    quarantine = _rows(postgres_url, QUARANTINE.name)
    rules = {row["position"]: json.loads(row["errors"])[0]["rule"] for row in quarantine}
    assert rules == (
        {i: "min" for i in invalid}
        | {i: "parse" for i in malformed}
        | {i: "poison" for i in poison}
    )
    poison_errors = [
        json.loads(r["errors"])[0]["message"] for r in quarantine if r["position"] in poison
    ]
    assert all(
        m.startswith("failed 2 times; last error: table 'events': column 'size'")
        for m in poison_errors
    )
    assert sorted(row["id"] for row in _rows(postgres_url, "events")) == list(range(80))
    counts = entry.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (87, 80, 7)
    assert counts.balanced
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 0
    assert len(good) == 80


def test_sigterm_finishes_the_batch_and_acknowledges(
    tmp_path: Path, duckdb_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """SIGTERM: the batch in hand is committed and acknowledged, then the worker exits 0."""
    _add(client, redis_stream_key, [{"id": i, "n": i} for i in range(50_000)])
    path = _pipeline(
        tmp_path,
        destination=duckdb_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        batch_size=500,
    )
    process = _worker(path, "polite")
    try:
        _wait_for_batches(process, 2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-2000:]
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 0
    group = client.xinfo_groups(redis_stream_key)[0]
    delivered = 50_000 - int(group["lag"])
    rows = _rows(duckdb_url, "events")
    (ledger,) = _rows(duckdb_url, RUNS.name)
    assert 0 < delivered < 50_000
    assert len(rows) == delivered == ledger["fetched"] == ledger["inserted"]
    assert ledger["status"] == "succeeded"


class _CrashBeforeAck(Worker):
    """A worker that dies between its commit and its acknowledgement, once."""

    def _acknowledge(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed between commit and ack")


def test_redelivery_after_commit_inserts_nothing_in_append_mode(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_stream_key: str, client: redis.Redis
) -> None:
    """Append keys rows by entry id: a batch delivered again after its commit is unchanged."""
    _add(client, redis_stream_key, [{"id": i % 10, "n": i} for i in range(40)])
    path = _pipeline(
        tmp_path,
        destination=postgres_url,
        redis_url=redis_url,
        stream=redis_stream_key,
        write="append",
        claim_idle_ms=200,
    )
    path.write_text(path.read_text().replace("    primary_key: [id]\n", ""))
    with pytest.raises(RuntimeError, match="killed between commit and ack"):
        _CrashBeforeAck(Pipeline.from_yaml(path), WorkerOptions(consumer="first")).run()
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 40
    time.sleep(0.3)
    entry = Worker(Pipeline.from_yaml(path), WorkerOptions(consumer="second", idle_exit_s=1)).run()
    assert (entry.counts.fetched, entry.counts.inserted, entry.counts.unchanged) == (40, 0, 40)
    rows = _rows(postgres_url, "events")
    assert len(rows) == 40
    assert len({row["_ladle_message_id"] for row in rows}) == 40
    assert client.xpending(redis_stream_key, "loaders")["pending"] == 0
