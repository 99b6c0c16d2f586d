"""A failed load's message and ledger row say what committed and what did not, for real
failures: a PostgreSQL backend killed after committed chunks, a statement timeout, a
DuckDB file whose disk is full at commit. Every ledger row balances and its quarantine
count matches ``_ladle_quarantine``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult
from ladle.quarantine import QUARANTINE
from tests.tcp_proxy import TcpProxy

PIPELINE = """\
pipeline: truth
resources:
  events:
    source: {{type: file, path: events.jsonl}}
    primary_key: [id]
    write: {write}
    batch_size: 1000
    columns: {{id: bigint}}
{extra}"""
BAD = 7
"""Every 500th record from the 7th on has an id that is not a number: it is quarantined."""


def _events(path: Path, count: int, version: int = 1) -> None:
    with path.open("w") as handle:
        for i in range(count):
            key: int | str = f"x{i}" if i % 500 == BAD else i
            handle.write(json.dumps({"id": key, "v": version}) + "\n")


def _check_ledger(url: str) -> list[dict[str, object]]:
    """Every row balances (rolled_back included), a succeeded one rolled nothing back, and
    its quarantine count is the number of its rows in ``_ladle_quarantine``; the rows."""
    dest = connect(url)
    try:
        rows = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
        quarantine = dest.read(QUARANTINE.name, {})
    finally:
        dest.close()
    for row in rows:
        counts = Counts(**{k: int(row[k] or 0) for k in vars(Counts()) if k != "bytes_read"})
        assert counts.balanced, row
        if row["status"] == "succeeded":
            assert counts.rolled_back == 0, row
        held = (
            quarantine.filter(run_id=row["run_id"], resource=row["resource"]).height
            if quarantine.height
            else 0
        )
        assert counts.quarantined == held, row
    return rows


class _AtBatch:
    """An observer that does something once, when the n-th batch has been staged."""

    def __init__(self, batch: int, action: Callable[[], None]) -> None:
        self.batch, self.action, self.seen = batch, action, 0

    def resource_started(self, resource: str) -> None:
        """Nothing to do."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """On the n-th batch, act."""
        self.seen += 1
        if self.seen == self.batch:
            self.action()

    def resource_finished(self, result: ResourceResult) -> None:
        """Nothing to do."""


def _ids(url: str) -> list[int]:
    dest = connect(url)
    try:
        return sorted(dest.read("events", {}).get_column("id").to_list())
    finally:
        dest.close()


GOOD = [i for i in range(10_000) if i % 500 != BAD]


def test_connection_lost_after_committed_chunks(
    tmp_path: Path, postgres_server: str, postgres_url: str,
    write_pipeline: Callable[[str], Path],
) -> None:  # fmt: skip
    """pg_terminate_backend after two committed chunks: the error says the connection was
    lost, what committed (records, up to where) and what was rolled back; the ledger row
    says the same, and the next run resumes without a duplicate or a gap."""
    application_name = f"ladle_test_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={application_name}"
    pipeline = write_pipeline(PIPELINE.format(write="append", extra="    commit_every: 3000\n"))
    _events(tmp_path / "events.jsonl", 10_000)

    def terminate() -> None:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                [application_name],
            )

    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url), _AtBatch(7, terminate))
    (result,) = summary.resources
    assert result.status == "failed"
    match = re.fullmatch(
        r"PostgreSQL error while [^:]+: .+: the connection was lost; 2 chunks were committed "
        r"\(6,000 records, up to events.jsonl:6000\); the chunk in hand \(([\d,]+) records\) "
        r"was rolled back; the next run resumes after the last checkpoint",
        result.error or "",
    )
    assert match, result.error
    rolled_back = int(match.group(1).replace(",", ""))
    assert result.counts == Counts(
        fetched=6000 + rolled_back, inserted=5988, quarantined=12, rolled_back=rolled_back,
        bytes_read=result.counts.bytes_read,
    )  # fmt: skip
    assert _ids(postgres_url) == GOOD[:5988]
    (failed,) = _check_ledger(postgres_url)
    assert (failed["status"], failed["error"], failed["rolled_back"]) == (
        "failed", result.error, rolled_back
    )  # fmt: skip
    resumed = Pipeline.from_yaml(pipeline).run(RunOptions(destination=postgres_url))
    assert resumed.ok, resumed.resources[0].error
    assert _ids(postgres_url) == GOOD
    assert [r["status"] for r in _check_ledger(postgres_url)] == ["failed", "succeeded"]


@pytest.fixture
def slow_third_chunk(postgres_url: str) -> None:
    """An ``events`` table whose inserts sleep 3 s once 5,988 rows (two chunks) are in it."""
    server, schema = postgres_url.rsplit("?", 1)[0], postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, v bigint)')
        conn.execute(
            f'CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f'BEGIN IF (SELECT count(*) FROM "{schema}".events) >= 5988 THEN '
            "PERFORM pg_sleep(3); END IF; RETURN NULL; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER slow BEFORE INSERT ON "{schema}".events '
            f'FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".slow()'
        )


@pytest.mark.usefixtures("slow_third_chunk")
def test_statement_timeout_after_committed_chunks(
    tmp_path: Path, postgres_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A statement past ?statement_timeout= is named as such, not as a lost connection, with
    what committed before it."""
    pipeline = write_pipeline(PIPELINE.format(write="append", extra="    commit_every: 3000\n"))
    _events(tmp_path / "events.jsonl", 10_000)
    url = f"{postgres_url}&statement_timeout=1s"
    (result,) = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).resources
    schema = postgres_url.rsplit("schema=", 1)[1]
    assert result.error == (
        "PostgreSQL error while loading 'events': canceling statement due to statement "
        f'timeout CONTEXT: SQL statement "SELECT pg_sleep(3)" PL/pgSQL function {schema}.slow() '
        "line 1 at PERFORM: the statement ran longer than "
        "statement_timeout (1 s) and was canceled; raise ?statement_timeout= in the "
        "destination URL (0: no limit); 2 chunks were committed (6,000 records, up to "
        "events.jsonl:6000); the chunk in hand (1,000 records) was rolled back; the next run "
        "resumes after the last checkpoint"
    )
    assert result.counts == Counts(
        fetched=7000, inserted=5988, quarantined=12, rolled_back=1000,
        bytes_read=result.counts.bytes_read,
    )  # fmt: skip
    assert _ids(postgres_url) == GOOD[:5988]
    assert [r["status"] for r in _check_ledger(postgres_url)] == ["failed"]


