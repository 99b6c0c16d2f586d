"""Messy real CSV end to end: nothing lost or invented silently, every guess in the summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.pipeline import ResourceResult
from ladle.quarantine import QUARANTINE

PIPELINE = """\
pipeline: messy
resources:
  items:
    source: {{type: file, path: {path}{options}}}
    primary_key: [id]
    write: merge
    columns:
      id: {{type: bigint}}
"""

Writer = Callable[[str], Path]


def _run(
    tmp_path: Path,
    url: str,
    write_pipeline: Writer,
    content: bytes,
    *,
    name: str = "items.csv",
    options: str = "",
) -> tuple[ResourceResult, list[dict[str, Any]], list[dict[str, Any]]]:
    """Load ``content`` as ``name``; the result, the quarantine and the table, by position/id."""
    (tmp_path / name).write_bytes(content)
    pipeline = write_pipeline(PIPELINE.format(path=name, options=options))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    assert result.counts.balanced
    dest = connect(url)
    quarantined = dest.read(QUARANTINE.name, {}, order_by=["position"]).to_dicts()
    rows = dest.read("items", {}, order_by=["id"]).to_dicts()
    dest.close()
    return result, quarantined, rows


def _ledger(result: ResourceResult) -> tuple[int, int, int]:
    counts = result.counts
    return counts.fetched, counts.inserted, counts.quarantined


def _errors(row: dict[str, Any]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = json.loads(row["errors"])
    return errors


def _raw_text(row: dict[str, Any]) -> str:
    text: str = json.loads(row["raw"])["text"]
    return text


STRAY = (
    "id;name;city\n"
    "1;Ann;Oslo\n"
    '2;"Big Company;Rome\n'
    "3;Bob;Lima\n"
    "4;Cy;Kiev\n"
    "5;Di;Nome\n"
    '6;pipe 5";Bonn\n'
    "7;Ed;Riga\n"
)


def test_stray_quote_quarantines_its_line_and_the_rest_loads(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """A quote that would swallow five records quarantines its own line; the five load."""
    result, quarantined, rows = _run(tmp_path, destination_url, write_pipeline, STRAY.encode())
    assert _ledger(result) == (7, 6, 1)
    assert [r["id"] for r in rows] == [1, 3, 4, 5, 6, 7]
    assert [(q["position"], _raw_text(q)) for q in quarantined] == [
        ("items.csv:3", '2;"Big Company;Rome')
    ]
    assert _errors(quarantined[0]) == [
        {
            "field": None,
            "rule": "parse",
            "value": None,
            "message": "the quote that opens on line 3 runs to line 7 over lines that read as "
            "whole records: line 3 is quarantined and reading goes on from line 4 (if quotes "
            "in this file are data, set `quote: none`)",
        }
    ]


def test_quote_none_loads_quotes_as_data(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """``quote: none``: the same file loads whole, its quote characters kept as data."""
    result, quarantined, rows = _run(
        tmp_path, destination_url, write_pipeline, STRAY.encode(), options=", quote: none"
    )
    assert _ledger(result) == (7, 7, 0)
    assert quarantined == []
    assert [r["name"] for r in rows if r["id"] in (2, 6)] == ['"Big Company', 'pipe 5"']


def test_over_long_field_is_quarantined_whole(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """A field over the limit quarantines its record with its span; no line inside the
    field becomes a record."""
    big = b"x" * 140_000
    content = b'id,note\n1,"' + big + b'\ninjected row from inside a quoted field\nend"\n2,ok\n'
    result, quarantined, rows = _run(tmp_path, destination_url, write_pipeline, content)
    assert _ledger(result) == (2, 1, 1)
    assert rows == [{"id": 2, "note": "ok"}]
    assert [q["position"] for q in quarantined] == ["items.csv:2-4"]
    assert _raw_text(quarantined[0]) == content[8:-6].decode()
    assert [e["message"] for e in _errors(quarantined[0])] == [
        "a field is longer than 131,072 characters (`max_field_chars`); "
        "the record is 140,048 characters long"
    ]


def test_max_field_chars_admits_longer_fields(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """With ``max_field_chars`` raised, the same long field loads as one value."""
    note = "x" * 140_000 + "\nsecond line"
    content = f'id,note\n1,"{note}"\n2,ok\n'.encode()
    result, _, rows = _run(
        tmp_path, destination_url, write_pipeline, content, options=", max_field_chars: 200000"
    )
    assert _ledger(result) == (2, 2, 0)
    assert [r["note"] for r in rows] == [note, "ok"]


def test_blank_lines_are_skipped_and_counted(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """A 52-row file with empty and delimiter-only lines loads 52 rows and says so."""
    lines = [f"{i},v{i},w" for i in range(1, 53)]
    lines[10:10] = [""]
    lines[20:20] = [",,"]
    lines[30:30] = [",,,,,,,,,"]
    content = ("id,a,b\n" + "\n".join(lines) + "\n").encode()
    result, quarantined, rows = _run(tmp_path, destination_url, write_pipeline, content)
    assert _ledger(result) == (52, 52, 0)
    assert quarantined == []
    assert len(rows) == 52
    assert result.notices == ["3 blank lines skipped in items.csv"]


def test_generated_header_names_are_in_the_summary(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """Blank and repeated header names get names of their own, each named in the summary."""
    content = b"id,name,,name,\n1,a,b,c,d\n"
    result, _, rows = _run(tmp_path, destination_url, write_pipeline, content)
    assert _ledger(result) == (1, 1, 0)
    assert rows == [{"id": 1, "name": "a", "column_3": "b", "name_2": "c", "column_5": "d"}]
    assert result.notices == [
        "items.csv: header names generated: column_3 for column 3 (blank), name_2 for "
        "column 4 (repeats 'name'), column_5 for column 5 (blank)"
    ]


def test_null_values_in_csv(tmp_path: Path, destination_url: str, write_pipeline: Writer) -> None:
    """Listed text becomes NULL: ``*`` for every column, a column's own list instead."""
    content = b"id,country,price,note\n1,NA,-,?\n2,DE,3,NA\n"
    options = ', null_values: {"*": [NA, "?"], country: [], price: ["-"]}'
    result, _, rows = _run(tmp_path, destination_url, write_pipeline, content, options=options)
    assert _ledger(result) == (2, 2, 0)
    assert [(r["country"], r["price"], r["note"]) for r in rows] == [
        ("NA", None, None),
        ("DE", "3", None),
    ]


