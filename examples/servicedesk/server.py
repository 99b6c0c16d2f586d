"""A local service desk API over the files generate.py writes, for ladle's HTTP source.

Each endpoint pages the way a different real API does:

    GET /api/tickets     ?page=N&per_page=M  {"data": [...]} and Link: <...>; rel="next"
    GET /api/comments    ?cursor=C&limit=M   {"data": [...], "meta": {"next_cursor": C | null}}
    GET /api/timesheets  ?offset=N&limit=M   {"records": [...]}; the last page is short

All three take ``updated_since`` (only records with a later ``updated_at``) and sort by
(updated_at, key), so paging is stable. Every request needs ``Authorization: Bearer <token>``.
With ``fail_every=N`` every N-th request is a 503 with ``Retry-After: 0``. A data file is
read again when it changes, so a new round of generate.py shows without a restart.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import hmac
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

Record = dict[str, Any]
Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra headers

KEYS = {
    "tickets": ("ticket_id",),
    "comments": ("comment_id",),
    "timesheets": ("user", "date", "time_from", "ticket_id"),
}
DEFAULT_TOKEN = "demo-token"  # noqa: S105 - a demo on localhost; set SERVICEDESK_TOKEN
MAX_PAGE = 1000
MAX_INDEX = 10**9


class BadRequest(ValueError):
    """A query parameter the API cannot use: answered with 400 and this message."""


# ---------------------------------------------------------------- data


def _parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 timestamp; naive ones are UTC. An unencoded ``+`` arrives as a space."""
    repaired = text[:11] + text[11:].replace(" ", "+")
    try:
        moment = datetime.fromisoformat(repaired)
    except ValueError:
        raise BadRequest(
            f"{name}={text!r} is not an ISO 8601 timestamp (e.g. 2026-03-01T00:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Table:
    """One endpoint's records in serving order, with their (updated_at, *key) positions."""

    records: list[Record]
    positions: list[tuple[Any, ...]]

    @classmethod
    def load(cls, path: Path, key: tuple[str, ...]) -> Table:
        """Read a JSON array and sort it by (updated_at, *key)."""
        records = json.loads(path.read_text(encoding="utf-8"))
        pairs = [
            ((_parse_time(r["updated_at"], "updated_at"), *(r[k] for k in key)), r) for r in records
        ]
        pairs.sort(key=lambda pair: pair[0])
        return cls([r for _, r in pairs], [p for p, _ in pairs])

    def since(self, moment: datetime | None) -> int:
        """Index of the first record updated strictly after ``moment`` (0 for None)."""
        if moment is None:
            return 0
        return bisect.bisect_right(self.positions, moment, key=lambda position: position[0])

    def after(self, position: tuple[Any, ...]) -> int:
        """Index of the first record past a cursor's position."""
        return bisect.bisect_right(self.positions, position)


class Exports:
    """The data directory's files, each parsed again when its mtime, size or inode changes."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], Table]] = {}

    def missing(self) -> list[Path]:
        """The endpoint files that do not exist (yet)."""
        return [
            self._dir / f"{name}.json" for name in KEYS if not (self._dir / f"{name}.json").exists()
        ]

    def table(self, name: str) -> Table:
        """The endpoint's records as the file holds them now."""
        path = self._dir / f"{name}.json"
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, Table.load(path, KEYS[name]))
                self._cache[name] = cached
            return cached[1]


# ---------------------------------------------------------------- endpoints


def _int(query: Mapping[str, str], name: str, default: int, bounds: tuple[int, int]) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not bounds[0] <= int(text) <= bounds[1]:
        raise BadRequest(f"{name} must be an integer from {bounds[0]} to {bounds[1]}, not {text!r}")
    return int(text)


def _start(table: Table, query: Mapping[str, str]) -> int:
    text = query.get("updated_since")
    return table.since(None if text is None else _parse_time(text, "updated_since"))


def _tickets(table: Table, query: dict[str, str], page_size: int, url: str) -> Answer:
    """Page-number pagination with a ``Link: rel="next"`` header while more pages remain."""
    page = _int(query, "page", 1, (1, MAX_INDEX))
    per_page = _int(query, "per_page", page_size, (1, MAX_PAGE))
    start = _start(table, query) + (page - 1) * per_page
    headers = {}
    if start + per_page < len(table.records):
        headers["Link"] = f'<{url}?{urlencode(query | {"page": str(page + 1)})}>; rel="next"'
    return 200, {"data": table.records[start : start + per_page]}, headers


def _encode(position: tuple[Any, ...]) -> str:
    moment, *key = position
    text = json.dumps([moment.isoformat(), *key])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _resume(table: Table, cursor: str) -> int:
    """Index of the first record past the position the cursor encodes."""
    try:
        moment, *key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return table.after((datetime.fromisoformat(moment), *key))
    except (ValueError, TypeError, binascii.Error):
        message = f"cursor={cursor!r} is not one this API issued; start again without it"
        raise BadRequest(message) from None


def _comments(table: Table, query: dict[str, str], page_size: int, url: str) -> Answer:
    """Cursor pagination: a cursor is the last record's position, so new records shift no page."""
    limit = _int(query, "limit", page_size, (1, MAX_PAGE))
    start = _start(table, query)
    if "cursor" in query:
        start = max(start, _resume(table, query["cursor"]))
    end = start + limit
    cursor = _encode(table.positions[end - 1]) if end < len(table.records) else None
    return 200, {"data": table.records[start:end], "meta": {"next_cursor": cursor}}, {}


