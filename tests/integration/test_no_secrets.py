"""No password, in any form, reaches any output: CLI commands, pages, responses, logs.

The destination is a PostgreSQL role with a real password (runs succeed) or a wrong one
(runs fail); the SQL source logs in as that role; the stream is a redis-server started
with ``--requirepass``; the HTTP source sends a bearer token. Every command's stdout and
stderr (JSON logs), every response body and every server log is searched for each
password raw, percent-encoded, and as Basic credentials.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import redis
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ladle.cli import main
from tests.cli_server import LADLE, LadleServer, free_port
from tests.fake_api import FakeApi

PIPELINE = """\
pipeline: secrets
destination: ${LADLE_T_DEST}
resources:
  tickets:
    source: {type: file, path: tickets.jsonl}
    primary_key: [id]
    write: merge
    columns:
      id: {type: bigint, required: true}
      status: {type: text, in: [open, closed]}
  accounts:
    source: {type: sql, url: '${LADLE_T_SQL}', table: crm_accounts}
    primary_key: [id]
  api:
    source:
      type: http
      url: '${LADLE_T_API}'
      headers: {Authorization: "Bearer ${LADLE_T_TOKEN}"}
      retry: {attempts: 1}
  events:
    source: {type: redis_stream, url: '${LADLE_T_REDIS}', stream: '${LADLE_T_STREAM}'}
"""
BATCH = ("--resource", "tickets", "--resource", "accounts", "--resource", "api")


@dataclass
class Role:
    """A PostgreSQL login role with a password, owning a schema of the same name."""

    user: str
    password: str
    host: str
    port: str
    dbname: str

    def url(self, password: str, *, user: str | None = None, in_query: bool = False) -> str:
        """A destination URL carrying ``password`` in the userinfo or in ``?password=``."""
        user = self.user if user is None else user
        where = f"{self.host}:{self.port}/{self.dbname}"
        encoded = quote(password, safe="")
        if in_query:
            return f"postgresql://{user}@{where}?password={encoded}&schema={self.user}"
        return f"postgresql://{user}:{encoded}@{where}?schema={self.user}"


@dataclass
class Seen:
    """Everything ladle showed, by where it was shown; and the secrets it must not show."""

    secrets: list[str]
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> str:
        """Keep ``text`` to be searched; return it."""
        self.outputs.append((where, text))
        return text

    def leaks(self) -> list[str]:
        """Where a secret was found, and in which form."""
        forms = {}
        for secret in self.secrets:
            forms[secret] = "raw"
            forms[quote(secret, safe="")] = "percent-encoded"
            forms[quote(secret)] = "percent-encoded"
            forms[quote(secret, safe="").replace("%20", "+")] = "form-encoded"
            for user in ("", "x", "ladle"):
                forms[base64.b64encode(f"{user}:{secret}".encode()).decode()] = "Basic"
        return [
            f"{where}: {kind} {form!r}"
            for where, text in self.outputs
            for form, kind in forms.items()
            if form in text
        ]


def _password(label: str) -> str:
    """A password with the characters that break naive masking: @ : / % and a space-free tail."""
    return f"{label}@:/%{uuid.uuid4().hex[:10]}"


@pytest.fixture
def role(password_postgres: Any) -> Iterator[Role]:
    """A login role with a password that may create tables in a schema of its own."""
    postgres_server = password_postgres.socket_url
    server = conninfo_to_dict(password_postgres.url)
    name = f"ladle_sec_{uuid.uuid4().hex[:10]}"
    password = _password("Pg")
    ident = sql.Identifier(name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
        )
        database = sql.Identifier(str(server.get("dbname") or "postgres"))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(database, ident))
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(ident, ident))
        conn.execute(
            sql.SQL("CREATE TABLE {}.crm_accounts (id bigint PRIMARY KEY, name text)").format(ident)
        )
        conn.execute(sql.SQL("ALTER TABLE {}.crm_accounts OWNER TO {}").format(ident, ident))
        conn.execute(sql.SQL("INSERT INTO {}.crm_accounts VALUES (1, 'a'), (2, 'b')").format(ident))
    try:
        yield Role(
            name,
            password,
            str(server.get("host") or "127.0.0.1"),
            str(server.get("port") or "5432"),
            str(server.get("dbname") or "postgres"),
        )
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
            conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(database, ident))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))


@dataclass
class SecuredRedis:
    """A redis-server that asks for a password."""

    port: int
    password: str

    def url(self, password: str) -> str:
        """The standard form: empty user, ``redis://:password@host:port/0``."""
        return f"redis://:{quote(password, safe='')}@127.0.0.1:{self.port}/0"


