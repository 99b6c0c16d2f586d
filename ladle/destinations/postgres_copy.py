"""PostgreSQL COPY for the destination: binary from Arrow where every value goes exactly,
CSV otherwise.

A batch is sent in PostgreSQL's binary COPY format, encoded from Arrow by pgpq (Rust),
so the server no longer parses CSV, numbers and timestamps. Binary COPY must match
each column's type exactly (an ``int4`` into a ``bigint`` column is refused), so the
batch is first cast in Polars to the table's types, only where that cast is exact:

    integers -> int4/int8/numeric   doubles -> float8     decimals -> numeric
    dates -> date/timestamp/tz      timestamps (s, ms, us) -> timestamp/timestamptz
    text -> text/varchar/bpchar/json/jsonb (jsonb with its version byte)   bool -> bool

Any other pair (a column of a type ladle does not create, such as ``uuid``, ``smallint``
or a domain; nanosecond timestamps, which PostgreSQL rounds; a cast that would overflow)
sends that batch as CSV, as before, so the server converts it and reports a bad value
in its own words. Either way errors name ``COPY table, line N, column c``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any

import polars as pl
import psycopg
from pgpq import ArrowToPostgresBinaryEncoder
from pgpq.encoders import (
    LargeStringEncoderBuilder,
    StringEncoderBuilder,
    StringViewEncoderBuilder,
)
from pgpq.schema import Jsonb
from psycopg import sql
from psycopg.copy import Copy, QueuedLibpqWriter

from ladle.errors import DestinationError

_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def wire_types(conn: psycopg.Connection[Any], table: sql.Identifier) -> dict[str, str]:
    """The table's columns and the names of their built-in types (``int8``, ``jsonb``...);
    a column of a type outside ``pg_catalog`` (a domain, an enum) gets ``""``."""
    rows = conn.execute(
        "SELECT a.attname, CASE WHEN n.nspname = 'pg_catalog' THEN t.typname ELSE '' END "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [table.as_string(conn)],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _is_integer(dtype: pl.DataType) -> bool:
    return dtype in _INTEGERS


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical)


def _is_timestamp(dtype: pl.DataType) -> bool:
    """A date, or a timestamp PostgreSQL keeps every digit of (not nanoseconds, which it
    rounds). A naive timestamp into timestamptz is read as UTC, the session's zone, as
    the CSV text would be."""
    return dtype == pl.Date or (isinstance(dtype, pl.Datetime) and dtype.time_unit != "ns")


_TEXT = frozenset({"text", "varchar", "bpchar", "json", "jsonb"})
_CASTS: dict[str, tuple[Callable[[pl.DataType], bool], pl.DataType]] = {
    "int4": (_is_integer, pl.Int32()),
    "int8": (_is_integer, pl.Int64()),
    "numeric": (_is_integer, pl.Decimal(38, 0)),  # a decimal goes as it is
    "float8": (lambda d: d in (pl.Float32, pl.Float64), pl.Float64()),
    "bool": (lambda d: d == pl.Boolean, pl.Boolean()),
    "date": (lambda d: d == pl.Date, pl.Date()),
    "timestamp": (_is_timestamp, pl.Datetime("us")),
    "timestamptz": (_is_timestamp, pl.Datetime("us", "UTC")),
    **{text: (_is_text, pl.String()) for text in _TEXT},
}
"""Per built-in type: which batch dtypes go exactly, and the dtype they go as."""


def _cast(dtype: pl.DataType, wire: str) -> pl.DataType | None:
    """The Polars dtype that carries values of ``dtype`` exactly as ``wire``; None if none."""
    if wire == "numeric" and isinstance(dtype, pl.Decimal):
        return dtype
    accepts, target = _CASTS.get(wire, (None, None))
    if accepts is None or not (dtype == pl.Null or accepts(dtype)):
        return None
    return target


def binary_frame(frame: pl.DataFrame, wire: Mapping[str, str]) -> pl.DataFrame | None:
    """``frame`` cast to the table's types for binary COPY, or None if a column cannot go
    exactly (or a cast would not fit: the server then refuses the value itself)."""
    exprs = []
    for name, dtype in frame.schema.items():
        target = _cast(dtype, wire.get(name, ""))
        if target is None:
            return None
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
            exprs.append(pl.col(name).dt.convert_time_zone("UTC").cast(target, strict=True))
        else:
            exprs.append(pl.col(name).cast(target, strict=True))
    try:
        return frame.select(exprs)
    except pl.exceptions.PolarsError:
        return None


def _encoder(schema: Any, wire: Mapping[str, str]) -> ArrowToPostgresBinaryEncoder:
    """pgpq's encoder for ``schema``: what it infers, but JSONB for ``jsonb`` columns."""
    builders: dict[str, Any] = {}
    for field in schema:
        if wire.get(field.name) == "jsonb":
            kind = str(field.type)
            builder = (
                StringViewEncoderBuilder
                if kind == "string_view"
                else LargeStringEncoderBuilder
                if kind == "large_string"
                else StringEncoderBuilder
            )
            builders[field.name] = builder.new_with_output(field, Jsonb())
        else:
            builders[field.name] = ArrowToPostgresBinaryEncoder.infer_encoder(field)
    return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)


