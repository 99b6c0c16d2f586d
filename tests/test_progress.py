"""Progress of `ladle run`: file sources tell their size, so the bars show bytes read of
the total and an ETA; sources that cannot tell show what they read."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from pathlib import Path

from rich.console import Console

from ladle.batch import Counts
from ladle.cli import _progress, _ProgressObserver
from ladle.pipeline import Pipeline, RunOptions
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


def _lines(start: int, count: int) -> str:
    return "".join(json.dumps({"id": i, "text": "x" * 40}) + "\n" for i in range(start, count))


def _write(tmp_path: Path) -> list[Path]:
    """Two inputs of a glob: a plain file and a gzipped one (its compressed size counts)."""
    plain, packed = tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl.gz"
    plain.parent.mkdir()
    # Readers take about 1 MB at a time: a few MB make a few steps of progress.
    plain.write_text(_lines(0, 60_000), encoding="utf-8")
    packed.write_bytes(gzip.compress(_lines(60_000, 70_000).encode(), compresslevel=1))
    return [plain, packed]


def _source(tmp_path: Path, state: dict[str, object] | None = None) -> FileSource:
    context = SourceContext("things", 5_000, tmp_path, state=state or {})
    return FileSource(FileOptions(type="file", path="in/*"), context)


def test_file_source_tells_the_bytes_it_will_read(tmp_path: Path) -> None:
    """Every batch carries the glob's total size on disk, compressed files as they are, and
    the batches' bytes add up to it."""
    paths = _write(tmp_path)
    batches = list(_source(tmp_path).batches())
    total = sum(path.stat().st_size for path in paths)
    assert {batch.bytes_total for batch in batches} == {total}
    assert sum(batch.bytes_read for batch in batches) == total


def test_files_loaded_before_are_not_in_the_total(tmp_path: Path) -> None:
    """A file skipped as unchanged (same size and mtime, or same hash) is left out."""
    plain, packed = _write(tmp_path)
    stat = plain.stat()
    loaded = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": "-"}
    batches = list(_source(tmp_path, {"files": {"in/a.jsonl": loaded}}).batches())
    assert {batch.bytes_total for batch in batches} == {packed.stat().st_size}
    # Touched but not changed: hashed, found the same, and taken out of the total.
    source = _source(tmp_path)
    list(source.batches())
    os.utime(plain, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    packed.write_bytes(gzip.compress(_lines(0, 100).encode()))
    again = list(_source(tmp_path, dict(source.final_state())).batches())
    assert {batch.bytes_total for batch in again} == {packed.stat().st_size}


def test_progress_shows_megabytes_of_total_and_an_eta(tmp_path: Path) -> None:
    """Drawn on a terminal during a run, a file resource's bar says how many MB of how many
    were read and how long is left; at the end, all of it."""
    _write(tmp_path)
    (tmp_path / "p.yaml").write_text(
        f"pipeline: x\ndestination: duckdb:///{tmp_path}/x.duckdb\n"
        "resources:\n  things:\n    source: {type: file, path: in/*}\n    batch_size: 5000\n",
        encoding="utf-8",
    )
    screen = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    progress = _progress(screen)

    class Drawn(_ProgressObserver):
        def batch_loaded(self, resource: str, counts: Counts) -> None:
            super().batch_loaded(resource, counts)
            screen.print(progress.get_renderable())

    summary = Pipeline.from_yaml(tmp_path / "p.yaml").run(RunOptions(), Drawn(progress))
    assert summary.ok
    frames = screen.file.getvalue().splitlines()  # type: ignore[attr-defined]
    size = f"{sum(p.stat().st_size for p in (tmp_path / 'in').iterdir()) / 1e6:.1f} MB"
    assert all(re.search(rf"things .* \d+\.\d MB of {size} ", f) for f in frames), frames
    # rich estimates the speed once the bytes read grew twice: the ETA shows from then on.
    assert any(re.search(rf"of {size} eta 0:00:\d\d ", f) for f in frames), frames
    assert re.search(rf"70,000 rows .* {size} of {size} ", frames[-1]), frames[-1]


def test_progress_without_a_total_shows_bytes_read_only() -> None:
    """A source that cannot tell its size (an API) shows the bytes read, no share, no ETA."""
    screen = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    progress = _progress(screen)
    observer = _ProgressObserver(progress)
    observer.resource_started("pages")
    observer.batch_loaded("pages", Counts(fetched=500, bytes_read=1_500_000))
    screen.print(progress.get_renderable())
    line = screen.file.getvalue()  # type: ignore[attr-defined]
    assert "1.5 MB" in line
    assert " of " not in line
    assert "eta" not in line
