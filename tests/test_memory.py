"""memory_limit_mb: batch budgets the readers honour, the governor that sizes them, and the
records too large to fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from structlog.testing import capture_logs

from ladle.batch import SEQ, SourceBatch
from ladle.config import WriteMode, load
from ladle.destinations import LoadTarget, connect
from ladle.errors import ConfigError, DestinationError, SourceError
from ladle.memory import MB, BatchBudget, MemoryGovernor
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


def _read(
    base: Path, name: str, budget: BatchBudget, *, resume: Any = None, **options: Any
) -> list[SourceBatch]:
    """Every batch of the file, read under ``budget``."""
    context = SourceContext("things", 1000, base, budget=budget, resume=resume)
    return list(FileSource(FileOptions(type="file", path=name, **options), context).batches())


def _sizes(batches: list[SourceBatch]) -> list[int]:
    return [batch.fetched for batch in batches]


def _jsonl(path: Path, widths: list[int]) -> None:
    """One record per width, each line exactly ``width`` bytes long with its newline."""
    lines = []
    for i, width in enumerate(widths):
        head = json.dumps({"id": i, "text": ""})
        lines.append(json.dumps({"id": i, "text": "x" * (width - len(head) - 1)}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


# ------------------------------------------------------------------ readers


def test_jsonl_batches_end_at_the_byte_budget(tmp_path: Path) -> None:
    """A JSONL batch ends once its lines reach max_bytes, or at the row budget."""
    _jsonl(tmp_path / "t.jsonl", [100] * 10 + [1000] + [100] * 5)
    batches = _read(tmp_path, "t.jsonl", BatchBudget(4, max_bytes=350))
    assert _sizes(batches) == [4, 4, 3, 4, 1]
    assert [b.checkpoint["read"] for b in batches] == [4, 8, 11, 15, 16]


def test_budget_changes_between_batches(tmp_path: Path) -> None:
    """The reader consults the budget before every batch, so the pipeline can resize them; a
    file source reads one batch ahead, so a change applies from the batch after next."""
    _jsonl(tmp_path / "t.jsonl", [50] * 20)
    budget = BatchBudget(2)
    context = SourceContext("things", 1000, tmp_path, budget=budget)
    source = FileSource(FileOptions(type="file", path="t.jsonl"), context)
    sizes = []
    for batch in source.batches():
        sizes.append(batch.fetched)
        budget.rows = budget.rows * 2
    assert sizes == [2, 2, 4, 8, 4]


@pytest.mark.parametrize(
    ("name", "content", "options"),
    [
        ("t.csv", "id,text\n" + "".join(f"{i},{'y' * 40}\n" for i in range(12)), {}),
        ("t.json", json.dumps([{"id": i, "text": "y" * 40} for i in range(12)]), {}),
    ],
)
def test_csv_and_json_batches_honour_the_budget(
    tmp_path: Path, name: str, content: str, options: dict[str, Any]
) -> None:
    """CSV and JSON documents end batches at the row budget, and count their checkpoints."""
    (tmp_path / name).write_text(content, encoding="utf-8")
    batches = _read(tmp_path, name, BatchBudget(5), **options)
    assert _sizes(batches) == [5, 5, 2]
    assert [b.checkpoint["read"] for b in batches] == [5, 10, 12]


def test_parquet_gathers_pieces_up_to_the_budget(tmp_path: Path) -> None:
    """Parquet under a byte budget is read in pieces and gathered; the row budget caps a batch."""
    pl.DataFrame({"id": range(3000), "text": ["z" * 100] * 3000}).write_parquet(
        tmp_path / "t.parquet", row_group_size=700
    )
    batches = _read(tmp_path, "t.parquet", BatchBudget(1500, max_bytes=10 * MB))
    assert all(size <= 1500 for size in _sizes(batches))
    assert sum(_sizes(batches)) == 3000
    ids = pl.concat([b.frame for b in batches]).get_column("id").to_list()
    assert ids == list(range(3000))
    small = _read(tmp_path, "t.parquet", BatchBudget(1500, max_bytes=50_000))
    assert max(_sizes(small)) < 1500


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("t.jsonl", lambda p: _jsonl(p, [100] * 23)),
        ("t.csv", lambda p: p.write_text("id\n" + "".join(f"{i}\n" for i in range(23)))),
        ("t.json", lambda p: p.write_text(json.dumps([{"id": i} for i in range(23)]))),
        ("t.parquet", lambda p: pl.DataFrame({"id": range(23)}).write_parquet(p)),
    ],
)
def test_resume_skips_what_was_read_whatever_the_batch_sizes(
    tmp_path: Path, name: str, write: Callable[[Path], None]
) -> None:
    """A checkpoint says how far into the file it reaches, so a run resumed with other batch
    sizes starts right after it: no record twice, none missed."""
    write(tmp_path / name)
    first = _read(tmp_path, name, BatchBudget(7))
    checkpoint = first[1].checkpoint
    rest = _read(tmp_path, name, BatchBudget(4), resume=checkpoint)
    ids = pl.concat([b.frame for b in rest]).get_column("id").to_list()
    assert [int(i) for i in ids] == list(range(14, 23))
    assert _sizes(rest) == [4, 4, 1]


# ------------------------------------------------------------------ too large


def test_jsonl_record_too_large_fails_with_position_and_sizes(tmp_path: Path) -> None:
    """A line over max_record_bytes stops the run, naming file:line and both sizes; the rest of
    the line is measured without being held."""
    _jsonl(tmp_path / "t.jsonl", [100, 100, 3 * MB + 17, 100])
    budget = BatchBudget(10, max_record_bytes=2 * MB, limit_mb=32)
    with pytest.raises(SourceError) as error:
        _read(tmp_path, "t.jsonl", budget)
    assert str(error.value) == (
        "t.jsonl:3: a record of 3.0 MB does not fit in memory_limit_mb: 32 (a record may take "
        "at most 1/16 of it, 2.0 MB); raise memory_limit_mb, or split the record"
    )


def test_csv_and_json_records_too_large(tmp_path: Path) -> None:
    """CSV rows and JSON documents' records are measured too."""
    (tmp_path / "t.csv").write_text("a,b\n1,2\n" + "x" * 900 + ",y\n")
    (tmp_path / "t.json").write_text(json.dumps([{"a": 1}, {"a": "x" * (3 * MB)}]))
    budget = BatchBudget(10, max_record_bytes=800, limit_mb=128)
    with pytest.raises(SourceError) as error:
        _read(tmp_path, "t.csv", budget)
    assert str(error.value).startswith("t.csv:3: a record of 0.0 MB does not fit")
    budget = BatchBudget(10, max_record_bytes=2 * MB, limit_mb=32)
    with pytest.raises(SourceError) as error:
        _read(tmp_path, "t.json", budget)
    assert str(error.value).startswith("t.json#[1]: a record of 3.0 MB does not fit")


