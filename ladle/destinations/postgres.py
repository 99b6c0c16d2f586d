"""PostgreSQL destination: COPY in, one set-based statement to merge, exact counts.

Batches go as binary COPY encoded from Arrow (or as CSV where a column cannot go
exactly: :mod:`ladle.destinations.postgres_copy`) through one long-lived
``COPY … FROM STDIN`` whose writer thread sends while the next batch is encoded. A
merge into an empty table copies straight into it (keys seen before in the load go to
a TEMP staging table instead); otherwise everything is staged and merged with one
``INSERT … ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM …``, whose ``RETURNING
(xmax = 0)`` tells inserted from updated rows. Every identifier goes through
``psycopg.sql.Identifier``; every value is bound or COPYed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from ladle.batch import SEQ
from ladle.config import WriteMode
from ladle.destinations import Check, LoadCounts, LoadTarget, check_shrink, mask
from ladle.destinations.evolve import TEXT, batch_types, evolve
from ladle.destinations.keyset import KeySet, key_hashes
from ladle.destinations.postgres_copy import CopyStream, wire_types
from ladle.destinations.postgres_locks import (
    LockWatcher,
    Timeouts,
    await_session_end,
    seconds_text,
)
from ladle.destinations.references import KeyLookup, empty_keys, key_lookup
from ladle.errors import DestinationError
from ladle.ledger import RUNS, RunEntry
from ladle.quarantine import QUARANTINE, SHAPE_SQL, summarize
from ladle.schema import ColumnType, Kind, TableDef, decimal_shape, fit_name
from ladle.state import STATE

_SYSTEM = (RUNS, QUARANTINE, STATE)
# SQLSTATE classes worth retrying: connection exceptions, and serialization failures.
_TRANSIENT = ("08", "40")
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"
_SHUTDOWN = ("57P01", "57P02", "57P03")
"""The server ended the session: terminated, crashed, or not accepting connections yet."""


# libpq waits for ever by default; a connection attempt gives up after this many seconds.
_CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class _Settings:
    """What a ``postgresql://`` URL asks of the pool (ladle's parameters taken out)."""

    conninfo: str
    """The URL for libpq: its own parameters (``connect_timeout``, ``sslmode``...) stay."""
    schema: str
    """``?schema=``, default ``public``."""
    pool_timeout: float
    """``?pool_timeout=``: seconds to wait for a pooled connection (default 30), after
    which the destination counts as unavailable."""
    connect: dict[str, Any]
    """Defaults for libpq parameters the URL leaves out, for every connection."""
    timeouts: Timeouts
    """``?lock_timeout=`` and ``?statement_timeout=``, set on every pooled session."""


