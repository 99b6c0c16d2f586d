"""DuckDB destination: the embedded default, a single local file.

Batches go in through DuckDB's Arrow scan of the Polars frame (no row-by-row inserts, no
copy on the way). A merge into an empty table inserts each row whose key is new to the
load straight into it, and stages only the repeats; a merge into a table that holds rows
stages the load, removes duplicate keys there, then runs one UPDATE of the rows whose
content changed and one INSERT of the new keys (see :mod:`ladle.destinations.duckdb_merge`),
so inserted / updated / unchanged are counted by the database, and unchanged rows are not
rewritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl
import structlog

from ladle.batch import SEQ
from ladle.config import WriteMode
from ladle.destinations import Check, LoadCounts, LoadTarget, check_shrink, mask
from ladle.destinations.duckdb_merge import Staged, dedupe, insert_staged, update_changed
from ladle.destinations.evolve import batch_types, evolve
from ladle.destinations.keyset import KeySet, key_hashes
from ladle.destinations.references import empty_keys, key_lookup, typed_name
from ladle.errors import DestinationError, NoLedger
from ladle.ledger import RUNS, RunEntry
from ladle.quarantine import QUARANTINE, SHAPE_SQL, summarize
from ladle.schema import ColumnType, Kind, TableDef, decimal_shape, fit_name, quote
from ladle.state import STATE

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

_SYSTEM = (RUNS, QUARANTINE, STATE)
log = structlog.get_logger("ladle")


def _import_duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - duckdb is a core dependency
        raise DestinationError("the duckdb package is missing: pip install duckdb") from exc
    return duckdb


class DuckDBDestination:
    """A DuckDB file (``duckdb:///path.duckdb``); one connection, one writer at a time."""

    def __init__(
        self, url: str, *, memory_limit_mb: int | None = None, read_only: bool = False
    ) -> None:
        self.url = mask(url)
        self.path, self._settings = _parse_url(url, memory_limit_mb)
        self._read_only = read_only and self.path != ":memory:"
        if self._read_only and not Path(self.path).is_file():
            raise NoLedger(f"no runs yet: {self.path} does not exist")
        if self._read_only and memory_limit_mb is None and "memory_limit=" not in url:
            self._settings["memory_limit"] = READ_ONLY_MEMORY
        if self.path != ":memory:" and not self._read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con: DuckDBPyConnection = self._open()
        if not self._read_only:
            for table in _SYSTEM:
                _ensure_system_table(self._con, table)

    def _open(self) -> DuckDBPyConnection:
        duckdb = _import_duckdb()
        try:
            con: DuckDBPyConnection = duckdb.connect(
                self.path, read_only=self._read_only, config=self._settings
            )
        except duckdb.Error as exc:
            raise DestinationError(
                f"cannot open DuckDB file {self.path!r}: {exc}; another ladle process may hold it"
            ) from exc
        # Timestamps come back in UTC whatever the machine's zone is.
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _usable(self) -> DuckDBPyConnection:
        """The connection; reopened if a fatal error (a failed checkpoint on a full disk)
        invalidated the database, so that the ledger can still say what happened."""
        duckdb = _import_duckdb()
        try:
            self._con.execute("SELECT 1")
        except duckdb.Error as exc:
            if not _invalidated(exc):
                # A transaction a failed load left aborted: end it, the file is fine.
                with suppress(duckdb.Error):
                    self._con.rollback()
                return self._con
            log.warning("reopening the DuckDB file after a fatal error", path=self.path)
            with suppress(duckdb.Error):
                self._con.close()
            self._con = self._open()
        return self._con

    def begin(self, target: LoadTarget) -> DuckDBLoad:
        """Open a transaction for one resource's load."""
        return DuckDBLoad(self._usable(), target)

    def connections_in_use(self) -> int:
        """DuckDB has one embedded connection and no pool: nothing can leak."""
        return 0

    def diagnose(self) -> list[Check]:
        """For ``ladle doctor``: the file opens, DuckDB's version, a table can be created."""
        duckdb = _import_duckdb()
        checks = [Check("destination answers", True, f"DuckDB file {self.path}")]
        checks.append(Check("server version", True, f"DuckDB {duckdb.__version__} (embedded)"))
        try:
            self._con.begin()
            self._con.execute("CREATE TABLE _ladle_doctor_probe (x INTEGER)")
            self._con.rollback()
            checks.append(Check("can create tables", True, "in schema 'main'"))
        except duckdb.Error as exc:
            self._con.rollback()
            checks.append(Check("can create tables", False, str(exc)))
        return checks

    def record_run(self, entry: RunEntry) -> None:
        """Write the ledger row in its own transaction."""
        con = self._usable()
        with _translated("writing the ledger"):
            con.begin()
            try:
                _write_ledger(con, entry)
                con.commit()
            except BaseException:
                with suppress(Exception):
                    con.rollback()
                raise

    def read(
        self, table: str, where: Mapping[str, Any], *, order_by: Sequence[str] = (), limit: int = 0
    ) -> pl.DataFrame:
        """Rows of ``table`` matching ``where``; ``-col`` in ``order_by`` sorts descending."""
        con = self._usable()
        with _translated(f"reading {table}"):
            if _columns(con, table) is None:
                return pl.DataFrame()
        sql = f"SELECT * FROM {quote(table)}"
        if where:
            sql += " WHERE " + " AND ".join(f"{quote(k)} = ?" for k in where)
        if order_by:
            sql += " ORDER BY " + ", ".join(
                f"{quote(c[1:])} DESC" if c.startswith("-") else quote(c) for c in order_by
            )
        if limit:
            sql += f" LIMIT {int(limit)}"
        with _translated(f"reading {table}"):
            frame: pl.DataFrame = con.sql(sql, params=list(where.values())).pl()
        return frame

    def recent_runs(self, pipeline: str | None, last_n_runs: int) -> pl.DataFrame:
        """The ledger rows of the newest ``last_n_runs`` runs (of ``pipeline``, if given),
        newest run first; a run's rows by start, newest first."""
        con = self._usable()
        where = "WHERE pipeline = ?" if pipeline is not None else ""
        query = (
            f"WITH picked AS (SELECT run_id, min(started_at) AS run_started "
            f"FROM {quote(RUNS.name)} {where} GROUP BY run_id "
            f"ORDER BY run_started DESC, run_id LIMIT {int(last_n_runs)}) "
            f"SELECT r.* FROM {quote(RUNS.name)} AS r JOIN picked USING (run_id) "
            f"{where.replace('pipeline', 'r.pipeline')} "
            "ORDER BY picked.run_started DESC, r.run_id, r.started_at DESC, r.resource"
        )
        with _translated(f"reading {RUNS.name}"):
            if _columns(con, RUNS.name) is None:
                return pl.DataFrame()
            params = [pipeline, pipeline] if pipeline is not None else []
            frame: pl.DataFrame = con.sql(query, params=params).pl()
        return frame

    def quarantine_summary(
        self, *, pipeline: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Per run and resource: records, first position and errors by ``field: rule``,
        counted in DuckDB (memory does not grow with the records)."""
        con = self._usable()
        where = {k: v for k, v in (("pipeline", pipeline), ("run_id", run_id)) if v is not None}
        cond = ("WHERE " + " AND ".join(f"q.{quote(k)} = ?" for k in where)) if where else ""
        table = f"{quote(QUARANTINE.name)} AS q"
        shapes = (
            "SELECT run_id, resource, count(*), min(position), min(quarantined_at) "
            f"FROM {table} {cond} GROUP BY run_id, resource, {SHAPE_SQL}"
        )
        reason = "coalesce((e->>'field') || ': ', '') || coalesce(e->>'rule', '?')"
        reasons = (
            f"SELECT run_id, resource, {reason}, count(*) FROM {table}, "
            f"unnest(CAST(errors AS JSON[])) AS t(e) {cond} GROUP BY ALL"
        )
        with _translated(f"reading {QUARANTINE.name}"):
            if _columns(con, QUARANTINE.name) is None:
                return []
            params = list(where.values())
            return summarize(
                con.execute(shapes, params).fetchall(), con.execute(reasons, params).fetchall()
            )

    def read_state(self, pipeline: str, resource: str) -> dict[str, Any]:
        """The resource's ``_ladle_state`` entries by key, values decoded from JSON."""
        con = self._usable()
        with _translated("reading state"):
            if _columns(con, STATE.name) is None:
                return {}
            rows = con.execute(
                f"SELECT key, CAST(value AS VARCHAR) FROM {quote(STATE.name)} "
                "WHERE pipeline = ? AND resource = ?",
                [pipeline, resource],
            ).fetchall()
        return {key: json.loads(value) if value is not None else None for key, value in rows}

    def existing_keys(self, table: str, columns: Sequence[str], keys: pl.DataFrame) -> pl.DataFrame:
        """Of the distinct rows of ``keys``, those in ``table``: one semi join in DuckDB."""
        with _translated(f"looking up keys in {table!r}"):
            lookup = key_lookup(keys, columns, _columns(self._con, table))
            if lookup is None:
                return empty_keys(keys, columns)
            on = " AND ".join(
                f"{_key_column(quote(c), as_text=lookup.as_text(i))} = k.{quote(typed_name(i))}"
                for i, c in enumerate(columns)
            )
            # Found by DuckDB's replacement scan, not register(): see _insert_frame.
            _ladle_keys = ArrowStream(lookup.typed)
            found: pl.DataFrame = self._con.sql(
                f"SELECT k.* FROM _ladle_keys AS k SEMI JOIN {quote(table)} AS t ON {on}"
            ).pl()
        return lookup.present(found)

    def close(self) -> None:
        """Close the connection (and with it the file)."""
        self._con.close()


class DuckDBLoad:
    """One resource's load inside one DuckDB transaction."""

    def __init__(self, con: DuckDBPyConnection, target: LoadTarget) -> None:
        self._con = con
        self._target = target
        self._table = target.table
        self._merge = target.write is WriteMode.MERGE
        self._staging = self._merge or bool(target.dedupe_on)
        self._stage_name = fit_name(f"_ladle_stage_{target.table}")
        self._write_into = (
            fit_name(f"{target.table}__ladle_new")
            if target.write is WriteMode.REPLACE
            else target.table
        )
        self._seen: list[str] = []
        self._prepared = False
        self._existing: dict[str, ColumnType] = {}
        self._direct = False
        """Merge into a table that was empty: rows with a key new to the load go straight in."""
        self._direct_keys = KeySet()
        self._staged_keys = {key: KeySet() for key in target.dedupe_keys}
        self._keys_widened = False
        """A key column changed type during the load: earlier key hashes no longer compare."""
        self._copied = 0
        self._staged = 0
        con.begin()

    # ------------------------------------------------------------ staging

    def stage(self, frame: pl.DataFrame) -> None:
        """Add a batch: evolve the table to fit it, then one Arrow insert (two on the direct
        path when some keys repeat: new keys into the target, the rest into staging)."""
        if frame.height == 0:
            # Nothing to write (every record of the batch was quarantined); an empty batch
            # may lack the key columns, so it must not decide the table's shape either.
            return
        types = batch_types(frame, self._target.declared)
        with _translated(f"loading {self._table!r}"):
            if not self._prepared:
                self._prepare(types)
            frame = self._evolve(frame, types)
            for column in types:
                if column not in self._seen:
                    self._seen.append(column)
            # Only the batch's own columns are inserted: a later batch may lack a column an
            # earlier one brought, and the insert fills the columns it is not given with NULL.
            columns = list(types)
            if self._direct:
                frame = self._insert_new_keys(frame, columns)
            if frame.height == 0:
                return
            if self._staging:
                for key, seen in self._staged_keys.items():
                    self._note_keys(seen, frame, key)
                _insert_frame(self._con, self._stage_name, frame.select([*columns, SEQ]))
                self._staged += frame.height
            else:
                _insert_frame(self._con, self._write_into, frame.select(columns))
                self._copied += frame.height

    def _insert_new_keys(self, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
        """Direct path: insert the rows whose key is new to this load into the target;
        return the rest, for staging. A hash collision only sends a row the staged way."""
        fresh = self._note_keys(self._direct_keys, frame, self._target.primary_key)
        if fresh is None or self._keys_widened:
            return frame
        if fresh.all():
            _insert_frame(self._con, self._table, frame.select(columns))
            self._copied += frame.height
            return frame.clear()
        new_rows = frame.filter(fresh)
        if new_rows.height:
            _insert_frame(self._con, self._table, new_rows.select(columns))
            self._copied += new_rows.height
        return frame.filter(~fresh)

    def _note_keys(self, seen: KeySet, frame: pl.DataFrame, key: Sequence[str]) -> pl.Series | None:
        """Add the batch's keys to ``seen``; a mask of the rows whose key was new to it.

        Each key column is hashed as the table holds it, so that the same key reads alike
        in every batch (1 as Int32 and as Int64, 1.5 at scale 1 and at scale 2). A batch
        without a key column (or after a key column was widened) counts as a repeat: the
        staged, always-correct way handles it."""
        if self._keys_widened or any(k not in frame.columns for k in key):
            seen.repeated = True
            return None
        return seen.add(key_hashes(frame, key, {k: self._existing[k].polars for k in key}))

    def _prepare(self, types: Mapping[str, ColumnType | None]) -> None:
        """First batch: create the table (a fresh one for replace) and the staging table."""
        self._prepared = True
        if self._target.write is WriteMode.REPLACE:
            self._con.execute(f"DROP TABLE IF EXISTS {quote(self._write_into)}")
        existing = _columns(self._con, self._write_into)
        if existing is None:
            self._create(self._write_into, types)
            existing = _columns(self._con, self._write_into)
        self._existing = dict(existing or {})
        if self._merge:
            self._direct = self._is_empty(self._table)
        if self._staging:
            # A regular table, not TEMP: DuckDB keeps temp tables in memory, while this one
            # spills to the file, so memory stays bounded. It never outlives the transaction.
            self._con.execute(
                f"CREATE TABLE {quote(self._stage_name)} AS "
                f"SELECT *, CAST(NULL AS BIGINT) AS {quote(SEQ)} FROM {quote(self._write_into)} "
                "LIMIT 0"
            )

    def _is_empty(self, table: str) -> bool:
        """Whether ``table`` has no rows. Only this process can write the file, through this
        one connection, so nothing can fill the table before the load commits."""
        if self._target.dedupe_on not in ((), self._target.primary_key):
            return False  # the dedupe's own key needs every row staged
        row = self._con.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table)})").fetchone()
        return not (row and row[0])

    def _create(self, table: str, types: Mapping[str, ColumnType | None]) -> None:
        # Only a merge table gets a PRIMARY KEY: append may legitimately repeat keys.
        pk = self._target.primary_key if self._target.write is WriteMode.MERGE else ()
        columns = [f"{quote(c)} {(t or ColumnType(Kind.TEXT)).duckdb}" for c, t in types.items()]
        missing = [k for k in pk if k not in types]
        if missing:
            raise DestinationError(
                f"table {self._table!r}: primary key column(s) {missing} are not in the data"
            )
        if pk:
            columns.append(f"PRIMARY KEY ({', '.join(quote(k) for k in pk)})")
        self._con.execute(f"CREATE TABLE {quote(table)} ({', '.join(columns)})")

    def _evolve(self, frame: pl.DataFrame, types: Mapping[str, ColumnType | None]) -> pl.DataFrame:
        """Add new columns and widen undeclared ones (see :mod:`ladle.destinations.evolve`);
        refuse a type that does not fit, before anything is written. Returns the batch
        ready to load."""
        # Known columns are cached: no catalog query per batch.
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
                self._con.execute(
                    f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {kind.duckdb}"
                )
        for column, (old, new) in plan.widened.items():
            self._widen(column, old, new)
        return plan.frame

    def _widen(self, column: str, old: ColumnType, new: ColumnType) -> None:
        # A double becomes a decimal through its shortest text, never its binary digits.
        value = f"CAST({quote(column)} AS VARCHAR)" if old.kind is Kind.DOUBLE else quote(column)
        if any(column in key for key in [self._target.primary_key, *self._target.dedupe_keys]):
            self._keys_widened = True
        for table in self._tables():
            key = _key_of(self._con, table)
            if column in key:
                _rebuild(self._con, table, key, column=column, kind=new, value=value)
            else:
                self._con.execute(
                    f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE {new.duckdb} "
                    f"USING CAST({value} AS {new.duckdb})"
                )
        self._existing[column] = new

    def _stored_whole(self, column: str) -> int:
        """Digits before the point of the widest value in ``column`` (target and staging)."""
        whole = 0
        for table in self._tables():
            row = self._con.execute(
                f"SELECT max(abs({quote(column)})) FROM {quote(table)}"
            ).fetchone()
            if row and row[0] is not None:
                whole = max(whole, decimal_shape(row[0])[0])
        return whole

    def _tables(self) -> list[str]:
        return [self._write_into, self._stage_name] if self._staging else [self._write_into]

    # ------------------------------------------------------------ finishing

    def finish(self) -> LoadCounts:
        """Dedupe the staged rows, then merge or copy them into the target; exact counts."""
        with _translated(f"merging into {self._table!r}"):
            if not self._prepared:
                return self._finish_empty()
            counts = LoadCounts(self._copied, 0, 0, 0)
            if self._staging:
                staged = Staged(
                    self._con, self._target, self._stage_name, self._write_into, self._seen
                )
                # A key no two staged rows share needs no dedupe pass.
                keys = [k for k, seen in self._staged_keys.items() if seen.repeated]
                deduplicated = dedupe(staged, keys)
                if self._direct:
                    counts = self._apply_repeats(staged, deduplicated)
                elif self._merge:
                    counts = self._merge_staged(staged, deduplicated)
                else:
                    inserted = insert_staged(staged, only_new=False)
                    counts = LoadCounts(inserted, 0, 0, deduplicated)
                self._con.execute(f"DROP TABLE {quote(self._stage_name)}")
            if self._target.write is WriteMode.REPLACE:
                self._swap(counts.inserted)
            return counts

    def _apply_repeats(self, staged: Staged, deduplicated: int) -> LoadCounts:
        """Direct path: a staged row's key was (but for a hash collision) inserted earlier in
        this load, so it replaces that row or not by keep first/last, and is a duplicate
        either way; a colliding new key is inserted."""
        repeats = self._staged - deduplicated
        inserted = 0
        if repeats:
            update_changed(staged, direct=True)
            inserted = insert_staged(staged, only_new=True)
        return LoadCounts(self._copied + inserted, 0, 0, deduplicated + repeats - inserted)

    def _merge_staged(self, staged: Staged, deduplicated: int) -> LoadCounts:
        """Staged path: one UPDATE of changed rows, one INSERT of new keys; the rest unchanged."""
        rows = self._staged - deduplicated
        updated = update_changed(staged, direct=False)
        inserted = insert_staged(staged, only_new=True)
        return LoadCounts(inserted, updated, rows - inserted - updated, deduplicated)

    def _swap(self, rows: int) -> None:
        """Replace: put the new table (``rows`` rows) in the old one's place, unless that
        shrinks the old one more than the target allows."""
        if _columns(self._con, self._table) is not None:
            check_shrink(self._target, self._count(self._table), rows)
        self._con.execute(f"DROP TABLE IF EXISTS {quote(self._table)}")
        self._con.execute(f"ALTER TABLE {quote(self._write_into)} RENAME TO {quote(self._table)}")

    def _finish_empty(self) -> LoadCounts:
        """Nothing was staged: replace empties the table (within its shrink limit); other
        modes change nothing."""
        if self._target.write is WriteMode.REPLACE and _columns(self._con, self._table):
            check_shrink(self._target, self._count(self._table), 0)
            self._con.execute(f"DELETE FROM {quote(self._table)}")
        return LoadCounts(0, 0, 0, 0)

    def _count(self, table: str) -> int:
        result = self._con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()
        return int(result[0]) if result else 0

    # ------------------------------------------------------------ bookkeeping

    def write_quarantine(self, rows: pl.DataFrame, *, run_id: str, resource: str) -> None:
        """Append rejected records to ``_ladle_quarantine`` in this transaction."""
        if rows.height == 0:
            return
        frame = rows.with_columns(
            pl.lit(run_id).alias("run_id"),
            pl.lit(self._target.pipeline).alias("pipeline"),
            pl.lit(resource).alias("resource"),
            pl.lit(datetime.now(UTC)).alias("quarantined_at"),
        )
        with _translated("writing the quarantine"):
            _insert_frame(self._con, QUARANTINE.name, frame)

    def discard_quarantine(self, *, run_id: str, resource: str, positions: Sequence[str]) -> int:
        """Delete the run's quarantine rows at ``positions`` in this transaction."""
        # Found by DuckDB's replacement scan, like the batches in _insert_frame.
        _ladle_positions = pl.Series("position", list(positions), dtype=pl.String).to_frame()
        _ladle_positions_arrow = ArrowStream(_ladle_positions)
        with _translated("replaying the quarantine"):
            result = self._con.execute(
                f"DELETE FROM {quote(QUARANTINE.name)} WHERE run_id = ? AND resource = ? "
                "AND position IN (SELECT position FROM _ladle_positions_arrow)",
                [run_id, resource],
            ).fetchone()
        return int(result[0]) if result else 0

    def write_state(self, resource: str, key: str, value: Any, *, run_id: str) -> None:
        """Replace one ``_ladle_state`` entry in this transaction."""
        pipeline = self._target.pipeline
        with _translated("writing state"):
            self._con.execute(
                f"DELETE FROM {quote(STATE.name)} WHERE pipeline = ? AND resource = ? AND key = ?",
                [pipeline, resource, key],
            )
            self._con.execute(
                f"INSERT INTO {quote(STATE.name)} VALUES (?, ?, ?, ?, ?, ?)",
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
        with _translated("writing the ledger"):
            _write_ledger(self._con, entry)

    def commit(self) -> None:
        """Commit data, quarantine, state and ledger together."""
        with _translated(f"committing {self._table!r}"):
            self._con.commit()

    def rollback(self) -> None:
        """Undo everything this load did."""
        with _translated(f"rolling back {self._table!r}"):
            self._con.rollback()


# ---------------------------------------------------------------- helpers


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    """Turn DuckDB's errors into DestinationError at the boundary."""
    duckdb = _import_duckdb()
    try:
        yield
    except duckdb.Error as exc:
        message = re.sub(r"\s+", " ", str(exc)).strip()
        if isinstance(exc, duckdb.OutOfMemoryException) or _OUT_OF_MEMORY.search(message):
            first = str(exc).strip().splitlines()[0]
            raise DestinationError(
                f"DuckDB ran out of memory while {doing}: {first}; give it more: raise "
                f"memory_limit_mb (DuckDB gets {MEMORY_SHARE:.0%} of it) or set "
                "?memory_limit= in the destination URL"
            ) from exc
        if _invalidated(exc):
            message += (
                " (DuckDB invalidated the database after this fatal error; ladle opens it "
                "again to write the ledger)"
            )
        raise DestinationError(f"DuckDB error while {doing}: {message}") from exc


def _invalidated(exc: BaseException) -> bool:
    """Whether DuckDB gave up on the database: after a FATAL error every later statement
    on the connection fails, and only a new connection can use the file again."""
    duckdb = _import_duckdb()
    return isinstance(exc, duckdb.FatalException) or "database has been invalidated" in str(exc)


_OUT_OF_MEMORY = re.compile(r"failed to pin block|could not allocate block|Out of Memory")
"""DuckDB reports memory exhausted at commit as a TransactionException, not an OutOfMemory one."""


def _columns(con: DuckDBPyConnection, table: str) -> dict[str, ColumnType] | None:
    """The table's columns and types, or None if there is no such table."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema IN ('main', 'temp') ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if not rows:
        return None
    return {str(name): _from_duckdb(str(sql_type)) for name, sql_type in rows}


_DUCKDB_KINDS = {
    "VARCHAR": Kind.TEXT, "INTEGER": Kind.INT, "BIGINT": Kind.BIGINT, "DOUBLE": Kind.DOUBLE,
    "BOOLEAN": Kind.BOOL, "DATE": Kind.DATE, "TIMESTAMP": Kind.TIMESTAMP,
    "TIMESTAMP WITH TIME ZONE": Kind.TIMESTAMPTZ, "JSON": Kind.JSON,
}  # fmt: skip
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def _from_duckdb(sql_type: str) -> ColumnType:
    match = _DECIMAL.fullmatch(sql_type)
    if match:
        return ColumnType(Kind.DECIMAL, int(match.group(1)), int(match.group(2)))
    return ColumnType(_DUCKDB_KINDS.get(sql_type, Kind.TEXT))


DEFAULT_SETTINGS = {"memory_limit": "1GB"}
"""DuckDB's own default is 80% of RAM; ladle shares the machine, so it asks for less."""

READ_ONLY_MEMORY = "32MB"
"""DuckDB's ``memory_limit`` when only reading (``ladle runs``, ``quarantine list``): its
buffer pool keeps what a scan read up to the limit, so 1 GB would let a summary of the
quarantine grow with it (measured at 1.2M records: 85 MB at 1 GB, 36 MB at 32 MB). Query
results go to Arrow outside the limit, so reading many rows still works."""

MEMORY_SHARE = 0.15
"""Under ``memory_limit_mb``, DuckDB's ``memory_limit`` is this share of it. Measured:
DuckDB's resident memory runs 60-70 MB above its ``memory_limit`` (allocator caches,
catalog, Arrow scans), and it spills what does not fit to ``<file>.tmp`` (``.tmp`` for
``:memory:``), so a small share costs some speed in a large merge, never the load."""


def _parse_url(url: str, memory_limit_mb: int | None = None) -> tuple[str, dict[str, str]]:
    """``duckdb:///rel.duckdb?memory_limit=2GB&threads=4`` -> path and DuckDB settings.

    A ``memory_limit`` in the URL wins over the share of ``memory_limit_mb``.
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    settings = dict(DEFAULT_SETTINGS)
    if memory_limit_mb is not None:
        settings["memory_limit"] = f"{max(int(memory_limit_mb * MEMORY_SHARE), 16)}MB"
    settings.update(parse_qsl(parts.query))
    return (":memory:" if path in ("", ":memory:") else path), settings


def _key_of(con: DuckDBPyConnection, table: str) -> list[str]:
    """The table's primary key columns (none: an empty list)."""
    row = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [table],
    ).fetchone()
    return list(row[0]) if row else []


