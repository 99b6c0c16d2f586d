"""The sql source against real PostgreSQL, MariaDB, SQLite and DuckDB databases."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import duckdb
import polars as pl
import psycopg
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.pool import NullPool

import ladle
from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.kinds import SOURCES
from ladle.sources import CursorBound, SharedResources, SourceContext
from ladle.sources.sql import SqlOptions, SqlSource, decode, encode

BASE = datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


@dataclass
class Database:
    """A source database for one test: its URL, and how to name, create and fill its tables."""

    url: str
    schema: str | None = None
    timestamp: str = "TIMESTAMP"
    """The DDL type of a timestamp column, with microseconds."""

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    @property
    def dialect(self) -> str:
        return sa.make_url(self.url).get_backend_name()

    def execute(self, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
        engine = sa.create_engine(self.url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement), rows)
        finally:
            engine.dispose()

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        self.execute(
            f"INSERT INTO {self.table(table)} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})",
            rows=[{k: self._value(v) for k, v in row.items()} for row in rows],
        )

    def _value(self, value: Any) -> Any:
        if isinstance(value, datetime) and self.dialect in ("mysql", "mariadb", "sqlite"):
            value = _naive(value)
            return value.isoformat(sep=" ") if self.dialect == "sqlite" else value
        return value


@pytest.fixture
def pg(postgres_url: str) -> Database:
    """A PostgreSQL source: the test's schema, reached through SQLAlchemy and psycopg 3."""
    parts = urlsplit(postgres_url)
    query = parse_qs(parts.query)
    schema = query.pop("schema")[0]
    url = urlunsplit(parts._replace(scheme="postgresql+psycopg", query=urlencode(query, True)))
    database = Database(url, schema, timestamp="TIMESTAMPTZ")
    database.execute(f'CREATE SCHEMA "{schema}"')
    return database


@pytest.fixture
def maria(mariadb_url: str) -> Database:
    """A MariaDB source: the test's own database."""
    return Database(mariadb_url, timestamp="DATETIME(6) NULL")


@pytest.fixture
def lite(tmp_path: Path) -> Database:
    """A SQLite source file."""
    return Database(f"sqlite:///{tmp_path / 'source.db'}")


@pytest.fixture(params=["pg", "maria"])
def server(request: pytest.FixtureRequest) -> Database:
    """Each database server in turn."""
    database: Database = request.getfixturevalue(request.param)
    return database


@pytest.fixture(params=["pg", "maria", "lite"])
def any_database(request: pytest.FixtureRequest) -> Database:
    """Each database in turn, servers and SQLite."""
    database: Database = request.getfixturevalue(request.param)
    return database


@pytest.fixture
def shared() -> Iterator[SharedResources]:
    """The run-scoped resources, closed (engines disposed) at the end of the test."""
    resources = SharedResources()
    yield resources
    resources.close()


def _source(
    shared: SharedResources,
    url: str,
    *,
    batch_size: int = 10,
    cursor: CursorBound | None = None,
    resume: Any = None,
    order_by: tuple[str, ...] = (),
    **options: Any,
) -> SqlSource:
    context = SourceContext(
        "items",
        batch_size,
        Path("."),
        cursor=cursor,
        resume=resume,
        order_by=order_by,
        shared=shared,
    )
    return SqlSource(SqlOptions.model_validate({"type": "sql", "url": url, **options}), context)


def _ids(batches: list[SourceBatch]) -> list[int]:
    return [i for batch in batches for i in batch.frame.get_column("id").to_list()]


def _pool(source: SqlSource) -> sa.pool.QueuePool:
    pool = source.engine().pool
    assert isinstance(pool, sa.pool.QueuePool)
    return pool


def _raised(source: SqlSource) -> SourceError:
    with pytest.raises(SourceError) as info:
        list(source.batches())
    return info.value


def _error(source: SqlSource) -> str:
    return str(_raised(source))


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _items(database: Database, count: int) -> None:
    database.execute(
        f"CREATE TABLE {database.table('items')} "
        f"(id INTEGER PRIMARY KEY, name VARCHAR(40), updated_at {database.timestamp})"
    )
    rows = [
        {"id": i, "name": f"item {i}", "updated_at": BASE + timedelta(hours=i)}
        for i in range(1, count + 1)
    ]
    database.insert("items", rows)


# ---------------------------------------------------------------- options

