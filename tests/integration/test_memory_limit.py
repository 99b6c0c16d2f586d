"""memory_limit_mb end to end: 2,000,000 rows merged under 300 MB, batches that adapt to wide
records, resuming after a crash with adapted batches, and a record too large to fit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

import duckdb
import pytest
from structlog.testing import capture_logs

from ladle.batch import Counts
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.memory import MB
from ladle.pipeline import Pipeline, ResourceResult, RunOptions
from tests.integration.test_memory_peaks import _frame

ROWS = 2_000_000
LIMIT_MB = 300
GNU_TIME = Path("/usr/bin/time")


def _two_million_rows(path: Path) -> None:
    """2,000,000 JSON Lines records of 10 fields (about 470 MB), written by Polars."""
    _frame(ROWS).write_ndjson(path)


def test_two_million_rows_merge_under_300_mb(tmp_path: Path) -> None:
    """`ladle run` merges 2,000,000 rows into DuckDB with memory_limit_mb: 300 and its peak
    resident memory (VmHWM in the ledger, and GNU time's %M) stays under 300 MB."""
    _two_million_rows(tmp_path / "rows.jsonl")
    (tmp_path / "pipeline.yaml").write_text(
        f"pipeline: big\ndestination: duckdb:///big.duckdb\nmemory_limit_mb: {LIMIT_MB}\n"
        "resources:\n  rows:\n    source: {type: file, path: rows.jsonl}\n"
        "    primary_key: [id]\n    write: merge\n"
        "    columns: {id: bigint, amount: double, created_at: timestamptz}\n"
    )
    ladle = str(Path(sys.executable).with_name("ladle"))
    command = [ladle, "run", "pipeline.yaml"]
    if GNU_TIME.exists():
        # Not wait4()'s ru_maxrss: a child starts with its parent's high-water mark.
        command = [str(GNU_TIME), "-f", "%M", "-o", "peak.kib", *command]
    with (tmp_path / "out.log").open("wb") as out, (tmp_path / "err.log").open("wb") as err:
        done = subprocess.run(command, cwd=tmp_path, stdout=out, stderr=err, check=False)
    assert done.returncode == 0, (tmp_path / "out.log").read_text()[-2000:]
    with duckdb.connect(str(tmp_path / "big.duckdb"), read_only=True) as con:
        ledger = con.execute(
            "SELECT status, fetched, inserted, updated, unchanged, deduplicated, quarantined, "
            "peak_memory_mb FROM _ladle_runs"
        ).fetchall()
        loaded = con.execute("SELECT count(*), count(DISTINCT id), sum(id) FROM rows").fetchone()
    ((status, fetched, inserted, updated, unchanged, deduplicated, quarantined, peak),) = ledger
    assert (status, fetched, inserted, updated, unchanged, deduplicated, quarantined) == (
        "succeeded", ROWS, ROWS, 0, 0, 0, 0,
    )  # fmt: skip
    assert loaded == (ROWS, ROWS, ROWS * (ROWS - 1) // 2)
    assert peak < LIMIT_MB
    if GNU_TIME.exists():
        assert int((tmp_path / "peak.kib").read_text().split()[-1]) / 1024 < LIMIT_MB


def _wide(path: Path, count: int, width: int = 10_000) -> list[int]:
    """``count`` records of one ``width``-byte text; returns each line's length (the ids'
    digits make later lines a byte or two longer)."""
    lines = [json.dumps({"id": i, "text": f"{i:08d}" + "w" * (width - 8)}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [len(line) + 1 for line in lines]


class _Batches:
    """An observer that keeps each batch's record count."""

    def __init__(self, crash_after: int = 0) -> None:
        self.sizes: list[int] = []
        self._fetched = 0
        self._crash_after = crash_after

    def resource_started(self, resource: str) -> None:
        """Nothing to do."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """Record the batch's size; crash when told to."""
        self.sizes.append(counts.fetched - self._fetched)
        self._fetched = counts.fetched
        if len(self.sizes) == self._crash_after:
            raise RuntimeError("crash")

    def resource_finished(self, result: ResourceResult) -> None:
        """Nothing to do."""


def _pipeline(write: Callable[[str], Path], extra: str = "") -> Path:
    return write(
        "pipeline: wide\nmemory_limit_mb: 256\nresources:\n  docs:\n"
        f"    source: {{type: file, path: wide.jsonl}}\n{extra}"
    )


def _roomy(url: str) -> str:
    """DuckDB with 256 MB of its own: its commit of wide text may need more than its share of a
    small limit (see docs/operations.md), and these tests are about the batches."""
    return f"{url}?memory_limit=256MB" if url.startswith("duckdb:") else url


def _ids(url: str) -> list[int]:
    destination = connect(url)
    try:
        return sorted(destination.read("docs", {}).get_column("id").to_list())
    finally:
        destination.close()


def test_batches_adapt_to_wide_records(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """10 KB records under 256 MB: the first batch ends at 8 MB of input (1/32 of the limit),
    later ones are sized from the rows' measured size; without the limit it is one batch."""
    lines = _wide(tmp_path / "wide.jsonl", 3000)
    path = _pipeline(write_pipeline)
    observer = _Batches()
    with capture_logs() as logs:
        summary = Pipeline.from_yaml(path).run(RunOptions(destination=_roomy(duckdb_url)), observer)
    (result,) = summary.resources
    assert result.status == "succeeded", result.error
    assert result.counts.inserted == 3000
    assert result.counts.balanced
    # The reader ends a batch at the first line that brings its input to 1/32 of the limit.
    first = next(n for n, size in enumerate(accumulate(lines), 1) if size >= 256 * MB // 32)
    assert observer.sizes[0] == first
    assert max(observer.sizes) == first
    assert sum(observer.sizes) == 3000
    adapted = [e for e in logs if e["event"] == "batch size adapted"]
    assert (adapted[0]["was"], adapted[0]["limit_mb"]) == (10_000, 256)
    assert adapted[0]["rows"] <= first
    unlimited = _Batches()
    path.write_text(path.read_text().replace("memory_limit_mb: 256\n", ""))
    options = RunOptions(destination=_roomy(duckdb_url), full_refresh=True)
    Pipeline.from_yaml(path).run(options, unlimited)
    assert unlimited.sizes == [3000]


def test_crash_with_adapted_batches_resumes_exactly(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """With commit_every and batches the limit sized, a crash keeps the committed chunks and the
    next run (with other batch sizes) loads the rest: no record twice, none missed."""
    _wide(tmp_path / "wide.jsonl", 3000)
    path = _pipeline(write_pipeline, "    commit_every: 1000\n")
    options = RunOptions(destination=_roomy(destination_url))
    with pytest.raises(RuntimeError, match="crash"):
        Pipeline.from_yaml(path).run(options, _Batches(crash_after=5))
    committed = len(_ids(destination_url))
    assert 0 < committed < 3000
    path.write_text(path.read_text().replace("memory_limit_mb: 256", "memory_limit_mb: 320"))
    (resumed,) = Pipeline.from_yaml(path).run(options).resources
    assert resumed.status == "succeeded", resumed.error
    assert resumed.counts.fetched == 3000 - committed
    assert _ids(destination_url) == list(range(3000))


def test_record_too_large_fails_the_run(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A record over 1/16 of the limit fails the resource, naming file, line and the sizes;
    nothing is loaded and the ledger says why."""
    data = tmp_path / "data"
    data.mkdir()
    _wide(data / "wide.jsonl", 2)
    with (data / "wide.jsonl").open("a", encoding="utf-8") as file:
        file.write(json.dumps({"id": 2, "text": "x" * (20 * 1024 * 1024)}) + "\n")
    path = _pipeline(write_pipeline)
    path.write_text(path.read_text().replace("path: wide.jsonl", "path: data/wide.jsonl"))
    (result,) = Pipeline.from_yaml(path).run(RunOptions(destination=duckdb_url)).resources
    message = (
        "data/wide.jsonl:3: a record of 20.0 MB does not fit in memory_limit_mb: 256 (a record "
        "may take at most 1/16 of it, 16.0 MB); raise memory_limit_mb, or split the record"
    )
    assert (result.status, result.error) == ("failed", message)
    destination = connect(duckdb_url)
    try:
        (row,) = destination.read(RUNS.name, {}).iter_rows(named=True)
    finally:
        destination.close()
    assert (row["status"], row["error"], row["inserted"]) == ("failed", message, 0)
