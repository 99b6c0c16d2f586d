"""Bad input end to end: the bad record is quarantined with its position, the rest loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE

PIPELINE = """\
pipeline: bad
resources:
  items:
    source: {{type: file, path: {path}}}
    primary_key: [id]
    write: merge
    columns:
      id: {{type: bigint}}
      amount: {{type: double, min: 0}}
"""


def _run(pipeline: Path, url: str) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
    dest = connect(url)
    quarantined = dest.read(QUARANTINE.name, {}, order_by=["position"]).to_dicts()
    rows = dest.read("items", {}, order_by=["id"]).to_dicts()
    dest.close()
    result = summary.resources[0]
    assert result.counts.balanced
    return result, quarantined, rows


def test_malformed_jsonl_line(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A truncated JSON line is quarantined as file:line with the parser's message."""
    lines = ['{"id": 1, "amount": 2}', '{"id": 2, "amount": ', '{"id": 3, "amount": 4.5}']
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    result, quarantined, rows = _run(
        write_pipeline(PIPELINE.format(path="items.jsonl")), destination_url
    )
    assert (result.counts.fetched, result.counts.inserted, result.counts.quarantined) == (3, 2, 1)
    assert [r["id"] for r in rows] == [1, 3]
    assert quarantined[0]["position"] == "items.jsonl:2"
    assert json.loads(quarantined[0]["raw"]) == {"text": '{"id": 2, "amount": '}
    assert json.loads(quarantined[0]["errors"])[0]["rule"] == "parse"


