"""Destinations: where records land. One narrow protocol, one small module per database.

Like an httpx transport, a destination only does what it is told: ensure a table,
stage a batch, merge staging into the target with exact counts, write quarantine,
state and ledger rows, commit or roll back. Policy (steps, counts, the invariant,
what to do on failure) stays in :mod:`ladle.pipeline`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ladle.config import DEFAULT_MAX_SHRINK, WriteMode
from ladle.errors import ConfigError, ShrinkRefused
from ladle.kinds import resolve
from ladle.ledger import RunEntry
from ladle.redact import mask as mask  # re-exported: destinations mask their URLs
from ladle.schema import ColumnType


@dataclass(frozen=True)
class LoadTarget:
    """What one resource's load writes: the table, how, and what identifies a row."""

    pipeline: str
    table: str
    write: WriteMode
    primary_key: tuple[str, ...] = ()
    declared: Mapping[str, ColumnType] = field(default_factory=dict)
    """Types the pipeline file declares; they win over types inferred from data."""
    dedupe_on: tuple[str, ...] = ()
    """Key to keep one row per across the whole load (merge always uses the primary key)."""
    dedupe_keep: str = "last"
    dedupe_order_by: tuple[str, ...] = ()
    """Columns that order a key's staged rows, compared in turn (nulls lowest); rows equal
    in all of them (or with none given) are ordered by their place in the load."""
    max_shrink: float | None = DEFAULT_MAX_SHRINK
    """Replace only: the largest share of the table's rows the swap may remove; None: any."""

    @property
    def dedupe_keys(self) -> list[tuple[str, ...]]:
        """Keys to keep one staged row per: the dedupe step's, then (for merge) the primary key."""
        keys = [self.dedupe_on] if self.dedupe_on else []
        if self.write is WriteMode.MERGE and self.primary_key not in keys:
            keys.append(self.primary_key)
        return keys


@dataclass(frozen=True)
class LoadCounts:
    """What a load did to its table, counted by the database itself."""

    inserted: int
    updated: int
    unchanged: int
    deduplicated: int


def check_shrink(target: LoadTarget, before: int, after: int) -> None:
    """Refuse a replace that would leave ``after`` of the table's ``before`` rows, if that
    removes more than ``target.max_shrink`` of them. Called before the swap, so a source
    that came back empty cannot silently empty the table; an empty table is never refused."""
    limit = target.max_shrink
    if limit is None or before == 0 or (before - after) / before <= limit:
        return
    share = (before - after) / before
    shown, allowed = f"{share * 100:.0f}", f"{limit * 100:.0f}"
    if shown == allowed:  # 50.4 % against 50 %: show the digit that makes it more
        shown, allowed = f"{share * 100:.1f}", f"{limit * 100:.1f}"
    needed = math.ceil(share * 100) / 100
    raise ShrinkRefused(
        f"replace would shrink {target.table!r} from {before:,} to {after:,} rows "
        f"(\u2212{shown} %, more than the {allowed} % allowed); nothing was changed. "
        f"Pass --allow-shrink or set replace: {{max_shrink: {needed:g}}}"
    )


@dataclass(frozen=True)
class Check:
    """One line of ``ladle doctor``."""

    name: str
    ok: bool
    detail: str


class Load(Protocol):
    """One resource's load: everything in it commits together or not at all."""

    def stage(self, frame: pl.DataFrame) -> None:
        """Add a batch (final column names, a ``_ladle_seq`` column) to the load."""
        ...

    def write_quarantine(self, rows: pl.DataFrame, *, run_id: str, resource: str) -> None:
        """Record rejected records (position, raw, errors) with the load."""
        ...

    def discard_quarantine(self, *, run_id: str, resource: str, positions: Sequence[str]) -> int:
        """Delete a run's quarantine rows at these positions with the load (a replay took
        them over); return how many rows went."""
        ...

    def finish(self) -> LoadCounts:
        """Dedupe and merge what was staged into the target; return exact counts."""
        ...

    def write_state(self, resource: str, key: str, value: Any, *, run_id: str) -> None:
        """Store a state entry for the resource, committed with the data."""
        ...

    def write_ledger(self, entry: RunEntry) -> None:
        """Write the ledger row's final values, committed with the data."""
        ...

    def commit(self) -> None:
        """Make the whole load visible at once."""
        ...

    def rollback(self) -> None:
        """Leave the destination exactly as before the load."""
        ...


