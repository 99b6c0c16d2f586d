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
import structlog

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
INSTALL_HINT = (
    "PostgreSQL is needed for these tests: set LADLE_TEST_POSTGRES_URL to a server ladle may "
    "create schemas in, run one on 127.0.0.1:5432 (user postgres, trust auth, database test), "
    "or install the server binaries so the tests can start their own "
    "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)"
)


@pytest.fixture(autouse=True)
def _logging_as_configured_by_nobody() -> Iterator[None]:
    """Each test starts with structlog's defaults: a command that configured logging (its
    level, say) must not decide what a later test's ``capture_logs`` sees."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


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
    """A PostgreSQL cluster in a temporary directory, for machines without a server.

    ``host_auth`` is how TCP clients log in (``scram-sha-256``: with a password); over its
    socket (``socket_url``) everyone is trusted.
    """

    def __init__(self, *, host_auth: str = "trust") -> None:
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
        auth = ["-A", "trust", "--auth-host", host_auth]
        self._run([initdb, "-D", str(self.data), *auth, "-U", "postgres", "--no-sync"])
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -F"
        log = str(self.root / "log")
        self._run([pg_ctl, "-D", str(self.data), "-o", options, "-w", "-l", log, "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.socket_url = f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

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


@pytest.fixture(scope="session")
def password_postgres() -> Iterator[_ThrowawayPostgres]:
    """A throwaway PostgreSQL that checks passwords over TCP (`socket_url` is trusted)."""
    server = _ThrowawayPostgres(host_auth="scram-sha-256")
    deadline = time.monotonic() + 30
    while not _answers(server.socket_url):
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the throwaway PostgreSQL did not start\n{INSTALL_HINT}", pytrace=False)
        time.sleep(0.2)
    try:
        yield server
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


# ---------------------------------------------------------------- Redis

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
REDIS_INSTALL_HINT = (
    "Redis is needed for these tests: set LADLE_TEST_REDIS_URL to a server the tests may "
    "write keys to, run one on 127.0.0.1:6379, or install redis-server so the tests can "
    "start their own (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _throwaway_redis() -> tuple[subprocess.Popen[bytes], Path, str]:
    """A redis-server on a free port that keeps nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(REDIS_INSTALL_HINT, pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="ladle-redis-"))
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, root, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server the tests may write keys to (each test uses its own keys)."""
    configured = os.environ.get("LADLE_TEST_REDIS_URL")
    if configured:
        if not _redis_answers(configured):
            pytest.fail(f"LADLE_TEST_REDIS_URL does not answer: {configured}", pytrace=False)
        yield configured
        return
    if os.environ.get("LADLE_TEST_REDIS") != "throwaway" and _redis_answers(LOCAL_REDIS):
        yield LOCAL_REDIS
        return
    process, root, url = _throwaway_redis()
    try:
        deadline = time.monotonic() + 15
        while not _redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the throwaway redis-server did not start\n{REDIS_INSTALL_HINT}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_stream_key(redis_url: str) -> Iterator[str]:
    """A stream key no other test uses; it and its dead-letter stream are deleted afterwards."""
    import redis

    key = f"ladle-test:{uuid.uuid4().hex[:12]}"
    yield key
    with redis.Redis.from_url(redis_url) as client:
        client.delete(key, f"{key}:dlq")


# ---- MariaDB
# Found like PostgreSQL: LADLE_TEST_MARIADB_URL; a server answering on 127.0.0.1:3306 (user
# root, no password); a throwaway ``mariadbd`` started here. Never skipped. Each test gets
# a database of its own, dropped afterwards.

LOCAL_MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"
MARIADB_HINT = (
    "MariaDB (or MySQL) is needed for the SQL source tests: set LADLE_TEST_MARIADB_URL to a "
    "mysql+pymysql:// URL of a user that may create databases, run one on 127.0.0.1:3306 "
    "(user root, no password), or install the server so the tests can start their own "
    "(Debian/Ubuntu: apt-get install mariadb-server; macOS: brew install mariadb)"
)


def _mariadb_execute(url: str, sql: str) -> None:
    """Run one statement on the server at ``url`` (no database needed)."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    server = make_url(url).set(database=None)
    engine = create_engine(server, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _mariadb_answers(url: str) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        _mariadb_execute(url, "SELECT 1")
    except SQLAlchemyError:
        return False
    return True


def _sbin(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/usr/local/sbin") if (p := Path(d, name)).exists()),
            None,
        )
        if found:
            return found
    return None


class _ThrowawayMariaDB:
    """A MariaDB server in a temporary directory, on a free port and a socket of its own."""

    def __init__(self) -> None:
        install = _sbin("mariadb-install-db", "mysql_install_db")
        server = _sbin("mariadbd", "mysqld")
        if install is None or server is None:
            pytest.fail(MARIADB_HINT, pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="ladle-mariadb-"))
        data, port = self.root / "data", _free_port()
        # mariadbd refuses to run as root: as root, run it as the mysql user.
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        if user:
            shutil.chown(self.root, "mysql")
        common = ["--no-defaults", f"--datadir={data}"]
        result = subprocess.run(
            [install, *common, *user, "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"{install} failed: {result.stderr.strip()}\n{MARIADB_HINT}")
        self.log = (self.root / "log").open("w")
        self.process = subprocess.Popen(
            [server, *common, *user, f"--port={port}", "--bind-address=127.0.0.1",
             f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}",
             "--skip-name-resolve"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"mysql+pymysql://root@127.0.0.1:{port}/mysql"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[str]:
    """The SQLAlchemy URL of a MariaDB/MySQL server the tests may create databases in."""
    configured = os.environ.get("LADLE_TEST_MARIADB_URL")
    if configured:
        if not _mariadb_answers(configured):
            pytest.fail(f"LADLE_TEST_MARIADB_URL does not answer: {configured}", pytrace=False)
        yield configured
        return
    if os.environ.get("LADLE_TEST_MARIADB") != "throwaway" and _mariadb_answers(LOCAL_MARIADB):
        yield LOCAL_MARIADB
        return
    server = _ThrowawayMariaDB()
    deadline = time.monotonic() + 60
    while not _mariadb_answers(server.url):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the throwaway MariaDB did not start\n{MARIADB_HINT}", pytrace=False)
        time.sleep(0.2)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def mariadb_url(mariadb_server: str) -> Iterator[str]:
    """A SQLAlchemy URL of a database that exists only for this test."""
    from sqlalchemy import make_url

    database = f"ladle_test_{uuid.uuid4().hex[:10]}"
    _mariadb_execute(mariadb_server, f"CREATE DATABASE `{database}`")
    yield make_url(mariadb_server).set(database=database).render_as_string(hide_password=False)
    _mariadb_execute(mariadb_server, f"DROP DATABASE IF EXISTS `{database}`")