def _rebuild(
    con: DuckDBPyConnection,
    table: str,
    key: list[str],
    *,
    column: str,
    kind: ColumnType,
    value: str,
) -> None:
    """Change a key column's type by copying the table: DuckDB cannot alter a column that
    a PRIMARY KEY covers. Runs inside the load's transaction, like everything else."""
    columns = _columns(con, table) or {}
    columns[column] = kind
    spec = ", ".join(f"{quote(name)} {kind_.duckdb}" for name, kind_ in columns.items())
    pk = ", ".join(quote(k) for k in key)
    rebuilt = f"{table}__ladle_widen"
    values = ", ".join(
        f"CAST({value} AS {kind.duckdb})" if name == column else quote(name) for name in columns
    )
    con.execute(f"CREATE TABLE {quote(rebuilt)} ({spec}, PRIMARY KEY ({pk}))")
    con.execute(f"INSERT INTO {quote(rebuilt)} SELECT {values} FROM {quote(table)}")
    con.execute(f"DROP TABLE {quote(table)}")
    con.execute(f"ALTER TABLE {quote(rebuilt)} RENAME TO {quote(table)}")


def _ensure_system_table(con: DuckDBPyConnection, table: TableDef) -> None:
    """Create one of ladle's own tables, or add the columns a newer ladle has."""
    con.execute(_create_sql(table))
    existing = _columns(con, table.name) or {}
    for name, kind in table.columns:
        if name not in existing:
            con.execute(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} {kind.duckdb}")


