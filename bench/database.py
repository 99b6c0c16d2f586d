"""The benchmark database: one schema per method, the reference table, and the checksum.

Every method loads into its own schema of the same database (``ladle_bench``), which is
dropped and recreated before the method runs, so no method sees another's leftovers.
The checksum reads only the thirteen ticket fields, each cast to one canonical type, so
the extra columns a tool adds (dlt's ``_dlt_id``) and its choice of ``json`` vs
``jsonb`` or ``integer`` vs ``bigint`` do not matter: equal data, equal checksum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

HOST, PORT, USER, DATABASE = "127.0.0.1", 5432, "postgres", "ladle_bench"
TABLE = "tickets"


def url(schema: str | None = None) -> str:
    """A libpq URL for the benchmark database; ``?schema=`` is how ladle names its schema."""
    base = f"postgresql://{USER}@{HOST}:{PORT}/{DATABASE}"
    return f"{base}?schema={schema}" if schema else base


def psql_args() -> list[str]:
    """``psql`` connecting to the benchmark database, stopping at the first error."""
    connection = ["-h", HOST, "-p", str(PORT), "-U", USER, "-d", DATABASE]
    return ["psql", *connection, "-X", "-q", "-v", "ON_ERROR_STOP=1"]


REFERENCE_COLUMNS = """
    ticket_id    bigint PRIMARY KEY,
    subject      text,
    description  text,
    status       text,
    priority     integer,
    assignee     text,
    channel      text,
    created_at   timestamptz,
    updated_at   timestamptz,
    resolved_at  timestamptz,
    score        double precision,
    is_escalated boolean,
    tags         jsonb
"""
"""The table a hand-written loader would create: the types ladle's pipeline declares."""

_CANONICAL = (
    "ticket_id::bigint, subject::text, description::text, status::text, priority::integer, "
    "assignee::text, channel::text, created_at::timestamptz, updated_at::timestamptz, "
    "resolved_at::timestamptz, score::double precision, is_escalated::boolean, tags::jsonb"
)
# hashtextextended: a 64-bit hash of the row's text form, where NULL and '' differ.
# Summed as numeric it is order-independent, so no 1 GB string_agg is needed.
_CHECKSUM = (
    "SELECT count(*), coalesce(sum(hashtextextended(ROW({columns})::text, 0)), 0) FROM {table}"
)


@dataclass(frozen=True)
class Checksum:
    """Row count and order-independent hash of a loaded table's ticket fields."""

    rows: int
    digest: str

    def short(self) -> str:
        """A few digits of the hash, enough to see equal tables in the report."""
        return f"{self.rows:,} / …{self.digest[-10:]}"


def ensure_database() -> None:
    """Create ``ladle_bench`` if it is missing (needs only the ``postgres`` database)."""
    with psycopg.connect(f"postgresql://{USER}@{HOST}:{PORT}/postgres", autocommit=True) as con:
        found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not found:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def connect() -> psycopg.Connection[Any]:
    """An autocommit connection in UTC, so timestamps render the same for every method."""
    con = psycopg.connect(url(), autocommit=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def reset_schema(schema: str) -> None:
    """Drop the schema with everything in it and create it empty."""
    with connect() as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(schema: str) -> None:
    """Drop the schema with everything in it, if it exists."""
    with connect() as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def create_reference_table(schema: str) -> None:
    """The empty ``tickets`` table, with its primary key, that (a), (c') and (e) load."""
    with connect() as con:
        name = sql.Identifier(schema, TABLE)
        con.execute(sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(REFERENCE_COLUMNS)))


def settle(max_wait: float = 120.0) -> None:
    """Quiet the server before a timed step, so no method pays for the previous one's work.

    Waits (up to ``max_wait`` seconds) for autovacuum workers, which a fresh million-row
    table sets off, then flushes dirty buffers with a CHECKPOINT.
    """
    deadline = time.monotonic() + max_wait
    with connect() as con:
        while time.monotonic() < deadline:
            row = con.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or row[0] == 0:
                break
            time.sleep(0.5)
        con.execute("CHECKPOINT")


def checksum(schema: str, *, max_id: int | None = None) -> Checksum:
    """Count and hash the ticket fields of ``schema.tickets`` (ids up to ``max_id``, if given).

    ``max_id`` compares a sample (the first K lines, ids 1..K) with the full reference.
    """
    statement = sql.SQL(_CHECKSUM).format(
        columns=sql.SQL(_CANONICAL), table=sql.Identifier(schema, TABLE)
    )
    if max_id is not None:
        statement += sql.SQL(" WHERE ticket_id <= {}").format(max_id)
    with connect() as con:
        row = con.execute(statement).fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns one row
    return Checksum(int(row[0]), str(row[1]))


FINGERPRINT = (
    "SELECT count(*), sum(ticket_id), sum(priority), sum({bytes}(subject)), "
    "sum({bytes}(description)), sum({bytes}(assignee)), count(assignee), "
    "count(*) FILTER (WHERE status = 'open'), count(*) FILTER (WHERE channel = 'email'), "
    "sum(date_part('epoch', created_at))::bigint, sum(date_part('epoch', updated_at))::bigint, "
    "sum(date_part('epoch', resolved_at))::bigint, count(resolved_at), "
    "sum(round(score * 1000))::bigint, count(*) FILTER (WHERE is_escalated), "
    "sum({json_length}(tags)) FROM {table}"
)
"""Aggregates both engines compute alike: how a DuckDB table is compared with (a)'s.

Sums of byte lengths, epoch seconds, scores in thousandths and tag counts, so a
value loaded wrong in any column changes the result."""


def fingerprint(schema: str) -> tuple[int, ...]:
    """:data:`FINGERPRINT` of ``schema.tickets`` in PostgreSQL."""
    table = sql.Identifier(schema, TABLE).as_string()
    statement = FINGERPRINT.format(
        bytes="octet_length", json_length="jsonb_array_length", table=table
    )
    return tuple(int(x or 0) for x in query(statement)[0])


def query(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of one statement (for the ledger and the server version)."""
    with connect() as con:
        return con.execute(statement, params).fetchall()


def server_version() -> str:
    """``PostgreSQL 15.x`` as the server reports it."""
    return str(query("SHOW server_version")[0][0]).split()[0]
