"""Incremental file loads: cursor, processed files, chunked commits and resuming after a failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.destinations import connect
from ladle.errors import ConfigError
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult

PIPELINE = """\
pipeline: inc
resources:
  events:
    source: {{type: file, path: "data/*.jsonl"}}
    primary_key: [id]
    write: {write}
    batch_size: {batch_size}
{extra}    columns:
      id: bigint
      updated_at: timestamptz
"""


def _pipeline(
    write_pipeline: Callable[[str], Path],
    *,
    write: str = "merge",
    batch_size: int = 10,
    extra: str = "",
) -> Path:
    return write_pipeline(PIPELINE.format(write=write, batch_size=batch_size, extra=extra))


def _write(path: Path, rows: list[tuple[int, int, str]]) -> None:
    """Rows of (id, version, minute) as JSON lines, ``updated_at`` at that minute of a day."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"id": i, "v": v, "updated_at": f"2026-03-01T10:{m}:00Z"}) for i, v, m in rows
    ]
    path.write_text("\n".join(lines) + "\n")


def _run(path: Path, url: str, *, full_refresh: bool = False) -> ResourceResult:
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=url, full_refresh=full_refresh))
    result = summary.resources[0]
    assert result.counts.balanced, result.counts
    return result


def _table(url: str) -> dict[int, int]:
    dest = connect(url)
    try:
        rows = dest.read("events", {}).to_dicts()
    finally:
        dest.close()
    return {row["id"]: row["v"] for row in rows}


def _ledger(url: str) -> list[dict[str, object]]:
    dest = connect(url)
    try:
        return dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    finally:
        dest.close()


def _counts(result: ResourceResult) -> tuple[int, ...]:
    c: Counts = result.counts
    return (c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated, c.quarantined)


