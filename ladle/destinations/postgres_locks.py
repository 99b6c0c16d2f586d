"""Waiting in PostgreSQL: the timeouts every session runs under, and who holds a lock.

A load that needs a table another session has locked waits, silently, for as long as
that session holds it. So every pooled session runs with ``lock_timeout`` (60 s unless
the URL says otherwise) and ``statement_timeout`` (off unless the URL says otherwise),
and while a load waits on a lock a :class:`LockWatcher` asks, from another pooled
connection, who blocks it (``pg_blocking_pids``), logs it, and keeps it for the error
that the timeout raises. :func:`await_session_end` waits out a session whose connection
was lost during COMMIT, so that the database can say whether the commit landed.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from ladle.errors import DestinationError
from ladle.redact import mask

log = structlog.get_logger("ladle")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)?\s*$")
_REPEAT_S = 30.0
"""While the wait goes on, the watcher logs the holders again this often."""
_UNIT_MS = {"ms": 1, "s": 1000, "sec": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000}


def _milliseconds(key: str, text: str) -> int:
    """``30s``, ``500ms``, ``5min``, ``1h`` or ``0`` (no limit) in milliseconds."""
    match = _DURATION.match(text)
    # A bare number means seconds to ladle and milliseconds to PostgreSQL: refuse it.
    if not match or (match.group(2) is None and float(match.group(1)) != 0):
        raise DestinationError(
            f"?{key}={text!r} in the destination URL is not a duration; write it with a "
            "unit (500ms, 30s, 5min, 1h), or 0 for no limit"
        )
    return round(float(match.group(1)) * _UNIT_MS[match.group(2) or "ms"])


def seconds_text(ms: int) -> str:
    """``60 s``, ``0.5 s``: a timeout as a message gives it."""
    return f"{ms / 1000:g} s"


@dataclass(frozen=True)
class Timeouts:
    """``lock_timeout`` and ``statement_timeout`` of every session, in milliseconds (0: none).

    A lock wait ends after a minute with an error that names the holder; a statement may
    run as long as it needs (a large merge takes what it takes) unless the URL limits it.
    """

    lock_ms: int = 60_000
    statement_ms: int = 0

    KEYS = ("lock_timeout", "statement_timeout")

    @classmethod
    def from_query(cls, query: list[tuple[str, str]]) -> Timeouts:
        """The timeouts a URL's query string sets (``?lock_timeout=30s&statement_timeout=0``)."""
        values = dict(query)
        default = cls()
        lock = values.get("lock_timeout")
        statement = values.get("statement_timeout")
        return cls(
            _milliseconds("lock_timeout", lock) if lock is not None else default.lock_ms,
            _milliseconds("statement_timeout", statement)
            if statement is not None
            else default.statement_ms,
        )

    def apply(self, conn: Any) -> None:
        """Set both on a session (``conn`` is a psycopg connection; the caller commits)."""
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false), "
            "set_config('statement_timeout', %s, false)",
            [f"{self.lock_ms}ms", f"{self.statement_ms}ms"],
        )

    @property
    def report_after(self) -> float:
        """Seconds of waiting on a lock before the watcher logs who holds it."""
        return min(5.0, self.lock_ms / 2000) if self.lock_ms else 5.0


@dataclass(frozen=True)
class Holder:
    """A session that holds a lock a load waits for, as ``pg_stat_activity`` shows it."""

    pid: int
    application_name: str
    state: str
    seconds: float
    """How long its transaction has been open."""
    query: str
    """The start of its (last) query, string literals and secrets masked."""

    def describe(self) -> str:
        """``pid 1234 (psql, idle in transaction for 75 s: LOCK TABLE …)``."""
        who = self.application_name or "no application_name"
        query = f": {self.query}" if self.query else ""
        return f"pid {self.pid} ({who}, {self.state or '?'} for {self.seconds:.0f} s{query})"


def _masked_query(query: str, limit: int = 100) -> str:
    """The start of a query, its string literals hidden: they may hold row data."""
    text = re.sub(r"\s+", " ", re.sub(r"'(?:[^']|'')*'", "'…'", query or "")).strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + " …"
    return mask(text)


_BLOCKERS = """
SELECT b.pid, coalesce(b.application_name, ''), coalesce(b.state, ''),
       extract(epoch FROM now() - coalesce(b.xact_start, b.query_start, b.backend_start)),
       coalesce(b.query, ''),
       (SELECT coalesce(l.relation::regclass::text, l.locktype) FROM pg_locks l
         WHERE l.pid = %(pid)s AND NOT l.granted LIMIT 1),
       (SELECT extract(epoch FROM now() - w.query_start) FROM pg_stat_activity w
         WHERE w.pid = %(pid)s)
FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(%(pid)s)) ORDER BY b.pid
"""