_ONE_OF = "give exactly one of `table:` (a table name) or `query:` (a SELECT)"


def test_registry_maps_sql_to_these_options_and_source() -> None:
    """``type: sql`` resolves to SqlOptions and SqlSource."""
    kind = SOURCES["sql"]
    assert kind.options is SqlOptions
    assert kind.build is SqlSource


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "t", "query": "SELECT 1"}, _ONE_OF),
        ({}, _ONE_OF),
        (
            {"query": "SELECT 1", "where": "x > 1"},
            "`where:` goes with `table:`; with `query:`, write the condition in it",
        ),
        (
            {"table": "t", "params": {"ladle_after": 1}},
            "parameter name 'ladle_after' must be a plain identifier not starting with ladle_ "
            "(it is written :name in the SQL)",
        ),
        ({"table": "t", "tabel": "u"}, "Extra inputs are not permitted"),
    ],
)
def test_options_take_exactly_one_of_table_and_query(options: dict[str, Any], message: str) -> None:
    """Both or neither of table and query, a where with a query, or a reserved name is an error."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        SqlOptions.model_validate({"type": "sql", "url": "sqlite://", **options})


def test_trailing_semicolon_is_dropped_from_a_query() -> None:
    """A query copied from a console with its semicolon still works as a subquery."""
    options = SqlOptions(type="sql", url="sqlite://", query="SELECT 1 AS a;\n")
    assert options.query == "SELECT 1 AS a"


# ---------------------------------------------------------------- reading


def test_table_is_read_in_batches_with_positions(pg: Database, shared: SharedResources) -> None:
    """A table's rows come in batches of at most batch_size, each row with its position."""
    _items(pg, 25)
    batches = list(_source(shared, pg.url, table=pg.table("items")).batches())
    assert [batch.frame.height for batch in batches] == [10, 10, 5]
    assert sorted(_ids(batches)) == list(range(1, 26))
    name = f"sql:{pg.schema}.items"
    assert batches[0].positions[:2] == [f"{name}#row=1", f"{name}#row=2"]
    assert batches[2].positions[-1] == f"{name}#row=25"
    assert [batch.checkpoint for batch in batches] == [None, None, None]


def test_query_with_params_is_read_under_the_resource_name(
    pg: Database, shared: SharedResources
) -> None:
    """A query's rows are read with its bound parameters; positions name the resource."""
    _items(pg, 25)
    query = f"SELECT id, upper(name) AS name FROM {pg.table('items')} WHERE id > :min;"
    source = _source(shared, pg.url, query=query, params={"min": 22}, order_by=("id",))
    [batch] = list(source.batches())
    assert batch.frame.rows() == [(23, "ITEM 23"), (24, "ITEM 24"), (25, "ITEM 25")]
    assert batch.positions == ["sql:items#row=1", "sql:items#row=2", "sql:items#row=3"]


def test_where_and_params_filter_a_table(maria: Database, shared: SharedResources) -> None:
    """``where:`` with a bound value and a literal ``%`` filters the table; mysql:// is pymysql."""
    _items(maria, 25)
    where = "name LIKE 'item 1%' AND id > :min"
    url = sa.make_url(maria.url).set(drivername="mysql").render_as_string(hide_password=False)
    source = _source(shared, url, table="items", where=where, params={"min": 12})
    assert sorted(_ids(list(source.batches()))) == [13, 14, 15, 16, 17, 18, 19]


def test_postgres_types_are_carried_over(pg: Database, shared: SharedResources) -> None:
    """Each batch's frame has the database's types, also a batch where a column is all NULL."""
    pg.execute(
        f"CREATE TABLE {pg.table('typed')} (id integer PRIMARY KEY, big bigint, "
        "amount numeric(12,2), ratio numeric, score double precision, active boolean, "
        "name text, seen_at timestamptz, local_at timestamp, born date, doc jsonb)"
    )
    full = {
        "id": 1, "big": 2**40, "amount": Decimal("12.50"), "ratio": Decimal("0.25"),
        "score": 1.5, "active": True, "name": "Zoë", "seen_at": BASE,
        "local_at": datetime(2024, 3, 1, 9, 30), "born": date(1990, 5, 17),
        "doc": json.dumps({"a": [1, 2], "b": None}),
    }  # fmt: skip
    empty = {key: None for key in full} | {"id": 3}
    pg.insert("typed", [full, full | {"id": 2}, empty])
    source = _source(shared, pg.url, table=pg.table("typed"), batch_size=2, order_by=("id",))
    batches = list(source.batches())
    expected = {
        "id": pl.Int64(), "big": pl.Int64(), "amount": pl.Decimal(12, 2),
        "ratio": pl.Float64(), "score": pl.Float64(), "active": pl.Boolean(),
        "name": pl.String(), "seen_at": pl.Datetime("us", "UTC"),
        "local_at": pl.Datetime("us"), "born": pl.Date(), "doc": pl.String(),
    }  # fmt: skip
    assert [dict(batch.frame.schema) for batch in batches] == [expected, expected]
    assert batches[0].frame.row(0, named=True) == full | {
        "ratio": 0.25,
        "doc": '{"a": [1, 2], "b": null}',
    }
    assert batches[1].frame.row(0, named=True) == empty


