"""The ingest server: auth, body limits, parsing, per-record checks, the stream, health, metrics."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from ladle.cli import main
from ladle.metrics import Metrics
from ladle.pipeline import Pipeline
from ladle.serve import create_app
from tests.cli_server import LadleServer

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 in its test client; ladle depends on httpx, which works.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token"  # noqa: S105 - a test token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE = """\
pipeline: desk
destination: {destination}
resources:
  tickets:
    source: {{type: redis_stream, url: '{redis}', stream: '{stream}'}}
    primary_key: ticket_id
    columns:
      ticket_id: bigint
      status: {{type: text, in: [open, closed]}}
      opened_at: timestamptz
  files:
    source: {{type: file, path: data.jsonl}}
"""

Serve = Callable[..., TestClient]


@pytest.fixture
def stream(redis_url: str, redis_stream_key: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, for looking at the test's stream."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def serve(
    write_pipeline: Callable[[str], Path], redis_url: str, redis_stream_key: str, duckdb_url: str
) -> Iterator[Serve]:
    """Start the app for a pipeline whose `tickets` resource appends to the test's stream."""
    with ExitStack() as stack:

        def start(
            *, redis: str = redis_url, destination: str = duckdb_url, **options: Any
        ) -> TestClient:
            text = PIPELINE.format(destination=destination, redis=redis, stream=redis_stream_key)
            pipeline = Pipeline.from_yaml(write_pipeline(text))
            app = create_app(pipeline, token=TOKEN, metrics=Metrics(), **options)
            return stack.enter_context(TestClient(app))

        yield start