def _parse_url(url: str) -> _Settings:
    """Split ladle's ``?schema=``, ``?pool_timeout=``, ``?lock_timeout=`` and
    ``?statement_timeout=`` off the URL: libpq does not know them.

    Every connection, the pool's too, gets ``connect_timeout=10`` unless the URL sets one:
    without it a server that accepts and then does not answer holds a pool thread forever.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    given = dict(query)
    schema = given.get("schema", "public")
    text = given.get("pool_timeout", "30")
    try:
        pool_timeout = float(text)
    except ValueError:
        pool_timeout = 0.0
    if not 0 < pool_timeout < float("inf"):
        raise DestinationError(
            f"{mask(url)}: pool_timeout must be a number of seconds above 0, not {text!r}"
        )
    defaults = {"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "ladle"}
    ours = ("schema", "pool_timeout", *Timeouts.KEYS)
    rest = urlencode([(k, v) for k, v in query if k not in ours])
    return _Settings(
        conninfo=urlunsplit(parts._replace(query=rest)),
        schema=schema,
        pool_timeout=pool_timeout,
        connect={k: v for k, v in defaults.items() if k not in given},
        timeouts=Timeouts.from_query(query),
    )


def _configure(conn: psycopg.Connection[Any], *, timeouts: Timeouts) -> None:
    """Every pooled connection: UTC session, JSON read back as text (as DuckDB gives it),
    the lock and statement timeouts."""
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_loader("json", TextLoader)
    conn.execute("SET TIME ZONE 'UTC'")
    timeouts.apply(conn)
    conn.commit()


class PostgresDestination:
    """A PostgreSQL database (``postgresql://user@host:port/db?schema=name``), pooled.

    ``?lock_timeout=`` (default 60s) and ``?statement_timeout=`` (default 0: none) set how
    long any statement may wait for a lock, or run.
    """

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = mask(url)
        settings = _parse_url(url)
        self.schema = settings.schema
        self._timeouts = settings.timeouts
        # check= pings a connection before handing it out: after a server restart or a
        # terminated backend the pool replaces it instead of failing the next statement.
        self._pool = ConnectionPool(
            settings.conninfo, min_size=1, max_size=4, open=False, name="ladle",
            configure=partial(_configure, timeouts=self._timeouts),
            timeout=settings.pool_timeout, check=ConnectionPool.check_connection,
            kwargs=settings.connect,
        )  # fmt: skip
        self._checked_out = 0
        try:
            with self._translated(f"connecting to {self.url}"):
                # One plain connection first: a refused or misconfigured server fails at
                # once with the server's own message, not after the pool's timeout.
                psycopg.connect(settings.conninfo, **settings.connect).close()
                self._pool.open(wait=True, timeout=settings.pool_timeout)
            if read_only:  # only looking: a missing table reads as empty
                return
            with self._translated("creating ladle's tables"), self._pool.connection() as conn:
                # Workers start together: IF NOT EXISTS is not safe against a concurrent
                # CREATE, so the setup is serialized with a lock held until it commits.
                _lock_ddl(conn, self.schema, "")
                create = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
                conn.execute(create.format(sql.Identifier(self.schema)))
                for table in _SYSTEM:
                    _ensure_system_table(conn, self.schema, table)
                conn.commit()
        except BaseException:
            # No caller will close a destination it never got: stop the pool's threads.
            self._pool.close()
            raise

    def connections_in_use(self) -> int:
        """Connections handed to loads and not yet given back (for leak accounting)."""
        return self._checked_out

    def begin(self, target: LoadTarget) -> PostgresLoad:
        """Check a connection out of the pool for one resource's load."""
        with self._translated(f"connecting to {self.url}"):
            conn = self._pool.getconn()
        self._checked_out += 1
        watcher = LockWatcher(
            self._pool,
            conn.info.backend_pid,
            table=sql.Identifier(self.schema, target.table).as_string(conn),
            timeouts=self._timeouts,
            resource_table=target.table,
        )
        return PostgresLoad(conn, self.schema, target, release=self._give_back, watcher=watcher)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Return a load's connection; the pool discards it if the server dropped it."""
        self._checked_out -= 1
        self._pool.putconn(conn)

    def record_run(self, entry: RunEntry) -> None:
        """Write the ledger row in its own transaction."""
        with self._translated("writing the ledger"), self._pool.connection() as conn:
            _write_ledger(conn, self.schema, entry)

    def read(
        self, table: str, where: Mapping[str, Any], *, order_by: Sequence[str] = (), limit: int = 0
    ) -> pl.DataFrame:
        """Rows of ``table`` matching ``where``; ``-col`` in ``order_by`` sorts descending."""
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(self.schema, table))
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
                sql.SQL("{} = %s").format(sql.Identifier(k)) for k in where
            )
        if order_by:
            query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                sql.SQL("{} DESC").format(sql.Identifier(c[1:]))
                if c.startswith("-")
                else sql.Identifier(c)
                for c in order_by
            )
        if limit:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(int(limit)))
        with self._translated(f"reading {table}"), self._pool.connection() as conn:
            if _columns(conn, self.schema, table) is None:
                return pl.DataFrame()
            cursor = conn.execute(query, list(where.values()))
            names = [d.name for d in cursor.description or []]
            rows = cursor.fetchall()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def recent_runs(self, pipeline: str | None, last_n_runs: int) -> pl.DataFrame:
        """The ledger rows of the newest ``last_n_runs`` runs (of ``pipeline``, if given),
        newest run first; a run's rows by start, newest first."""
        where = sql.SQL("WHERE pipeline = %s" if pipeline is not None else "")
        query = sql.SQL(
            "WITH picked AS (SELECT run_id, min(started_at) AS run_started FROM {runs} {where} "
            "GROUP BY run_id ORDER BY run_started DESC, run_id LIMIT {n}) "
            "SELECT r.* FROM {runs} AS r JOIN picked USING (run_id) {r_where} "
            "ORDER BY picked.run_started DESC, r.run_id, r.started_at DESC, r.resource"
        ).format(
            runs=sql.Identifier(self.schema, RUNS.name),
            where=where,
            n=sql.Literal(int(last_n_runs)),
            r_where=sql.SQL("WHERE r.pipeline = %s" if pipeline is not None else ""),
        )
        with self._translated(f"reading {RUNS.name}"), self._pool.connection() as conn:
            if _columns(conn, self.schema, RUNS.name) is None:
                return pl.DataFrame()
            cursor = conn.execute(query, [pipeline, pipeline] if pipeline is not None else [])
            names = [d.name for d in cursor.description or []]
            rows = cursor.fetchall()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def quarantine_summary(
        self, *, pipeline: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Per run and resource: records, first position and errors by ``field: rule``,
        counted by the server (memory does not grow with the records)."""
        where = {k: v for k, v in (("pipeline", pipeline), ("run_id", run_id)) if v is not None}
        cond: sql.Composable = sql.SQL("")
        if where:
            cond = sql.SQL("WHERE ") + sql.SQL(" AND ").join(
                sql.SQL("q.{} = %s").format(sql.Identifier(k)) for k in where
            )
        table = sql.Identifier(self.schema, QUARANTINE.name)
        shapes = sql.SQL(
            'SELECT run_id, resource, count(*), min(position COLLATE "C"), min(quarantined_at) '
            "FROM {} AS q {} GROUP BY run_id, resource, " + SHAPE_SQL
        ).format(table, cond)
        reasons = sql.SQL(
            "SELECT run_id, resource, "
            "coalesce((e->>'field') || ': ', '') || coalesce(e->>'rule', '?') AS reason, "
            "count(*) FROM {} AS q, jsonb_array_elements(q.errors) AS e {} "
            "GROUP BY run_id, resource, reason"
        ).format(table, cond)
        with (
            self._translated(f"reading {QUARANTINE.name}"),
            self._pool.connection() as conn,
        ):
            if _columns(conn, self.schema, QUARANTINE.name) is None:
                return []
            params = list(where.values())
            found = conn.execute(shapes, params).fetchall()
            return summarize(found, conn.execute(reasons, params).fetchall())

    def read_state(self, pipeline: str, resource: str) -> dict[str, Any]:
        """The resource's ``_ladle_state`` entries by key, values decoded from JSON."""
        query = sql.SQL("SELECT key, value::text FROM {} WHERE pipeline = %s AND resource = %s")
        with self._translated("reading state"), self._pool.connection() as conn:
            if _columns(conn, self.schema, STATE.name) is None:
                return {}
            rows = conn.execute(
                query.format(sql.Identifier(self.schema, STATE.name)), [pipeline, resource]
            ).fetchall()
        return {key: json.loads(value) if value is not None else None for key, value in rows}

    def existing_keys(self, table: str, columns: Sequence[str], keys: pl.DataFrame) -> pl.DataFrame:
        """Of the distinct rows of ``keys``, those in ``table``: the keys go as bound arrays.

        Runs on a pooled connection of its own (a load may hold another), returned on
        every path; it sees what is committed.
        """
        with self._translated(f"looking up keys in {table!r}"), self._pool.connection() as conn:
            lookup = key_lookup(keys, columns, _columns(conn, self.schema, table))
            if lookup is None:
                return empty_keys(keys, columns)
            typed = lookup.typed
            query = _existing_keys_query(sql.Identifier(self.schema, table), lookup)
            rows = conn.execute(query, [typed.get_column(c).to_list() for c in typed.columns])
            found = pl.DataFrame(rows.fetchall(), schema=typed.schema, orient="row")
        return lookup.present(found)

    def diagnose(self) -> list[Check]:
        """For ``ladle doctor``: does the server answer, which version, may ladle create tables."""
        checks = [Check("destination answers", True, self.url)]
        with self._translated("asking the server's version"), self._pool.connection() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            checks.append(Check("server version", True, f"PostgreSQL {row[0] if row else '?'}"))
            probe = sql.SQL("CREATE TABLE {} (x integer)").format(
                sql.Identifier(self.schema, "_ladle_doctor_probe")
            )
            try:
                conn.execute(probe)
            except psycopg.Error as exc:
                checks.append(Check("can create tables", False, _message(exc)))
            else:
                checks.append(Check("can create tables", True, f"in schema {self.schema!r}"))
            conn.rollback()
        return checks

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()

    def _translated(self, doing: str) -> AbstractContextManager[None]:
        return _translated(doing, timeouts=self._timeouts)


class PostgresLoad:
    """One resource's load on one pooled connection, in one transaction."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: str,
        target: LoadTarget,
        *,
        release: Any,
        watcher: LockWatcher | None = None,
    ) -> None:
        self._conn = conn
        self._release = release
        self._watcher = watcher
        self._schema = schema
        self._target = target
        self._table = target.table
        self._merge = target.write is WriteMode.MERGE
        self._staging = self._merge or bool(target.dedupe_on)
        self._write_into = (
            fit_name(f"{target.table}__ladle_new")
            if target.write is WriteMode.REPLACE
            else target.table
        )
        self._stage_name = fit_name(f"_ladle_stage_{target.table}")
        self._seen: list[str] = []
        self._existing: dict[str, ColumnType] = {}
        self._prepared = False
        self._direct = False
        """Merge into a table that was empty: new keys are copied straight into it."""
        self._direct_keys = KeySet()
        self._staged_keys = {key: KeySet() for key in target.dedupe_keys}
        self._keys_widened = False
        """A key column changed type during the load: earlier key hashes no longer compare."""
        self._copied = 0
        self._staged = 0
        self._copy = CopyStream(conn)
        self._wire: dict[str, str] = {}
        """The target's column types as PostgreSQL names them, for binary COPY."""
        self._timeouts = Timeouts.from_query([]) if watcher is None else watcher.timeouts

    # ------------------------------------------------------------ staging

    def stage(self, frame: pl.DataFrame) -> None:
        """Add a batch: evolve the table, then stream it through COPY."""
        if frame.height == 0:
            # Nothing to write (every record of the batch was quarantined); an empty batch
            # may lack the key columns, so it must not decide the table's shape either.
            return
        types = batch_types(frame, self._target.declared)
        with self._translated(f"loading {self._table!r}"):
            if not self._prepared:
                self._prepare(types)
            frame = self._evolve(frame, types)
            for column in types:
                if column not in self._seen:
                    self._seen.append(column)
            # Only the batch's own columns are copied: a later batch may lack a column an
            # earlier one brought (a nested field absent from its records), and COPY fills
            # the columns it is not given with NULL.
            columns = list(types)
            if self._direct:
                frame = self._copy_new_keys(frame, columns)
            if frame.height:
                if self._staging:
                    for key, seen in self._staged_keys.items():
                        self._note_keys(seen, frame, key)
                    stage = sql.Identifier(self._stage_name)
                    wire = {**self._wire, SEQ: "int8"}
                    self._copy.write(stage, [*columns, SEQ], frame, wire)
                    self._staged += frame.height
                else:
                    self._copy.write(self._ident(self._write_into), columns, frame, self._wire)
                    self._copied += frame.height

    def _copy_new_keys(self, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
        """Direct path: copy rows whose key is new to this load into the target; return the rest.

        A key hash seen before (in this batch or an earlier one) sends the row to staging,
        where the merge applies keep first/last. A hash collision only costs a detour.
        """
        fresh = self._note_keys(self._direct_keys, frame, self._target.primary_key)
        if fresh is None:
            return frame
        new_rows = frame.filter(fresh)
        if new_rows.height:
            self._copy.write(self._ident(self._table), columns, new_rows, self._wire)
            self._copied += new_rows.height
        return frame.filter(~fresh)

    def _note_keys(self, seen: KeySet, frame: pl.DataFrame, key: Sequence[str]) -> pl.Series | None:
        """Add the batch's keys to ``seen``; a mask of the rows whose key was new to it.

        Keys are hashed as the table holds them. A batch without a key column, or any
        batch after a key column was widened (a bigint key that met a value past 2**63),
        counts as a repeat and returns None: the staged, always-correct way handles it."""
        if self._keys_widened or any(k not in frame.columns for k in key):
            seen.repeated = True
            return None
        return seen.add(key_hashes(frame, key, {k: self._existing[k].polars for k in key}))

    def _prepare(self, types: Mapping[str, ColumnType | None]) -> None:
        """First batch: create the table (fresh for replace), decide the path, make staging."""
        self._prepared = True
        if self._target.write is WriteMode.REPLACE:
            self._execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(self._write_into)))
        existing = _columns(self._conn, self._schema, self._write_into)
        if existing is None:
            # Another load (a second worker) may be creating it: wait for it, look again.
            _lock_ddl(self._conn, self._schema, self._write_into)
            existing = _columns(self._conn, self._schema, self._write_into)
        if existing is None:
            self._create(types)
            existing = _columns(self._conn, self._schema, self._write_into)
        self._existing = dict(existing or {})
        self._wire = wire_types(self._conn, self._ident(self._write_into))
        if self._merge:
            self._require_unique_key()
            self._direct = self._can_copy_directly()
        if self._staging:
            self._execute(
                sql.SQL(
                    "CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
                    "SELECT *, NULL::bigint AS {seq} FROM {target} LIMIT 0"
                ).format(
                    stage=sql.Identifier(self._stage_name),
                    seq=sql.Identifier(SEQ),
                    target=self._ident(self._write_into),
                )
            )

    def _can_copy_directly(self) -> bool:
        """True when the target is empty: lock it against other writers and copy into it."""
        if self._target.dedupe_on not in ((), self._target.primary_key):
            return False
        self._execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._ident(self._table))
        )
        row = self._execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self._ident(self._table))
        ).fetchone()
        return not (row and row[0])

    def _create(self, types: Mapping[str, ColumnType | None]) -> None:
        pk = self._target.primary_key if self._merge else ()
        missing = [k for k in pk if k not in types]
        if missing:
            raise DestinationError(
                f"table {self._table!r}: primary key column(s) {missing} are not in the data"
            )
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL((t or TEXT).postgres))
            for c, t in types.items()
        ]
        if pk:
            columns.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk)))
            )
        self._execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                self._ident(self._write_into), sql.SQL(", ").join(columns)
            )
        )

    def _require_unique_key(self) -> None:
        """ON CONFLICT needs a unique index on exactly the primary key columns."""
        row = self._execute(
            sql.SQL(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND "
                "(SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
                " WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey)) = %s::text[]"
            ),
            [self._schema, self._table, sorted(self._target.primary_key)],
        ).fetchone()
        if row is None:
            keys = ", ".join(self._target.primary_key)
            raise DestinationError(
                f"table {self._table!r} has no unique index on ({keys}), which merge needs; "
                f"create one (ALTER TABLE … ADD PRIMARY KEY ({keys})) or load with write: replace"
            )

    def _evolve(self, frame: pl.DataFrame, types: Mapping[str, ColumnType | None]) -> pl.DataFrame:
        """Add new columns and widen undeclared ones, on the target and staging (see
        :mod:`ladle.destinations.evolve`); refuse types that do not fit. Returns the batch
        ready to load."""
        # Known columns are cached: no catalog query per batch, so the COPY stays open.
        plan = evolve(
            self._table,
            self._existing,
            frame,
            types=types,
            declared=self._target.declared,
            stored_whole=self._stored_whole,
        )
        for column, kind in plan.added.items():
            self._existing[column] = kind
            for table in self._tables():
                self._execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        table, sql.Identifier(column), sql.SQL(kind.postgres)
                    )
                )
        for column, (old, new) in plan.widened.items():
            if any(column in key for key in [self._target.primary_key, *self._target.dedupe_keys]):
                self._keys_widened = True
            # A double becomes a decimal through its shortest text (float8 -> numeric keeps
            # only 15 digits).
            via = sql.SQL("::text") if old.kind is Kind.DOUBLE else sql.SQL("")
            for table in self._tables():
                self._execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}{}::{}").format(
                        table,
                        sql.Identifier(column),
                        sql.SQL(new.postgres),
                        sql.Identifier(column),
                        via,
                        sql.SQL(new.postgres),
                    )
                )
            self._existing[column] = new
        if plan.added or plan.widened:
            self._wire = wire_types(self._conn, self._ident(self._write_into))
        return plan.frame

    def _stored_whole(self, column: str) -> int:
        """Digits before the point of the widest value in ``column`` (target and staging)."""
        whole = 0
        for table in self._tables():
            row = self._execute(
                sql.SQL("SELECT max(abs({})) FROM {}").format(sql.Identifier(column), table)
            ).fetchone()
            if row and row[0] is not None:
                whole = max(whole, decimal_shape(row[0])[0])
        return whole

    def _tables(self) -> list[sql.Composable]:
        tables: list[sql.Composable] = [self._ident(self._write_into)]
        if self._staging:
            tables.append(sql.Identifier(self._stage_name))
        return tables

    # ------------------------------------------------------------ finishing

    def finish(self) -> LoadCounts:
        """Dedupe staged rows and merge them in with one statement; exact counts."""
        self._end_copy()
        with self._translated(f"merging into {self._table!r}"):
            if not self._prepared:
                return self._finish_empty()
            counts = LoadCounts(self._copied, 0, 0, 0)
            if self._staging:
                deduplicated = self._dedupe()
                if self._merge:
                    counts = self._upsert(deduplicated)
                else:
                    inserted = self._insert_staged()
                    counts = LoadCounts(self._copied + inserted, 0, 0, deduplicated)
            if self._target.write is WriteMode.REPLACE:
                self._swap(counts.inserted)
            return counts

    def _swap(self, rows: int) -> None:
        """Replace: put the new table (``rows`` rows) in the old one's place, unless that
        shrinks the old one more than the target allows."""
        if _columns(self._conn, self._schema, self._table) is not None:
            check_shrink(self._target, self._count_rows(), rows)
        self._execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(self._table)))
        self._execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                self._ident(self._write_into), sql.Identifier(self._table)
            )
        )

    def _finish_empty(self) -> LoadCounts:
        """Nothing was staged: replace empties the table (within its shrink limit); other
        modes change nothing."""
        if self._target.write is WriteMode.REPLACE and _columns(
            self._conn, self._schema, self._table
        ):
            check_shrink(self._target, self._count_rows(), 0)
            self._execute(sql.SQL("DELETE FROM {}").format(self._ident(self._table)))
        return LoadCounts(0, 0, 0, 0)

    def _count_rows(self) -> int:
        """Rows in the target table as this transaction sees it (the table a replace swaps out)."""
        row = self._execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident(self._table)))
        found = row.fetchone()
        return int(found[0]) if found else 0

    def _dedupe(self) -> int:
        """Delete all but one staged row per key (keep first/last by order columns, then seq)."""
        removed = 0
        for key in self._target.dedupe_keys:
            if not self._staged_keys[key].repeated:
                continue  # no key repeated among the staged rows: nothing to delete
            primary = key == self._target.dedupe_on
            keep = self._target.dedupe_keep if primary else "last"
            order_by = self._order_by() if primary else ()
            direction = sql.SQL("DESC NULLS LAST" if keep == "last" else "ASC NULLS FIRST")
            seq_direction = sql.SQL("DESC" if keep == "last" else "ASC")
            order = sql.SQL("").join(
                sql.SQL("{} {}, ").format(sql.Identifier(column), direction) for column in order_by
            )
            stage = sql.Identifier(self._stage_name)
            cursor = self._execute(
                sql.SQL(
                    "DELETE FROM {stage} s USING (SELECT {seq} FROM (SELECT {seq}, row_number() "
                    "OVER (PARTITION BY {key} ORDER BY {order}{seq} {sdir}) AS rn FROM {stage} "
                    "WHERE {not_null}) ranked WHERE rn > 1) d WHERE s.{seq} = d.{seq}"
                ).format(
                    stage=stage,
                    seq=sql.Identifier(SEQ),
                    key=sql.SQL(", ").join(map(sql.Identifier, key)),
                    order=order,
                    sdir=seq_direction,
                    not_null=sql.SQL(" AND ").join(
                        sql.SQL("{} IS NOT NULL").format(sql.Identifier(k)) for k in key
                    ),
                )
            )
            removed += max(cursor.rowcount, 0)
        return removed

    def _upsert(self, deduplicated: int) -> LoadCounts:
        """One INSERT … ON CONFLICT that inserts new keys and rewrites only changed rows."""
        pk = self._target.primary_key
        values = [c for c in self._seen if c not in pk]
        names = sql.SQL(", ").join(map(sql.Identifier, self._seen))
        if values:
            changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in values),
                sql.SQL(", ").join(
                    sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in values
                ),
            )
            condition = changed
            if self._direct:
                condition = sql.SQL("{} AND {}").format(changed, self._keep_condition())
            action = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values
                ),
                condition,
            )
        else:
            action = sql.Composed([sql.SQL("DO NOTHING")])
        row = self._execute(
            sql.SQL(
                "WITH upsert AS (INSERT INTO {target} AS t ({names}) SELECT {names} FROM {stage} "
                "ON CONFLICT ({pk}) {action} RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
                "FROM upsert"
            ).format(
                target=self._ident(self._table),
                names=names,
                stage=sql.Identifier(self._stage_name),
                pk=sql.SQL(", ").join(map(sql.Identifier, pk)),
                action=action,
            )
        ).fetchone()
        inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
        staged = self._staged - deduplicated
        if self._direct:
            # The table was empty: a staged row whose key exists was loaded earlier in this
            # same run, so it is a duplicate, whichever of the two was kept.
            return LoadCounts(self._copied + inserted, 0, 0, deduplicated + staged - inserted)
        return LoadCounts(inserted, updated, staged - inserted - updated, deduplicated)

    def _order_by(self) -> tuple[str, ...]:
        """The dedupe's order columns that reached the load: one no batch brought is null
        in every row, so it orders nothing (as in the step)."""
        return tuple(c for c in self._target.dedupe_order_by if c in self._seen)

    def _keep_condition(self) -> sql.Composable:
        """On the direct path, whether the staged duplicate replaces the copied row.

        As in :meth:`_dedupe`: the order columns compare in turn, nulls lowest; when all are
        equal the staged row, later in the load, wins under ``keep: last`` only.
        """
        keep_last = self._target.dedupe_keep == "last"
        condition: sql.Composable = sql.SQL("TRUE" if keep_last else "FALSE")
        for column in reversed(self._order_by()):
            new = sql.SQL("EXCLUDED.{}").format(sql.Identifier(column))
            old = sql.SQL("t.{}").format(sql.Identifier(column))
            better = (
                "({new} IS NOT NULL AND ({old} IS NULL OR {new} > {old}))"
                if keep_last
                else "(({new} IS NULL AND {old} IS NOT NULL) OR {new} < {old})"
            )
            condition = sql.SQL(
                "(" + better + " OR ({new} IS NOT DISTINCT FROM {old} AND {rest}))"
            ).format(new=new, old=old, rest=condition)
        return condition

    def _insert_staged(self) -> int:
        names = sql.SQL(", ").join(map(sql.Identifier, self._seen))
        cursor = self._execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
                self._ident(self._write_into),
                names,
                names,
                sql.Identifier(self._stage_name),
                sql.Identifier(SEQ),
            )
        )
        return max(int(cursor.rowcount), 0)

    # ------------------------------------------------------------ bookkeeping

    def write_quarantine(self, rows: pl.DataFrame, *, run_id: str, resource: str) -> None:
        """Append rejected records to ``_ladle_quarantine`` in this transaction."""
        if rows.height == 0:
            return
        now = datetime.now(UTC)
        values = [
            (run_id, self._target.pipeline, resource, r["position"], r["raw"], r["errors"], now)
            for r in rows.iter_rows(named=True)
        ]
        self._end_copy()
        with self._translated("writing the quarantine"), self._conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)").format(
                    sql.Identifier(self._schema, QUARANTINE.name)
                ),
                values,
            )

    def discard_quarantine(self, *, run_id: str, resource: str, positions: Sequence[str]) -> int:
        """Delete the run's quarantine rows at ``positions`` in this transaction."""
        query = sql.SQL(
            "DELETE FROM {} WHERE run_id = %s AND resource = %s AND position = ANY(%s::text[])"
        ).format(sql.Identifier(self._schema, QUARANTINE.name))
        self._end_copy()
        with self._translated("replaying the quarantine"):
            cursor = self._execute(query, [run_id, resource, list(positions)])
        return int(cursor.rowcount)

    def write_state(self, resource: str, key: str, value: Any, *, run_id: str) -> None:
        """Replace one ``_ladle_state`` entry in this transaction."""
        table = sql.Identifier(self._schema, STATE.name)
        pipeline = self._target.pipeline
        self._end_copy()
        with self._translated("writing state"):
            self._execute(
                sql.SQL("DELETE FROM {} WHERE pipeline = %s AND resource = %s AND key = %s").format(
                    table
                ),
                [pipeline, resource, key],
            )
            self._execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s)").format(table),
                [
                    pipeline,
                    resource,
                    key,
                    json.dumps(value, default=str),
                    run_id,
                    datetime.now(UTC),
                ],
            )

    def write_ledger(self, entry: RunEntry) -> None:
        """Write the ledger row's final values in this transaction."""
        self._end_copy()
        with self._translated("writing the ledger"):
            _write_ledger(self._conn, self._schema, entry, commit=False)

    def commit(self) -> None:
        """Commit data, quarantine, state and ledger together, and return the connection.

        If the connection is lost during COMMIT, the server may still be committing: the
        error is raised once that session has ended, so that what the database holds by
        then (its ledger row) tells whether the commit landed."""
        try:
            self._end_copy()
            with self._translated(f"committing {self._table!r}"):
                try:
                    self._conn.commit()
                except psycopg.OperationalError:
                    if self._conn.closed and self._watcher is not None:
                        await_session_end(self._watcher.pool, self._watcher.pid)
                    raise
        finally:
            self._give_back()

    def rollback(self) -> None:
        """Undo everything this load did, and return the connection (or drop it if broken)."""
        if self._release is None:
            return  # a commit that failed has already ended the transaction
        try:
            with self._translated(f"rolling back {self._table!r}"):
                self._copy.abort()
                if not self._conn.closed:
                    self._conn.rollback()
        finally:
            self._give_back()

    def _give_back(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._release is not None:
            release, self._release = self._release, None
            release(self._conn)

    # ------------------------------------------------------------ helpers

    def _translated(self, doing: str) -> AbstractContextManager[None]:
        return _translated(doing, timeouts=self._timeouts, locks=self._watcher)

    def _end_copy(self) -> None:
        """Finish the open COPY: an error the server kept for its end is the load's."""
        with self._translated(f"loading {self._table!r}"):
            self._copy.close()

    def _ident(self, table: str) -> sql.Identifier:
        return sql.Identifier(self._schema, table)

    def _execute(self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None) -> Any:
        self._copy.close()
        return self._conn.execute(query, params)


# ---------------------------------------------------------------- shared helpers


@contextmanager
def _translated(
    doing: str, *, timeouts: Timeouts | None = None, locks: LockWatcher | None = None
) -> Iterator[None]:
    """Turn psycopg's errors into DestinationError at the boundary, passwords masked, and
    say which of the waits ended it: a lock timeout, a statement timeout, a lost connection
    (told apart by SQLSTATE; psycopg raises all three as OperationalError)."""
    try:
        yield
    except PoolTimeout as exc:
        # The server did not answer in time (or the pool is exhausted): worth waiting for.
        raise DestinationError(
            f"PostgreSQL error while {doing}: {mask(str(exc))}", transient=True
        ) from exc
    except psycopg.Error as exc:
        state = getattr(exc, "sqlstate", None) or ""
        what, transient = _what_happened(exc, state, doing, timeouts or Timeouts(), locks)
        said = _message(exc).rstrip(". ") if what else _message(exc)
        raise DestinationError(
            f"PostgreSQL error while {doing}: {said}{what}", transient=transient
        ) from exc


def _what_happened(
    exc: psycopg.Error, state: str, doing: str, timeouts: Timeouts, locks: LockWatcher | None
) -> tuple[str, bool]:
    """What the error means for the run, to add to its message; and whether to retry."""
    if state == _LOCK_NOT_AVAILABLE:
        lock = locks.describe() if locks else "a lock held by another session"
        waited = seconds_text(timeouts.lock_ms)
        return (
            f": waited {waited} for {lock}; end that session, or raise ?lock_timeout= in "
            "the destination URL",
            True,
        )
    if state == _QUERY_CANCELED:
        if "statement timeout" in str(exc):
            limit = seconds_text(timeouts.statement_ms)
            waiting = f" waiting for {locks.describe()}" if locks and locks.holders else ""
            return (
                f": the statement ran longer than statement_timeout ({limit}){waiting} and was "
                "canceled; raise ?statement_timeout= in the destination URL (0: no limit)",
                False,
            )
        return ": another session canceled the statement (pg_cancel_backend)", False
    if state.startswith("53"):
        # Not the records' fault: a worker waits (space freed, connections released)
        # rather than splitting its batch down to single entries it would dead-letter.
        return ": the server is out of a resource (disk, memory or connections)", True
    lost = state.startswith("08") or state in _SHUTDOWN
    lost = lost or (not state and isinstance(exc, psycopg.OperationalError))
    if lost and "connect" not in doing:
        return ": the connection was lost", True
    return "", lost or state.startswith(_TRANSIENT) or isinstance(exc, psycopg.OperationalError)


def _message(exc: BaseException) -> str:
    """The error on one line, passwords masked and without row data.

    COPY's CONTEXT quotes the whole failing row and constraint errors quote key values;
    the ledger and logs keep where (``COPY tickets, line 275502, column id``), not what.
    """
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    if not isinstance(exc, psycopg.Error) or primary is None:
        return mask(re.sub(r"\s+", " ", str(exc)).strip())
    diag = exc.diag
    # A data exception quotes the value: `invalid input syntax for type bigint: "x"`.
    data_exception = (exc.sqlstate or "").startswith("22")
    if data_exception:
        primary = re.sub(r'"[^"]*"', '"…"', primary)
    parts = [primary]
    if diag.message_detail:
        detail = re.sub(r"\)=\(.*\)", ")=(…)", diag.message_detail, flags=re.S)
        if data_exception:  # `Token ""secret" is invalid.`: first quote to last
            detail = re.sub(r'".*"', '"…"', detail, flags=re.S)
        detail = re.sub(r"(Failing row contains) \(.*\)", r"\1 (…)", detail, flags=re.S)
        parts.append(f"DETAIL: {detail}")
    if diag.context:
        row = re.compile(r'(COPY .+?, line \d+(?:, column [^:\n]+)?): ".*"\Z', re.S)
        # JSON's parser adds the text it stopped in: `JSON data, line 1: {"card": "4111`.
        context = re.sub(r"(JSON data, line \d+): .*", r"\1", diag.context)
        parts.append("CONTEXT: " + row.sub(r"\1", context))
    return mask(re.sub(r"\s+", " ", " ".join(parts)).strip())


_PG_KINDS = {
    "text": Kind.TEXT, "character varying": Kind.TEXT, "character": Kind.TEXT,
    "integer": Kind.INT, "smallint": Kind.INT, "bigint": Kind.BIGINT,
    "double precision": Kind.DOUBLE, "real": Kind.DOUBLE, "boolean": Kind.BOOL,
    "date": Kind.DATE, "timestamp without time zone": Kind.TIMESTAMP,
    "timestamp with time zone": Kind.TIMESTAMPTZ, "jsonb": Kind.JSON, "json": Kind.JSON,
}  # fmt: skip


def _columns(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> dict[str, ColumnType] | None:
    """The table's columns and types, or None if there is no such table."""
    rows = conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    if not rows:
        return None
    columns = {}
    for name, data_type, precision, scale in rows:
        if data_type == "numeric":
            columns[name] = ColumnType(Kind.DECIMAL, precision or 38, scale or 0)
        else:
            columns[name] = ColumnType(_PG_KINDS.get(data_type, Kind.TEXT))
    return columns


def _ensure_system_table(conn: psycopg.Connection[Any], schema: str, table: TableDef) -> None:
    """Create one of ladle's own tables, or add the columns a newer ladle has."""
    existing = _columns(conn, schema, table.name)
    ident = sql.Identifier(schema, table.name)
    if existing is None:
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind.postgres))
            for name, kind in table.columns
        ]
        if table.primary_key:
            columns.append(
                sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, table.primary_key))
                )
            )
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(ident, sql.SQL(", ").join(columns))
        )
    else:
        for name, kind in table.columns:
            if name not in existing:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        ident, sql.Identifier(name), sql.SQL(kind.postgres)
                    )
                )