def test_mariadb_types_are_carried_over_and_misfits_set_apart(
    maria: Database, shared: SharedResources
) -> None:
    """MariaDB's types reach the frame; a zero date cannot be a date and goes to quarantine."""
    maria.execute(
        "CREATE TABLE typed (id INT PRIMARY KEY, amount DECIMAL(10,2), flag TINYINT(1), "
        "name VARCHAR(20), seen_at DATETIME(6), born DATE, doc JSON, score DOUBLE)"
    )
    row = {
        "id": 1, "amount": Decimal("12.50"), "flag": 1, "name": "Zoë",
        "seen_at": datetime(2024, 3, 1, 12, 0, 0, 250000), "born": date(1990, 5, 17),
        "doc": '{"a": [1, 2]}', "score": 1.5,
    }  # fmt: skip
    maria.insert("typed", [row, {key: None for key in row} | {"id": 2}])
    # MariaDB accepts a zero date unless sql_mode forbids it; pymysql returns it as text.
    maria.execute(
        "SET SESSION sql_mode = ''", "INSERT INTO typed (id, born) VALUES (3, '0000-00-00')"
    )
    [batch] = list(_source(shared, maria.url, table="typed", order_by=("id",)).batches())
    assert dict(batch.frame.schema) == {
        "id": pl.Int64(), "amount": pl.Decimal(12, 2), "flag": pl.Int64(),
        "name": pl.String(), "seen_at": pl.Datetime("us"), "born": pl.Date(),
        "doc": pl.String(), "score": pl.Float64(),
    }  # fmt: skip
    assert batch.frame.rows(named=True)[0] == row
    assert batch.positions == ["sql:typed#row=1", "sql:typed#row=2"]
    raw = (
        '{"id": 3, "amount": null, "flag": null, "name": null, "seen_at": null, '
        '"born": "0000-00-00", "doc": null, "score": null}'
    )
    message = "column 'born': cannot read '0000-00-00' as a date"
    assert batch.unreadable == [Unreadable("sql:typed#row=3", raw, message, rule="type")]
    assert batch.fetched == 3


def test_sqlite_uses_declared_affinity(lite: Database, shared: SharedResources) -> None:
    """SQLite's declared INTEGER, REAL and TEXT type the frame; a non-integer is set apart."""
    lite.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT, d DATE)")
    lite.insert(
        "things",
        [
            {"id": 1, "n": 5, "x": 1.5, "s": "a", "d": "2024-03-01"},
            {"id": 2, "n": None, "x": None, "s": None, "d": None},
            {"id": 3, "n": "lots", "x": 2, "s": "c", "d": "2024-03-03"},
        ],
    )
    [batch] = list(_source(shared, lite.url, table="things", order_by=("id",)).batches())
    assert dict(batch.frame.schema) == {
        "id": pl.Int64(), "n": pl.Int64(), "x": pl.Float64(), "s": pl.String(), "d": pl.String()
    }  # fmt: skip
    assert batch.frame.rows() == [(1, 5, 1.5, "a", "2024-03-01"), (2, None, None, None, None)]
    [bad] = batch.unreadable
    assert (bad.position, bad.message) == (
        "sql:things#row=3",
        "column 'n': cannot read 'lots' as an integer",
    )