def test_ragged_csv_row(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A CSV row with too many fields is quarantined with its line; quoted newlines are fine."""
    text = 'id,amount,note\n1,2,"two\nlines"\n2,3,x,extra\n3,4,ok\n'
    (tmp_path / "items.csv").write_text(text)
    result, quarantined, rows = _run(
        write_pipeline(PIPELINE.format(path="items.csv")), destination_url
    )
    assert (result.counts.inserted, result.counts.quarantined) == (2, 1)
    assert [r["note"] for r in rows] == ["two\nlines", "ok"]
    assert quarantined[0]["position"] == "items.csv:4"


def test_undecodable_bytes(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A line with bytes that are not UTF-8 is quarantined; its neighbours load."""
    data = b'{"id": 1, "amount": 1}\n{"id": 2, "note": "caf\xe9"}\n{"id": 3, "amount": 3}\n'
    (tmp_path / "items.jsonl").write_bytes(data)
    result, quarantined, rows = _run(
        write_pipeline(PIPELINE.format(path="items.jsonl")), destination_url
    )
    assert [r["id"] for r in rows] == [1, 3]
    assert quarantined[0]["position"] == "items.jsonl:2"
    assert json.loads(quarantined[0]["errors"])[0]["rule"] == "encoding"
    assert result.counts.quarantined == 1


def test_wrong_type_and_rule_failures(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A value that does not cast and one that breaks min are quarantined with field and rule."""
    lines = ['{"id": 1, "amount": "abc"}', '{"id": 2, "amount": -1}', '{"id": 3, "amount": "7"}']
    (tmp_path / "items.jsonl").write_text("\n".join(lines))
    result, quarantined, rows = _run(
        write_pipeline(PIPELINE.format(path="items.jsonl")), destination_url
    )
    assert [(r["id"], r["amount"]) for r in rows] == [(3, 7.0)]
    errors = [json.loads(q["errors"])[0] for q in quarantined]
    assert [(e["field"], e["rule"], e["value"]) for e in errors] == [
        ("amount", "type", "abc"),
        ("amount", "min", "-1.0"),
    ]
    assert result.counts.quarantined == 2


def test_unreadable_file_fails_run_and_changes_nothing(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A file that cannot be read fails the run, names the file, and leaves the table as it was."""
    (tmp_path / "items.jsonl").write_text('{"id": 1, "amount": 1}\n')
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl"))
    _run(pipeline, destination_url)
    (tmp_path / "items.jsonl").unlink()
    (tmp_path / "items.jsonl.gz").write_bytes(b"this is not gzip")
    pipeline.write_text(PIPELINE.format(path="items.jsonl.gz"))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "failed"
    assert result.error is not None
    assert "items.jsonl.gz" in result.error
    dest = connect(destination_url)
    assert dest.read("items", {}).to_dicts() == [{"id": 1, "amount": 1.0}]
    ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    dest.close()
    assert [r["status"] for r in ledger] == ["succeeded", "failed"]
    assert ledger[1]["error"] == result.error


def test_schema_conflict_fails_before_writing(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A column whose inferred type changes fails the run with SchemaConflict; nothing written."""
    (tmp_path / "items.jsonl").write_text('{"id": 1, "size": 10}\n')
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl"))
    _run(pipeline, destination_url)
    (tmp_path / "items.jsonl").write_text('{"id": 2, "size": "large"}\n')
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    assert summary.resources[0].error == (
        "table 'items': column 'size' is BIGINT in the destination but TEXT in this run; "
        "declare `type: bigint` for it, or migrate the table first"
    )
    dest = connect(destination_url)
    assert dest.read("items", {}).to_dicts() == [{"id": 1, "amount": None, "size": 10}]
    dest.close()


def test_failure_after_staged_batches_rolls_back_everything(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A run failing on its third batch leaves rows, quarantine and state as before it started."""
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl") + "    batch_size: 2\n")
    (tmp_path / "items.jsonl").write_text('{"id": 1, "size": 1}\n{"id": 2, "amount": -5}\n')
    _run(pipeline, destination_url)
    lines = [json.dumps({"id": i, "size": i, "amount": -1 if i == 3 else 1}) for i in range(1, 5)]
    lines.append('{"id": 5, "size": "huge"}')
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "failed"
    assert result.counts.fetched == 5
    dest = connect(destination_url)
    assert dest.read("items", {}).to_dicts() == [{"id": 1, "amount": None, "size": 1}]
    assert dest.read(QUARANTINE.name, {}).height == 1
    state = dest.read("_ladle_state", {})
    ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    dest.close()
    assert [(r["status"], r["fetched"]) for r in ledger] == [("succeeded", 2), ("failed", 5)]
    assert set(state.get_column("run_id")) == {ledger[0]["run_id"]}


def test_dry_run_writes_nothing(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """--dry-run reads, casts and validates, reports what would load, and creates no file."""
    (tmp_path / "items.jsonl").write_text('{"id": 1, "amount": 2}\n{"id": 2, "amount": -1}\n')
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl"))
    summary = Pipeline.from_yaml(pipeline).run(
        RunOptions(destination=destination_url, dry_run=True)
    )
    result = summary.resources[0]
    assert (result.counts.fetched, result.counts.quarantined, result.ready) == (2, 1, 1)
    assert not Path(destination_url.removeprefix("duckdb:///")).exists()


@pytest.mark.parametrize("chunks", ["", "    commit_every: 1\n"])
def test_a_file_of_only_bad_records_quarantines_them_and_succeeds(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path], chunks: str
) -> None:
    """Every record unreadable: all quarantined, nothing loaded, no table invented, no failure."""
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl") + chunks)
    (tmp_path / "items.jsonl").write_text('{"id": 1,\n[2]\n')
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    assert (result.counts.fetched, result.counts.quarantined) == (2, 2)
    dest = connect(destination_url)
    try:
        assert dest.read(QUARANTINE.name, {}).height == 2
        assert dest.read("items", {}).height == 0
    finally:
        dest.close()


def test_rejected_rows_of_polars_read_chunks_keep_their_lines(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Rows a step rejects from chunks Polars read are quarantined at their own line, blank
    lines counted, across batches; a declared json field loads as compact JSON text."""
    lines = [json.dumps({"id": i, "amount": -1 if i in (7, 1234) else i, "tags": ["a", "é"]})
             for i in range(1, 1501)]  # fmt: skip
    lines.insert(3, "")  # line 4 is blank: id 7 is on line 8, id 1234 on line 1235
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = PIPELINE.format(path="items.jsonl") + "      tags: {type: json}\n    batch_size: 1000\n"
    result, quarantined, rows = _run(write_pipeline(text), destination_url)
    assert (result.counts.fetched, result.counts.inserted, result.counts.quarantined) == (
        1500,
        1498,
        2,
    )
    assert [r["position"] for r in quarantined] == ["items.jsonl:1235", "items.jsonl:8"]
    assert [json.loads(r["raw"])["id"] for r in quarantined] == [1234, 7]
    assert json.loads(rows[0]["tags"]) == ["a", "é"]
