"""A small REST API on a real socket, for testing the ``http`` source without mocks.

``FakeApi`` serves a list of records at ``/api/tickets`` on 127.0.0.1 (a free port),
paginated in one of the styles the source knows, behind an optional bearer token, and
answers scripted failures first (``api.fail(...)``). It records every request it
receives, so tests can assert what reached the server::

    with FakeApi(records, style="cursor", page_size=10) as api:
        ...  # read api.url; afterwards look at api.requests
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

Style = Literal["none", "page", "offset", "cursor", "link"]
PATH = "/api/tickets"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a status, an optional ``Retry-After``, a body, or a stall."""

    status: int = 503
    retry_after: str | None = None
    body: bytes = b'{"error": "scripted failure"}'
    content_type: str = "application/json"
    stall: float = 0.0
    """Seconds to wait before answering normally (to trip the client's timeout)."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """A request as the server received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class FakeApi:
    """A paginated JSON API over ``records``; start it with ``with FakeApi(...) as api``."""

    records: list[Any] = field(default_factory=list)
    style: Style = "page"
    page_size: int = 10
    """Records per page; ``per_page``/``limit`` in the query override it."""
    envelope: str | None = "data"
    """The key the page's records are under; None: the body is the bare array."""
    token: str | None = None
    """When set, requests without ``Authorization: Bearer <token>`` get 401."""
    script: list[Reply] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    open_connections: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeApi:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._stop.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads
        self._thread.join()

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The records' endpoint."""
        return self.base + PATH

    def fail(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before serving normally."""
        with self._lock:
            self.script.extend(replies)

    # -- serving -------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> _Answer:
        """What to send back for one request (called from a handler thread)."""
        with self._lock:
            self.requests.append(Seen(path, query, headers, time.monotonic()))
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            if not scripted.stall:
                extra = dict(scripted.headers)
                if scripted.retry_after is not None:
                    extra["Retry-After"] = scripted.retry_after
                return _Answer(scripted.status, scripted.body, scripted.content_type, extra)
            self._stop.wait(scripted.stall)
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return _Answer.json(401, {"error": "missing or wrong bearer token"})
        if path != PATH:
            return _Answer.json(404, {"error": f"no such endpoint: {path}"})
        return self._page(query)

    def _page(self, query: dict[str, str]) -> _Answer:
        size = int(query.get("per_page", query.get("limit", self.page_size)))
        start, following = self._window(query, size)
        chunk = self.records[start : start + size]
        body: Any = chunk if self.envelope is None else {self.envelope: chunk}
        headers: dict[str, str] = {}
        more = start + size < len(self.records)
        if self.style == "cursor":
            body["meta"] = {"next_cursor": f"c{start + size}" if more else None}
        if self.style == "link" and more:
            link = f"{PATH}?{urlencode({**query, 'page': following})}"
            headers["Link"] = f'<{link}>; rel="next", <{PATH}?page=1>; rel="first"'
        return _Answer.json(200, body, headers)

    def _window(self, query: dict[str, str], size: int) -> tuple[int, int]:
        """The index of the page's first record, and the next page's number."""
        if self.style == "none":
            return 0, 0
        if self.style == "offset":
            return int(query.get("offset", 0)), 0
        if self.style == "cursor":
            return int(query.get("cursor", "c0")[1:]), 0
        page = int(query.get("page", 1))
        return (page - 1) * size, page + 1

    def seen(self, key: str) -> list[str | None]:
        """The value of a query parameter in each request received, in order."""
        return [request.query.get(key) for request in self.requests]


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, body: Any, headers: dict[str, str] | None = None) -> _Answer:
        return cls(status, json.dumps(body).encode(), "application/json", headers or {})


class _Server(ThreadingHTTPServer):
    api: FakeApi
    daemon_threads = False  # so that server_close() waits for every handler

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do
    timeout = 10  # a connection a client leaked cannot hold the server's shutdown for long
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.api._lock:
            self.server.api.open_connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.api._lock:
                self.server.api.open_connections -= 1

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {key.lower(): value for key, value in self.headers.items()}
        answer = self.server.api.answer(parts.path, query, headers)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Keep test output clean."""
