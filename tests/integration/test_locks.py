"""A PostgreSQL table locked by another session: ladle says who holds it, and stops waiting."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.destinations.postgres import PostgresDestination
from ladle.errors import DestinationError
from ladle.ledger import RUNS

PIPELINE = """\
pipeline: locked
resources:
  events:
    source: {type: file, path: events.jsonl}
    primary_key: [id]
    write: merge
    batch_size: 1000
"""
HOLDER = "ladle-test-holder"


def _events(path: Path, count: int, version: int) -> None:
    path.write_text("".join(json.dumps({"id": i, "v": version}) + "\n" for i in range(count)))


@pytest.fixture
def locked(postgres_url: str) -> Iterator[Callable[[], psycopg.Connection[object]]]:
    """Hold ``LOCK TABLE events IN ACCESS EXCLUSIVE MODE`` in a session left idle in
    transaction, as a forgotten psql would; the session ends with the test."""
    server = postgres_url.rsplit("?", 1)[0]
    schema = postgres_url.rsplit("schema=", 1)[1]
    sessions: list[psycopg.Connection[object]] = []

    def lock() -> psycopg.Connection[object]:
        conn: psycopg.Connection[object] = psycopg.connect(server, application_name=HOLDER)
        conn.execute(f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE')
        sessions.append(conn)
        return conn

    yield lock
    for conn in sessions:
        conn.close()


def test_lock_timeout_names_the_holder_and_commits_nothing(
    tmp_path: Path,
    postgres_url: str,
    write_pipeline: Callable[[str], Path],
    locked: Callable[[], psycopg.Connection[object]],
) -> None:
    """With the table locked, the run logs who holds the lock, gives up after lock_timeout
    with a message naming the holder, and leaves the table and a balanced ledger row."""
    pipeline = write_pipeline(PIPELINE)
    _events(tmp_path / "events.jsonl", 100, version=1)
    assert Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url)).ok
    _events(tmp_path / "events.jsonl", 3000, version=2)
    holder = locked()
    pid = holder.info.backend_pid
    schema = postgres_url.rsplit("schema=", 1)[1]
    url = f"{postgres_url}&lock_timeout=4s"
    with capture_logs() as logs:
        (result,) = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).resources
    assert result.status == "failed"
    held_by = (
        re.escape(f"pid {pid} ({HOLDER}, idle in transaction for ")
        + r"\d+"
        + re.escape(f' s: LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE)')
    )
    message = (
        "PostgreSQL error while loading 'events': canceling statement due to lock timeout: "
        f"waited 4 s for a lock on table {schema}.events held by HOLDER; end that session, "
        "or raise ?lock_timeout= in the destination URL; nothing of this load was "
        "committed; run it again"
    )
    assert re.fullmatch(re.escape(message).replace("HOLDER", held_by), result.error or ""), (
        result.error
    )
    waits = [e for e in logs if e["event"] == "waiting for a lock"]
    assert len(waits) == 1
    assert waits[0]["lock"] == f"{schema}.events"
    assert waits[0]["lock_timeout"] == "4 s"
    assert re.fullmatch(held_by, waits[0]["held_by"][0])
    holder.rollback()
    dest = connect(postgres_url)
    try:
        assert set(dest.read("events", {}).get_column("v")) == {1}
        (first, failed) = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    finally:
        dest.close()
    assert (failed["status"], failed["error"]) == ("failed", result.error)
    # The first batch waited: it was fetched, and rolled back.
    assert (failed["fetched"], failed["rolled_back"], failed["inserted"]) == (1000, 1000, 0)
    assert first["rolled_back"] == 0


def test_a_lock_released_in_time_is_logged_and_the_run_succeeds(
    tmp_path: Path,
    postgres_url: str,
    write_pipeline: Callable[[str], Path],
    locked: Callable[[], psycopg.Connection[object]],
) -> None:
    """A lock held until the run has said who holds it (after 5 s): the run logs the
    holder while it waits, then loads."""
    pipeline = write_pipeline(PIPELINE)
    _events(tmp_path / "events.jsonl", 100, version=1)
    assert Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url)).ok
    _events(tmp_path / "events.jsonl", 200, version=2)
    holder = locked()
    with capture_logs() as logs:

        def release_once_told() -> None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if any(e["event"] == "waiting for a lock" for e in list(logs)):
                    break
                time.sleep(0.1)
            holder.rollback()

        release = threading.Thread(target=release_once_told)
        release.start()
        try:
            url = f"{postgres_url}&lock_timeout=20s"
            summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
        finally:
            release.join()
    assert summary.ok, summary.resources[0].error
    counts = summary.resources[0].counts
    assert (counts.inserted, counts.updated, counts.rolled_back) == (100, 100, 0)
    waits = [e for e in logs if e["event"] == "waiting for a lock"]
    assert [e["held_by"][0].split(" (")[0] for e in waits] == [f"pid {holder.info.backend_pid}"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("lock_timeout=30", "?lock_timeout='30' in the destination URL is not a duration"),
        ("statement_timeout=soon", "?statement_timeout='soon' in the destination URL is not"),
    ],
)
def test_a_timeout_without_a_unit_is_refused(postgres_url: str, query: str, message: str) -> None:
    """A bare number would be seconds to ladle and milliseconds to PostgreSQL: refused."""
    with pytest.raises(DestinationError) as error:
        connect(f"{postgres_url}&{query}")
    assert str(error.value).startswith(message)
    assert str(error.value).endswith(
        "write it with a unit (500ms, 30s, 5min, 1h), or 0 for no limit"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", ("1min", "0")), ("&lock_timeout=500ms&statement_timeout=2min", ("500ms", "2min"))],
    ids=["defaults", "from the URL"],
)
def test_every_session_runs_under_the_timeouts(
    postgres_url: str, query: str, expected: tuple[str, str]
) -> None:
    """lock_timeout is 60 s and statement_timeout off unless the URL sets them."""
    dest = connect(postgres_url + query)
    assert isinstance(dest, PostgresDestination)
    try:
        with dest._pool.connection() as conn:  # the session's own settings
            row = conn.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            ).fetchone()
    finally:
        dest.close()
    assert row == expected


def test_a_statement_timeout_while_waiting_for_a_lock_names_the_holder(
    tmp_path: Path,
    postgres_url: str,
    write_pipeline: Callable[[str], Path],
    locked: Callable[[], psycopg.Connection[object]],
) -> None:
    """With no lock_timeout, statement_timeout ends the wait: the error says it was the
    statement timeout, and what the statement was waiting for."""
    pipeline = write_pipeline(PIPELINE)
    _events(tmp_path / "events.jsonl", 100, version=1)
    assert Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url)).ok
    _events(tmp_path / "events.jsonl", 100, version=2)
    holder = locked()
    schema = postgres_url.rsplit("schema=", 1)[1]
    url = f"{postgres_url}&lock_timeout=0&statement_timeout=3s"
    (result,) = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).resources
    message = (
        "PostgreSQL error while loading 'events': canceling statement due to statement timeout: "
        f"the statement ran longer than statement_timeout (3 s) waiting for a lock on table "
        f"{schema}.events held by pid {holder.info.backend_pid} ({HOLDER}, idle in transaction "
        "for SECONDS s: "
        f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE) and was canceled; raise '
        "?statement_timeout= in the destination URL (0: no limit); nothing of this load was "
        "committed"
    )
    pattern = re.escape(message).replace("SECONDS", r"\d+")
    assert re.fullmatch(pattern, result.error or ""), result.error
