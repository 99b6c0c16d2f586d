"""The tutoring example end to end: generator, ``ladle serve``, post.py and ``ladle worker``s
against real Redis and PostgreSQL; every count matches the manifest, every derived value is
recomputed in Python, and the dead-letter streams hold exactly the quarantined records."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE
from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "tutoring"
LADLE = str(Path(sys.executable).parent / "ladle")
TOKEN = "tutoring-test-token"  # noqa: S105 - the token the test server is started with
ENTITIES = ("tutors", "students", "sessions", "feedback")
KEYS = {
    "tutors": "tutor_id",
    "students": "student_id",
    "sessions": "session_id",
    "feedback": "feedback_id",
}
Record = dict[str, Any]


generator = load_example("tutoring", "generate")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    """A running ``ladle serve`` and what the example's scripts and workers are started with."""

    ingest_url: str
    redis_url: str
    postgres_url: str
    stream_prefix: str
    environment: dict[str, str]


@pytest.fixture
def stack(redis_url: str, postgres_url: str) -> Iterator[Stack]:
    """``ladle serve`` for the example on a free port, its streams deleted afterwards."""
    prefix = f"ladle-test:tutoring-{uuid.uuid4().hex[:10]}"
    environment = os.environ | {
        "LADLE_INGEST_TOKEN": TOKEN,
        "REDIS_URL": redis_url,
        "TUTORING_STREAM_PREFIX": prefix,
        "LADLE_DESTINATION": postgres_url,
    }
    port = _free_port()
    process = subprocess.Popen(
        [LADLE, "serve", str(EXAMPLE / "pipeline.yaml"), "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(process, url)
        yield Stack(url, redis_url, postgres_url, prefix, environment)
    finally:
        process.terminate()
        process.communicate(timeout=30)
        with redis.Redis.from_url(redis_url) as client:
            client.delete(*(f"{prefix}:{e}{s}" for e in ENTITIES for s in ("", ":dlq")))


def _wait_for_health(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"ladle serve exited {process.returncode}: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("ladle serve did not answer /health within 30 s")
        time.sleep(0.2)


def _post(
    data: Path, url: str, environment: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "post.py"), "--url", url, "--data", str(data), *extra],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _workers(resources: list[tuple[str, str]], stack: Stack) -> None:
    """Run ``ladle worker`` for each (resource, consumer) at once, until their streams are empty."""
    processes = [
        subprocess.Popen(
            [LADLE, "worker", str(EXAMPLE / "pipeline.yaml"), "--resource", resource,
             "--consumer", consumer, "--destination", stack.postgres_url, "--idle-exit", "1"],
            env=stack.environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for resource, consumer in resources
    ]  # fmt: skip
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]


def _table(url: str, table: str) -> list[Record]:
    dest = connect(url)
    try:
        return dest.read(table, {}).to_dicts()
    finally:
        dest.close()


# ---------------------------------------------------------------- derived values, in Python


def _moment(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp)


def _tutor_fields(record: Record, today: date) -> Record:
    tenure = (today - date.fromisoformat(record["hired_at"])).days
    level = "junior" if tenure < 90 else "mid" if tenure < 365 else "senior"
    active = _moment(record["last_active_at"])
    return {
        "tenure_days": tenure,
        "is_new_tutor": tenure < 30,
        "experience_level": level,
        "subject_count": len(record["subjects"]),
        "is_active_today": active is not None and active.astimezone(UTC).date() == today,
    }


def _session_fields(record: Record) -> Record:
    scheduled = _moment(record["scheduled_start"])
    start, end = _moment(record["actual_start"]), _moment(record["actual_end"])
    assert scheduled is not None
    hour = scheduled.hour
    part = (
        "morning" if 5 <= hour < 12
        else "afternoon" if 12 <= hour < 17
        else "evening" if 17 <= hour < 22
        else "night"
    )  # fmt: skip
    return {
        "is_weekend": scheduled.isoweekday() >= 6,
        "time_of_day": part,
        "is_late_start": None if start is None else start - scheduled > timedelta(minutes=5),
        "actual_duration_minutes": (
            None if start is None or end is None else (end - start).total_seconds() / 60
        ),
        "week_of_year": scheduled.isocalendar().week,
        "month_of_year": scheduled.month,
    }


def _feedback_fields(record: Record) -> Record:
    rated = [
        record[c]
        for c in ("clarity", "patience", "knowledge", "engagement", "punctuality")
        if record[c] is not None
    ]
    submitted, ended = _moment(record["submitted_at"]), _moment(record["session_end"])
    assert submitted is not None
    assert ended is not None
    return {
        "is_positive": record["rating"] >= 4,
        "is_poor": record["rating"] < 3,
        "avg_category_rating": statistics.fmean(rated) if rated else None,
        "category_variance": statistics.pvariance(rated) if rated else None,
        "has_text_feedback": bool((record["comment"] or "").strip()),
        "feedback_delay_hours": (submitted - ended).total_seconds() / 3600,
    }


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    return bool(actual == expected)


def _assert_derived(
    entity: str, rows: list[Record], source: dict[int, Record], days: set[date]
) -> None:
    """Every loaded row's derived columns equal the values computed here from its record."""
    key = KEYS[entity]
    for row in rows:
        record = source[row[key]]
        if entity == "tutors":
            # The worker read current_date; the test's clock may have passed midnight since.
            candidates = [_tutor_fields(record, day) for day in sorted(days)]
        elif entity == "sessions":
            candidates = [_session_fields(record)]
        elif entity == "feedback":
            candidates = [_feedback_fields(record)]
        else:
            return  # students have no derived fields
        got = {name: row[name] for name in candidates[0]}
        matches = any(all(_same(got[n], want[n]) for n in want) for want in candidates)
        assert matches, (entity, row[key], got, candidates)


# ---------------------------------------------------------------- the tests


def test_tutoring_streams_load_postgres_exactly_as_the_manifest_says(
    tmp_path: Path, stack: Stack
) -> None:
    """Invalid records are refused at ingest, orphans quarantined by the fk check and
    dead-lettered, the rest loaded with correct derived fields; every ledger row balances."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    data, manifest = generator.generate(seed=3, tutors=20, students=60, sessions=400, now=now)
    generator.write(tmp_path / "data", data, manifest)

    # Posting: the records the endpoint refuses are exactly the invalid ones.
    posted = _post(
        tmp_path / "data", stack.ingest_url, stack.environment, "--batch", "100", "--json"
    )
    assert posted.returncode == 0, posted.stderr
    summary = json.loads(posted.stdout)
    for entity in ENTITIES:
        counts, key = manifest[entity], KEYS[entity]
        refused = [data[entity][line - 1][key] for line in summary[entity]["rejected_lines"]]
        assert sorted(refused) == counts["ids"]["rejected"]
        assert summary[entity]["sent"] == counts["records"]
        assert summary[entity]["accepted"] == counts["streamed"]
        assert summary[entity]["rejected"] == counts["rejected"]

    # Loading: tutors and students first, since the fk checks read them from the destination;
    # sessions by two workers sharing the consumer group.
    days = {datetime.now(UTC).date()}
    _workers([("tutors", "t1"), ("students", "s1")], stack)
    _workers([("sessions", "a"), ("sessions", "b"), ("feedback", "f1")], stack)
    days.add(datetime.now(UTC).date())

    ledger = _table(stack.postgres_url, RUNS.name)
    quarantine = _table(stack.postgres_url, QUARANTINE.name)
    for entity in ENTITIES:
        source = {r[KEYS[entity]]: r for r in data[entity]}
        rows = _table(stack.postgres_url, entity)
        counts = manifest[entity]
        _assert_loaded(entity, rows, source, counts)
        _assert_ledger(entity, [r for r in ledger if r["resource"] == entity], counts)
        held = [r for r in quarantine if r["resource"] == entity]
        _assert_quarantined(entity, held, counts)
        _assert_dead_letters(entity, held, stack)
        _assert_derived(entity, rows, source, days)


def _orphans(counts: dict[str, Any]) -> set[int]:
    return {i for name, ids in counts["ids"].items() if name != "rejected" for i in ids}


def _assert_loaded(
    entity: str, rows: list[Record], source: dict[int, Record], counts: dict[str, Any]
) -> None:
    """The table holds every streamed record but the orphans, once each."""
    expected = set(source) - set(counts["ids"]["rejected"]) - _orphans(counts)
    assert sorted(r[KEYS[entity]] for r in rows) == sorted(expected)
    assert len(rows) == counts["loaded"]


def _assert_ledger(entity: str, runs: list[Record], counts: dict[str, Any]) -> None:
    """One ledger row per worker session, each balanced; together they match the manifest."""
    assert len(runs) == (2 if entity == "sessions" else 1)
    for run in runs:
        assert run["status"] == "succeeded"
        assert run["fetched"] == (
            run["inserted"] + run["updated"] + run["unchanged"] + run["deduplicated"]
            + run["quarantined"]
        )  # fmt: skip
    totals = {k: sum(r[k] for r in runs) for k in ("fetched", "inserted", "quarantined")}
    assert totals == {
        "fetched": counts["streamed"],
        "inserted": counts["loaded"],
        "quarantined": counts["quarantined"],
    }


def _assert_quarantined(entity: str, held: list[Record], counts: dict[str, Any]) -> None:
    """The quarantine holds the orphans, each once, with its fk rule, field and message."""
    key = KEYS[entity]
    errors = [json.loads(r["errors"]) for r in held]
    assert all(len(e) == 1 for e in errors)
    reasons = Counter(f"{e[0]['rule']}:{e[0]['field']}" for e in errors)
    assert dict(reasons) == counts["quarantined_by_reason"]
    for row, (error,) in zip(held, errors, strict=True):
        record = json.loads(row["raw"])
        field = error["field"]
        table = "tutors" if field == "tutor_id" else "students"
        assert error["message"] == f"{field} {record[field]} is not in {table}.{field}"
    assert sorted(json.loads(r["raw"])[key] for r in held) == sorted(_orphans(counts))


def _assert_dead_letters(entity: str, held: list[Record], stack: Stack) -> None:
    """The dead-letter stream holds exactly the quarantined entries; nothing is pending."""
    key = KEYS[entity]
    stream = f"{stack.stream_prefix}:{entity}"
    with redis.Redis.from_url(stack.redis_url) as client:
        dead: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(f"{stream}:dlq")
        assert client.xpending(stream, "ladle")["pending"] == 0
    letters = {f[b"id"].decode(): json.loads(f[b"raw"])[key] for _, f in dead}
    assert len(letters) == len(dead) == len(held)
    assert letters == {r["position"]: json.loads(r["raw"])[key] for r in held}
    assert all(f[b"reason"] == b"invalid" for _, f in dead)


def test_post_exits_nonzero_on_transport_errors(tmp_path: Path, stack: Stack) -> None:
    """A wrong token or no server at all stops post.py with exit code 1 and says why."""
    data, manifest = generator.generate(
        seed=1, tutors=5, students=5, sessions=20, now=datetime.now(UTC)
    )
    generator.write(tmp_path / "data", data, manifest)
    wrong = stack.environment | {"LADLE_INGEST_TOKEN": "not-the-token"}
    refused = _post(tmp_path / "data", stack.ingest_url, wrong)
    assert refused.returncode == 1
    assert refused.stderr.startswith("post.py: tutors: POST /ingest/tutors: HTTP 401: ")
    closed = f"http://127.0.0.1:{_free_port()}"
    unreachable = _post(tmp_path / "data", closed, stack.environment)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(
        f"post.py: tutors: POST /ingest/tutors: cannot reach {closed}: "
    )
