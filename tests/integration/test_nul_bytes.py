"""NUL bytes: the same outcome on every destination, and the rest of the batch loads.

PostgreSQL cannot store U+0000 in text (the whole COPY failed with ``invalid byte
sequence for encoding "UTF8": 0x00``) nor a ``\\u0000`` escape in jsonb, while DuckDB
stored them silently. Now such a record is quarantined everywhere with rule ``nul``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.pipeline import ResourceResult
from ladle.quarantine import QUARANTINE
from ladle.steps.nul import JSON_MESSAGE, TEXT_MESSAGE

PIPELINE = """\
pipeline: nul
resources:
  items:
    source: {{type: file, path: {path}}}
    primary_key: [id]
    write: merge
    columns:
      doc: {{type: json}}
"""


def _run(
    tmp_path: Path, url: str, write_pipeline: Callable[[str], Path], path: str
) -> tuple[ResourceResult, list[dict[str, Any]], list[dict[str, Any]]]:
    pipeline = write_pipeline(PIPELINE.format(path=path))
    result = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url)).resources[0]
    assert result.status == "succeeded", result.error
    assert result.counts.balanced
    dest = connect(url)
    try:
        rows = dest.read("items", {}, order_by=["id"]).to_dicts()
        quarantined = dest.read(QUARANTINE.name, {}, order_by=["position"]).to_dicts()
    finally:
        dest.close()
    return result, rows, quarantined


def test_nul_in_text_is_quarantined_and_the_rest_loads(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A JSON string with ``\\u0000`` goes to quarantine with field, rule and message."""
    records = [{"id": 1, "note": "a\u0000b"}, {"id": 2, "note": "fine"}, {"id": 3, "note": None}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result, rows, quarantined = _run(tmp_path, destination_url, write_pipeline, "items.jsonl")
    c = result.counts
    assert (c.fetched, c.inserted, c.quarantined) == (3, 2, 1)
    assert [(row["id"], row["note"]) for row in rows] == [(2, "fine"), (3, None)]
    assert [q["position"] for q in quarantined] == ["items.jsonl:1"]
    assert json.loads(quarantined[0]["raw"]) == {"id": 1, "note": "a\\u0000b"}
    assert json.loads(quarantined[0]["errors"]) == [
        {
            "field": "note",
            "rule": "nul",
            "value": "a\\u0000b",
            "message": "text contains a NUL byte (\\u0000), which PostgreSQL cannot store",
        }
    ]
    assert TEXT_MESSAGE == "text contains a NUL byte (\\u0000), which PostgreSQL cannot store"


def test_nul_byte_in_a_csv_field(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A raw NUL byte in a CSV field quarantines its row; the other rows load."""
    (tmp_path / "items.csv").write_bytes(b"id,note\n1,ok\n2,x\x00y\n3,also ok\n")
    result, rows, quarantined = _run(tmp_path, destination_url, write_pipeline, "items.csv")
    assert (result.counts.inserted, result.counts.quarantined) == (2, 1)
    assert [(row["id"], row["note"]) for row in rows] == [("1", "ok"), ("3", "also ok")]
    assert quarantined[0]["position"] == "items.csv:3"
    errors = json.loads(quarantined[0]["errors"])
    assert [(e["field"], e["rule"]) for e in errors] == [("note", "nul")]


def test_nul_escape_in_json_column(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A ``\\u0000`` escape in a ``json`` column is quarantined (jsonb refuses it); an escaped
    backslash before ``u0000`` is text and loads, and so does the escape in a text column."""
    lines = [
        '{"id": 1, "doc": ["x\\u0000y"]}',
        '{"id": 2, "doc": ["x\\\\u0000y"]}',
        '{"id": 3, "tags": ["x\\u0000y"]}',
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    result, rows, quarantined = _run(tmp_path, destination_url, write_pipeline, "items.jsonl")
    assert (result.counts.inserted, result.counts.quarantined) == (2, 1)
    assert [(row["id"], row["tags"]) for row in rows] == [(2, None), (3, '["x\\u0000y"]')]
    assert json.loads(rows[0]["doc"]) == ["x\\u0000y"]
    assert quarantined[0]["position"] == "items.jsonl:1"
    assert json.loads(quarantined[0]["errors"]) == [
        {"field": "doc", "rule": "nul", "value": '["x\\u0000y"]', "message": JSON_MESSAGE}
    ]
    assert JSON_MESSAGE == (
        "JSON contains the escape \\u0000 (a NUL character), which PostgreSQL cannot store"
    )


def test_unreadable_line_with_a_nul_byte_reaches_the_quarantine(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A broken line holding a raw NUL is quarantined as text (NUL written as ``\\u0000``)."""
    data = b'{"id": 1, "note": "ok"}\n{"id": 2, "note": "x\x00\n{"id": 3, "note": "ok"}\n'
    (tmp_path / "items.jsonl").write_bytes(data)
    result, rows, quarantined = _run(tmp_path, destination_url, write_pipeline, "items.jsonl")
    assert (result.counts.inserted, result.counts.quarantined) == (2, 1)
    assert [row["id"] for row in rows] == [1, 3]
    assert quarantined[0]["position"] == "items.jsonl:2"
    assert json.loads(quarantined[0]["raw"]) == {"text": '{"id": 2, "note": "x\\u0000'}