@pytest.fixture
def secured_redis() -> Iterator[SecuredRedis]:
    """A throwaway redis-server on loopback with ``--requirepass``, stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is needed: apt-get install redis-server", pytrace=False)
    password = _password("Rd")
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="ladle-redis-"))
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no", "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = SecuredRedis(port, password)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with redis.Redis.from_url(server.url(password)) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the password-protected redis-server did not start")
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Scene:
    """One test's servers, secrets and environment; runs ladle and keeps all it showed."""

    root: Path
    pipeline: Path
    role: Role
    redis: SecuredRedis
    wrong: str
    env: dict[str, str]
    seen: Seen

    def ladle(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`ladle ARGS` as a process of its own, as a user runs it."""
        result = subprocess.run(
            [LADLE, *args],
            env={**_environ(), **self.env, **env},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.seen.add(f"ladle {args[0]} (stdout)", result.stdout)
        self.seen.add(f"ladle {args[0]} (stderr)", result.stderr)
        return result

    def quick(self, *args: str, **env: str) -> tuple[int, str]:
        """`ladle ARGS` in this process: for the commands that only read the ledger."""
        result = CliRunner().invoke(main, list(args), env={**self.env, **env})
        self.seen.add(f"ladle {args[0]} (stdout)", result.stdout)
        self.seen.add(f"ladle {args[0]} (stderr)", result.stderr)
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def scene(
    tmp_path: Path, role: Role, secured_redis: SecuredRedis, write_pipeline: Callable[[str], Path]
) -> Iterator[Scene]:
    """The pipeline, its tickets file, a fake API with a token, and every secret to look for."""
    wrong = _password("Wrong")
    token, ui_token = f"api-{uuid.uuid4().hex}", f"ui-{uuid.uuid4().hex}"
    (tmp_path / "tickets.jsonl").write_text(
        '{"id": 1, "status": "open"}\n{"id": 2, "status": "lost"}\n'
    )
    sql_url = role.url(role.password).replace("postgresql:", "postgresql+psycopg:", 1)
    with FakeApi(records=[{"id": 1}, {"id": 2}]) as api:
        api.token = token
        env = {
            "LADLE_T_DEST": role.url(role.password),
            "LADLE_T_SQL": sql_url.split("?", 1)[0],
            "LADLE_T_API": api.url,
            "LADLE_T_TOKEN": token,
            "LADLE_T_REDIS": secured_redis.url(secured_redis.password),
            "LADLE_T_STREAM": f"ladle-secrets-{uuid.uuid4().hex[:8]}",
            "LADLE_INGEST_TOKEN": token,
            "LADLE_UI_TOKEN": ui_token,
        }
        seen = Seen([role.password, wrong, secured_redis.password, token, ui_token])
        pipeline = write_pipeline(PIPELINE)
        yield Scene(tmp_path, pipeline, role, secured_redis, wrong, env, seen)


def test_no_password_is_shown_anywhere(scene: Scene) -> None:
    """Every command, page, response and log, in success and in failure, hides every secret."""
    role, file, wrong = scene.role, str(scene.pipeline), scene.wrong
    # Runs that succeed, the password in the userinfo and in ?password=.
    for dest in (role.url(role.password), role.url(role.password, in_query=True)):
        validated = scene.ladle("validate", file, LADLE_T_DEST=dest)
        assert validated.returncode == 0, validated.stderr
        assert "destination: postgresql://" in validated.stdout
        ran = scene.ladle("run", file, *BATCH, LADLE_T_DEST=dest)
        assert ran.returncode == 0, (ran.stdout, ran.stderr)  # one ticket is quarantined
    run_id = _quarantined_run(role)
    _ledger_commands(scene, run_id, role.url(role.password), ok=True)

    # Wrong passwords: destination (userinfo, empty user, query), SQL source, API token.
    for dest in (role.url(wrong), role.url(wrong, user=""), role.url(wrong, in_query=True)):
        assert scene.ladle("run", file, *BATCH, LADLE_T_DEST=dest).returncode == 1
        _ledger_commands(scene, run_id, dest, ok=False)
    good, bad = quote(role.password, safe=""), quote(wrong, safe="")
    sql_url = scene.env["LADLE_T_SQL"].replace(good, bad)
    sources = scene.ladle("run", file, *BATCH, LADLE_T_SQL=sql_url, LADLE_T_TOKEN=wrong)
    assert "accounts: " in sources.stdout
    assert "api: " in sources.stdout
    with_userinfo = scene.env["LADLE_T_API"].replace("://", f"://u:{bad}@")
    refused = scene.ladle("validate", file, LADLE_T_API=with_userinfo)
    assert "must not hold a user or password" in refused.stderr

    _worker(scene)
    _serve(scene)
    _ui(scene, run_id)
    assert scene.seen.leaks() == []


def _ledger_commands(scene: Scene, run_id: str, dest: str, *, ok: bool) -> None:
    """Every command that reads the ledger, with the destination ``dest``."""
    file = str(scene.pipeline)
    assert scene.quick("validate", file, LADLE_T_DEST=dest)[0] == 0
    for args in (
        ("runs", file),
        ("runs", "--destination", dest),
        ("status", file),
        ("status", file, "--json"),
        ("quarantine", "list", file),
        ("quarantine", "show", run_id, file),
        ("doctor", file),
    ):
        code, output = scene.quick(*args, LADLE_T_DEST=dest)
        assert code == (0 if ok else 1), (args[0], output)
        assert ok or "***" in output, (args[0], output)


def _quarantined_run(role: Role) -> str:
    """The id of a run with a quarantined ticket."""
    conninfo = f"host={role.host} port={role.port} dbname={role.dbname} user={role.user}"
    query = sql.SQL("SELECT run_id FROM {}._ladle_quarantine LIMIT 1")
    with psycopg.connect(conninfo, password=role.password) as conn:
        row = conn.execute(query.format(sql.Identifier(role.user))).fetchone()
    assert row is not None
    return str(row[0])


def _worker(scene: Scene) -> None:
    """`ladle worker`: a run that loads, and one that cannot log in to Redis."""
    with redis.Redis.from_url(scene.env["LADLE_T_REDIS"]) as client:
        client.xadd(scene.env["LADLE_T_STREAM"], {"data": json.dumps({"id": 7})})
    args = ("worker", str(scene.pipeline), "--resource", "events", "--idle-exit", "1")
    worked = scene.ladle(*args)
    assert worked.returncode == 0, worked.stderr
    failed = scene.ladle(*args, LADLE_T_REDIS=scene.redis.url(scene.wrong))
    assert failed.returncode == 1
    assert "redis://:***@127.0.0.1" in failed.stderr, failed.stderr


def _serve(scene: Scene) -> None:
    """`ladle serve`: /health, /metrics and ingest, with Redis and destination refusing or not."""
    auth = {"Authorization": f"Bearer {scene.env['LADLE_T_TOKEN']}"}
    refusing = {
        **scene.env,
        "LADLE_T_REDIS": scene.redis.url(scene.wrong),
        "LADLE_T_DEST": scene.role.url(scene.wrong),
    }
    for env, healthy in ((refusing, False), (scene.env, True)):
        with LadleServer(["serve", str(scene.pipeline)], env) as server:
            health = httpx.get(f"{server.url}/health", timeout=30)
            scene.seen.add("/health", health.text)
            assert health.status_code == (200 if healthy else 503), health.text
            assert healthy or "redis://:***@127.0.0.1" in health.text, health.text
            scene.seen.add("/metrics", httpx.get(f"{server.url}/metrics").text)
            posted = httpx.post(f"{server.url}/ingest/events", json={"id": 8}, headers=auth)
            scene.seen.add("ingest", posted.text)
            assert posted.status_code == (202 if healthy else 503), posted.text
        scene.seen.add("ladle serve (log)", server.output)


def _ui(scene: Scene, run_id: str) -> None:
    """`ladle ui`: runs, a run and quarantine pages, the destination refusing or not."""
    credentials = base64.b64encode(f"x:{scene.env['LADLE_UI_TOKEN']}".encode()).decode()
    basic = {"Authorization": f"Basic {credentials}"}
    for env in (scene.env, {**scene.env, "LADLE_T_DEST": scene.role.url(scene.wrong)}):
        with LadleServer(["ui", str(scene.pipeline)], env) as server:
            for page in ("/", f"/runs/{run_id}", "/quarantine"):
                response = httpx.get(server.url + page, headers=basic, timeout=30)
                scene.seen.add(f"ladle ui {page}", response.text)
        scene.seen.add("ladle ui (log)", server.output)


def _environ() -> dict[str, str]:
    """This process's environment without the variables a test sets for the pipeline."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LADLE_")}
