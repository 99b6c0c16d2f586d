"""``ladle serve``: an HTTP endpoint that checks records and appends them to a Redis stream.

``POST /ingest/{resource}`` takes a JSON object, a JSON array of objects or NDJSON,
checks every record with the same cast and validate steps ``ladle run`` applies, and
appends the records to the resource's stream only if all of them pass: a request is
accepted whole or not at all. ``ladle worker`` loads them from there. ``GET /health``
says whether Redis and the destination answer; ``GET /metrics`` is Prometheus text.

The app is synchronous work behind a thin async edge: the ingest handler only reads the
body on the event loop and hands parsing, checks and Redis to a worker thread.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import redis
import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ladle.batch import ROW
from ladle.config import PipelineConfig, Resource
from ladle.destinations import connect
from ladle.errors import LadleError
from ladle.metrics import Metrics
from ladle.pipeline import Pipeline, normalized_names, validation_steps
from ladle.redact import mask
from ladle.sources.flatten import ColumnClash, records_to_frame, to_json_text
from ladle.sources.redis_stream import RedisStreamOptions, encode_record, open_client

if TYPE_CHECKING:
    from ladle.worker import Worker

MAX_BODY_BYTES = 10 * 1024 * 1024
"""Default limit on a request body: 10 MiB."""
TOKEN_VARIABLE = "LADLE_INGEST_TOKEN"  # noqa: S105 - the variable's name, not a token
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)

RedisFactory = Callable[[str], redis.Redis]
"""Makes the Redis client for a URL; the app makes one per URL and closes it at shutdown."""
log = structlog.get_logger("ladle")


def ingest_token_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The bearer token clients must send, from ``LADLE_INGEST_TOKEN``; never logged."""
    token = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "")
    if not token.strip():
        raise LadleError(
            f"{TOKEN_VARIABLE} is not set: `ladle serve` accepts records only from clients "
            f"sending `Authorization: Bearer <token>`; set it, e.g. "
            f"`export {TOKEN_VARIABLE}=$(openssl rand -hex 32)`"
        )
    return token


