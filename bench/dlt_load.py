"""Method (d): dlt merges the tickets JSONL into PostgreSQL. Runs in ``bench/.venv-dlt``.

This script imports only dlt and pyarrow, never ladle, and lives in its own virtualenv
so that dlt's pins cannot change the versions ladle is measured with.

Two ways, as dlt's documentation describes them:

- ``default``: a resource yielding plain dicts (pages of 10,000 parsed JSON lines) with
  ``write_disposition="merge"`` and dlt's default loader file format for PostgreSQL
  (``insert_values``).
- ``arrow-parquet`` / ``arrow-csv``: the same resource yielding Arrow tables read with
  pyarrow's streaming JSON reader, loaded as parquet (through the ADBC PostgreSQL
  driver) or as CSV (through COPY): dlt's fast path for PostgreSQL.

Both declare the same column types as ladle's pipeline, so that ``tags`` stays one JSON
column and timestamps become ``timestamptz``; neither validates values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

_TS = {"data_type": "timestamp", "timezone": True}
COLUMNS: dict[str, dict[str, Any]] = {
    "ticket_id": {"data_type": "bigint", "nullable": False},
    "subject": {"data_type": "text"},
    "description": {"data_type": "text"},
    "status": {"data_type": "text"},
    "priority": {"data_type": "bigint"},
    "assignee": {"data_type": "text"},
    "channel": {"data_type": "text"},
    "created_at": _TS,
    "updated_at": _TS,
    "resolved_at": _TS,
    "score": {"data_type": "double"},
    "is_escalated": {"data_type": "bool"},
    "tags": {"data_type": "json"},
}
_UTC = pa.timestamp("us", tz="UTC")
ARROW_SCHEMA = pa.schema(
    [
        ("ticket_id", pa.int64()),
        ("subject", pa.string()),
        ("description", pa.string()),
        ("status", pa.string()),
        ("priority", pa.int64()),
        ("assignee", pa.string()),
        ("channel", pa.string()),
        ("created_at", _UTC),
        ("updated_at", _UTC),
        ("resolved_at", _UTC),
        ("score", pa.float64()),
        ("is_escalated", pa.bool_()),
        ("tags", pa.list_(pa.string())),
    ]
)
PAGE = 10_000
FORMATS = {"default": None, "arrow-parquet": "parquet", "arrow-csv": "csv"}


def _dict_pages(path: Path, limit: int) -> Iterator[list[dict[str, Any]]]:
    """Pages of parsed records, the usual way to feed dlt plain Python data."""
    page: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for count, line in enumerate(lines):
            if limit and count >= limit:
                break
            page.append(json.loads(line))
            if len(page) == PAGE:
                yield page
                page = []
    if page:
        yield page


def _arrow_tables(path: Path, limit: int) -> Iterator[pa.Table]:
    """Arrow tables of ~64 MB of JSON each, parsed and typed by pyarrow's C++ reader."""
    reader = pa_json.open_json(
        path,
        read_options=pa_json.ReadOptions(block_size=64 << 20),
        parse_options=pa_json.ParseOptions(explicit_schema=ARROW_SCHEMA),
    )
    left = limit or -1
    for batch in reader:
        if left == 0:
            break
        if left > 0:
            batch = batch.slice(0, left)  # noqa: PLW2901 - trim the last batch of a sample
            left -= batch.num_rows
        table = pa.Table.from_batches([batch])
        tags = table.column("tags").combine_chunks()
        yield table.set_column(table.schema.get_field_index("tags"), "tags", _json_lists(tags))


def _json_lists(lists: pa.ListArray) -> pa.Array:
    """A list<string> column as JSON text, in Arrow compute (no Python per row).

    dlt cannot write Arrow list columns to CSV or parquet-for-ADBC and asks for JSON
    strings instead; the escaping covers ``\\`` and ``"``, enough for any tag without
    control characters.
    """
    escaped = pc.replace_substring(pc.replace_substring(lists.values, "\\", "\\\\"), '"', '\\"')
    rebuilt = pa.ListArray.from_arrays(lists.offsets, escaped, mask=lists.is_null())
    joined = pc.binary_join_element_wise('["', pc.binary_join(rebuilt, '","'), '"]', "")
    empty = pc.equal(pc.list_value_length(rebuilt), 0)
    return pc.if_else(empty, pa.scalar("[]"), joined)


def _with_password(credentials: str) -> str:
    """dlt refuses PostgreSQL credentials without a password; trust auth ignores this one."""
    scheme, rest = credentials.split("://", 1)
    user_info, at, host = rest.partition("@")
    if not at or ":" in user_info:
        return credentials
    return f"{scheme}://{user_info}:unused-by-trust-auth@{host}"


def main(argv: list[str] | None = None) -> None:
    """Load the file with dlt and print one JSON line: rows, format, dlt's step timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(FORMATS), required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--credentials", required=True, help="postgresql://user@host:port/db")
    parser.add_argument("--dataset", required=True, help="the PostgreSQL schema dlt writes")
    parser.add_argument("--pipelines-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="load only the first N records")
    args = parser.parse_args(argv)

    read = _dict_pages if args.mode == "default" else _arrow_tables
    tickets = dlt.resource(
        read(args.file, args.limit),
        name="tickets",
        write_disposition="merge",
        primary_key="ticket_id",
        columns=COLUMNS,
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{args.dataset}",
        destination=dlt.destinations.postgres(credentials=_with_password(args.credentials)),
        dataset_name=args.dataset,
        pipelines_dir=str(args.pipelines_dir),
    )
    file_format = FORMATS[args.mode]
    info = pipeline.run(tickets, loader_file_format=file_format)
    info.raise_on_failed_jobs()
    trace = pipeline.last_trace
    steps = {s.step: round((s.finished_at - s.started_at).total_seconds(), 2) for s in trace.steps}
    report = {
        "mode": args.mode,
        "loader_file_format": file_format or "insert_values (default)",
        "dlt_version": dlt.__version__,
        "steps": steps,
    }
    print(json.dumps(report), file=sys.stdout)


if __name__ == "__main__":
    main()
