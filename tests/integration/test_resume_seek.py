"""A run killed with SIGKILL in the middle of a file resumes at the byte its last chunk
reached: the table is exact, quarantine positions are the true lines, the ledger
balances, and the resumed run reads only the rest of the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ladle import Pipeline
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE

LADLE = str(Path(sys.executable).parent / "ladle")
RECORDS = 120_000
BAD = frozenset(range(7, RECORDS, 9_973))
"""Records written unreadable (a cut JSON line, a CSV row short of a field): quarantined."""

PIPELINE = """\
pipeline: seeker
destination: {url}
resources:
  events:
    source: {{type: file, path: {name}}}
    primary_key: [id]
    write: merge
    batch_size: 5000
    commit_every: 10000
    columns:
      id: bigint
      v: text
"""


def _write(path: Path) -> None:
    """Records 0..RECORDS-1, one per line after a CSV header; the BAD ones unreadable."""
    csv = path.suffix == ".csv"
    with path.open("w") as handle:
        if csv:
            handle.write("id,v\n")
        for i in range(RECORDS):
            if csv:
                handle.write(f"{i}\n" if i in BAD else f'{i},"value, {i}"\n')
            else:
                line = json.dumps({"id": i, "v": f"value, {i}"})
                handle.write((line[:-3] if i in BAD else line) + "\n")


def _kill_after_chunks(pipeline: Path, chunks: int) -> None:
    """Run ladle and SIGKILL it once ``chunks`` chunks are committed."""
    committed = 0
    with subprocess.Popen(
        [LADLE, "run", str(pipeline)], cwd=pipeline.parent, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if json.loads(line).get("event") == "chunk committed":
                committed += 1
                if committed == chunks:
                    os.kill(process.pid, signal.SIGKILL)
                    break
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("name", ["events.jsonl", "events.csv"])
def test_a_killed_run_resumes_at_the_byte_it_reached(
    tmp_path: Path, destination_url: str, name: str
) -> None:
    """Killed after three chunks, the rerun seeks past them: every record loaded once,
    each bad line quarantined once under its own line number, fetched = inserted +
    updated + unchanged + deduplicated + quarantined over both runs, and the rerun's
    bytes_read short of the file's size."""
    data = tmp_path / name
    _write(data)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(url=destination_url, name=name))
    _kill_after_chunks(pipeline, 3)
    summary = Pipeline.from_yaml(pipeline).run()
    assert summary.ok
    (result,) = summary.resources
    assert result.counts.balanced
    (notice,) = [n for n in result.notices if "resuming at byte" in n]
    assert notice.endswith("by seeking")
    byte = int(notice.split("byte ")[1].split(" ")[0].replace(",", ""))
    size = data.stat().st_size
    assert 0 < byte < size
    dest = connect(destination_url)
    try:
        rows = dest.read("events", {}, order_by=["id"])
        runs = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
        quarantined = dest.read(QUARANTINE.name, {}).get_column("position").to_list()
    finally:
        dest.close()
    good = [i for i in range(RECORDS) if i not in BAD]
    assert rows.get_column("id").to_list() == good
    assert rows.get_column("v").to_list() == [f"value, {i}" for i in good]
    header = 1 if name.endswith(".csv") else 0
    assert sorted(quarantined, key=lambda p: int(p.rsplit(":", 1)[1])) == [
        f"{name}:{i + 1 + header}" for i in sorted(BAD)
    ]
    killed, resumed = runs
    assert resumed["bytes_read"] == size - byte < size
    for run in runs:
        loaded = sum(run[key] for key in ("inserted", "updated", "unchanged", "deduplicated"))
        assert run["fetched"] == loaded + run["quarantined"]
    assert killed["fetched"] + resumed["fetched"] == RECORDS