def test_cursor_fetches_only_records_past_the_mark(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Records at or before the stored mark are not fetched; newer ones are, and the mark moves."""
    path = _pipeline(write_pipeline, extra="    incremental: {cursor: updated_at}\n")
    _write(tmp_path / "data/a.jsonl", [(i, 1, f"{i:02d}") for i in range(10)])
    assert _counts(_run(path, destination_url)) == (10, 10, 0, 0, 0, 0)
    # A new file: two records newer than the mark (minute 09), three at or before it.
    _write(tmp_path / "data/b.jsonl", [(3, 2, "05"), (4, 2, "09"), (5, 2, "01"), (20, 1, "30")])
    _write(tmp_path / "data/c.jsonl", [(3, 3, "31")])
    assert _counts(_run(path, destination_url)) == (2, 1, 1, 0, 0, 0)
    assert _table(destination_url)[3] == 3
    assert _table(destination_url)[4] == 1
    dest = connect(destination_url)
    state = dest.read_state("inc", "events")
    dest.close()
    assert state["cursor"] == {"kind": "timestamp", "value": "2026-03-01T10:31:00+00:00"}


def test_lag_reads_a_window_again_as_unchanged(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """With a 5 minute lag, records up to 5 minutes before the mark are fetched again."""
    extra = '    incremental: {cursor: updated_at, lag: 5m, initial: "2026-03-01T10:02:00Z"}\n'
    path = _pipeline(write_pipeline, extra=extra)
    _write(tmp_path / "data/a.jsonl", [(i, 1, f"{i:02d}") for i in range(20)])
    assert _counts(_run(path, destination_url)) == (17, 17, 0, 0, 0, 0)
    (tmp_path / "data/a.jsonl").write_text((tmp_path / "data/a.jsonl").read_text() + "\n")
    # The mark is minute 19: minutes 15..19 come again and are unchanged.
    assert _counts(_run(path, destination_url)) == (5, 0, 0, 5, 0, 0)


def test_changed_file_is_read_again_and_named(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A file whose content changed is read again; one only touched is not."""
    path = _pipeline(write_pipeline)
    _write(tmp_path / "data/a.jsonl", [(1, 1, "00"), (2, 1, "00")])
    _write(tmp_path / "data/b.jsonl", [(3, 1, "00")])
    _run(path, destination_url)
    _write(tmp_path / "data/a.jsonl", [(1, 2, "00"), (2, 1, "00")])
    (tmp_path / "data/b.jsonl").touch()
    result = _run(path, destination_url)
    assert _counts(result) == (2, 0, 1, 1, 0, 0)
    assert result.notices == [
        "data/a.jsonl changed since it was loaded; reading it again",
        "1 of 2 files were loaded before and have not changed; --full-refresh reads them again",
    ]


def test_full_refresh_ignores_and_resets_state(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """--full-refresh reads every file and every record, then stores fresh state."""
    path = _pipeline(write_pipeline, extra="    incremental: {cursor: updated_at}\n")
    _write(tmp_path / "data/a.jsonl", [(i, 1, f"{i:02d}") for i in range(10)])
    _run(path, destination_url)
    assert _counts(_run(path, destination_url)) == (0, 0, 0, 0, 0, 0)
    assert _counts(_run(path, destination_url, full_refresh=True)) == (10, 0, 0, 10, 0, 0)
    assert _counts(_run(path, destination_url)) == (0, 0, 0, 0, 0, 0)


def test_failed_chunked_run_keeps_committed_chunks_and_resumes(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A run failing in its fourth file keeps three committed chunks; the next run resumes."""
    path = _pipeline(write_pipeline, write="append", batch_size=5, extra="    commit_every: 10\n")
    path.write_text(path.read_text().replace("data/*.jsonl", "data/*.jsonl*"))
    for n in range(4):
        _write(tmp_path / f"data/{n}.jsonl", [(n * 10 + i, 1, "00") for i in range(10)])
    (tmp_path / "data/3.jsonl").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "data/3.jsonl").rename(tmp_path / "data/3.jsonl.gz")
    failed = _run(path, destination_url)
    assert failed.status == "failed"
    assert _counts(failed) == (30, 30, 0, 0, 0, 0)
    assert sorted(_table(destination_url)) == list(range(30))
    (tmp_path / "data/3.jsonl.gz").unlink()
    _write(tmp_path / "data/3.jsonl", [(30 + i, 1, "00") for i in range(10)])
    resumed = _run(path, destination_url)
    assert resumed.status == "succeeded"
    assert _counts(resumed) == (10, 10, 0, 0, 0, 0)
    assert resumed.notices[0].startswith("resuming after the last checkpoint of run ")
    assert sorted(_table(destination_url)) == list(range(40))
    ledger = _ledger(destination_url)
    assert [(r["status"], r["fetched"], r["inserted"]) for r in ledger] == [
        ("failed", 30, 30),
        ("succeeded", 10, 10),
    ]


class _CrashAfter:
    """An observer that raises after some batches: a crash at a known moment mid-file."""

    def __init__(self, batches: int) -> None:
        self.left = batches

    def resource_started(self, resource: str) -> None:
        """Nothing to do."""

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        """Count down; crash at zero."""
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("crash")

    def resource_finished(self, result: ResourceResult) -> None:
        """Nothing to do."""


def test_resume_inside_a_file_skips_its_committed_batches(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A crash part-way through a file resumes after its last committed batch: no row twice."""
    path = _pipeline(write_pipeline, write="append", batch_size=4, extra="    commit_every: 8\n")
    _write(tmp_path / "data/a.jsonl", [(i, 1, "00") for i in range(30)])
    with pytest.raises(RuntimeError, match="crash"):
        Pipeline.from_yaml(path).run(RunOptions(destination=destination_url), _CrashAfter(5))
    # Batches 1-4 were committed in two chunks; the fifth was rolled back.
    assert sorted(_table(destination_url)) == list(range(16))
    resumed = _run(path, destination_url)
    assert _counts(resumed) == (14, 14, 0, 0, 0, 0)
    assert sorted(_table(destination_url)) == list(range(30))
    assert [(r["status"], r["fetched"], r["rolled_back"]) for r in _ledger(destination_url)] == [
        ("failed", 20, 4),
        ("succeeded", 14, 0),
    ]


def test_commit_every_with_replace_is_a_config_error(
    write_pipeline: Callable[[str], Path],
) -> None:
    """commit_every cannot go with write: replace, and the error says why and where."""
    path = _pipeline(write_pipeline, write="replace", extra="    commit_every: 10\n")
    with pytest.raises(ConfigError) as error:
        Pipeline.from_yaml(path)
    assert str(error.value) == (
        f"{path}:8: resources.events.commit_every: commit_every does not go with write: "
        "replace (a replace reloads everything and swaps the table in at once); use write: "
        "merge or append"
    )
