"""Peak resident memory under ``memory_limit_mb``, at the smallest limit the config accepts
and one higher: `ladle run` loads 300,000 records (3,000,000 under the ``soak`` marker) from
JSON Lines and CSV into DuckDB and PostgreSQL, and its peak stays within 10 % of the limit.

A limit below :data:`ladle.memory.MIN_LIMIT_MB` is refused: it was measured to be where
ladle's own libraries leave no room (see its docstring)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from ladle.config import load
from ladle.destinations import connect
from ladle.errors import ConfigError
from ladle.ledger import RUNS
from ladle.memory import MIN_LIMIT_MB

GNU_TIME = Path("/usr/bin/time")
LIMITS = [MIN_LIMIT_MB, MIN_LIMIT_MB * 3 // 2]
SLACK = 1.10
"""How far over the limit a peak may go: the limit steers batches, it is not a hard cap."""

Records = Callable[[int], Path]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Records:
    """``records(n)``: a folder with ``rows.jsonl`` and ``rows.csv`` of the same ``n`` records
    of 10 fields, written once per module."""
    made: dict[int, Path] = {}

    def make(count: int) -> Path:
        if count not in made:
            folder = tmp_path_factory.mktemp(f"rows{count}")
            frame = _frame(count)
            frame.write_ndjson(folder / "rows.jsonl")
            frame.write_csv(folder / "rows.csv")
            made[count] = folder
        return made[count]

    return make


def _frame(count: int) -> pl.DataFrame:
    """``count`` records like a customer table: numbers, short text, a flag, a timestamp."""
    i = pl.col("id")
    return pl.DataFrame({"id": pl.int_range(0, count, eager=True)}).with_columns(
        name=pl.format("customer {}", i),
        email=pl.format("user{}@example.com", i),
        status=pl.lit(pl.Series(["open", "pending", "resolved", "closed"])).get(i % 4),
        amount=(i * 37 % 100_000) / 100,
        quantity=i % 17,
        active=(i % 3) == 0,
        city=pl.lit(pl.Series(["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Eldoret"])).get(i % 5),
        created_at=pl.format("2024-01-{}T10:00:00Z", (i % 28 + 1).cast(pl.String).str.zfill(2)),
        note=pl.format("note number {} for this record", i),
    )


def _load_within_limit(
    tmp_path: Path, data: Path, count: int, *, url: str, fmt: str, limit: int
) -> None:
    """Run `ladle run` on ``data/rows.<fmt>`` under ``limit`` and check peak, ledger and table."""
    (tmp_path / f"rows.{fmt}").symlink_to(data / f"rows.{fmt}")
    (tmp_path / "pipeline.yaml").write_text(
        f"pipeline: peaks\ndestination: {url}\nmemory_limit_mb: {limit}\n"
        f"resources:\n  rows:\n    source: {{type: file, path: rows.{fmt}}}\n"
        "    columns: {id: bigint, amount: double, created_at: timestamptz}\n"
    )
    command = [str(Path(sys.executable).with_name("ladle")), "run", "pipeline.yaml"]
    if GNU_TIME.exists():
        # Not wait4()'s ru_maxrss: a child starts with its parent's high-water mark.
        command = [str(GNU_TIME), "-f", "%M", "-o", "peak.kib", *command]
    with (tmp_path / "out.log").open("wb") as out:
        done = subprocess.run(command, cwd=tmp_path, stdout=out, stderr=out, check=False)
    assert done.returncode == 0, (tmp_path / "out.log").read_text()[-2000:]
    destination = connect(url)
    try:
        (run,) = destination.read(RUNS.name, {}).iter_rows(named=True)
        loaded = destination.read("rows", {}).select(pl.len(), pl.col("id").n_unique()).row(0)
    finally:
        destination.close()
    assert (run["status"], run["fetched"]) == ("succeeded", count)
    assert run["fetched"] == sum(
        run[kind] for kind in ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
    )
    assert loaded == (count, count)
    assert run["peak_memory_mb"] <= limit * SLACK
    if GNU_TIME.exists():
        peak_mb = int((tmp_path / "peak.kib").read_text().split()[-1]) / 1024
        assert peak_mb <= limit * SLACK, f"peak {peak_mb:.0f} MB under memory_limit_mb: {limit}"


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_peak_within_limit(
    tmp_path: Path, records: Records, destination_url: str, fmt: str, limit: int
) -> None:
    """300,000 records load with a peak RSS at most 10 % over the limit, every record counted
    once in the ledger and present once in the table."""
    _load_within_limit(
        tmp_path, records(300_000), 300_000, url=destination_url, fmt=fmt, limit=limit
    )


@pytest.mark.soak
@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_peak_within_limit_3m(
    tmp_path: Path, records: Records, destination_url: str, fmt: str, limit: int
) -> None:
    """The same with 3,000,000 records (700 MB of JSON Lines): peaks do not grow with the input."""
    _load_within_limit(
        tmp_path, records(3_000_000), 3_000_000, url=destination_url, fmt=fmt, limit=limit
    )


def test_limit_below_minimum_is_refused(write_pipeline: Callable[[str], Path]) -> None:
    """One MB under the minimum is a config error that names the minimum; the minimum loads."""
    text = "pipeline: x\nmemory_limit_mb: {}\nresources:\n  a:\n    source: {{type: file, path: a}}"
    path = write_pipeline(text.format(MIN_LIMIT_MB - 1))
    with pytest.raises(ConfigError) as error:
        load(path)
    assert str(error.value).startswith(
        f"{path}:2: memory_limit_mb: {MIN_LIMIT_MB - 1} MB is less than ladle can stay under"
    )
    assert str(error.value).endswith(f"give at least {MIN_LIMIT_MB}")
    path.write_text(text.format(MIN_LIMIT_MB), encoding="utf-8")
    assert load(path).spec.memory_limit_mb == MIN_LIMIT_MB
