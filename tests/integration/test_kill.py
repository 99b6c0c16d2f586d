"""A run killed with SIGKILL in the middle of loading leaves the target exactly as before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS, display_status

PIPELINE = """\
pipeline: killme
destination: {url}
resources:
  events:
    source: {{type: file, path: events.jsonl}}
    primary_key: [id]
    write: merge
    batch_size: 20000
    columns:
      id: bigint
      at: timestamptz
"""


def _write_events(path: Path, count: int, version: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(
                json.dumps({"id": i, "v": version, "at": f"2026-01-01T00:00:{i % 60:02d}Z"}) + "\n"
            )


def test_sigkill_mid_load_leaves_target_unchanged(tmp_path: Path, destination_url: str) -> None:
    """Kill -9 after some batches are staged: old rows intact, ledger says died, rerun completes."""
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(url=destination_url))
    _write_events(tmp_path / "events.jsonl", 1_000, version=1)
    first = Pipeline.from_yaml(pipeline).run()
    assert first.ok
    _write_events(tmp_path / "events.jsonl", 300_000, version=2)
    ladle = Path(sys.executable).parent / "ladle"
    staged = 0
    with subprocess.Popen(
        [str(ladle), "run", str(pipeline)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if json.loads(line).get("event") == "batch staged":
                staged += 1
                if staged == 3:
                    os.kill(process.pid, signal.SIGKILL)
                    break
        process.wait()
    assert process.returncode == -signal.SIGKILL
    dest = connect(destination_url)
    rows = dest.read("events", {}, order_by=["id"])
    assert rows.height == 1_000
    assert set(rows.get_column("v").to_list()) == {1}
    ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    dest.close()
    statuses = [display_status(r["status"], r["host"], r["pid"]) for r in ledger]
    assert statuses == ["succeeded", "died"]
    rerun = Pipeline.from_yaml(pipeline).run(RunOptions())
    assert rerun.ok
    counts = rerun.resources[0].counts
    assert counts.balanced
    assert (counts.fetched, counts.inserted, counts.updated) == (300_000, 299_000, 1_000)