@contextlib.contextmanager
def _full_disk(root: Path) -> Iterator[tuple[Path, str]]:
    """A directory on a 4 MB tmpfs, and DuckDB settings that checkpoint at every commit:
    a commit that does not fit fails DuckDB's checkpoint, a FATAL error. Without the right
    to mount (not root), DuckDB's own ``debug_checkpoint_abort`` fails the checkpoint the
    same way."""
    mount = root / "small"
    mount.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
            capture_output=True, check=False,
        ).returncode == 0
    )  # fmt: skip
    # On the tmpfs every commit checkpoints; with the debug flag only the load's (its WAL
    # passes 1 MB), since the flag fails every checkpoint, the ledger's too.
    try:
        yield mount, "checkpoint_threshold=" + ("1KB" if mounted else "1MB")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_duckdb_fatal_error_at_commit_is_recorded_as_failed(tmp_path: Path) -> None:
    """A DuckDB FATAL while checkpointing a merge (disk full): `ladle run` exits 1, the
    summary shows nothing that did not commit, and the ledger row says failed (DuckDB is
    reopened to write it), not running."""
    with _full_disk(tmp_path) as (mount, settings):
        path = mount / "truth.duckdb"
        url = f"duckdb:///{path}?{settings}"
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(PIPELINE.format(write="merge", extra=""))
        _events(tmp_path / "events.jsonl", 1000, version=1)
        assert Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).ok
        _events(tmp_path / "events.jsonl", 60_000, version=2)
        if os.path.ismount(mount):
            free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
            (mount / "filler").write_bytes(b"\0" * max(free - 700_000, 0))
        else:
            url += "&debug_checkpoint_abort=before_header"
        ladle = Path(sys.executable).parent / "ladle"
        run = subprocess.run(
            [str(ladle), "run", str(pipeline), "--destination", url, "--wide"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        lines = run.stdout.splitlines()
        header = next(line for line in lines if line.startswith("┃"))
        (row,) = [line for line in lines if line.startswith("│ events")]
        names = [cell.strip() for cell in header.strip("┃").split("┃")]
        cells = dict(zip(names, (cell.strip() for cell in row.strip("│").split("│")), strict=True))
        assert {k: cells[k] for k in ("status", "fetched", "rolled back")} == {
            "status": "failed", "fetched": "60,000", "rolled back": "60,000"
        }  # fmt: skip
        counts = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
        assert {cells[k] for k in counts} == {"0"}
        with contextlib.suppress(FileNotFoundError):
            (mount / "filler").unlink()
        rows = _check_ledger(f"duckdb:///{path}")
        assert _ids(f"duckdb:///{path}") == [i for i in range(1000) if i % 500 != BAD]
    failed = rows[-1]
    assert (failed["status"], failed["fetched"], failed["rolled_back"]) == (
        "failed",
        60_000,
        60_000,
    )
    assert re.fullmatch(
        r"DuckDB error while committing 'events': FATAL Error: Failed to create checkpoint "
        r"because of error: .+ \(DuckDB invalidated the database after this fatal error; "
        r"ladle opens it again to write the ledger\); nothing of this load was committed",
        str(failed["error"]),
    ), failed["error"]


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_an_old_ledger_gets_the_rolled_back_column(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A ``_ladle_runs`` made by an older ladle gains ``rolled_back`` when a destination opens."""
    url: str = request.getfixturevalue(f"{kind}_url")
    old = ", ".join(f"{name} {t.postgres}" for name, t in RUNS.columns if name != "rolled_back")
    if kind == "duckdb":
        import duckdb

        with duckdb.connect(url.removeprefix("duckdb:///")) as con:
            con.execute(f"CREATE TABLE _ladle_runs ({old})")
    else:
        server, schema = url.rsplit("?", 1)[0], url.rsplit("schema=", 1)[1]
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(f'CREATE TABLE "{schema}"._ladle_runs ({old})')
    dest = connect(url)
    try:
        assert "rolled_back" in dest.read(RUNS.name, {}).columns
    finally:
        dest.close()


def test_a_commit_that_lands_although_the_connection_is_lost_is_told_as_such(
    tmp_path: Path, postgres_server: str, postgres_url: str,
    write_pipeline: Callable[[str], Path],
) -> None:  # fmt: skip
    """The connection drops while the server is still committing: the commit lands, so the
    run reads the ledger row that went with it back and says succeeded, with a notice,
    instead of overwriting that row with a failed one."""
    server, schema = postgres_url.rsplit("?", 1)[0], postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, v bigint)')
        # A deferred constraint trigger runs inside COMMIT: it holds the commit for 2 s.
        conn.execute(
            f'CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $$ '
            "BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$"
        )
        conn.execute(
            f'CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON "{schema}".events '
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = 0) "
            f'EXECUTE FUNCTION "{schema}".slow()'
        )
    application_name = f"ladle_test_{uuid.uuid4().hex[:8]}"
    pipeline = write_pipeline(PIPELINE.format(write="append", extra=""))
    _events(tmp_path / "events.jsonl", 100)
    port = urlsplit(server).port or 5432
    with TcpProxy(port) as proxy:
        url = urlunsplit(urlsplit(postgres_url)._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))
        url += f"&application_name={application_name}"

        def drop_while_committing() -> None:
            with psycopg.connect(server, autocommit=True) as conn:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    row = conn.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                        "AND query = 'COMMIT' AND wait_event = 'PgSleep'",
                        [application_name],
                    ).fetchone()
                    if row:
                        proxy.stop()
                        proxy.start()
                        return
                    time.sleep(0.05)

        dropper = threading.Thread(target=drop_while_committing)
        dropper.start()
        try:
            (result,) = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).resources
        finally:
            dropper.join()
    assert result.status == "succeeded", result.error
    assert result.notices[-1].startswith(
        "committing reported an error, but the commit landed (the ledger row written with the "
        "data says so): PostgreSQL error while committing 'events': "
    )
    assert result.notices[-1].endswith(": the connection was lost")
    (row,) = _check_ledger(postgres_url)
    assert (row["status"], row["inserted"], row["quarantined"]) == ("succeeded", 99, 1)
    assert _ids(postgres_url) == [i for i in range(100) if i != BAD]