# ------------------------------------------------------------------ the governor


class _Resident:
    """A resident-memory reading the test sets."""

    def __init__(self) -> None:
        self.mb = 100

    def __call__(self) -> int:
        return self.mb * MB


def test_governor_sizes_batches_by_row_size() -> None:
    """Rows of 10 KB under a 320 MB limit: a batch may take 10 MB, so 1,024 rows; small rows
    stay at batch_size."""
    resident = _Resident()
    governor = MemoryGovernor(320, 10_000, resource="r", resident=resident)
    assert (governor.budget.rows, governor.budget.max_bytes) == (10_000, 10 * MB)
    assert governor.budget.max_record_bytes == 20 * MB
    with capture_logs() as logs:
        governor.observe(400, 400 * 10 * 1024)
        governor.observe(10_000, 10_000 * 100)
        governor.observe(2048, 2048 * 100)
    assert [(e["was"], e["rows"]) for e in logs] == [(10_000, 1024), (1024, 2048), (2048, 4096)]
    assert logs[0] == {
        "event": "batch size adapted",
        "log_level": "info",
        "resource": "r",
        "rows": 1024,
        "was": 10_000,
        "row_bytes": 10240,
        "rss_mb": 100.0,
        "limit_mb": 320,
    }


def test_governor_shrinks_under_pressure_and_grows_back() -> None:
    """Over 85 % of the limit the share halves per batch (to a floor); under 70 % it grows back
    by a quarter per batch, up to its full size."""
    resident = _Resident()
    governor = MemoryGovernor(320, 10_000, resource="r", resident=resident)
    resident.mb = 300
    sizes = []
    for _ in range(8):
        governor.observe(1000, 1000 * 1024)
        sizes.append(governor.budget.rows)
    assert sizes == [5120, 2560, 1280, 1280, 1280, 1280, 1280, 1280]
    assert governor.budget.max_bytes == 320 * MB // 256
    resident.mb = 250
    governor.observe(1000, 1000 * 1024)
    assert governor.budget.rows == 1280
    resident.mb = 100
    for _ in range(20):
        governor.observe(1000, 1000 * 1024)
    assert (governor.budget.rows, governor.budget.max_bytes) == (10_000, 10 * MB)


def test_memory_limit_below_what_ladle_takes_is_refused(
    write_pipeline: Callable[[str], Path],
) -> None:
    """memory_limit_mb under 256 is an error naming file, line and key."""
    path = write_pipeline(
        "pipeline: x\nmemory_limit_mb: 300\nresources:\n  a:\n"
        "    source: {type: file, path: a.jsonl}\n    memory_limit_mb: 100\n"
    )
    with pytest.raises(ConfigError) as error:
        load(path)
    assert str(error.value) == (
        f"{path}:6: resources.a.memory_limit_mb: 100 MB is less than ladle can stay under (with "
        "Python, Polars, Arrow, DuckDB and psycopg loaded it takes about 170 MB, and a load peaks "
        "at up to about 260 MB whatever the limit); give at least 256"
    )


def test_duckdb_out_of_memory_says_what_to_do(duckdb_url: str) -> None:
    """DuckDB running out of its memory_limit is a DestinationError saying how to give it more."""
    destination = connect(f"{duckdb_url}?memory_limit=4MB")
    frame = pl.DataFrame({"id": range(2000), "text": ["w" * 10_000] * 2000, SEQ: range(2000)})

    def fill() -> None:
        load = destination.begin(LoadTarget("p", "docs", WriteMode.APPEND))
        try:
            for _ in range(3):
                load.stage(frame)
            load.finish()
            load.commit()
        except DestinationError:
            load.rollback()
            raise

    try:
        with pytest.raises(DestinationError) as error:
            fill()
    finally:
        destination.close()
    message = str(error.value)
    assert message.startswith("DuckDB ran out of memory while loading 'docs': ")
    assert message.endswith(
        "; give it more: raise memory_limit_mb (DuckDB gets 15% of it) or set ?memory_limit= in "
        "the destination URL"
    )
