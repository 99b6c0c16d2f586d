"""Binary COPY into PostgreSQL: every ladle type reads back exactly as it went in."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest
from psycopg import sql

from ladle.batch import SEQ
from ladle.config import WriteMode
from ladle.destinations import LoadTarget, connect
from ladle.destinations.postgres import PostgresDestination
from ladle.destinations.postgres_copy import binary_frame, wire_types
from ladle.errors import DestinationError
from ladle.schema import parse_type

DECLARED = {
    "i": "int",
    "b": "bigint",
    "d": "decimal(38,9)",
    "w": "decimal(38,0)",
    "f": "double",
    "t": "text",
    "ok": "bool",
    "day": "date",
    "ts": "timestamp",
    "tz": "timestamptz",
    "j": "json",
}
NESTED = {"a": [1, 2.5, {"b": None, "c": "é\u2713𝄞"}], "e": {}, "q": "\"'\\,\n"}
VALUES: dict[str, list[Any]] = {
    "i": [2**31 - 1, -(2**31), 0, None],
    "b": [2**63 - 1, -(2**63), 0, 1],  # the merge key: never null
    "d": [
        Decimal("12345678901234567890123456789.123456789"),
        Decimal("-0.000000001"),
        Decimal("0.000000000"),
        None,
    ],
    "w": [Decimal(10**38 - 1), Decimal(-(10**38) + 1), Decimal(0), None],
    "f": [math.nan, math.inf, -math.inf, 5e-324],
    "t": ["", None, 'héllo ✓ 𝄞 "quoted", comma\nnew line \\N', "NULL"],
    "ok": [True, False, None, True],
    "day": [date(1, 1, 1), date(9999, 12, 31), date(2000, 1, 1), None],
    "ts": [
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(1, 1, 1),
        datetime(2000, 1, 1),
        None,
    ],
    "tz": [
        datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        None,
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    "j": [json.dumps(NESTED), "[]", None, '"just a string"'],
}


@pytest.fixture
def destination(postgres_url: str) -> Iterator[PostgresDestination]:
    dest = connect(postgres_url)
    assert isinstance(dest, PostgresDestination)
    yield dest
    dest.close()


def _frame() -> pl.DataFrame:
    """The batch as the steps leave it: each column of its declared type."""
    columns = {
        name: pl.Series(name, VALUES[name], dtype=parse_type(kind).polars)
        for name, kind in DECLARED.items()
    }
    frame = pl.DataFrame(list(columns.values()))
    return frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(SEQ))


def _load(dest: PostgresDestination, write: WriteMode, frame: pl.DataFrame) -> None:
    declared = {name: parse_type(kind) for name, kind in DECLARED.items()}
    target = LoadTarget("p", "every_type", write, ("b",), declared)
    load = dest.begin(target)
    load.stage(frame)
    load.finish()
    load.commit()


def _read_back(url: str) -> list[tuple[Any, ...]]:
    server, schema = url.rsplit("?schema=", 1)
    with psycopg.connect(server) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        table = sql.Identifier(schema, "every_type")
        names = sql.SQL(", ").join(map(sql.Identifier, DECLARED))
        query = sql.SQL("SELECT {} FROM {} ORDER BY i NULLS LAST").format(names, table)
        return conn.execute(query).fetchall()


def _expected() -> list[tuple[Any, ...]]:
    rows = list(zip(*(VALUES[name] for name in DECLARED), strict=True))
    return sorted(rows, key=lambda row: (row[0] is None, row[0] or 0))


def _same(name: str, got: Any, want: Any) -> bool:
    """Equal and of the same type; NaN is NaN; JSON (which psycopg decodes) by its value."""
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if name == "j" and want is not None:
        return bool(got == json.loads(want))
    return bool(got == want and type(got) is type(want))


@pytest.mark.parametrize("write", [WriteMode.APPEND, WriteMode.MERGE])
def test_every_type_reads_back_exactly(
    destination: PostgresDestination, postgres_url: str, write: WriteMode
) -> None:
    """Extreme integers, 38-digit decimals, NaN and infinities, empty text apart from NULL,
    microsecond timestamps and nested JSON come back exactly, copied direct or staged."""
    _load(destination, write, _frame())
    server, schema = postgres_url.rsplit("?schema=", 1)
    with psycopg.connect(server) as conn:
        wire = wire_types(conn, sql.Identifier(schema, "every_type"))
    assert binary_frame(_frame(), {**wire, SEQ: "int8"}) is not None  # not the CSV fallback
    got = _read_back(postgres_url)
    want = _expected()
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want, strict=True):
        for name, got_value, want_value in zip(DECLARED, got_row, want_row, strict=True):
            assert _same(name, got_value, want_value), (name, got_value, want_value)


def test_json_goes_as_jsonb_text_is_kept_as_written(
    destination: PostgresDestination, postgres_url: str
) -> None:
    """jsonb keeps the JSON's values (keys ordered by jsonb); decimals keep their scale."""
    _load(destination, WriteMode.APPEND, _frame())
    server, schema = postgres_url.rsplit("?schema=", 1)
    with psycopg.connect(server) as conn:
        table = sql.Identifier(schema, "every_type")
        rows = conn.execute(
            sql.SQL("SELECT j::text, d::text, w::text FROM {} ORDER BY i").format(table)
        ).fetchall()
    assert rows[0] == (
        "[]",
        "-0.000000001",
        "-" + "9" * 38,
    )
    assert json.loads(rows[2][0]) == NESTED
    assert rows[1][1] == "0.000000000"


