"""PostgreSQL failing under a run: the run fails cleanly and the next one succeeds."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.destinations import connect
from ladle.errors import DestinationError
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult

PIPELINE = """\
pipeline: terminate
resources:
  events:
    source: {type: file, path: events.jsonl}
    primary_key: [id]
    write: merge
    batch_size: 1000
"""


class _TerminateAfter:
    """An observer that has the server kill ladle's connections after a few batches."""

    def __init__(self, server: str, batches: int, application_name: str) -> None:
        self.server = server
        self.application_name = application_name
        self.batches = batches
        self.seen = 0

    def resource_started(self, resource: str) -> None:
        """Nothing to do at the start."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """On the n-th batch, terminate every backend ladle holds."""
        self.seen += 1
        if self.seen == self.batches:
            with psycopg.connect(self.server, autocommit=True) as conn:
                # Only this test's connections: other ladle runs may share the server.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    [self.application_name],
                )

    def resource_finished(self, result: ResourceResult) -> None:
        """Nothing to do at the end."""


def test_terminated_connection_fails_run_and_next_run_succeeds(
    tmp_path: Path, postgres_server: str, postgres_url: str,
    write_pipeline: Callable[[str], Path],
) -> None:  # fmt: skip
    """pg_terminate_backend mid-load: clear failure, target unchanged, ledger failed, rerun ok."""
    application_name = f"ladle_test_{uuid.uuid4().hex[:8]}"
    postgres_url = f"{postgres_url}&application_name={application_name}"
    pipeline = write_pipeline(PIPELINE)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": i, "v": 1}) + "\n" for i in range(500)))
    assert Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url)).ok
    events.write_text("".join(json.dumps({"id": i, "v": 2}) + "\n" for i in range(20_000)))
    observer = _TerminateAfter(postgres_server, 3, application_name)
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url), observer)
    result = summary.resources[0]
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("PostgreSQL error while ")
    # Which of the two the client sees depends on whether it was writing or waiting.
    assert re.search(
        "terminating connection due to administrator command|server closed the connection",
        result.error,
    )
    assert result.error.endswith(
        ": the connection was lost; nothing of this load was committed; run it again"
    )
    dest = connect(postgres_url)
    rows = dest.read("events", {})
    ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    dest.close()
    assert rows.height == 500
    assert set(rows.get_column("v").to_list()) == {1}
    assert [r["status"] for r in ledger] == ["succeeded", "failed"]
    assert ledger[1]["error"] == result.error
    rerun = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url))
    counts = rerun.resources[0].counts
    assert rerun.ok
    assert counts.balanced
    assert (counts.inserted, counts.updated, counts.unchanged) == (19_500, 500, 0)


def test_password_never_reaches_ledger_or_errors(
    tmp_path: Path, write_pipeline: Callable[[str], Path]
) -> None:
    """A DSN password stays out of the error, the summary and the log (server refuses)."""
    pipeline = write_pipeline(PIPELINE)
    (tmp_path / "events.jsonl").write_text('{"id": 1}\n')
    url = "postgresql://ladle:Sup3rSecret@127.0.0.1:1/nowhere?connect_timeout=1"
    with pytest.raises(DestinationError) as info:
        Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
    assert "Sup3rSecret" not in str(info.value)
    assert str(info.value).startswith(
        "PostgreSQL error while connecting to postgresql://ladle:***@127.0.0.1:1/nowhere"
    )


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (
            "CONSTRAINT v_is_not_private CHECK (v <> 'private-4711')",
            'new row for relation "events" violates check constraint "v_is_not_private" '
            "DETAIL: Failing row contains (…). CONTEXT: COPY events, line 4",
        ),
        (
            "CONSTRAINT v_is_unique UNIQUE",
            'duplicate key value violates unique constraint "v_is_unique" '
            "DETAIL: Key (v)=(…) already exists. CONTEXT: COPY events, line 5",
        ),
    ],
    ids=["check", "unique"],
)
def test_a_copy_failure_keeps_where_not_the_row(
    tmp_path: Path,
    postgres_url: str,
    write_pipeline: Callable[[str], Path],
    constraint: str,
    message: str,
) -> None:
    """A row the table refuses fails the run naming the COPY line; the row's data stays out."""
    schema = postgres_url.rsplit("schema=", 1)[1]
    server = postgres_url.rsplit("?", 1)[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, v text {constraint})')
    pipeline = write_pipeline(PIPELINE)
    rows = [{"id": i, "v": "private-4711" if i in (3, 4) else f"ok {i}"} for i in range(6)]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with capture_logs() as logs:
        summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url))
    (result,) = summary.resources
    assert result.status == "failed"
    assert result.error is not None
    assert "private-4711" not in repr(logs)
    assert re.fullmatch(
        f"PostgreSQL error while [^:]+: {re.escape(message)}; nothing of this load was committed",
        result.error,
    ), result.error
    dest = connect(postgres_url)
    ledger = dest.read(RUNS.name, {}).to_dicts()
    dest.close()
    assert [r["error"] for r in ledger] == [result.error]