def _closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entries(stream: redis.Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = stream.xrange(key)
    return [(i.decode(), json.loads(f[b"data"])) for i, f in entries]


# ---------------------------------------------------------------- auth


def test_no_token_is_401(serve: Serve) -> None:
    """A request without a bearer token is refused, and says how to send one."""
    response = serve().post("/ingest/tickets", json={"ticket_id": 1})
    assert response.status_code == 401
    assert response.json() == {"detail": "send the ingest token as `Authorization: Bearer <token>`"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_token_is_401(serve: Serve, stream: redis.Redis, redis_stream_key: str) -> None:
    """A wrong token is refused and nothing reaches the stream."""
    headers = {"Authorization": "Bearer nope"}
    response = serve().post("/ingest/tickets", json={"ticket_id": 1}, headers=headers)
    assert response.status_code == 401
    assert stream.exists(redis_stream_key) == 0


def test_right_token_is_202(serve: Serve) -> None:
    """The right token (scheme in any case) lets a valid record in."""
    headers = {"Authorization": f"bearer {TOKEN}"}
    response = serve().post("/ingest/tickets", json={"ticket_id": 1}, headers=headers)
    assert response.status_code == 202


# ---------------------------------------------------------------- bodies


def test_body_over_the_declared_limit_is_413(
    serve: Serve, stream: redis.Redis, redis_stream_key: str
) -> None:
    """A Content-Length over the limit is refused before the body is read."""
    body = json.dumps([{"ticket_id": i} for i in range(50)])
    response = serve(max_body_bytes=100).post("/ingest/tickets", content=body, headers=AUTH)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "the body is larger than 100 bytes; send fewer records per request"
    }
    assert stream.exists(redis_stream_key) == 0


def test_streamed_body_over_the_limit_is_413(serve: Serve) -> None:
    """A body without Content-Length is counted as it arrives and refused past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b"["
        for i in range(50):
            yield json.dumps({"ticket_id": i}).encode() + b","
        yield b'{"ticket_id": 99}]'

    response = serve(max_body_bytes=100).post("/ingest/tickets", content=chunks(), headers=AUTH)
    assert response.status_code == 413


def test_malformed_json_is_400_with_its_position(serve: Serve) -> None:
    """Malformed JSON names the line and column where the parser stopped."""
    body = '[{"ticket_id": 1},\n {"ticket_id": 2,}]'
    response = serve().post("/ingest/tickets", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "record": None,
                "field": None,
                "rule": "parse",
                "value": None,
                "message": "invalid JSON at line 2, column 18: "
                "Expecting property name enclosed in double quotes",
                "line": 2,
                "column": 18,
            }
        ]
    }


def test_malformed_ndjson_lists_each_bad_line(
    serve: Serve, stream: redis.Redis, redis_stream_key: str
) -> None:
    """In NDJSON every bad line is named with its record number, and no record is added."""
    body = '{"ticket_id": 1}\n{"ticket_id": \n\n{"ticket_id": 3}\n[NaN]\n'
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    response = serve().post("/ingest/tickets", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "record": 1,
            "field": None,
            "rule": "parse",
            "value": None,
            "message": "invalid JSON at line 2, column 15: Expecting value",
            "line": 2,
            "column": 15,
        },
        {
            "record": 3,
            "field": None,
            "rule": "parse",
            "value": None,
            "message": "invalid JSON in line 5: NaN is not a JSON value",
            "line": 5,
        },
    ]
    assert stream.exists(redis_stream_key) == 0


def test_ndjson_by_content_type(serve: Serve, stream: redis.Redis, redis_stream_key: str) -> None:
    """`application/x-ndjson` bodies are one record per line; blank lines are skipped."""
    body = '{"ticket_id": 1}\n\n{"ticket_id": 2, "status": "open"}\n'
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    response = serve().post("/ingest/tickets", content=body, headers=headers)
    assert response.status_code == 202
    records = [record for _, record in _entries(stream, redis_stream_key)]
    assert records == [{"ticket_id": 1}, {"ticket_id": 2, "status": "open"}]


def test_ndjson_by_sniffing(serve: Serve, stream: redis.Redis, redis_stream_key: str) -> None:
    """Objects one per line are read as NDJSON even when sent as `application/json`."""
    body = '{"ticket_id": 1}\n{"ticket_id": 2}\n'
    headers = {**AUTH, "Content-Type": "application/json"}
    response = serve().post("/ingest/tickets", content=body, headers=headers)
    assert response.status_code == 202
    assert len(response.json()["ids"]) == 2


def test_array_is_accepted_and_lands_in_the_stream_as_sent(
    serve: Serve, stream: redis.Redis, redis_stream_key: str
) -> None:
    """Each record of an array becomes one entry holding its JSON as sent; the ids are returned."""
    records = [
        {"ticket_id": 1, "status": "open", "opened_at": "2024-05-01T10:00:00Z"},
        {"ticket_id": "2", "extra": {"nested": [1, 2]}, "note": "é"},
    ]
    response = serve().post("/ingest/tickets", json=records, headers=AUTH)
    assert response.status_code == 202
    entries = _entries(stream, redis_stream_key)
    assert response.json() == {"ids": [i for i, _ in entries]}
    assert [record for _, record in entries] == records


def test_records_that_are_not_objects_are_400(serve: Serve) -> None:
    """An array item that is not an object is named by its index."""
    response = serve().post("/ingest/tickets", json=[{"ticket_id": 1}, 5], headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "record": 1,
            "field": None,
            "rule": "parse",
            "value": "5",
            "message": "a record must be a JSON object",
        }
    ]


# ---------------------------------------------------------------- checks


def test_failing_records_are_listed_and_nothing_is_added(
    serve: Serve, stream: redis.Redis, redis_stream_key: str
) -> None:
    """Each failing record and field is listed with rule and value; the stream stays unchanged."""
    stream.xadd(redis_stream_key, {"data": '{"ticket_id": 0}'})
    records = [
        {"ticket_id": 1, "status": "open"},
        {"ticket_id": "abc"},
        {"status": "bogus", "opened_at": "2024-05-01"},
        {"ticket_id": 4, "opened_at": "yesterday"},
    ]
    response = serve().post("/ingest/tickets", json=records, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "record": 1,
                "field": "ticket_id",
                "rule": "type",
                "value": "abc",
                "message": "cannot parse 'abc' as bigint",
            },
            {
                "record": 2,
                "field": "ticket_id",
                "rule": "required",
                "value": None,
                "message": "value is required",
            },
            {
                "record": 2,
                "field": "status",
                "rule": "in",
                "value": "bogus",
                "message": "'bogus' is not one of ['open', 'closed']",
            },
            {
                "record": 3,
                "field": "opened_at",
                "rule": "type",
                "value": "yesterday",
                "message": "cannot parse 'yesterday' as timestamptz",
            },
        ]
    }
    assert [record for _, record in _entries(stream, redis_stream_key)] == [{"ticket_id": 0}]


def test_unknown_resource_is_404(serve: Serve) -> None:
    """Records go only to resources that read a stream; any other name is 404."""
    client = serve()
    for name in ("nope", "files"):
        response = client.post(f"/ingest/{name}", json={"ticket_id": 1}, headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"no resource {name!r} reads a redis_stream in pipeline 'desk'; "
            "these do: tickets"
        }


def test_redis_down_at_ingest_is_503(serve: Serve) -> None:
    """When Redis does not answer, valid records are refused with 503 naming the server."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    response = serve(redis=url).post("/ingest/tickets", json={"ticket_id": 1}, headers=AUTH)
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"redis at {url} did not take the records: ")


# ---------------------------------------------------------------- health and metrics


def test_health_ok(serve: Serve) -> None:
    """With Redis and the DuckDB destination reachable, /health is 200 and says ok twice."""
    response = serve().get("/health")
    assert (response.status_code, response.json()) == (200, {"redis": "ok", "destination": "ok"})


def test_health_ok_with_postgres(serve: Serve, postgres_url: str) -> None:
    """A PostgreSQL destination is asked (and closed again) on each /health."""
    response = serve(destination=postgres_url).get("/health")
    assert (response.status_code, response.json()) == (200, {"redis": "ok", "destination": "ok"})