def _existing_keys_query(table: sql.Identifier, lookup: KeyLookup) -> sql.Composed:
    """One column: ``= ANY(array)``; several: the arrays unnested side by side, semi-joined.

    Each array is cast to the column's type; a column of a type ladle does not know
    (uuid, an enum) is compared as text, since its values were typed as text.
    """
    sides, arrays = [], []
    for i, (column, kind) in enumerate(zip(lookup.columns, lookup.types, strict=True)):
        cast = "t.{}::text" if lookup.as_text(i) else "t.{}"
        sides.append(sql.SQL(cast).format(sql.Identifier(column)))
        arrays.append(sql.SQL("%s::{}[]").format(sql.SQL(kind.postgres)))
    if len(sides) == 1:
        return sql.SQL("SELECT DISTINCT {0} FROM {1} AS t WHERE {0} = ANY({2})").format(
            sides[0], table, arrays[0]
        )
    names = [sql.Identifier(name) for name in lookup.typed_names]
    return sql.SQL(
        "SELECT {names} FROM unnest({arrays}) AS k({names}) "
        "WHERE EXISTS (SELECT 1 FROM {table} AS t WHERE {on})"
    ).format(
        names=sql.SQL(", ").join(names),
        arrays=sql.SQL(", ").join(arrays),
        table=table,
        on=sql.SQL(" AND ").join(
            sql.SQL("{} = k.{}").format(side, name) for side, name in zip(sides, names, strict=True)
        ),
    )


