"""DuckDB's two merge paths: straight into an empty table, staged into a loaded one.

What a path did is seen inside the open transaction: rows the direct path inserted are
in the target before ``finish()``; staged rows are in the staging table until then.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ladle.config import WriteMode
from ladle.destinations import LoadCounts, LoadTarget
from ladle.destinations.duckdb import DuckDBDestination
from ladle.errors import SchemaConflict
from ladle.schema import parse_type

SEQ = "_ladle_seq"
STAGE = "_ladle_stage_things"
MERGE = LoadTarget("p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")})


@pytest.fixture
def duck(duckdb_url: str) -> Iterator[DuckDBDestination]:
    """An empty DuckDB destination."""
    dest = DuckDBDestination(duckdb_url)
    yield dest
    dest.close()


def _frame(data: dict[str, list[Any]], offset: int = 0) -> pl.DataFrame:
    frame = pl.DataFrame(data)
    return frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias(SEQ))


def _rows(dest: DuckDBDestination, table: str = "things") -> list[tuple[Any, ...]]:
    return sorted(dest.read(table, {}).drop(SEQ, strict=False).rows())


def _load(dest: DuckDBDestination, target: LoadTarget, *batches: pl.DataFrame) -> LoadCounts:
    load = dest.begin(target)
    for batch in batches:
        load.stage(batch)
    counts = load.finish()
    load.commit()
    return counts


def test_empty_target_gets_new_keys_before_finish(duck: DuckDBDestination) -> None:
    """Into an empty table, rows with new keys go straight in; nothing is staged."""
    load = duck.begin(MERGE)
    load.stage(_frame({"id": [1, 2], "v": ["a", "b"]}))
    assert _rows(duck) == [(1, "a"), (2, "b")]
    assert _rows(duck, STAGE) == []
    assert load.finish() == LoadCounts(inserted=2, updated=0, unchanged=0, deduplicated=0)
    load.commit()
    assert _rows(duck) == [(1, "a"), (2, "b")]


def test_loaded_target_stages_and_merges(duck: DuckDBDestination) -> None:
    """Into a table that holds rows, every row is staged and merged at finish, counted."""
    _load(duck, MERGE, _frame({"id": [1, 2], "v": ["a", "b"]}))
    load = duck.begin(MERGE)
    load.stage(_frame({"id": [2, 3, 1], "v": ["B", "c", "a"]}))
    assert _rows(duck) == [(1, "a"), (2, "b")]
    assert len(_rows(duck, STAGE)) == 3
    assert load.finish() == LoadCounts(inserted=1, updated=1, unchanged=1, deduplicated=0)
    load.commit()
    assert _rows(duck) == [(1, "a"), (2, "B"), (3, "c")]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [("last", [(1, "a3"), (2, "b2"), (3, "c")]), ("first", [(1, "a1"), (2, "b1"), (3, "c")])],
)
def test_direct_counts_duplicates_within_and_across_batches(
    duck: DuckDBDestination, keep: str, expected: list[tuple[Any, ...]]
) -> None:
    """Keys repeated in a batch and across batches count as deduplicated, exactly, and the
    row keep first/last chooses is the one left, on the direct path."""
    target = LoadTarget(
        "p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")},
        dedupe_on=("id",), dedupe_keep=keep,
    )  # fmt: skip
    counts = _load(
        duck,
        target,
        _frame({"id": [1, 2, 1, 3], "v": ["a1", "b1", "a2", "c"]}),
        _frame({"id": [2, 1, 2], "v": ["b2", "a3", "b2"]}, offset=4),
    )
    assert counts == LoadCounts(inserted=3, updated=0, unchanged=0, deduplicated=4)
    assert _rows(duck) == expected


def test_direct_keys_of_other_widths_are_the_same_key(duck: DuckDBDestination) -> None:
    """A key that arrives as a 32-bit integer in one batch and 64-bit in the next is one
    key: the second is a duplicate, not a second row that breaks the primary key."""
    first = _frame({"id": [7], "v": ["a"]}).with_columns(pl.col("id").cast(pl.Int32))
    second = _frame({"id": [7], "v": ["b"]}, offset=1)
    counts = _load(duck, MERGE, first, second)
    assert counts == LoadCounts(inserted=1, updated=0, unchanged=0, deduplicated=1)
    assert _rows(duck) == [(7, "b")]


def test_direct_decimal_keys_of_other_scales_are_the_same_key(duck: DuckDBDestination) -> None:
    """1.5 at scale 1 and 1.50 at scale 2 are one key of a decimal(10,2) column."""
    target = LoadTarget(
        "p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("decimal(10,2)")}
    )
    first = _frame({"id": ["1.5"], "v": ["a"]}).with_columns(pl.col("id").str.to_decimal(scale=1))
    second = _frame({"id": ["1.50"], "v": ["b"]}, offset=1).with_columns(
        pl.col("id").str.to_decimal(scale=2)
    )
    counts = _load(duck, target, first, second)
    assert counts == LoadCounts(inserted=1, updated=0, unchanged=0, deduplicated=1)
    assert [str(row[0]) for row in _rows(duck)] == ["1.50"]


def test_failed_direct_load_leaves_table_as_before(duck: DuckDBDestination) -> None:
    """A direct load that fails on a later batch and is rolled back leaves no table."""
    load = duck.begin(MERGE)
    load.stage(_frame({"id": [1, 2], "v": [10, 20]}))
    with pytest.raises(SchemaConflict):
        load.stage(_frame({"id": [3], "v": ["thirty"]}, offset=2))
    load.rollback()
    assert duck.read("things", {}).height == 0


_KILLED_LOAD = """
import sys
import polars as pl
from ladle.config import WriteMode
from ladle.destinations import LoadTarget
from ladle.destinations.duckdb import DuckDBDestination
from ladle.schema import parse_type

dest = DuckDBDestination(sys.argv[1])
target = LoadTarget("p", "things", WriteMode.MERGE, ("id",), {"id": parse_type("bigint")})
load = dest.begin(target)
for start in range(0, 300_000, 100_000):
    ids = pl.int_range(start, start + 100_000, dtype=pl.Int64, eager=True)
    load.stage(pl.DataFrame({"id": ids, "v": ids.cast(pl.String), "_ladle_seq": ids}))
print("staged", flush=True)
sys.stdin.read()
"""


def test_killed_direct_load_leaves_table_as_before(duckdb_url: str, tmp_path: Path) -> None:
    """A process killed after its direct inserts (large enough to be written to the file
    before commit) leaves the table as it was: the committed rows, nothing more."""
    dest = DuckDBDestination(duckdb_url)
    _load(dest, LoadTarget("p", "kept", WriteMode.APPEND), _frame({"id": [1]}))
    dest.close()
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(_KILLED_LOAD), encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, str(script), duckdb_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "staged"
        child.send_signal(signal.SIGKILL)
        child.wait()
    dest = DuckDBDestination(duckdb_url)
    try:
        assert dest.read("things", {}).height == 0
        assert dest.read("kept", {}).to_dicts() == [{"id": 1}]
    finally:
        dest.close()