def test_health_names_unreachable_redis(serve: Serve) -> None:
    """With Redis on a closed port, /health is 503 and names Redis, not the destination."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    response = serve(redis=url).get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["destination"] == "ok"
    assert body["redis"].startswith(f"unreachable: {url}: Error 111 connecting to 127.0.0.1:")


def test_health_names_unreachable_destination(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PostgreSQL on a closed port, /health is 503 and names the destination, masked."""
    port = _closed_port()
    monkeypatch.setenv("LADLE_TEST_DESTINATION", f"postgresql://ladle:pw@127.0.0.1:{port}/db")
    response = serve(destination="${LADLE_TEST_DESTINATION}").get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "ok"
    assert body["destination"].startswith("unreachable: ")
    assert "pw" not in body["destination"]


def test_metrics_count_accepted_records(serve: Serve) -> None:
    """/metrics shows the records accepted per resource; refused ones are not counted."""
    client = serve()
    client.post("/ingest/tickets", json=[{"ticket_id": 1}, {"ticket_id": 2}], headers=AUTH)
    client.post("/ingest/tickets", json={"ticket_id": 3}, headers=AUTH)
    client.post("/ingest/tickets", json={"ticket_id": "x"}, headers=AUTH)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert 'ladle_records_in_total{resource="tickets"} 3.0' in response.text.splitlines()


# ---------------------------------------------------------------- CLI


def test_serve_without_token_is_one_line_error(
    write_pipeline: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ladle serve` refuses to start without LADLE_INGEST_TOKEN and says how to set it."""
    monkeypatch.delenv("LADLE_INGEST_TOKEN", raising=False)
    path = write_pipeline("pipeline: p\nresources:\n  a:\n    source: {path: a.jsonl}\n")
    result = CliRunner().invoke(main, ["serve", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: LADLE_INGEST_TOKEN is not set: `ladle serve` accepts records only from clients "
        "sending `Authorization: Bearer <token>`; set it, e.g. "
        "`export LADLE_INGEST_TOKEN=$(openssl rand -hex 32)`\n"
    )


# ---------------------------------------------------------------- exposure and bad input


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_api_docs_are_off(serve: Serve, path: str) -> None:
    """No Swagger UI, ReDoc or schema: they would be open without the token."""
    client = serve()
    assert client.get(path).status_code == 404
    assert client.get(path, headers=AUTH).status_code == 404


DEEP_OBJECT = '{"ticket_id": 1, "x": ' + '{"a": ' * 950 + "1" + "}" * 951


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 100_000, "arrays or objects are nested too deeply"),
        (DEEP_OBJECT, "arrays or objects are nested too deeply"),
        ('{"ticket_id": 1e400}', "the number 1e400 is out of range"),
        ('{"ticket_id": 1, "x": -1e400}', "the number -1e400 is out of range"),
        ('{"ticket_id": ' + "9" * 5000 + "}", "a number has more than 4,300 digits"),
    ],
    ids=["100k [", "950 nested objects", "1e400", "-1e400 in an undeclared column", "5000 digits"],
)
def test_malformed_input_is_400_not_500(
    serve: Serve, stream: redis.Redis, redis_stream_key: str, body: str, message: str
) -> None:
    """Input the parser cannot hold is a 400 saying why, never a 500, and nothing is added."""
    response = serve().post("/ingest/tickets", content=body, headers=AUTH)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["message"] == f"invalid JSON in the body: {message}"
    assert stream.exists(redis_stream_key) == 0


def test_an_integer_out_of_bigint_range_is_400(serve: Serve) -> None:
    """2^70 for a bigint column is refused with the value, not clamped and not a 500."""
    body = json.dumps({"ticket_id": 2**70})
    response = serve().post("/ingest/tickets", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "record": 0,
                "field": "ticket_id",
                "rule": "range",
                "value": "1180591620717411303424",
                "message": "'1180591620717411303424' is out of range for bigint",
            }
        ]
    }


def test_the_real_server_logs_paths_not_query_strings(
    write_pipeline: Callable[[str], Path], redis_url: str, redis_stream_key: str, duckdb_url: str
) -> None:
    """`ladle serve` logs each request's path; a token sent as ?token= is never logged."""
    text = PIPELINE.format(destination=duckdb_url, redis=redis_url, stream=redis_stream_key)
    path = write_pipeline(text)
    leaked = "query-token-8c1f"
    with LadleServer(["serve", str(path)], {"LADLE_INGEST_TOKEN": TOKEN}) as server:
        assert httpx.get(f"{server.url}/health?token={leaked}").status_code == 200
        assert httpx.get(f"{server.url}/docs?token={leaked}").status_code == 404
        assert httpx.get(f"{server.url}/openapi.json").status_code == 404
        posted = httpx.post(
            f"{server.url}/ingest/tickets?token={leaked}", json={"ticket_id": 1}, headers=AUTH
        )
        assert posted.status_code == 202
    events = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    requests = [(e["method"], e["path"], e["status"]) for e in events if e["event"] == "request"]
    assert requests == [
        ("GET", "/", 404),
        ("GET", "/health", 200),
        ("GET", "/docs", 404),
        ("GET", "/openapi.json", 404),
        ("POST", "/ingest/tickets", 202),
    ]
    assert leaked not in server.output
    assert TOKEN not in server.output
