"""Schema drift between batches: a later batch may lack columns or bring new ones.

JSON records do not all carry the same fields, so one batch of a resource may have a
column (``a__x``) the next one lacks, and bring one (``a__y``) the first did not have.
Every write mode, on every destination, loads each record exactly, with NULL where it
had no value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions
from ladle.destinations import connect

RECORDS = [{"id": 1, "a": {"x": 1}}, {"id": 2, "a": {"y": 2}}, {"id": 3, "note": "c"}]
EXPECTED = [
    {"id": 1, "a__x": 1, "a__y": None, "note": None},
    {"id": 2, "a__x": None, "a__y": 2, "note": None},
    {"id": 3, "a__x": None, "a__y": None, "note": "c"},
]

PIPELINE = """\
pipeline: drift
resources:
  items:
    source: {{type: file, path: items.jsonl}}
    primary_key: [id]
    write: {write}
    batch_size: 1
    steps: {steps}
"""


def _write(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record) + "\n" for record in records)
    (tmp_path / "items.jsonl").write_text(text)


def _rows(url: str) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        rows = dest.read("items", {}, order_by=["id"]).to_dicts()
    finally:
        dest.close()
    return [{key: row[key] for key in ("id", "a__x", "a__y", "note")} for row in rows]


# (write mode, steps, records loaded before the run, extra records, counts, rows expected)
CASES = {
    "append": ("append", "[]", [], [], (3, 3, 0, 0, 0), EXPECTED),
    "replace": ("replace", "[]", [], [], (3, 3, 0, 0, 0), EXPECTED),
    "merge-empty-table": ("merge", "[]", [], [], (3, 3, 0, 0, 0), EXPECTED),
    "merge-existing-table": (
        "merge",
        "[]",
        [{"id": 1, "a": {"x": 0}}, {"id": 3, "note": "c"}],
        [],
        (3, 1, 1, 1, 0),
        EXPECTED,
    ),
    "merge-dedupe": (
        "merge",
        "[dedupe: {keep: last}]",
        [],
        [{"id": 2, "note": "d"}],
        (4, 3, 0, 0, 1),
        [*EXPECTED[:1], {"id": 2, "a__x": None, "a__y": None, "note": "d"}, EXPECTED[2]],
    ),
    "append-dedupe": (
        "append",
        "[dedupe: {keep: first}]",
        [],
        [{"id": 2, "note": "d"}],
        (4, 3, 0, 0, 1),
        EXPECTED,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_later_batch_lacks_and_adds_columns(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path], case: str
) -> None:
    """Batches of one record each, with different fields, load exactly in every write mode."""
    write, steps, before, extra, counts, expected = CASES[case]
    pipeline = write_pipeline(PIPELINE.format(write=write, steps=steps))
    if before:
        _write(tmp_path, before)
        first = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
        assert first.ok, first.resources[0].error
    _write(tmp_path, RECORDS + extra)
    summary = Pipeline.from_yaml(pipeline).run(
        RunOptions(destination=destination_url, full_refresh=True)
    )
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    c = result.counts
    assert (c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated) == counts
    assert c.quarantined == 0
    assert c.balanced
    assert _rows(destination_url) == expected
