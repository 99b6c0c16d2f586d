"""The ``sql`` source: a table or a query from any database SQLAlchemy reaches.

Rows stream through a server-side cursor (PostgreSQL named cursors, MySQL's
unbuffered cursors) in chunks of ``batch_size``; nothing holds the whole result.
Each batch's frame takes its column types from the database, not from the values,
so a column that is all NULL in one batch keeps its type.

To checkpoint, the rows are ordered by the cursor column, then the primary key, then
the ``order_by`` tie-breakers; a batch's checkpoint is the ordering values of its last
row, and resuming adds the keyset condition ``(c1, c2) > (v1, v2)`` written out in a
portable form. Values are always bound, identifiers quoted by the dialect; the engine
is shared by every resource of a run that names the same URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.sources import SourceContext

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect, Engine

_PARAM = re.compile(r"^[A-Za-z_]\w*$")
# SQLAlchemy's default DBAPI for these is one ladle does not install; use the ones it does.
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_PACKAGES = {
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "duckdb_engine": "duckdb-engine",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
    "oracledb": "oracledb",
}
_NAIVE_UTC = {"mysql", "mariadb", "sqlite"}
"""Dialects whose timestamp columns hold no time zone: bind UTC datetimes without one."""
_NULLS_FIRST = {"mysql", "mariadb", "sqlite", "mssql"}
"""Dialects that sort NULL before other values in ascending order (the others: after)."""


class SqlOptions(BaseModel):
    """A resource's ``source:`` when it reads a database table or query."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sql"]
    url: str
    """SQLAlchemy URL, normally ``${VAR}`` from the environment (it holds a password)."""
    table: str | None = None
    """The table to read, optionally ``schema.table``; every column is read."""
    where: str | None = None
    """With ``table:``, an SQL condition rows must meet; values go in ``params:``."""
    query: str | None = None
    """A SELECT to read instead of a table; the cursor and key name its result's columns."""
    params: dict[str, Any] = {}
    """Values bound to the ``:name`` placeholders of ``where:`` or ``query:``."""
    order_by: list[str] = []
    """Tie-breakers: rows are read ordered by the cursor, then the primary key, then these
    columns, so rows equal in the first ones come in the same order on every run (and a
    ``dedupe`` that keeps the last of them keeps the same one)."""

    @field_validator("order_by", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("url must be a database URL such as postgresql://user@host/db")
        return value

    @field_validator("query")
    @classmethod
    def _no_trailing_semicolon(cls, value: str | None) -> str | None:
        # The query becomes a subquery, where a terminating semicolon is a syntax error.
        return None if value is None else value.strip().rstrip(";").rstrip()

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _PARAM.match(name) or name.startswith("ladle_"):
                raise ValueError(
                    f"parameter name {name!r} must be a plain identifier not starting with "
                    "ladle_ (it is written :name in the SQL)"
                )
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table:` (a table name) or `query:` (a SELECT)")
        if self.where is not None and self.table is None:
            raise ValueError(
                "`where:` goes with `table:`; with `query:`, write the condition in it"
            )
        return self


class SqlSource:
    """Yield a table's or a query's rows in batches, ordered so that a run can resume."""

    def __init__(self, options: SqlOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self.name = f"sql:{options.table or context.resource}"
        cursor = context.cursor
        first = (cursor.column,) if cursor is not None else ()
        # The columns rows are sorted by (the cursor, the primary key, the tie-breakers);
        # a checkpoint holds their values.
        self.ordering = tuple(dict.fromkeys([*first, *context.order_by, *options.order_by]))

    def batches(self) -> Generator[SourceBatch, None, None]:
        """Yield the rows in batches of at most ``batch_size``; see :class:`Source`."""
        import sqlalchemy as sa

        size = self.context.batch_size
        engine = self.engine()
        sql, params = self.statement(engine.dialect)
        doing = "connecting"
        try:
            with engine.connect() as connection:
                columns = self._columns_of_table(connection)
                doing = "running the query"
                options = {"stream_results": True, "max_row_buffer": size}
                with connection.execution_options(**options).execute(
                    sa.text(sql), params
                ) as result:
                    reader = _Reader(self, result.cursor.description, engine.dialect, columns)
                    doing = "reading the first rows"
                    budget = self.context.budget
                    # Under memory_limit_mb the pipeline may change the rows per batch.
                    while rows := result.fetchmany(budget.rows if budget else size):
                        yield reader.batch(rows)
                        doing = f"reading the rows after row {reader.row}"
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, doing) from exc

    def engine(self) -> Engine:
        """The run's engine for this URL, created on first use and disposed when the run ends."""
        return self.context.shared.get(
            ("sql", self.options.url), self._create_engine, close=lambda e: e.dispose()
        )

    def statement(self, dialect: Dialect) -> tuple[str, dict[str, Any]]:
        """The SELECT this source runs, and its bound values."""
        quote = dialect.identifier_preparer.quote
        options, cursor = self.options, self.context.cursor
        params = dict(options.params)
        conditions = []
        if options.table is not None:
            source = ".".join(quote(part) for part in options.table.split("."))
            if options.where is not None:
                conditions.append(f"({options.where})")
        else:
            source = f"({options.query}) AS ladle_q"  # MySQL requires the alias
        if cursor is not None and cursor.after is not None:
            conditions.append(f"{quote(cursor.column)} > :ladle_after")
            params["ladle_after"] = _bindable(cursor.after, dialect.name)
        resume = self._resume_values()
        if resume is not None:
            columns = [quote(c) for c in self.ordering]
            condition, values = _after(columns, resume, nulls_first=dialect.name in _NULLS_FIRST)
            conditions.append(f"({condition})")
            params |= {key: _bindable(value, dialect.name) for key, value in values.items()}
        sql = f"SELECT * FROM {source}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if self.ordering:
            sql += " ORDER BY " + ", ".join(quote(c) for c in self.ordering)
        return sql, params

    def _resume_values(self) -> list[Any] | None:
        resume = self.context.resume
        if resume is None or not self.ordering:
            return None
        if not isinstance(resume, dict) or resume.get("columns") != list(self.ordering):
            taken = resume.get("columns") if isinstance(resume, dict) else resume
            raise SourceError(
                f"cannot resume from checkpoint {taken!r}: rows are now ordered by "
                f"{list(self.ordering)!r} (the cursor, primary key or order_by changed since "
                "that run); "
                "load everything again with `ladle run --full-refresh`",
                position=self.name,
            )
        try:
            return [decode(value) for value in resume["after"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(
                f"cannot resume from checkpoint {resume!r} ({exc!r}); "
                "load everything again with `ladle run --full-refresh`",
                position=self.name,
            ) from exc

    def _columns_of_table(self, connection: Connection) -> dict[str, str] | None:
        """SQLite reports no result types: read the table's declared ones instead."""
        if connection.dialect.name != "sqlite" or self.options.table is None:
            return None
        import sqlalchemy as sa

        schema, _, table = self.options.table.rpartition(".")
        try:
            found = sa.inspect(connection).get_columns(table, schema=schema or None)
        except sa.exc.NoSuchTableError:
            return None  # the SELECT says so in SQLite's words
        return {column["name"]: str(column["type"]) for column in found}

    def _create_engine(self) -> Engine:
        import sqlalchemy as sa

        try:
            url = sa.make_url(self.options.url)
        except sa.exc.ArgumentError:
            raise SourceError(
                f"{self._masked(self.options.url)!r} is not a database URL; write e.g. "
                "postgresql://user@host/db or mysql+pymysql://user@host/db",
                position=self.name,
            ) from None
        url = url.set(drivername=_DRIVERS.get(url.drivername, url.drivername))
        try:
            return sa.create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            package = _PACKAGES.get(exc.name or "", exc.name)
            raise SourceError(
                f"the driver for {url.drivername}:// is not installed ({exc}); "
                f"pip install {package}",
                position=self.name,
            ) from exc
        except sa.exc.NoSuchModuleError as exc:
            raise SourceError(
                f"SQLAlchemy knows no database {url.drivername!r}; check the URL's scheme, "
                "or install the package that provides that dialect",
                position=self.name,
            ) from exc

    def _error(self, exc: Exception, doing: str) -> SourceError:
        """The driver's own message (not SQLAlchemy's echo of the SQL), with secrets masked."""
        import sqlalchemy as sa

        orig = getattr(exc, "orig", None) or exc
        match getattr(orig, "args", ()):
            case (int(), str() as text):  # pymysql: (code, message)
                pass
            case (str() as text,) if isinstance(orig, sa.exc.SQLAlchemyError):
                pass  # without the link to SQLAlchemy's docs that str() appends
            case _:  # psycopg adds context (LINE 1: ...) on further lines
                text = str(orig)
        message = text.strip().splitlines()[0] if text.strip() else type(orig).__name__
        if doing == "connecting":
            doing = f"connecting to {self.options.url}"
        # A lost or refused connection may succeed on a retry; bad SQL will not.
        transient = isinstance(exc, sa.exc.OperationalError | sa.exc.DisconnectionError)
        hint = ""
        if isinstance(exc, sa.exc.StatementError) and "bind parameter" in message:
            hint = "; give it a value under `params:`"
        elif transient and doing.startswith("reading"):
            hint = "; run again: with `commit_every:` a run resumes after its last checkpoint"
        error = SourceError(self._masked(f"{message} (while {doing}){hint}"), position=self.name)
        error.transient = transient
        return error

    def _masked(self, text: str) -> str:
        from ladle.redact import mask

        password = _password(self.options.url)
        return mask(text, known=[password] if password else [])


def _password(url: str) -> str | None:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).password
    except sa.exc.ArgumentError:
        return None


# ---------------------------------------------------------------- checkpoints


_ENCODERS: list[tuple[type, str, Callable[[Any], Any]]] = [
    (type(None), "null", lambda _: None),
    (bool, "bool", bool),  # before int: a bool is an int
    (int, "int", int),
    (float, "float", repr),
    (Decimal, "decimal", str),
    (datetime, "datetime", datetime.isoformat),  # before date: a datetime is a date
    (date, "date", date.isoformat),
    (str, "str", str),
    (UUID, "uuid", str),
]


def encode(value: Any) -> list[Any] | None:
    """A value as ``[tag, json value]`` that :func:`decode` turns back into the same value."""
    for kind, tag, dump in _ENCODERS:
        if isinstance(value, kind):
            return [tag, dump(value)]
    return None


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "null": lambda _: None,
    "bool": bool,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "str": str,
    "uuid": UUID,
}


def decode(tagged: list[Any]) -> Any:
    """The value :func:`encode` tagged."""
    tag, value = tagged
    return _DECODERS[tag](value)


def _bindable(value: Any, dialect: str) -> Any:
    """A value as the dialect's driver compares it with a column."""
    if isinstance(value, datetime) and dialect in _NAIVE_UTC and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if dialect == "sqlite" and isinstance(value, date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, UUID) and dialect not in ("postgresql", "duckdb"):
        return str(value)
    return value


def _after(
    columns: list[str], values: list[Any], *, nulls_first: bool
) -> tuple[str, dict[str, Any]]:
    """``(c1, c2, …) > (v1, v2, …)`` in the sort order, expanded for every database.

    ``c1 > :r0 OR (c1 = :r0 AND c2 > :r1) OR …``, where NULL sorts first or last as the
    database does: nothing follows NULL when NULLs sort last, and NULL follows nothing
    when they sort first.
    """
    terms: list[str] = []
    same: list[str] = []
    params: dict[str, Any] = {}
    for i, (column, value) in enumerate(zip(columns, values, strict=True)):
        if value is None:
            later = f"{column} IS NOT NULL" if nulls_first else None
            equal = f"{column} IS NULL"
        else:
            params[f"ladle_r{i}"] = value
            later = f"{column} > :ladle_r{i}"
            if not nulls_first:
                later = f"({later} OR {column} IS NULL)"
            equal = f"{column} = :ladle_r{i}"
        if later is not None:
            terms.append(" AND ".join([*same, later]))
        same.append(equal)
    return " OR ".join(f"({term})" for term in terms) or "1 = 0", params


# ---------------------------------------------------------------- column types

_MAX_PRECISION = 38
"""Polars decimals have at most 38 digits; wider numbers, or of unknown scale, are floats."""

_MYSQL_TYPES = {
    0: "decimal", 246: "decimal", 1: "tinyint", 2: "smallint", 3: "integer", 8: "bigint",
    9: "mediumint", 13: "year", 4: "float", 5: "double", 10: "date", 14: "date",
    7: "timestamp", 12: "datetime", 245: "json",
}  # fmt: skip
"""MySQL's field type codes (pymysql.constants.FIELD_TYPE); the others read as text."""

_KINDS: dict[str, pl.DataType] = {
    **dict.fromkeys(
        ["smallint", "integer", "bigint", "int", "int2", "int4", "int8", "tinyint", "mediumint",
         "year", "utinyint", "usmallint", "uinteger", "oid"],
        pl.Int64(),
    ),
    **dict.fromkeys(
        ["real", "float", "double", "float4", "float8", "double precision"], pl.Float64()
    ),
    **dict.fromkeys(["bool", "boolean"], pl.Boolean()),
    "date": pl.Date(),
    **dict.fromkeys(
        ["timestamp", "datetime", "timestamp without time zone"], pl.Datetime("us")
    ),
    **dict.fromkeys(["timestamptz", "timestamp with time zone"], pl.Datetime("us", "UTC")),
}  # fmt: skip
"""Database type names and the Polars type their values take; any other type is text."""

_SQLITE_AFFINITY = [("INT", pl.Int64()), ("CHAR", pl.String()), ("CLOB", pl.String()),
                    ("TEXT", pl.String()), ("REAL", pl.Float64()), ("FLOA", pl.Float64()),
                    ("DOUB", pl.Float64())]  # fmt: skip
"""SQLite's rules for a declared type's affinity; other columns' types come from the values."""

_FITS: dict[type[pl.DataType], tuple[str, Callable[[Any], bool]]] = {
    pl.Int64: ("an integer", lambda v: type(v) is int and -(2**63) <= v < 2**63),
    pl.Float64: ("a number", lambda v: isinstance(v, int | float | Decimal)),
    pl.Decimal: ("a decimal", lambda v: type(v) is int or (type(v) is Decimal and v.is_finite())),
    pl.Boolean: ("a boolean", lambda v: isinstance(v, bool)),
    pl.Date: ("a date", lambda v: type(v) is date),
    pl.Datetime: ("a timestamp", lambda v: isinstance(v, datetime)),
}


@dataclass(frozen=True)
class _Column:
    """A result column: its Polars type (None: from the values) and how to convert a value."""

    name: str
    dtype: pl.DataType | None
    convert: Callable[[Any], Any] | None = None

    def series(self, values: Sequence[Any]) -> pl.Series:
        if self.convert is not None:
            values = [None if v is None else self.convert(v) for v in values]
        if self.dtype is not None:
            return pl.Series(self.name, values, dtype=self.dtype, strict=True)
        try:
            return pl.Series(self.name, values, strict=True)
        except (TypeError, OverflowError, pl.exceptions.PolarsError):
            # SQLite allows any value in any column: mixed values are kept as text.
            return pl.Series(self.name, [None if v is None else _text(v) for v in values])

    def misfit(self, value: Any) -> str | None:
        """Why ``value`` cannot be read as this column's type, or None if it can."""
        if value is None or self.dtype is None:
            return None
        kind, fits = _FITS.get(type(self.dtype), ("", lambda _: True))
        return None if fits(value) else f"column {self.name!r}: cannot read {value!r} as {kind}"


def _columns(
    description: Sequence[Sequence[Any]], dialect: str, declared: dict[str, str] | None
) -> list[_Column]:
    """The result's columns and their types, from the cursor's description."""
    columns = []
    for name, code, _, _, precision, scale, *_ in description:
        if declared is not None:
            affinity = declared.get(name, "").upper()
            dtype = next((t for key, t in _SQLITE_AFFINITY if key in affinity), None)
            columns.append(_Column(name, dtype, _text if dtype == pl.String else None))
        elif (kind := _type_name(code, dialect)) is None:
            columns.append(_Column(name, None))
        else:
            columns.append(_column(name, kind, precision, scale, dialect))
    return columns


def _type_name(code: Any, dialect: str) -> str | None:
    """The type's name from a result's type code; None where ladle does not know the codes."""
    if code is None:
        return None
    if dialect == "postgresql":
        from psycopg.postgres import types

        info = types.get(code)
        return info.name if info is not None else "unknown"
    if dialect in ("mysql", "mariadb"):
        return _MYSQL_TYPES.get(code, "text")
    if dialect == "duckdb":
        return str(code).lower()  # DuckDB's types print as their SQL names
    return None


def _column(name: str, kind: str, precision: Any, scale: Any, dialect: str) -> _Column:
    base = kind.split("(", maxsplit=1)[0].strip()
    if base in ("numeric", "decimal"):
        if scale is None and "(" in kind:  # DuckDB: DECIMAL(10,2)
            precision, scale = (int(n) for n in kind[kind.index("(") + 1 : -1].split(","))
        if scale is None or (precision or 0) > _MAX_PRECISION:
            return _Column(name, pl.Float64(), float)
        return _Column(name, pl.Decimal(min(precision or _MAX_PRECISION, _MAX_PRECISION), scale))
    if base in ("json", "jsonb"):
        # psycopg parses JSON into Python values; the others give its text.
        return _Column(name, pl.String(), json.dumps if dialect == "postgresql" else _text)
    dtype = _KINDS.get(base, pl.String())
    convert = _text if dtype == pl.String else float if dtype == pl.Float64 else None
    return _Column(name, dtype, convert)


def _text(value: Any) -> str:
    """A value of a type ladle does not map, as text: lists and mappings as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()  # PostgreSQL's text form of bytea
    return str(value)


# ---------------------------------------------------------------- batches


class _Reader:
    """Turns chunks of rows into batches, counting rows for positions and checkpoints."""

    def __init__(
        self,
        source: SqlSource,
        description: Sequence[Sequence[Any]],
        dialect: Dialect,
        declared: dict[str, str] | None,
    ) -> None:
        self.source = source
        self.row = 0
        self.columns = _columns(description, dialect.name, declared)
        names = [column.name for column in self.columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise SourceError(
                f"the query returns more than one column named {', '.join(repeated)}; "
                "give each a name of its own with AS",
                position=source.name,
            )
        self.keys = [self._index(names, column) for column in source.ordering]

    def _index(self, names: list[str], column: str) -> int:
        folded = [name.lower() for name in names]
        if column in names:
            return names.index(column)
        if column.lower() in folded:  # databases that fold unquoted names
            return folded.index(column.lower())
        raise SourceError(
            f"the rows have no column {column!r} to order and checkpoint by (columns: "
            f"{', '.join(names)}); the cursor and primary key must be columns of the result",
            position=self.source.name,
        )

    def batch(self, rows: Sequence[Sequence[Any]]) -> SourceBatch:
        """One batch: readable rows in the frame, rows with values of the wrong type apart."""
        first = self.row + 1
        self.row += len(rows)
        positions = [f"{self.source.name}#row={n}" for n in range(first, self.row + 1)]
        try:
            return SourceBatch(self._frame(rows), positions, checkpoint=self._checkpoint(rows))
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            pass  # some value does not fit its column: find the rows and set them apart
        unreadable, good, kept = [], [], []
        for position, row in zip(positions, rows, strict=True):
            problems = [c.misfit(v) for c, v in zip(self.columns, row, strict=True)]
            if reasons := [p for p in problems if p]:
                raw = json.dumps(dict(zip(self._names(), row, strict=True)), default=str)
                unreadable.append(Unreadable(position, raw, "; ".join(reasons), rule="type"))
            else:
                good.append(row)
                kept.append(position)
        try:
            frame = self._frame(good)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
            raise SourceError(
                f"cannot read rows {first} to {self.row}: {exc}", position=self.source.name
            ) from exc
        return SourceBatch(frame, kept, unreadable, checkpoint=self._checkpoint(rows))

    def _names(self) -> list[str]:
        return [column.name for column in self.columns]

    def _frame(self, rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
        values = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        return pl.DataFrame(
            [
                column.series(column_values)
                for column, column_values in zip(self.columns, values, strict=True)
            ]
        )

    def _checkpoint(self, rows: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
        """The last row's ordering values; None if there are none, or one has no tag."""
        if not self.keys:
            return None
        after = [encode(rows[-1][i]) for i in self.keys]
        if any(value is None for value in after):
            return None
        return {"columns": list(self.source.ordering), "after": after}
