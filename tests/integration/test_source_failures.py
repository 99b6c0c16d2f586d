"""A source failing half-way: the run fails cleanly, committed chunks stay, the next run resumes.

An HTTP API that starts answering 500 and a SQL connection terminated by the server, both
while a chunked load is under way. The destination must hold exactly the committed
chunks, the ledger row says ``failed`` with the counts that are in the table, no source
connection is left open, and the next run continues after the last checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest

from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult
from tests.fake_api import FakeApi, Reply

TOTAL = 5_000


class _AtBatch:
    """An observer that does something once, when the n-th batch has been loaded."""

    def __init__(self, batch: int, action: Callable[[], None]) -> None:
        self.left = batch
        self.action = action

    def resource_started(self, resource: str) -> None:
        """Nothing to do."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """Count down; act at zero."""
        self.left -= 1
        if self.left == 0:
            self.action()

    def resource_finished(self, result: ResourceResult) -> None:
        """Nothing to do."""


def _ids(url: str, table: str) -> list[int]:
    dest = connect(url)
    try:
        return sorted(dest.read(table, {}).get_column("id").to_list())
    finally:
        dest.close()


def _ledger(url: str) -> list[tuple[str, int, int]]:
    dest = connect(url)
    try:
        rows = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    finally:
        dest.close()
    return [(r["status"], r["fetched"], r["inserted"]) for r in rows]


def test_http_500_storm_keeps_committed_chunks_and_resumes(
    tmp_path: Path, postgres_url: str
) -> None:
    """500s from page 7 on open the circuit; 1,000 committed rows stay; the rerun adds the rest."""
    records = [{"id": i, "v": f"r{i}"} for i in range(TOTAL)]
    with FakeApi(records, style="page", page_size=250) as api:
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(
            f"""\
pipeline: storm
resources:
  items:
    source:
      type: http
      url: {api.url}
      paginate: {{style: page, size_param: per_page, size: 250}}
      retry: {{attempts: 3, initial: 0.01, max: 0.05}}
      circuit_breaker: {{failures: 3}}
    write: append
    commit_every: 1000
    columns: {{id: bigint}}
"""
        )
        storm = _AtBatch(6, lambda: api.fail(*[Reply(500)] * 20))
        summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url), storm)
        (failed,) = summary.resources
        assert failed.status == "failed"
        assert failed.error == (
            "/api/tickets?page=7: circuit open after 3 consecutive failures: "
            f"GET {api.url} (last status 500); 1 chunk was committed (1,000 records, up to "
            "/api/tickets?page=4#249); the chunk in hand (500 records) was rolled back; the "
            "next run resumes after the last checkpoint"
        )
        assert _ids(postgres_url, "items") == list(range(1000))
        api.script.clear()
        resumed = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url))
        pages_after = [q.query.get("page") for q in api.requests[-17:]]
    assert resumed.ok
    assert _ids(postgres_url, "items") == list(range(TOTAL))
    assert _ledger(postgres_url) == [("failed", 1500, 1000), ("succeeded", 4000, 4000)]
    assert "1" not in pages_after, "pages already committed were not fetched again"


@pytest.fixture
def source_table(postgres_server: str) -> Iterator[tuple[str, str, str]]:
    """TOTAL rows in a schema of their own: (SQLAlchemy URL with an application_name, table,
    that application_name)."""
    schema = f"ladle_src_{uuid.uuid4().hex[:10]}"
    app = f"ladle_source_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".items (id bigint PRIMARY KEY, v text)')
        conn.execute(
            f"INSERT INTO \"{schema}\".items SELECT i, 'r' || i FROM generate_series(0, %s) i",
            [TOTAL - 1],
        )
    parts = urlsplit(postgres_server)
    query = "&".join(q for q in (parts.query, urlencode({"application_name": app})) if q)
    url = parts._replace(scheme="postgresql+psycopg", query=query).geturl()
    yield url, f"{schema}.items", app
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _backends(server: str, app: str) -> int:
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app]
        ).fetchone()
    return int(row[0]) if row else 0


def _terminate(server: str, app: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [app],
        )


def test_sql_connection_dropped_keeps_committed_chunks_and_resumes(
    tmp_path: Path, postgres_url: str, postgres_server: str, source_table: tuple[str, str, str]
) -> None:
    """The source's backend terminated mid-stream: a clean failure, then a resume; no leak."""
    url, table, app = source_table
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""\
pipeline: dropped
resources:
  items:
    source: {{type: sql, url: "{url}", table: {table}}}
    primary_key: [id]
    write: append
    batch_size: 250
    commit_every: 1000
"""
    )
    observer = _AtBatch(6, lambda: _terminate(postgres_server, app))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url), observer)
    (failed,) = summary.resources
    assert failed.status == "failed"
    assert failed.error is not None
    assert "terminat" in failed.error
    assert "(while reading the rows after row 1500)" in failed.error
    assert _ids(postgres_url, "items") == list(range(1000))
    assert _backends(postgres_server, app) == 0, "the run returned and closed its connections"
    resumed = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url))
    assert resumed.ok
    assert _ids(postgres_url, "items") == list(range(TOTAL))
    assert _ledger(postgres_url) == [("failed", 1500, 1000), ("succeeded", 4000, 4000)]
    assert _backends(postgres_server, app) == 0


def test_resources_of_one_database_share_one_engine_and_return_it(
    tmp_path: Path, postgres_url: str, postgres_server: str, source_table: tuple[str, str, str]
) -> None:
    """Two resources on one URL use one pool; nothing is left connected after the run."""
    url, table, app = source_table
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""\
pipeline: shared
resources:
  low:
    source: {{type: sql, url: "{url}", table: {table}, where: "id < 100"}}
  high:
    source: {{type: sql, url: "{url}", query: "SELECT * FROM {table} WHERE id >= 4900"}}
"""
    )
    seen: list[int] = []

    def count() -> None:
        seen.append(_backends(postgres_server, app))

    class _Watch(_AtBatch):
        def resource_finished(self, result: ResourceResult) -> None:
            count()

    summary = Pipeline.from_yaml(pipeline).run(
        RunOptions(destination=postgres_url), _Watch(0, count)
    )
    assert summary.ok
    assert [r.counts.inserted for r in summary.resources] == [100, 100]
    # One pooled connection, kept between the two resources, none after the run.
    assert seen == [1, 1]
    assert _backends(postgres_server, app) == 0
