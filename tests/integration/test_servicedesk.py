"""The servicedesk example end to end: its pipeline over its local API, two rounds, exact counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions, RunSummary
from ladle.destinations import connect
from ladle.ledger import RUNS
from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "servicedesk"
TOKEN = "example-token"  # noqa: S105 - the token the test server is started with
SIZE = 300
SEED = 11
RESOURCES = ("tickets", "comments", "timesheets")


generator = load_example("servicedesk", "generate")
server = load_example("servicedesk", "server")


def _round(data_dir: Path, number: int) -> dict[str, Any]:
    data, manifest = generator.generate(SIZE, SEED, number)
    generator.write(data_dir, data, manifest)
    return dict(manifest)


def _counts(summary: RunSummary) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for result in summary.resources:
        assert result.status == "succeeded", result.error
        c = result.counts
        assert c.balanced
        out[result.resource] = (c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated)
    return out


def test_two_rounds_load_exactly_what_the_manifest_says(
    tmp_path: Path, destination_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 1 loads everything; round 2 fetches only the changes, with 503s injected throughout."""
    data = tmp_path / "data"
    first = _round(data, 1)
    with server.ServiceDeskServer(data, token=TOKEN, fail_every=5, page_size=50) as desk:
        monkeypatch.setenv("SERVICEDESK_URL", str(desk.url).rstrip("/"))
        monkeypatch.setenv("SERVICEDESK_TOKEN", TOKEN)
        pipeline = Pipeline.from_yaml(EXAMPLE / "pipeline.yaml", destination=destination_url)
        full = _counts(pipeline.run(RunOptions()))
        assert full == {
            name: (
                first["full"][name]["records"],
                first["full"][name]["keys"],
                0,
                0,
                first["full"][name]["duplicates"] + first["full"][name]["corrections"],
            )
            for name in RESOURCES
        }
        second = _round(data, 2)
        changes = _counts(pipeline.run(RunOptions()))
    window = second["incremental"]
    assert changes == {
        name: (
            window[name]["records"],
            window[name]["new"],
            window[name]["changed"],
            0,
            window[name]["duplicates"] + window[name]["corrections"],
        )
        for name in RESOURCES
    }
    dest = connect(destination_url)
    try:
        rows = {name: dest.read(name, {}).height for name in RESOURCES}
        ledger = dest.read(RUNS.name, {}).to_dicts()
        state = dest.read_state("servicedesk", "tickets")
    finally:
        dest.close()
    assert rows == {name: second["full"][name]["keys"] for name in RESOURCES}
    assert len(ledger) == 6
    assert {row["status"] for row in ledger} == {"succeeded"}
    assert state["cursor"]["value"].startswith(second["full"]["tickets"]["max_updated_at"][:19])
    assert state["checkpoint"] is None