def test_duckdb_file_is_a_source(tmp_path: Path, shared: SharedResources) -> None:
    """A DuckDB file is read through duckdb-engine, with its types and a list as JSON text."""
    path = tmp_path / "source.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "CREATE TABLE things AS SELECT i AS id, (i * 1.25)::DECIMAL(10,2) AS amount, "
            "i % 2 = 0 AS even, 'n' || i AS name, DATE '2024-03-01' + i AS day, "
            "[i, i + 1] AS pair FROM range(1, 8) t(n), LATERAL (SELECT n::INTEGER AS i)"
        )
    url = f"duckdb:///{path}"
    batches = list(_source(shared, url, table="things", batch_size=3, order_by=("id",)).batches())
    assert [batch.frame.height for batch in batches] == [3, 3, 1]
    assert dict(batches[0].frame.schema) == {
        "id": pl.Int64(), "amount": pl.Decimal(10, 2), "even": pl.Boolean(),
        "name": pl.String(), "day": pl.Date(), "pair": pl.String(),
    }  # fmt: skip
    assert batches[0].frame.row(0) == (1, Decimal("1.25"), False, "n1", date(2024, 3, 2), "[1, 2]")
    resumed = _source(shared, url, table="things", order_by=("id",), resume=batches[0].checkpoint)
    assert _ids(list(resumed.batches())) == [4, 5, 6, 7]


# ---------------------------------------------------------------- streaming


def test_postgres_streams_through_a_named_cursor(pg: Database, shared: SharedResources) -> None:
    """Rows are fetched from a server-side cursor, one batch at a time."""
    _items(pg, 50)
    app = f"ladle_stream_{uuid.uuid4().hex[:8]}"
    source = _source(shared, f"{pg.url}?application_name={app}", table=pg.table("items"))
    batches = source.batches()
    assert next(batches).frame.height == 10
    with psycopg.connect(
        sa.make_url(pg.url).set(drivername="postgresql").render_as_string(False)
    ) as conn:
        [(query,)] = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s", [app]
        ).fetchall()
    assert query.startswith("FETCH FORWARD")
    assert sum(batch.frame.height for batch in batches) == 40