def _lock_ddl(conn: psycopg.Connection[Any], schema: str, table: str) -> None:
    """Serialize ladle's DDL on one table (or a schema's setup) until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ladle:{schema}.{table}"])


def _write_ledger(
    conn: psycopg.Connection[Any], schema: str, entry: RunEntry, *, commit: bool = True
) -> None:
    row = entry.row()
    table = sql.Identifier(schema, RUNS.name)
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE run_id = %s AND resource = %s").format(table),
        [entry.run_id, entry.resource],
    )
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            table,
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() for _ in row),
        ),
        list(row.values()),
    )
    if commit:
        conn.commit()


def probe(url: str, *, timeout: float) -> list[Check]:
    """For ``ladle check``: the server answers within ``timeout`` seconds, takes writes, and
    lets this user create ladle's tables in the schema; nothing is written."""
    settings = _parse_url(url)
    options = {**settings.connect}
    if "connect_timeout" in options:  # libpq waits at least 2 seconds
        options["connect_timeout"] = max(2, math.ceil(timeout))
    try:
        conn = psycopg.connect(settings.conninfo, **options)
    except psycopg.Error as exc:
        return [Check("destination", False, f"{mask(url)} does not answer: {_message(exc)}")]
    schema = settings.schema
    with conn:
        row = conn.execute(
            "SELECT current_setting('transaction_read_only') = 'on', "
            "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s), "
            "has_database_privilege(current_database(), 'CREATE'), current_user",
            [schema],
        ).fetchone()
        assert row is not None  # noqa: S101 - a SELECT without FROM returns a row
        read_only, exists, create_schema, user = row
        may_create = (
            conn.execute(
                "SELECT has_schema_privilege(%s, 'USAGE') AND has_schema_privilege(%s, 'CREATE')",
                [schema, schema],
            ).fetchone()
            == (True,)
            if exists
            else create_schema
        )
    if read_only:
        return [Check("destination", False, f"{mask(url)} is read-only (a standby?)")]
    if not may_create:
        where = f"schema {schema!r}" if exists else f"a schema {schema!r} in the database"
        return [Check("destination", False, f"user {user!r} may not create tables in {where}")]
    return [Check("destination", True, f"{mask(url)} answers; ladle may write in {schema!r}")]