def _timesheets(table: Table, query: dict[str, str], page_size: int, url: str) -> Answer:
    """Offset/limit pagination; a page shorter than ``limit`` is the last."""
    offset = _int(query, "offset", 0, (0, MAX_INDEX))
    limit = _int(query, "limit", page_size, (1, MAX_PAGE))
    start = _start(table, query) + offset
    return 200, {"records": table.records[start : start + limit]}, {}


ROUTES: dict[str, Callable[[Table, dict[str, str], int, str], Answer]] = {
    "/api/tickets": _tickets,
    "/api/comments": _comments,
    "/api/timesheets": _timesheets,
}


# ---------------------------------------------------------------- HTTP


class _Desk:
    """What every request shares: the exports, the token, the failure counter, the log."""

    def __init__(
        self, exports: Exports, *, token: str, fail_every: int, page_size: int, log: TextIO | None
    ) -> None:
        self.exports, self.page_size, self.log = exports, page_size, log
        self._token = token.encode()
        self._fail_every = fail_every
        self._requests = 0
        self._lock = threading.Lock()

    def should_fail(self) -> bool:
        """True for every ``fail_every``-th request, counted across all threads."""
        with self._lock:
            self._requests += 1
            return self._fail_every > 0 and self._requests % self._fail_every == 0

    def authorized(self, header: str) -> bool:
        """The bearer token matches, compared in constant time."""
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self._token
        )

    def answer(self, target: str, authorization: str, host: str) -> Answer:
        """The status, JSON body and headers for one GET."""
        if self.should_fail():
            return 503, {"error": "service temporarily unavailable; retry"}, {"Retry-After": "0"}
        if not self.authorized(authorization):
            challenge = {"WWW-Authenticate": 'Bearer realm="servicedesk"'}
            return 401, {"error": "missing or wrong bearer token"}, challenge
        url = urlsplit(target)
        route = ROUTES.get(url.path)
        if route is None:
            return 404, {"error": f"no endpoint {url.path}; try one of {', '.join(ROUTES)}"}, {}
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        name = url.path.rsplit("/", 1)[1]
        try:
            table = self.exports.table(name)
        except (OSError, ValueError, KeyError) as exc:
            return 500, {"error": f"cannot read {name}.json: {exc!r}; run generate.py again"}, {}
        try:
            return route(table, query, self.page_size, f"http://{host}{url.path}")
        except BadRequest as exc:
            return 400, {"error": str(exc)}, {}


class _Server(ThreadingHTTPServer):
    desk: _Desk


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection frees its thread
    disable_nagle_algorithm = True  # headers and body are two writes: don't wait 40 ms between

    def do_GET(self) -> None:
        """Answer one request and log it: method, path and status, never headers."""
        desk = self.server.desk
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        status, body, headers = desk.answer(self.path, self.headers.get("Authorization", ""), host)
        if desk.log is not None:  # before the answer, so a client that has it sees the line
            print(f"{self.command} {self.path} {status}", file=desk.log, flush=True)
        content = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silence http.server's own lines: do_GET logs its own, without the client's address."""


class ServiceDeskServer:
    """The API on a local port in a background thread; a context manager that stops it.

    ``with ServiceDeskServer(Path("data"), token="t") as desk: httpx.get(desk.url + "/api/...")``
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        token: str,
        port: int = 0,
        host: str = "127.0.0.1",
        fail_every: int = 0,
        page_size: int = 100,
        log: TextIO | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE}, not {page_size}")
        if fail_every < 0:
            raise ValueError(f"fail_every must be 0 (never) or more, not {fail_every}")
        exports = Exports(Path(data_dir))
        if missing := exports.missing():
            raise FileNotFoundError(
                f"{missing[0]} not found: run generate.py --out {data_dir} first"
            )
        self._server = _Server((host, port), _Handler)
        self._server.desk = _Desk(
            exports, token=token, fail_every=fail_every, page_size=page_size, log=log
        )
        self._thread = threading.Thread(target=self._serve, name="servicedesk", daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port``, with the port the system picked for port 0."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # stop() waits at most one interval

    def start(self) -> ServiceDeskServer:
        """Serve in the background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> ServiceDeskServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    """Serve ``--data`` until Ctrl-C; the token comes from ``SERVICEDESK_TOKEN``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--fail-every", type=int, default=0, metavar="N", help="every N-th request answers 503"
    )
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args()
    token = os.environ.get("SERVICEDESK_TOKEN", DEFAULT_TOKEN)
    try:
        desk = ServiceDeskServer(
            args.data,
            token=token,
            port=args.port,
            host=args.host,
            fail_every=args.fail_every,
            page_size=args.page_size,
            log=None if args.quiet else sys.stderr,
        )
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    shown = token if token == DEFAULT_TOKEN else "from SERVICEDESK_TOKEN"
    print(
        f"servicedesk API on {desk.url} (data: {args.data}, token: {shown}); Ctrl-C stops it",
        flush=True,
    )
    with desk, contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