def _create_sql(table: TableDef) -> str:
    columns = [f"{quote(name)} {kind.duckdb}" for name, kind in table.columns]
    if table.primary_key:
        columns.append(f"PRIMARY KEY ({', '.join(quote(k) for k in table.primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote(table.name)} ({', '.join(columns)})"


def _key_column(column: str, *, as_text: bool) -> str:
    """The table side of a key comparison: a column of unknown type is compared as text."""
    return f"CAST(t.{column} AS VARCHAR)" if as_text else f"t.{column}"


class ArrowStream:
    """A Polars frame as an Arrow C stream (the PyCapsule interface) for DuckDB to scan.

    DuckDB reads it zero-copy without pyarrow; ``frame.to_arrow()`` would load pyarrow,
    whose shared libraries alone add some 40 MB to the process's resident memory.
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        # An all-null column (dtype Null) crosses the C interface without a validity
        # bitmap, which DuckDB refuses; as text it is the same nulls.
        nulls = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Null)]
        self._frame = frame.with_columns(pl.col(nulls).cast(pl.String)) if nulls else frame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Hand the frame's Arrow stream to the caller (DuckDB)."""
        return self._frame.__arrow_c_stream__(requested_schema)


def _insert_frame(con: DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Bulk insert through DuckDB's Arrow scan, matching columns by name.

    The batch is found by DuckDB's replacement scan (the local ``_ladle_rows``), not
    ``register()``: a view registered inside the open transaction stays pinned, with
    its Arrow buffers, until commit, so memory would grow with the input.
    """
    _ladle_rows = ArrowStream(frame)
    names = ", ".join(quote(c) for c in frame.columns)
    con.execute(f"INSERT INTO {quote(table)} ({names}) SELECT {names} FROM _ladle_rows")


def _write_ledger(con: DuckDBPyConnection, entry: RunEntry) -> None:
    row = entry.row()
    con.execute(
        f"DELETE FROM {quote(RUNS.name)} WHERE run_id = ? AND resource = ?",
        [entry.run_id, entry.resource],
    )
    names = ", ".join(quote(c) for c in row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"INSERT INTO {quote(RUNS.name)} ({names}) VALUES ({marks})", list(row.values()))


def probe(url: str) -> list[Check]:
    """For ``ladle check``: may ladle write the file, found without writing anything (a file
    that does not exist yet is not created)."""
    path, _ = _parse_url(url)
    if path == ":memory:":
        return [Check("destination", True, "DuckDB in memory")]
    target = Path(os.path.abspath(path))
    if not target.exists():
        existing = next(p for p in target.parents if p.exists())
        if not existing.is_dir():
            return [Check("destination", False, f"cannot create {target}: {existing} is a file")]
        if not os.access(existing, os.W_OK | os.X_OK):
            return [
                Check(
                    "destination",
                    False,
                    f"cannot create {target}: the directory {existing} is not writable",
                )
            ]
        return [Check("destination", True, f"{target} will be created ({existing} is writable)")]
    problem = _unwritable(target)
    if problem is None:
        duckdb = _import_duckdb()
        try:
            duckdb.connect(str(target), read_only=True).close()
        except duckdb.Error as exc:
            problem = f"cannot open {target}: {str(exc).splitlines()[0]}"
    if problem is not None:
        return [Check("destination", False, problem)]
    return [Check("destination", True, f"DuckDB file {target} opens and is writable")]


def _unwritable(target: Path) -> str | None:
    """Why ladle could not write an existing DuckDB file (or its write-ahead log beside it)."""
    if not target.is_file():
        return f"{target} is not a file"
    if not os.access(target, os.R_OK | os.W_OK):
        return f"{target} is not writable by this user"
    if not os.access(target.parent, os.W_OK | os.X_OK):
        return f"the directory {target.parent} is not writable (DuckDB writes its log there)"
    return None