def test_mariadb_streams_with_an_unbuffered_cursor(
    maria: Database, shared: SharedResources
) -> None:
    """The server is still sending the result after the first batch: it was not read whole."""
    maria.execute("CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200))")
    maria.insert("big", [{"id": i, "pad": "x" * 200} for i in range(1, 50001)])
    batches = _source(shared, maria.url, table="big", batch_size=100).batches()
    assert next(batches).frame.height == 100
    engine = sa.create_engine(maria.url, poolclass=NullPool)
    with engine.connect() as conn:
        commands = (
            conn.execute(
                sa.text("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE INFO = :sql"),
                {"sql": "SELECT * FROM big"},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert commands == ["Query"]
    assert sum(batch.frame.height for batch in batches) == 49900


# ---------------------------------------------------------------- incremental and resume


def test_cursor_bound_is_pushed_down(server: Database, shared: SharedResources) -> None:
    """Only rows whose cursor is past the bound are fetched, in cursor order."""
    _items(server, 20)
    bound = CursorBound("updated_at", BASE + timedelta(hours=16))
    source = _source(
        shared, server.url, table=server.table("items"), cursor=bound, order_by=("id",)
    )
    [batch] = list(source.batches())
    assert _ids([batch]) == [17, 18, 19, 20]
    assert batch.checkpoint["columns"] == ["updated_at", "id"]
    last, key = batch.checkpoint["after"]
    expected = BASE + timedelta(hours=20)
    assert decode(last) == (expected if server.dialect == "postgresql" else _naive(expected))
    assert key == ["int", 20]


def test_resume_at_every_checkpoint_gives_the_rest(
    any_database: Database, shared: SharedResources
) -> None:
    """For every batch k, the batches up to k and a source resumed after k give every row once."""
    db = any_database
    db.execute(
        f"CREATE TABLE {db.table('ties')} (id INTEGER PRIMARY KEY, updated_at {db.timestamp})"
    )
    # 40 rows on 4 cursor values (10 ties each), 3 with no cursor value, inserted shuffled.
    rows: list[dict[str, Any]] = [
        {"id": i, "updated_at": BASE + timedelta(seconds=i % 4, microseconds=i % 4)}
        for i in range(1, 41)
    ] + [{"id": i, "updated_at": None} for i in range(41, 44)]
    db.insert("ties", sorted(rows, key=lambda row: row["id"] * 17 % 43))

    def read(resume: Any = None) -> list[SourceBatch]:
        bound = CursorBound("updated_at", None)
        source = _source(
            shared, db.url, table=db.table("ties"), batch_size=6, cursor=bound,
            order_by=("id",), resume=resume,
        )  # fmt: skip
        return list(source.batches())

    batches = read()
    everything = _ids(batches)
    assert sorted(everything) == list(range(1, 44))
    for k, batch in enumerate(batches):
        checkpoint = json.loads(json.dumps(batch.checkpoint))
        assert _ids(batches[: k + 1]) + _ids(read(resume=checkpoint)) == everything


def test_checkpoint_values_round_trip_exactly() -> None:
    """Every tagged type decodes to the value it was encoded from."""
    values = [
        None, True, 2**62, 0.1, Decimal("1.10"), BASE, datetime(2024, 1, 1, 0, 0, 0, 1),
        date(2024, 2, 29), "é", uuid.UUID(int=7),
    ]  # fmt: skip
    for value in values:
        tagged = json.loads(json.dumps(encode(value)))
        assert decode(tagged) == value
        assert type(decode(tagged)) is type(value)
    assert encode(b"bytes") is None


def test_resume_with_changed_ordering_says_what_to_do(
    pg: Database, shared: SharedResources
) -> None:
    """A checkpoint taken under another primary key cannot be resumed from."""
    _items(pg, 3)
    resume = {"columns": ["other"], "after": [["int", 1]]}
    source = _source(shared, pg.url, table=pg.table("items"), order_by=("id",), resume=resume)
    assert _error(source) == (
        f"sql:{pg.schema}.items: cannot resume from checkpoint ['other']: rows are now ordered "
        "by ['id'] (the cursor, primary key or order_by changed since that run); load "
        "everything again with `ladle run --full-refresh`"
    )


# ---------------------------------------------------------------- engines and connections


def test_sources_with_one_url_share_one_engine(pg: Database, shared: SharedResources) -> None:
    """Two resources reading one database use one engine (and pool) for the run."""
    _items(pg, 3)
    first = _source(shared, pg.url, table=pg.table("items"))
    second = _source(shared, pg.url, query=f"SELECT * FROM {pg.table('items')}")
    assert len(_ids(list(first.batches()))) == len(_ids(list(second.batches()))) == 3
    assert first.engine() is second.engine()


def test_connection_is_returned_on_every_path(server: Database, shared: SharedResources) -> None:
    """After a normal end, a consumer's exception and an early close, no connection is out."""
    _items(server, 30)
    source = _source(shared, server.url, table=server.table("items"))
    pool = _pool(source)
    list(source.batches())
    assert pool.checkedout() == 0

    def consume() -> None:
        for _ in source.batches():
            assert pool.checkedout() == 1
            raise RuntimeError("the consumer failed")

    with pytest.raises(RuntimeError, match="the consumer failed"):
        consume()
    assert pool.checkedout() == 0

    batches = source.batches()
    next(batches)
    batches.close()
    assert pool.checkedout() == 0


def test_connection_killed_mid_stream_is_a_source_error(
    pg: Database, shared: SharedResources
) -> None:
    """A backend terminated mid-stream stops the run with a message that holds no password."""
    _items(pg, 50)
    app = f"ladle_kill_{uuid.uuid4().hex[:8]}"
    secret = "s3cret-pw"  # noqa: S105 - made up, to check that messages mask it
    url = sa.make_url(pg.url).set(password=secret).update_query_dict({"application_name": app})
    source = _source(shared, url.render_as_string(hide_password=False), table=pg.table("items"))
    batches = source.batches()
    next(batches)
    admin = sa.make_url(pg.url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [app],
        ).fetchall()
    assert killed == [(True,)]
    with pytest.raises(SourceError) as info:
        list(batches)
    assert secret not in str(info.value)
    assert str(info.value) == (
        f"sql:{pg.schema}.items: terminating connection due to administrator command "
        "(while reading the rows after row 10); run again: with `commit_every:` a run resumes "
        "after its last checkpoint"
    )
    assert info.value.transient
    assert _pool(source).checkedout() == 0


# ---------------------------------------------------------------- errors


def test_missing_driver_says_what_to_install(shared: SharedResources) -> None:
    """A URL naming a driver that is not installed says which package to install."""
    source = _source(shared, "mysql+mysqldb://ladle:s3cret@127.0.0.1/db", table="t")
    assert _error(source) == (
        "sql:t: the driver for mysql+mysqldb:// is not installed (No module named 'MySQLdb'); "
        "pip install mysqlclient"
    )


def test_unreachable_server_is_named_without_its_password(shared: SharedResources) -> None:
    """A server that does not answer is named, with its password masked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://ladle:s3cret@127.0.0.1:{port}/db"
    error = _raised(_source(shared, url, table="t"))
    assert error.transient
    assert str(error) == (
        f'sql:t: connection failed: connection to server at "127.0.0.1", port {port} failed: '
        f"Connection refused (while connecting to postgresql://ladle:***@127.0.0.1:{port}/db)"
    )


def test_bad_url_and_unknown_table_and_missing_param(pg: Database, shared: SharedResources) -> None:
    """A malformed URL, a missing table and an unbound parameter are explained, not retried."""
    assert _error(_source(shared, "not a url", table="t")) == (
        "sql:t: 'not a url' is not a database URL; write e.g. postgresql://user@host/db "
        "or mysql+pymysql://user@host/db"
    )
    error = _raised(_source(shared, pg.url, table=pg.table("nope")))
    assert not error.transient
    assert str(error) == (
        f'sql:{pg.schema}.nope: relation "{pg.schema}.nope" does not exist '
        "(while running the query)"
    )
    assert _error(_source(shared, pg.url, query="SELECT 1 AS a WHERE 1 = :x")) == (
        "sql:items: A value is required for bind parameter 'x' (while running the query); "
        "give it a value under `params:`"
    )


# ---------------------------------------------------------------- end to end


def test_pipeline_loads_a_table_into_duckdb(
    pg: Database,
    duckdb_url: str,
    write_pipeline: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A YAML pipeline with a sql source loads every row, and the ledger balances."""
    _items(pg, 23)
    monkeypatch.setenv("LADLE_TEST_SOURCE_URL", pg.url)
    path = write_pipeline(
        f"""
pipeline: sqlsync
destination: {duckdb_url}
resources:
  items:
    source: {{type: sql, url: "${{LADLE_TEST_SOURCE_URL}}", table: {pg.table("items")}}}
    primary_key: [id]
    write: merge
    batch_size: 5
"""
    )
    for inserted, unchanged in [(23, 0), (0, 23)]:
        summary = ladle.Pipeline.from_yaml(path).run()
        assert summary.ok, summary.resources[0].error
        counts = summary.resources[0].counts
        assert (counts.fetched, counts.inserted, counts.unchanged) == (23, inserted, unchanged)
        assert counts.fetched == (
            counts.inserted + counts.updated + counts.unchanged + counts.deduplicated
            + counts.quarantined
        )  # fmt: skip
    with duckdb.connect(duckdb_url.removeprefix("duckdb:///")) as conn:
        rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    assert rows == [(i, f"item {i}") for i in range(1, 24)]


def test_order_by_breaks_ties_after_the_cursor_and_the_key(
    lite: Database, shared: SharedResources
) -> None:
    """Rows come ordered by the cursor, then the primary key, then ``order_by``: events of one
    incident at the same time arrive in the same order on every run (a keep-last dedupe
    keeps the same one), and the checkpoint holds all three."""
    lite.execute(f"CREATE TABLE {lite.table('events')} (incident INTEGER, at TEXT, seq INTEGER)")
    lite.insert(
        "events",
        [
            {"incident": 2, "at": "10:00", "seq": 9},
            {"incident": 1, "at": "10:05", "seq": 4},
            {"incident": 1, "at": "10:05", "seq": 3},
            {"incident": 1, "at": "10:00", "seq": 7},
        ],
    )
    options = {"type": "sql", "url": lite.url, "table": "events", "order_by": "seq"}
    context = SourceContext(
        "events", 10, Path("."), cursor=CursorBound("at", None), order_by=("incident",),
        shared=shared,
    )  # fmt: skip
    [batch] = list(SqlSource(SqlOptions.model_validate(options), context).batches())
    rows = batch.frame.select("incident", "at", "seq").rows()
    assert rows == [(1, "10:00", 7), (2, "10:00", 9), (1, "10:05", 3), (1, "10:05", 4)]
    assert batch.checkpoint["columns"] == ["at", "incident", "seq"]