_HOLDERS_OF = """
SELECT b.pid, coalesce(b.application_name, ''), coalesce(b.state, ''),
       extract(epoch FROM now() - coalesce(b.xact_start, b.query_start, b.backend_start)),
       coalesce(b.query, '')
FROM pg_stat_activity b
WHERE b.pid IN (SELECT l.pid FROM pg_locks l WHERE l.relation = to_regclass(%s) AND l.granted)
  AND b.pid <> %s ORDER BY b.pid
"""


def _holders(rows: list[tuple[Any, ...]]) -> list[Holder]:
    return [
        Holder(int(r[0]), str(r[1]), str(r[2]), float(r[3] or 0), _masked_query(str(r[4])))
        for r in rows
    ]


def await_session_end(pool: Any, pid: int, *, timeout: float = 60.0) -> bool:
    """Wait until backend ``pid`` is gone; False if it is still there after ``timeout``.

    A connection lost during COMMIT leaves the server finishing that commit on its own:
    only once its session has ended does the database say for sure whether it landed.
    """
    deadline = time.monotonic() + timeout
    unanswered = 0
    while time.monotonic() < deadline and unanswered < _ASK_SERVER:
        try:
            with pool.connection(timeout=2) as conn:
                row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                if row.fetchone() is None:
                    return True
                conn.rollback()
            unanswered = 0
        except Exception as exc:  # the server is gone too: nobody can tell for now
            unanswered += 1
            log.debug("cannot ask whether a session ended", error=mask(str(exc)))
        time.sleep(0.2)
    return False


_ASK_SERVER = 3
"""Attempts to reach a server that does not answer before giving up on the question."""


class LockWatcher:
    """While a load's session waits on a lock, log who holds it; remember them for the error.

    A daemon thread asks ``pg_blocking_pids`` about the load's backend, from a pooled
    connection of its own, every second or so. It never fails the load: a question that
    cannot be asked (the server is gone) is simply not answered.
    """

    def __init__(
        self, pool: Any, pid: int, *, table: str, timeouts: Timeouts, resource_table: str
    ) -> None:
        self.pool = pool
        self.pid = pid
        """The load's backend."""
        self._table = table
        """The load's table, schema-qualified: the holders of its locks, if none were seen."""
        self._resource_table = resource_table
        self.timeouts = timeouts
        self._stop = threading.Event()
        self.holders: list[Holder] = []
        self.waiting_on: str | None = None
        self._thread = threading.Thread(target=self._run, name="ladle-lock-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (it ends within one poll)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        after = self.timeouts.report_after
        every = max(0.2, min(1.0, after / 2))
        reported = 0.0
        while not self._stop.wait(every):
            try:
                waited = self._look()
            except Exception as exc:  # the watcher never fails the load
                log.debug("lock watcher could not ask", error=mask(str(exc)))
                continue
            now = time.monotonic()
            if self.holders and waited >= after and now - reported >= _REPEAT_S:
                reported = now
                log.warning(
                    "waiting for a lock",
                    table=self._resource_table,
                    lock=self.waiting_on,
                    waited_s=round(waited, 1),
                    lock_timeout=seconds_text(self.timeouts.lock_ms)
                    if self.timeouts.lock_ms
                    else "none",
                    held_by=[h.describe() for h in self.holders],
                )

    def _look(self) -> float:
        """Ask who blocks the load; return how long its statement has waited (0: not)."""
        with self.pool.connection(timeout=1) as conn:
            rows = conn.execute(_BLOCKERS, {"pid": self.pid}).fetchall()
            conn.rollback()
        if not rows:
            self.holders = []
            return 0.0
        self.holders = _holders(rows)
        self.waiting_on = rows[0][5]
        return float(rows[0][6] or 0)

    def describe(self) -> str:
        """``a lock on table s.events held by pid 1234 (psql, idle in transaction …)``."""
        holders = self.holders
        what = self.waiting_on or self._table
        if not holders:
            try:
                with self.pool.connection(timeout=2) as conn:
                    rows = conn.execute(_HOLDERS_OF, [self._table, self.pid]).fetchall()
                    conn.rollback()
                holders = _holders(rows)
            except Exception:  # the error is told without the holders then
                holders = []
        kind = "an advisory lock" if what == "advisory" else f"a lock on {_lock_name(what)}"
        if not holders:
            return f"{kind} (held by another session)"
        return f"{kind} held by " + ", ".join(h.describe() for h in holders)


def _lock_name(what: str) -> str:
    """``table s.events`` for a relation; ``a row (transactionid)`` for other lock types."""
    if what in ("transactionid", "tuple"):
        return "a row another transaction changed"
    return f"table {what}"
