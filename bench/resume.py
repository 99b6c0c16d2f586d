"""Time to first batch when a file load resumes after a kill: a ~500 MB JSON Lines (or CSV) file.

Not a test: it prints figures. One untimed read takes the checkpoint of the batch about
``--at`` of the way into the file (what a killed run would have committed last); then
each round times, from building the file source with that checkpoint to its first batch,
the resumed read, and (for reference) a read from the start. The ladle measured is the
one on ``PYTHONPATH``, so the same command measures two trees::

    PYTHONPATH=/path/to/old/tree python bench/resume.py
    PYTHONPATH=$PWD python bench/resume.py

The file is written once to ``--dir`` and reused (its page-cache warmth is the same for
both trees: every round reads it whole first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


def main() -> None:
    """Write the file if needed, take a checkpoint, time the first batches, print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "ladle-bench-resume"
    )
    parser.add_argument("--mb", type=int, default=500, help="size of the file, in MB")
    parser.add_argument("--at", type=float, default=0.8, help="where the checkpoint is (0-1)")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"events.{args.format}"
    if not path.exists() or path.stat().st_size < args.mb * 1_000_000:
        _write(path, args.mb * 1_000_000)
    size = path.stat().st_size
    checkpoint, records = _checkpoint(path, args.batch_size, int(size * args.at))
    print(f"{path.name}: {size / 1e6:,.0f} MB; checkpoint after {records:,} records")
    resumed, fresh = [], []
    for _ in range(args.rounds):
        _warm(path)
        resumed.append(_first_batch(path, args.batch_size, checkpoint))
        fresh.append(_first_batch(path, args.batch_size, None))
    print(f"resumed: first batch after {_show(resumed)}")
    print(f"from the start: first batch after {_show(fresh)}")


def _write(path: Path, size: int) -> None:
    """Ten-field events, one per line, until the file holds ``size`` bytes (CSV: a header,
    then each event's values, the note quoted)."""
    written, i = 0, 0
    csv = path.suffix == ".csv"
    with path.open("w") as handle:
        if csv:
            handle.write("id,user,kind,amount,ok,at,note,score,tag,ref\n")
        while written < size:
            lines = []
            for j in range(i, i + 10_000):
                record = {
                    "id": j,
                    "user": f"user-{j % 9973}",
                    "kind": ("click", "view", "buy")[j % 3],
                    "amount": round(j * 0.37 % 1000, 2),
                    "ok": j % 7 != 0,
                    "at": f"2026-01-{1 + j % 28:02d}T{j % 24:02d}:{j % 60:02d}:00Z",
                    "note": f"note number {j} with some text to make the line longer",
                    "score": j % 101,
                    "tag": None if j % 5 else "tagged",
                    "ref": f"R{j:012d}",
                }
                lines.append(_csv_line(record) if csv else json.dumps(record))
            text = "\n".join(lines) + "\n"
            handle.write(text)
            written += len(text)
            i += 10_000


def _csv_line(record: dict[str, Any]) -> str:
    values = ["" if v is None else str(v) for v in record.values()]
    values[6] = f'"{values[6]}"'
    return ",".join(values)


def _source(path: Path, batch_size: int, resume: Any) -> FileSource:
    context = SourceContext("events", batch_size, path.parent, resume=resume)
    return FileSource(FileOptions(type="file", path=path.name), context)


def _checkpoint(path: Path, batch_size: int, at: int) -> tuple[Any, int]:
    """The checkpoint of the first batch that ends past byte ``at``, and the records so far."""
    read = records = 0
    for batch in _source(path, batch_size, None).batches():
        read += batch.bytes_read
        records += batch.fetched
        if read >= at:
            return batch.checkpoint, records
    raise SystemExit("the file ended before the checkpoint: lower --at")


def _first_batch(path: Path, batch_size: int, resume: Any) -> float:
    start = time.perf_counter()
    batches = _source(path, batch_size, resume).batches()
    next(batches)
    elapsed = time.perf_counter() - start
    batches.close()
    return elapsed


def _warm(path: Path) -> None:
    """Read the file whole, so that every measurement starts from the page cache."""
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def _show(seconds: list[float]) -> str:
    return (
        f"{statistics.median(seconds):.2f} s (median of {len(seconds)}; "
        f"{min(seconds):.2f}-{max(seconds):.2f})"
    )


if __name__ == "__main__":
    main()
