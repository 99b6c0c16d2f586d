"""Destination behaviour: merge counts, schema evolution, conflicts, atomic replace, quoting.

Each test runs against every destination (DuckDB here; PostgreSQL joins the list with its
destination) through the one Destination protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from ladle.config import WriteMode
from ladle.destinations import Destination, LoadCounts, LoadTarget, connect, mask
from ladle.errors import DestinationError, SchemaConflict
from ladle.ledger import RUNS, RunEntry
from ladle.schema import parse_type

SEQ = "_ladle_seq"


@pytest.fixture
def destination(destination_url: str) -> Iterator[Destination]:
    """An empty destination of each kind."""
    dest = connect(destination_url)
    yield dest
    dest.close()


def _frame(data: dict[str, list[Any]], offset: int = 0) -> pl.DataFrame:
    """A batch with the load-wide sequence column the pipeline adds."""
    frame = pl.DataFrame(data)
    return frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias(SEQ))


def _load(dest: Destination, target: LoadTarget, *frames: dict[str, list[Any]]) -> LoadCounts:
    load = dest.begin(target)
    offset = 0
    for data in frames:
        load.stage(_frame(data, offset))
        offset += len(next(iter(data.values())))
    counts = load.finish()
    load.commit()
    return counts


def _rows(dest: Destination, table: str, order: str = "id") -> list[dict[str, Any]]:
    return dest.read(table, {}, order_by=[order]).to_dicts()


MERGE = LoadTarget("p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")})


def test_merge_counts_inserted_updated_unchanged(destination: Destination) -> None:
    """A merge counts new keys, changed rows and untouched rows exactly."""
    first = _load(destination, MERGE, {"id": [1, 2, 3], "v": ["a", "b", "c"]})
    assert first == LoadCounts(inserted=3, updated=0, unchanged=0, deduplicated=0)
    second = _load(destination, MERGE, {"id": [1, 2, 4], "v": ["a", "B", "d"]})
    assert second == LoadCounts(inserted=1, updated=1, unchanged=1, deduplicated=0)
    assert [r["v"] for r in _rows(destination, "things")] == ["a", "B", "c", "d"]


def test_merge_same_input_twice_changes_nothing(destination: Destination) -> None:
    """Loading the same rows again updates nothing: all unchanged."""
    data: dict[str, list[Any]] = {"id": [1, 2], "v": ["a", None], "n": [1.5, 2.0]}
    _load(destination, MERGE, data)
    assert _load(destination, MERGE, data) == LoadCounts(0, 0, 2, 0)


def test_merge_dedupes_keys_across_batches(destination: Destination) -> None:
    """A key seen in two batches is loaded once (the last), the other counted deduplicated."""
    counts = _load(destination, MERGE, {"id": [1, 2], "v": ["old", "b"]}, {"id": [1], "v": ["new"]})
    assert counts == LoadCounts(inserted=2, updated=0, unchanged=0, deduplicated=1)
    assert _rows(destination, "things")[0]["v"] == "new"


def test_dedupe_keep_first_by_order_column(destination: Destination) -> None:
    """keep: first with order_by keeps the smallest order value across batches."""
    target = LoadTarget(
        "p", "events", WriteMode.APPEND, (), {}, dedupe_on=("k",), dedupe_keep="first",
        dedupe_order_by=("ts",),
    )  # fmt: skip
    counts = _load(destination, target, {"k": [1, 1], "ts": [5, 3]}, {"k": [1], "ts": [4]})
    assert counts == LoadCounts(inserted=1, updated=0, unchanged=0, deduplicated=2)
    assert destination.read("events", {}).to_dicts() == [{"k": 1, "ts": 3}]


def test_new_column_is_added(destination: Destination) -> None:
    """A column that appears in a later batch is added to the table."""
    _load(destination, MERGE, {"id": [1], "v": ["a"]}, {"id": [2], "v": ["b"], "extra": [True]})
    rows = _rows(destination, "things")
    assert rows == [{"id": 1, "v": "a", "extra": None}, {"id": 2, "v": "b", "extra": True}]


def test_type_conflict_is_raised_before_writing(destination: Destination) -> None:
    """A column whose type no longer fits raises SchemaConflict and writes nothing."""
    _load(destination, MERGE, {"id": [1], "v": [10]})
    load = destination.begin(MERGE)
    with pytest.raises(SchemaConflict) as info:
        load.stage(_frame({"id": [2], "v": ["ten"]}))
    load.rollback()
    assert str(info.value) == (
        "table 'things': column 'v' is BIGINT in the destination but TEXT in this run; "
        "declare `type: bigint` for it, or migrate the table first"
    )
    assert _rows(destination, "things") == [{"id": 1, "v": 10}]


def test_rollback_leaves_table_as_before(destination: Destination) -> None:
    """Rolling back a load leaves rows, new columns and new tables as they were."""
    _load(destination, MERGE, {"id": [1], "v": ["a"]})
    load = destination.begin(MERGE)
    load.stage(_frame({"id": [1, 2], "v": ["changed", "b"], "new_col": [1, 2]}))
    load.finish()
    load.rollback()
    assert _rows(destination, "things") == [{"id": 1, "v": "a"}]


def test_replace_swaps_whole_table(destination: Destination) -> None:
    """replace leaves only the new rows, with the new schema."""
    target = LoadTarget("p", "snap", WriteMode.REPLACE)
    _load(destination, target, {"id": [1, 2], "old": ["x", "y"]})
    counts = _load(destination, target, {"id": [3], "new": [1.5]})
    assert counts == LoadCounts(1, 0, 0, 0)
    assert destination.read("snap", {}).to_dicts() == [{"id": 3, "new": 1.5}]


def test_replace_rolled_back_keeps_old_table(destination: Destination) -> None:
    """A replace that is rolled back leaves the old table untouched."""
    target = LoadTarget("p", "snap", WriteMode.REPLACE)
    _load(destination, target, {"id": [1, 2]})
    load = destination.begin(target)
    load.stage(_frame({"id": [9]}))
    load.finish()
    load.rollback()
    assert _rows(destination, "snap") == [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize("name", ['"; DROP TABLE things; --', 'a"b', "Robert'); --"])
def test_hostile_names_are_stored_as_names(destination: Destination, name: str) -> None:
    """Table and column names from data are quoted: they become names, never SQL."""
    _load(destination, MERGE, {"id": [1], "v": ["a"]})
    target = LoadTarget("p", name, WriteMode.APPEND)
    _load(destination, target, {name: ["x"], "id": [7]})
    assert destination.read(name, {}).to_dicts() == [{name: "x", "id": 7}]
    assert _rows(destination, "things") == [{"id": 1, "v": "a"}]


def test_timestamps_and_decimals_round_trip(destination: Destination) -> None:
    """Typed values keep their type and value through the bulk path."""
    declared = {"id": parse_type("bigint"), "amount": parse_type("decimal(12,2)")}
    target = LoadTarget("p", "typed", WriteMode.MERGE, ("id",), declared)
    ts = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    frame: dict[str, list[Any]] = {"id": [1], "amount": [12.5], "at": [ts]}
    load = destination.begin(target)
    load.stage(_frame(frame).with_columns(pl.col("amount").cast(pl.Decimal(12, 2))))
    load.finish()
    load.commit()
    row = destination.read("typed", {}).to_dicts()[0]
    assert str(row["amount"]) == "12.50"
    assert row["at"] == ts


def test_ledger_rows_are_written_and_replaced(destination: Destination) -> None:
    """record_run writes a ledger row; a second call for the same run replaces it."""
    entry = RunEntry("r1", "p", "things", "things", "merge", "abc", "0.1")
    destination.record_run(entry)
    entry.status, entry.error = "failed", "boom"
    destination.record_run(entry)
    rows = destination.read(RUNS.name, {"run_id": "r1"}).to_dicts()
    assert [(r["status"], r["error"]) for r in rows] == [("failed", "boom")]


def test_primary_key_missing_from_data_is_a_clear_error(destination: Destination) -> None:
    """Creating a merge table without its key column says which key is missing."""
    load = destination.begin(MERGE)
    missing = r"primary key column\(s\) \['id'\] are not in the data"
    with pytest.raises(DestinationError, match=missing):
        load.stage(_frame({"v": ["a"]}))
    load.rollback()


def test_mask_hides_passwords() -> None:
    """DSN passwords are masked before they can reach a log or the ledger."""
    assert mask("postgresql://app:hunter2@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask("duckdb:///x.duckdb") == "duckdb:///x.duckdb"


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("table_empty", [True, False])
def test_merge_keep_by_order_column_across_batches(
    destination: Destination, keep: str, table_empty: bool
) -> None:
    """keep first/last by an order column holds across batches, into empty and loaded tables."""
    target = LoadTarget(
        "p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")},
        dedupe_on=("id",), dedupe_keep=keep, dedupe_order_by=("ts",),
    )  # fmt: skip
    if not table_empty:
        _load(destination, target, {"id": [9], "ts": [0], "v": ["other"]})
    counts = _load(
        destination, target,
        {"id": [1, 2], "ts": [5, 1], "v": ["a5", "b1"]},
        {"id": [1, 2], "ts": [3, 7], "v": ["a3", "b7"]},
        {"id": [1], "ts": [None], "v": ["a-null"]},
    )  # fmt: skip
    assert counts == LoadCounts(inserted=2, updated=0, unchanged=0, deduplicated=3)
    rows = {r["id"]: r["v"] for r in _rows(destination, "things")}
    expected = {1: "a-null", 2: "b1"} if keep == "first" else {1: "a5", 2: "b7"}
    assert {k: rows[k] for k in (1, 2)} == expected


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("table_empty", [True, False])
def test_merge_keep_by_several_order_columns_across_batches(
    destination: Destination, keep: str, table_empty: bool
) -> None:
    """Order columns compare in turn (nulls lowest); a full tie keeps the later row under
    keep: last and the earlier under keep: first, on the direct and the staged path."""
    target = LoadTarget(
        "p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")},
        dedupe_on=("id",), dedupe_keep=keep, dedupe_order_by=("ts", "mods"),
    )  # fmt: skip
    if not table_empty:
        _load(destination, target, {"id": [9], "ts": [0], "mods": [0], "v": ["other"]})
    counts = _load(
        destination, target,
        {"id": [1, 2, 3], "ts": [5, 1, 1], "mods": [1, 2, None], "v": ["a1", "b1", "c1"]},
        {"id": [1, 2, 3], "ts": [5, 1, 1], "mods": [2, 2, 0], "v": ["a2", "b2", "c2"]},
    )  # fmt: skip
    assert counts == LoadCounts(inserted=3, updated=0, unchanged=0, deduplicated=3)
    rows = {r["id"]: r["v"] for r in _rows(destination, "things")}
    expected = {1: "a1", 2: "b1", 3: "c1"} if keep == "first" else {1: "a2", 2: "b2", 3: "c2"}
    assert {k: rows[k] for k in (1, 2, 3)} == expected


def test_merge_into_empty_table_survives_a_key_widened_mid_load(destination: Destination) -> None:
    """An undeclared bigint key that meets a value past 2**63 in a later batch is widened;
    the keys of earlier batches still match the same keys after it (1 repeats and is
    deduplicated, not copied twice into the table and refused as a duplicate key)."""
    target = LoadTarget("p", "widened", WriteMode.MERGE, ("id",), {})
    wide = [Decimal(1), Decimal(2**64)]
    load = destination.begin(target)
    load.stage(_frame({"id": [1, 2], "v": ["a", "b"]}))
    load.stage(_frame({"id": wide, "v": ["c", "d"]}, offset=2))
    counts = load.finish()
    load.commit()
    assert counts == LoadCounts(inserted=3, updated=0, unchanged=0, deduplicated=1)
    rows = destination.read("widened", {}, order_by=["id"]).to_dicts()
    assert [(int(r["id"]), r["v"]) for r in rows] == [(1, "c"), (2, "b"), (2**64, "d")]