def test_null_values_in_json_lines(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """JSON text values are compared the same way; a JSON number is never a null value."""
    content = b'{"id": 1, "note": "N/A", "n": 5}\n{"id": 2, "note": "Unspecified", "n": 6}\n'
    options = ', null_values: ["N/A", Unspecified, "5"]'
    result, _, rows = _run(
        tmp_path, destination_url, write_pipeline, content, name="items.jsonl", options=options
    )
    assert _ledger(result) == (2, 2, 0)
    assert [(r["note"], r["n"]) for r in rows] == [(None, 5), (None, 6)]


def test_ragged_rows_with_empty_extras_can_be_ignored(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """``ragged: ignore_empty_extra`` loads rows whose extra fields are empty and counts
    them; a row with a value in an extra field is still quarantined."""
    content = b"id,a\n1,x,,\n2,y\n3,z,,\n4,w,extra\n"
    result, quarantined, rows = _run(
        tmp_path, destination_url, write_pipeline, content, options=", ragged: ignore_empty_extra"
    )
    assert _ledger(result) == (4, 3, 1)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [(q["position"], _raw_text(q)) for q in quarantined] == [("items.csv:5", "4,w,extra")]
    assert result.notices == ["2 rows of items.csv had empty extra fields, ignored"]


def test_ragged_rows_quarantine_by_default(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """Without ``ragged:``, a row with empty extra fields is quarantined with its message."""
    result, quarantined, _ = _run(tmp_path, destination_url, write_pipeline, b"id,a\n1,x,,\n")
    assert _ledger(result) == (1, 0, 1)
    assert [e["message"] for e in _errors(quarantined[0])] == ["expected 2 fields, found 4"]


def test_cp1252_read_as_latin1_is_reported(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """Curly quotes of a cp1252 file read as latin-1 load, with a notice naming cp1252."""
    content = "id,note\n1,\u201cquoted\u201d\n2,plain\n".encode("cp1252")
    result, _, rows = _run(
        tmp_path, destination_url, write_pipeline, content, options=", encoding: latin-1"
    )
    assert _ledger(result) == (2, 2, 0)
    assert rows[0]["note"] == "\x93quoted\x94"
    assert result.notices == [
        "1 row of items.csv holds C1 control characters (U+0080-U+009F) as decoded from "
        "latin-1: the file is probably cp1252; set `encoding: cp1252`"
    ]
