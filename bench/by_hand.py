"""Methods (f): what a user would write by hand instead of ladle, Polars → Arrow → PostgreSQL.

Both read the whole JSONL with ``polars.read_ndjson`` and an explicit schema (Polars
parses the ISO timestamps with their offsets into UTC), turn ``tags`` into JSON text in
Polars, and load the Arrow table into the empty ``tickets`` table that already has its
primary key:

- ``pgpq``: pgpq encodes the Arrow batches as PostgreSQL's binary COPY format (``tags``
  as ``jsonb``), written with psycopg's ``COPY … FROM STDIN (FORMAT BINARY)``.
- ``adbc``: the ADBC PostgreSQL driver's ``adbc_ingest`` in ``append`` mode (binary COPY
  inside the driver), ``tags`` typed as Arrow's JSON extension type.

No validation, no counts, no state: the floor for a one-off load from Python.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

_TS = pl.Datetime("us", "UTC")
SCHEMA: dict[str, Any] = {
    "ticket_id": pl.Int64,
    "subject": pl.String,
    "description": pl.String,
    "status": pl.String,
    "priority": pl.Int32,
    "assignee": pl.String,
    "channel": pl.String,
    "created_at": _TS,
    "updated_at": _TS,
    "resolved_at": _TS,
    "score": pl.Float64,
    "is_escalated": pl.Boolean,
    "tags": pl.List(pl.String),
}
_PREFIX = len('{"tags":')


def read(path: Path) -> pa.Table:
    """The file as one Arrow table, ``tags`` as JSON text (``{"tags":[…]}`` minus its wrapper)."""
    frame = pl.read_ndjson(path, schema=SCHEMA)
    as_json = pl.struct("tags").struct.json_encode().str.slice(_PREFIX).str.strip_suffix("}")
    return frame.with_columns(tags=as_json).to_arrow()


def load_pgpq(table: pa.Table, url: str, target: str) -> None:
    """Binary COPY of the Arrow batches, encoded by pgpq; ``tags`` as ``jsonb``."""
    import pgpq
    import pgpq._pgpq as encoders
    import psycopg

    infer = pgpq.ArrowToPostgresBinaryEncoder.infer_encoder
    builders = {f.name: infer(f) for f in table.schema if f.name != "tags"}
    tags = table.schema.field("tags")
    builder = {
        pa.string(): encoders.StringEncoderBuilder,
        pa.large_string(): encoders.LargeStringEncoderBuilder,
    }.get(tags.type, encoders.StringViewEncoderBuilder)
    builders["tags"] = builder.new_with_output(tags, encoders.Jsonb())
    encoder = pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(table.schema, builders)
    with psycopg.connect(url) as con, con.cursor() as cur:
        with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(encoder.write_header())
            for batch in table.to_batches(max_chunksize=65_536):
                copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())
        con.commit()


def load_adbc(table: pa.Table, url: str, target: str) -> None:
    """``adbc_ingest`` in append mode into the existing table.

    ``tags`` gets Arrow's JSON extension type: the driver then sends it as ``jsonb``
    (plain text in a binary COPY fails with "unsupported jsonb version number").
    """
    from adbc_driver_postgresql import dbapi

    index = table.schema.get_field_index("tags")
    json_type = pa.json_(pa.string())
    chunks = table.column(index).cast(pa.string()).chunks
    tags = pa.chunked_array([pa.ExtensionArray.from_storage(json_type, c) for c in chunks])
    table = table.set_column(index, pa.field("tags", json_type), tags)
    schema, name = target.split(".")
    with dbapi.connect(url) as con, con.cursor() as cur:
        cur.adbc_ingest(name, table, mode="append", db_schema_name=schema)
        con.commit()


def main(argv: list[str] | None = None) -> None:
    """Load ``--file`` into ``--table`` one way and print one JSON line with the row count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("pgpq", "adbc"), required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/db")
    parser.add_argument("--table", required=True, help="schema.table, already created")
    args = parser.parse_args(argv)
    table = read(args.file)
    load = load_pgpq if args.mode == "pgpq" else load_adbc
    load(table, args.url, args.table)
    print(json.dumps({"mode": args.mode, "rows": table.num_rows}))


if __name__ == "__main__":
    main()