class Destination(Protocol):
    """A database ladle loads into."""

    url: str
    """The destination's URL with any password masked: safe to log."""

    def begin(self, target: LoadTarget) -> Load:
        """Open a transaction for one resource's load."""
        ...

    def record_run(self, entry: RunEntry) -> None:
        """Write a ledger row in its own transaction (a run starting, or one that failed)."""
        ...

    def read(
        self, table: str, where: Mapping[str, Any], *, order_by: Sequence[str] = (), limit: int = 0
    ) -> pl.DataFrame:
        """Rows of a table (the ledger, quarantine, state, or data) matching ``where``."""
        ...

    def recent_runs(self, pipeline: str | None, last_n_runs: int) -> pl.DataFrame:
        """The ledger rows of the newest ``last_n_runs`` runs (every resource of each), of
        ``pipeline`` if given: newest run first."""
        ...

    def quarantine_summary(
        self, *, pipeline: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Per run and resource: ``records``, ``first_position`` and ``reasons`` (errors by
        ``field: rule``), aggregated by the database (see :func:`ladle.quarantine.summarize`)."""
        ...

    def read_state(self, pipeline: str, resource: str) -> dict[str, Any]:
        """The resource's ``_ladle_state`` entries by key, values decoded from JSON."""
        ...

    def existing_keys(self, table: str, columns: Sequence[str], keys: pl.DataFrame) -> pl.DataFrame:
        """Of the distinct rows of ``keys`` (columns named as ``columns``), those in ``table``.

        Keys are typed like the table's columns before they are compared; a missing table
        (or column) holds no keys. One query per call, whatever the number of keys.
        """
        ...

    def connections_in_use(self) -> int:
        """Connections checked out right now; more after a load than before is a leak."""
        ...

    def diagnose(self) -> list[Check]:
        """Checks for ``ladle doctor``: reachable, version, may create tables."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def default_url(pipeline: str) -> str:
    """The embedded default: a DuckDB file named after the pipeline, in the working directory."""
    return f"duckdb:///{pipeline}.duckdb"


_SCHEMES = {
    "duckdb": "ladle.destinations.duckdb:DuckDBDestination",
    "postgresql": "ladle.destinations.postgres:PostgresDestination",
    "postgres": "ladle.destinations.postgres:PostgresDestination",
}
"""Each URL scheme's destination, imported when first connected to (as kinds are), so that
a DuckDB run never imports psycopg."""


def connect(
    url: str,
    *,
    base_dir: Path | None = None,
    memory_limit_mb: int | None = None,
    read_only: bool = False,
) -> Destination:
    """Open the destination a URL names (``duckdb:///file.duckdb``, ``postgresql://…``).

    ``memory_limit_mb`` is the run's limit: an embedded database takes its share of it.
    ``read_only`` creates nothing (no file, no table): a DuckDB file that does not exist
    raises :class:`~ladle.errors.NoLedger`, a missing table reads as empty.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        duckdb: Destination = resolve(_SCHEMES[scheme])(
            url, memory_limit_mb=memory_limit_mb, read_only=read_only
        )
        return duckdb
    if scheme in _SCHEMES:
        server: Destination = resolve(_SCHEMES[scheme])(url, read_only=read_only)
        return server
    known = "duckdb:///path.duckdb or postgresql://user@host:port/db?schema=name"
    raise ConfigError(
        f"unsupported destination {mask(url)!r}; use {known}",
        file=str(base_dir or "."),
        key="destination",
    )


def probe(url: str, *, timeout: float) -> list[Check]:
    """For ``ladle check``: does the destination answer (within ``timeout`` seconds), may ladle
    write there. Unlike :func:`connect`, nothing is written or created, not even a file."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        embedded: list[Check] = resolve("ladle.destinations.duckdb:probe")(url)
        return embedded
    if scheme in _SCHEMES:
        server: list[Check] = resolve("ladle.destinations.postgres:probe")(url, timeout=timeout)
        return server
    known = "duckdb:///path.duckdb or postgresql://user@host:port/db?schema=name"
    return [Check("destination", False, f"unsupported destination {mask(url)!r}; use {known}")]