def test_a_column_of_a_type_ladle_does_not_make_loads_as_csv(
    destination: PostgresDestination, postgres_url: str
) -> None:
    """A uuid column (text to ladle) cannot go binary from text: that batch goes as CSV."""
    server, schema = postgres_url.rsplit("?schema=", 1)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id uuid, n smallint)").format(
            sql.Identifier(schema, "things")
        ))  # fmt: skip
    target = LoadTarget("p", "things", WriteMode.APPEND)
    load = destination.begin(target)
    uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    load.stage(pl.DataFrame({"id": [uuid], "n": [7], SEQ: [0]}))
    load.finish()
    load.commit()
    with psycopg.connect(server) as conn:
        rows = conn.execute(
            sql.SQL("SELECT id::text, n FROM {}").format(sql.Identifier(schema, "things"))
        ).fetchall()
    assert rows == [(uuid, 7)]


def test_binary_only_where_every_value_goes_exactly(postgres_url: str) -> None:
    """Casts widen exactly (int -> bigint, date -> timestamp); nanoseconds, a type ladle
    does not create, or a value that would not fit send the batch as CSV (None)."""
    wire = {"n": "int8", "t": "timestamptz", "s": "text"}
    frame = pl.DataFrame(
        {
            "n": pl.Series([1, None], dtype=pl.Int32),
            "t": [date(2024, 1, 2), None],
            "s": [None, None],
        }
    )
    ready = binary_frame(frame, wire)
    assert ready is not None
    assert ready.schema == pl.Schema(
        {"n": pl.Int64(), "t": pl.Datetime("us", "UTC"), "s": pl.String()}
    )
    assert ready["t"][0] == datetime(2024, 1, 2, tzinfo=UTC)
    nanoseconds = pl.DataFrame({"t": pl.Series([datetime(2024, 1, 2)], dtype=pl.Datetime("ns"))})
    assert binary_frame(nanoseconds, {"t": "timestamp"}) is None
    assert binary_frame(pl.DataFrame({"u": ["x"]}), {"u": "uuid"}) is None
    too_big = pl.DataFrame({"n": pl.Series([2**40], dtype=pl.Int64)})
    assert binary_frame(too_big, {"n": "int4"}) is None
    server = postgres_url.rsplit("?", 1)[0]
    with psycopg.connect(server) as conn:
        conn.execute("CREATE TEMP TABLE t (a bigint, b jsonb, c uuid, d numeric(12, 2))")
        assert wire_types(conn, sql.Identifier("t")) == {
            "a": "int8",
            "b": "jsonb",
            "c": "uuid",
            "d": "numeric",
        }


@pytest.mark.parametrize("column", ["jsonb", "json"])
def test_bad_json_names_the_line_not_the_text(
    destination: PostgresDestination, column: str
) -> None:
    """JSON the server refuses fails the load at its COPY line and column, without the text."""
    target = LoadTarget("p", "bad_json", WriteMode.APPEND, declared={"j": parse_type(column)})
    load = destination.begin(target)
    private = '{"card": "4111-1111-private'
    load.stage(pl.DataFrame({"j": ["{}", private], SEQ: [0, 1]}))
    try:
        with pytest.raises(DestinationError) as info:
            load.finish()  # the server reports a bad row when the COPY ends
    finally:
        load.rollback()
    assert str(info.value) == (
        "PostgreSQL error while loading 'bad_json': invalid input syntax for type json "
        'DETAIL: Token "…" is invalid. CONTEXT: JSON data, line 1 COPY bad_json, line 2, '
        "column j"
    )
