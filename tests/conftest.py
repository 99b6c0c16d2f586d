"""Shared fixtures: real DuckDB files and a real PostgreSQL server, never mocks.

PostgreSQL is found in this order: ``LADLE_TEST_POSTGRES_URL``; a server answering on
127.0.0.1:5432 (user postgres, database test); a throwaway server started here with
``initdb``/``pg_ctl``. If none of these works the tests fail with what to install:
they are never skipped. Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
INSTALL_HINT = (
    "PostgreSQL is needed for these tests: set LADLE_TEST_POSTGRES_URL to a server ladle may "
    "create schemas in, run one on 127.0.0.1:5432 (user postgres, trust auth, database test), "
    "or install the server binaries so the tests can start their own "
    "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)"
)


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    """A DuckDB destination URL for a file that exists only for this test."""
    return f"duckdb:///{tmp_path / 'test.duckdb'}"


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline file into the test's directory and return its path."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


# ---------------------------------------------------------------- PostgreSQL


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, for machines without a server."""

    def __init__(self) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="ladle-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        # initdb refuses to run as root; run the cluster as the postgres user then.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.fail(INSTALL_HINT + " (as root, `runuser` is needed too)", pytrace=False)
            self.prefix = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -F"
        log = str(self.root / "log")
        self._run([pg_ctl, "-D", str(self.data), "-o", options, "-w", "-l", log, "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {result.stderr.strip()}\n{INSTALL_HINT}")

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create schemas in."""
    configured = os.environ.get("LADLE_TEST_POSTGRES_URL")
    if configured:
        if not _answers(configured):
            pytest.fail(f"LADLE_TEST_POSTGRES_URL does not answer: {configured}", pytrace=False)
        yield configured
        return
    if os.environ.get("LADLE_TEST_POSTGRES") != "throwaway" and _answers(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
        return
    server = _ThrowawayPostgres()
    deadline = time.monotonic() + 30
    while not _answers(server.url):
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the throwaway PostgreSQL did not start\n{INSTALL_HINT}", pytrace=False)
        time.sleep(0.2)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A destination URL with a schema of its own, dropped after the test."""
    schema = f"ladle_test_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["duckdb", "postgres"])
def destination_url(request: pytest.FixtureRequest) -> str:
    """Each destination in turn: behaviour tests run against all of them."""
    fixture = "duckdb_url" if request.param == "duckdb" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url