class CopyStream:
    """One ``COPY … FROM STDIN`` kept open across batches of the same shape and format.

    The queued writer sends from a thread, so the next batch is encoded while the server
    ingests this one. Any other statement on the connection closes the stream first.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._key: tuple[Any, ...] | None = None
        self._context: AbstractContextManager[Copy] | None = None
        self._copy: Copy | None = None
        self._cursor: psycopg.Cursor[Any] | None = None
        self._encoder: ArrowToPostgresBinaryEncoder | None = None

    def write(
        self,
        table: sql.Identifier,
        columns: Sequence[str],
        frame: pl.DataFrame,
        wire: Mapping[str, str],
    ) -> None:
        """Send ``frame``'s ``columns`` to ``table``, whose column types are ``wire``."""
        batch = frame.select(columns)
        ready = binary_frame(batch, wire)
        if ready is None:
            self._open(table, columns, "csv")
            buffer = io.BytesIO()  # straight to bytes: no str to encode, a third faster
            batch.write_csv(buffer, include_header=False)
            self._send(buffer.getvalue())
            return
        arrow = ready.to_arrow(compat_level=pl.CompatLevel.newest())
        if self._open(table, columns, "binary", arrow.schema):
            self._encoder = _encoder(arrow.schema, wire)
            self._send(self._encoder.write_header())
        assert self._encoder is not None  # noqa: S101 - made with the stream
        for record_batch in arrow.to_batches():
            self._send(self._encoder.write_batch(record_batch))

    def _open(
        self, table: sql.Identifier, columns: Sequence[str], form: str, schema: Any = None
    ) -> bool:
        """Make sure the open COPY is this one; True if it was just started."""
        key = (table.as_string(self._conn), tuple(columns), form, schema)
        if key == self._key:
            return False
        self.close()
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            table, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(form)
        )
        self._cursor = self._conn.cursor()
        self._context = self._cursor.copy(statement, writer=QueuedLibpqWriter(self._cursor))
        self._copy = self._context.__enter__()
        self._key = key
        return True

    def _send(self, data: bytes) -> None:
        assert self._copy is not None  # noqa: S101 - opened before any send
        self._copy.write(data)

    def close(self) -> None:
        """Finish the COPY (the server reports any bad row here)."""
        if self._context is not None:
            if self._encoder is not None:
                # pgpq holds back a small batch's rows until finish(), which adds the trailer.
                self._send(self._encoder.finish())
            context, self._context, self._copy, self._key = self._context, None, None, None
            self._encoder = None
            context.__exit__(None, None, None)
            if self._cursor is not None:
                self._cursor.close()

    def abort(self) -> None:
        """Abandon the COPY after a failure; errors here are expected and ignored."""
        if self._context is not None:
            context, self._context, self._copy, self._key = self._context, None, None, None
            self._encoder = None
            with suppress(psycopg.Error):
                context.__exit__(DestinationError, DestinationError("aborted"), None)