def create_app(
    pipeline: Pipeline,
    *,
    token: str,
    redis_factory: RedisFactory = open_client,
    metrics: Metrics,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The ingestion app for ``pipeline``: only its ``redis_stream`` resources accept records."""
    if not token:
        raise ValueError("the ingest token must not be empty")
    expected = token.encode()
    ingest = _Ingest(pipeline, redis_factory, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ingest.close()

    # No /docs, /redoc or /openapi.json: they would be open without the token (and load
    # Swagger UI from a CDN).
    app = FastAPI(title="ladle", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessLog)

    @app.post("/ingest/{resource}", status_code=202)
    async def ingest_records(resource: str, request: Request) -> JSONResponse:
        """Check the records in the body and append them all to the stream, or none."""
        _authorize(request, expected)
        res, options = ingest.resource(resource)
        body = await _read_body(request, max_body_bytes)
        ndjson = request.headers.get("content-type", "").split(";")[0].strip() in NDJSON_TYPES
        return await run_in_threadpool(ingest.accept, res, options, body, ndjson=ndjson)

    @app.get("/health")
    def health() -> JSONResponse:
        """200 when Redis and the destination answer, else 503 saying which does not."""
        status = ingest.health()
        ok = all(value == "ok" for value in status.values())
        return JSONResponse(status, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics_text() -> Response:
        """The metrics in Prometheus' text format."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # The run-history pages, behind the same token (HTTP Basic password or bearer).
    from ladle.ui import ui_router

    app.include_router(ui_router(pipeline, token=token), prefix="/ui")
    return app


def worker_app(worker: Worker) -> FastAPI:
    """``/metrics`` and ``/health`` of a running ``ladle worker`` (``--metrics-port``)."""
    app = FastAPI(title="ladle worker", docs_url=None, redoc_url=None, openapi_url=None)
    options = worker.source

    @app.get("/health")
    def health() -> JSONResponse:
        """200 when the worker's Redis and destination answer, else 503 saying which does not."""
        redis_status = "ok"
        client = open_client(options.url)
        try:
            client.ping()
        except redis.RedisError as exc:
            redis_status = f"unreachable: {mask(options.url)}: {exc}"
        finally:
            client.close()
        status = {
            "redis": redis_status,
            "destination": _destination_status(worker.url, worker.config.base_dir),
        }
        ok = all(value == "ok" for value in status.values())
        return JSONResponse(status, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics_text() -> Response:
        """The worker's metrics in Prometheus' text format."""
        body, content_type = worker.metrics.render()
        return Response(body, media_type=content_type)

    return app


def serve_in_background(app: FastAPI, *, port: int, host: str = "127.0.0.1") -> None:
    """Run ``app`` under uvicorn in a daemon thread (the worker's loop keeps the main one)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # Signals belong to the worker: uvicorn must not install its own handlers in a thread.
    threading.Thread(target=server.run, daemon=True, name="ladle-metrics").start()


# ---------------------------------------------------------------- the request's edge


class AccessLog:
    """ASGI middleware: one log event per request with the path only, never the query string.

    Stands in for uvicorn's access log (``access_log=False``), which logs the query, where
    a client may have put its token (``?token=…``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            log.info("request", method=scope["method"], path=scope["path"], status=status)


def _authorize(request: Request, expected: bytes) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes as long for a wrong token as for a right one.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            401,
            "send the ingest token as `Authorization: Bearer <token>`",
            {"WWW-Authenticate": "Bearer"},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes: as declared, and as actually sent."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, f"the body is larger than {limit:,} bytes; send fewer records per request"
    )


# ---------------------------------------------------------------- records


class _Rejected(Exception):
    """The request's records cannot be accepted; ``errors`` say why, record by record."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


def _error(
    message: str, *, record: int | None = None, rule: str = "parse", **extra: Any
) -> dict[str, Any]:
    return {
        "record": record,
        "field": None,
        "rule": rule,
        "value": None,
        "message": message,
    } | extra


def _parse_records(body: bytes, *, ndjson: bool = False) -> list[dict[str, Any]]:
    """Records from a JSON object, a JSON array of objects, or NDJSON (given or sniffed).

    A body that starts with ``{`` and holds more than one value is read as NDJSON.
    Raises :class:`_Rejected` naming the line and column of every malformed part.
    """
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        byte = body[exc.start]
        message = f"the body is not UTF-8: cannot decode byte 0x{byte:02x} at offset {exc.start}"
        raise _Rejected([_error(message)]) from None
    if not text.strip():
        raise _Rejected(
            [_error("the body is empty; send a JSON object, an array of objects or NDJSON")]
        )
    if not ndjson:
        try:
            value = _loads(text)
        except _BadJson as exc:
            if exc.reason != "Extra data" or not text.lstrip().startswith("{"):
                raise _Rejected([exc.error()]) from None
        else:
            return _objects(value if isinstance(value, list) else [value])
    return _ndjson(text)


def _ndjson(text: str) -> list[dict[str, Any]]:
    values: list[Any] = []
    errors: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(_loads(line))
        except _BadJson as exc:
            errors.append(exc.error(line=number, record=len(values) + len(errors)))
    if errors:
        raise _Rejected(errors)
    return _objects(values)


class _BadJson(Exception):
    """Text that is not JSON: the parser's reason and, when known, where."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column

    def error(self, *, line: int | None = None, record: int | None = None) -> dict[str, Any]:
        """The error entry; ``line`` is the NDJSON line the text came from."""
        line = line if line is not None else self.line
        if line is None:
            return _error(f"invalid JSON in the body: {self.reason}", record=record)
        if self.column is None:
            return _error(f"invalid JSON in line {line}: {self.reason}", record=record, line=line)
        message = f"invalid JSON at line {line}, column {self.column}: {self.reason}"
        return _error(message, record=record, line=line, column=self.column)


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _BadJson(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise _BadJson(_TOO_DEEP) from None
    except ValueError:
        # Python refuses to read an integer of more than 4,300 digits (sys.int_info).
        raise _BadJson(f"a number has more than {sys.get_int_max_str_digits():,} digits") from None


_TOO_DEEP = "arrays or objects are nested too deeply"


def _finite(text: str) -> float:
    # 1e400 would become inf: a value no JSON reader downstream could take back.
    value = float(text)
    if math.isinf(value):
        raise _BadJson(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    # Python reads NaN and Infinity, JSON has no such values: the stream's readers need not.
    raise _BadJson(f"{name} is not a JSON value")


def _objects(values: list[Any]) -> list[dict[str, Any]]:
    errors = [
        _error("a record must be a JSON object", record=i, value=to_json_text(value))
        for i, value in enumerate(values)
        if not isinstance(value, dict)
    ]
    if errors:
        raise _Rejected(errors)
    return values


def _check_records(
    config: PipelineConfig, res: Resource, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every rule each record breaks: ``{record, field, rule, value, message}``; empty if none."""
    try:
        frame = records_to_frame(records)
    except ColumnClash as exc:
        return [_error(str(exc))]
    names = normalized_names(frame.columns)
    frame = frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64)).rename(names)
    rejects = []
    try:
        for _, step in validation_steps(config, res):
            result = step(frame)
            rejects.append(result.rejects)
            frame = result.frame
    except LadleError as exc:
        return [_error(str(exc), rule="step")]
    combined = pl.concat(rejects).sort(ROW, maintain_order=True)
    return [
        {
            "record": row[ROW],
            "field": row["field"],
            "rule": row["rule"],
            "value": row["value"],
            "message": row["message"],
        }
        for row in combined.iter_rows(named=True)
    ]


class _Ingest:
    """What the endpoints share: the pipeline, one Redis client per URL, the metrics."""

    def __init__(self, pipeline: Pipeline, factory: RedisFactory, metrics: Metrics) -> None:
        self._config = pipeline.config
        self._destination = pipeline.destination_url()
        self._factory = factory
        self._metrics = metrics
        self._clients: dict[str, redis.Redis] = {}
        self._lock = threading.Lock()

    def resource(self, name: str) -> tuple[Resource, RedisStreamOptions]:
        """The resource records are posted to and its stream; 404 unless it reads one."""
        res = self._config.resources.get(name)
        options = None if res is None else _stream_options(res)
        if res is None or options is None:
            resources = self._config.resources.values()
            streams = [r.name for r in resources if _stream_options(r) is not None]
            raise HTTPException(
                404,
                f"no resource {name!r} reads a redis_stream in pipeline {self._config.name!r}; "
                f"these do: {', '.join(streams) or 'none'}",
            )
        return res, options

    def accept(
        self, res: Resource, options: RedisStreamOptions, body: bytes, *, ndjson: bool
    ) -> JSONResponse:
        """Parse and check the records; append them all (202) or none (400)."""
        try:
            records = _parse_records(body, ndjson=ndjson)
            errors = _check_records(self._config, res, records) if records else []
        except _Rejected as exc:
            errors = exc.errors
        except RecursionError:
            errors = [_error(f"invalid JSON in the body: {_TOO_DEEP}")]
        if errors:
            return JSONResponse({"errors": errors}, status_code=400)
        try:
            ids = self._append(options, records)
        except redis.RedisError as exc:
            message = f"redis at {mask(options.url)} did not take the records: {exc}"
            log.warning("ingest failed", resource=res.name, error=message)
            return JSONResponse({"detail": message}, status_code=503)
        if ids:
            self._metrics.records_in.labels(resource=res.name).inc(len(ids))
            log.info("records ingested", resource=res.name, records=len(ids), stream=options.stream)
        return JSONResponse({"ids": ids}, status_code=202)

    def _append(self, options: RedisStreamOptions, records: list[dict[str, Any]]) -> list[str]:
        """XADD every record in one MULTI/EXEC: the stream gets all of them or none."""
        if not records:
            return []
        pipe = self._client(options.url).pipeline(transaction=True)
        for record in records:
            pipe.xadd(options.stream, encode_record(record, options.field))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]

    def health(self) -> dict[str, str]:
        """``ok`` or what went wrong, for Redis (every stream's server) and the destination."""
        redis_status = "ok"
        urls = dict.fromkeys(
            o.url for o in map(_stream_options, self._config.resources.values()) if o
        )
        for url in urls:
            try:
                self._client(url).ping()
            except redis.RedisError as exc:
                redis_status = f"unreachable: {mask(url)}: {exc}"
                break
        return {
            "redis": redis_status,
            "destination": _destination_status(self._destination, self._config.base_dir),
        }

    def _client(self, url: str) -> redis.Redis:
        with self._lock:
            if url not in self._clients:
                self._clients[url] = self._factory(url)
            return self._clients[url]

    def close(self) -> None:
        """Close every Redis client opened."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def _stream_options(res: Resource) -> RedisStreamOptions | None:
    options = res.source_options
    return options if isinstance(options, RedisStreamOptions) else None


def _destination_status(url: str, base_dir: Path) -> str:
    """Whether the destination answers: a server is asked, a DuckDB file is not opened.

    DuckDB lets one process write a file; opening it here would fail while a worker
    holds it, or make the worker fail. So the file (or the directory it will be
    created in) must be writable instead.
    """
    if url.split(":", 1)[0].lower() == "duckdb":
        return _duckdb_status(url)
    try:
        destination = connect(url, base_dir=base_dir)
    except LadleError as exc:
        return f"unreachable: {mask(str(exc))}"
    try:
        failed = [f"{c.name}: {c.detail}" for c in destination.diagnose() if not c.ok]
    except LadleError as exc:
        failed = [str(exc)]
    finally:
        destination.close()
    return f"unreachable: {mask('; '.join(failed))}" if failed else "ok"


def _duckdb_status(url: str) -> str:
    path = Path(url.split("://", 1)[1].removeprefix("/").split("?", 1)[0])
    if str(path) == ":memory:":
        return "ok"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK) and (existing.is_dir() or existing == path):
        return "ok"
    return f"unreachable: cannot write DuckDB file {str(path)!r}"
