"""Hostile and odd JSON end to end, on both destinations: bounded memory, positions in every
message, clear refusals instead of engine errors, and the ledger balanced."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult
from ladle.quarantine import QUARANTINE

PIPELINE = """\
pipeline: hostile
resources:
  items:
    source: {{type: file, path: '{path}'{extra}}}
    write: append
{columns}"""


def _pipeline(path: str, *, extra: str = "", columns: str = "") -> str:
    return PIPELINE.format(path=path, extra=extra, columns=columns)


def _run(pipeline: Path, url: str) -> ResourceResult:
    """Run the pipeline; a run that succeeds accounts for every record it fetched."""
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
    result = summary.resources[0]
    assert result.counts.balanced or result.status == "failed"
    return result


def _table(url: str, name: str, order_by: list[str]) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(name, {}, order_by=order_by).to_dicts()
    finally:
        dest.close()


def _quarantined(url: str) -> list[tuple[str, str, str]]:
    """(position, raw text, first message) of every quarantined record."""
    rows = _table(url, QUARANTINE.name, ["position"])
    return [
        (r["position"], json.loads(r["raw"])["text"], json.loads(r["errors"])[0]["message"])
        for r in rows
    ]


def test_records_with_no_fields_are_quarantined(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A document of `{}` records is quarantined as having no fields, not an SQL syntax error."""
    (tmp_path / "items.json").write_text('[{}, {"nested": {}}]')
    result = _run(write_pipeline(_pipeline("items.json")), destination_url)
    assert result.status == "succeeded", result.error
    assert (result.counts.fetched, result.counts.quarantined) == (2, 2)
    assert _quarantined(destination_url) == [
        ("items.json#[0]", "{}", "the record has no fields"),
        ("items.json#[1]", '{"nested":{}}', "the record has no fields"),
    ]


def test_empty_jsonl_records_are_quarantined_and_the_rest_loads(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """`{}` lines are quarantined with their line; the lines with fields load."""
    (tmp_path / "items.jsonl").write_text('{}\n{"id": 1}\n  { }  \n')
    result = _run(write_pipeline(_pipeline("items.jsonl")), destination_url)
    assert (result.counts.fetched, result.counts.inserted, result.counts.quarantined) == (3, 1, 2)
    assert _table(destination_url, "items", ["id"]) == [{"id": 1}]
    assert _quarantined(destination_url) == [
        ("items.jsonl:1", "{}", "the record has no fields"),
        ("items.jsonl:3", "  { }  ", "the record has no fields"),
    ]


def test_array_of_scalars_is_quarantined(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """An array of mixed scalars: each item quarantined as not an object; no engine error."""
    (tmp_path / "items.json").write_text('[1, "a", true, null, 2.5]')
    result = _run(write_pipeline(_pipeline("items.json")), destination_url)
    assert result.status == "succeeded", result.error
    assert (result.counts.fetched, result.counts.quarantined) == (5, 5)
    kinds = ["a number", "a string", "a boolean", "null", "a number"]
    assert [q[2] for q in _quarantined(destination_url)] == [
        f"a record must be a JSON object, found {kind}" for kind in kinds
    ]


def test_files_with_no_records_are_named_in_the_summary(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """`null`, `[]` and `{"results": []}` are valid, empty documents: each is named, none fails."""
    (tmp_path / "a.json").write_text("null")
    (tmp_path / "b.json").write_text("[]")
    (tmp_path / "c.json").write_text('{"results": []}')
    (tmp_path / "d.json").write_text('[{"id": 1}]')
    result = _run(write_pipeline(_pipeline("*.json")), destination_url)
    assert result.status == "succeeded", result.error
    assert (result.counts.fetched, result.counts.inserted) == (1, 1)
    assert result.notices == [
        "a.json holds no records",
        "b.json holds no records",
        "c.json holds no records",
    ]


def test_every_bad_file_of_a_glob_is_named_and_nothing_loads(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Two broken files among good ones: the resource fails naming both, with line and column,
    and no record of the good files is loaded."""
    (tmp_path / "a.json").write_text('[{"id": 1}]')
    (tmp_path / "b.json").write_text('[{"id": 2},\n {"id": 3} x]')
    (tmp_path / "c.json").write_text('[{"id": 4}]')
    (tmp_path / "d.json").write_text("[\f]")
    result = _run(write_pipeline(_pipeline("*.json")), destination_url)
    assert result.status == "failed"
    assert result.error == (
        "*.json: 2 files cannot be read, so nothing of them was loaded: "
        "b.json#[2]: invalid JSON at line 2, column 12, after 2 records: "
        "lexical error: invalid char in json text.; "
        "d.json: invalid JSON at line 1, column 2: a form feed is not JSON whitespace"
    )
    # The good file read before the first bad one was fetched, then rolled back.
    ledger = _table(destination_url, RUNS.name, ["started_at"])
    assert [(r["status"], r["fetched"], r["inserted"], r["error"]) for r in ledger] == [
        ("failed", 1, 0, result.error)
    ]


def test_a_json_lines_file_read_as_a_document_gets_a_hint(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """One object per line in a .json file: the error names line 2 and suggests jsonl."""
    (tmp_path / "items.json").write_text('{"id": 1}\n{"id": 2}\n')
    result = _run(write_pipeline(_pipeline("items.json")), destination_url)
    assert result.error == (
        "items.json: invalid JSON at line 2, column 1: parse error: trailing garbage; "
        "for one JSON value per line, use `format: jsonl`"
    )


def test_records_path_reaches_into_a_top_level_array(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """`records: "[0].records"` loads the records of the first item, positioned by that path."""
    document = [{"records": [{"id": 1}, {"id": 2}]}, {"records": [{"id": 3}]}]
    (tmp_path / "items.json").write_text(json.dumps(document))
    pipeline = write_pipeline(_pipeline("items.json", extra=", records: '[0].records'"))
    result = _run(pipeline, destination_url)
    assert (result.counts.fetched, result.counts.inserted) == (2, 2)
    assert _table(destination_url, "items", ["id"]) == [{"id": 1}, {"id": 2}]


def test_a_lone_record_holding_the_records_gets_a_notice(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A one-item array whose item holds 150 objects loads one row, and the notice says which
    `records:` path would load the 150 instead."""
    document = [{"page": 1, "records": [{"id": i} for i in range(150)]}]
    (tmp_path / "items.json").write_text(json.dumps(document))
    result = _run(write_pipeline(_pipeline("items.json")), destination_url)
    assert result.counts.inserted == 1
    assert result.notices == [
        "items.json holds one record whose 'records' is an array of 150 objects; "
        "if those are the records, set `records: '[0].records'`"
    ]


def test_declared_json_column_keeps_its_object_whole(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A column declared `json` holds the object as one JSON value, not `payload__child`
    columns, from documents and from JSON Lines."""
    records = [{"id": 1, "payload": {"a": {"b": [1, 2]}, "c": "x"}}, {"id": 2, "payload": None}]
    (tmp_path / "items.json").write_text(json.dumps(records))
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    columns = "    columns: {id: bigint, payload: {type: json}}\n"
    for name in ("items.json", "items.jsonl"):
        pipeline = write_pipeline(_pipeline(name, columns=columns), f"{name}.yaml")
        result = _run(pipeline, destination_url)
        assert result.status == "succeeded", result.error
    rows = _table(destination_url, "items", ["id"])
    assert [sorted(row) for row in rows] == [["id", "payload"]] * 4
    payloads = [row["payload"] for row in rows]
    assert [None if p is None else json.loads(p) for p in payloads] == [
        {"a": {"b": [1, 2]}, "c": "x"},
        {"a": {"b": [1, 2]}, "c": "x"},
        None,
        None,
    ]


def test_deep_jsonl_line_is_quarantined_with_its_column(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A line of 100,000 opening brackets is quarantined (line and column), its neighbours load."""
    text = '{"id": 1}\n' + '{"id": [' + "[" * 100_000 + "\n" + '{"id": 3}\n'
    (tmp_path / "items.jsonl").write_text(text)
    result = _run(write_pipeline(_pipeline("items.jsonl")), destination_url)
    assert (result.counts.fetched, result.counts.inserted, result.counts.quarantined) == (3, 2, 1)
    [(position, _, message)] = _quarantined(destination_url)
    assert (position, message) == (
        "items.jsonl:2",
        "invalid JSON: arrays and objects nest deeper than 64 levels; "
        "if the data is meant to, raise the source's `max_depth:` (column 71)",
    )


# ---------------------------------------------------------------------------------------
# Memory, measured: `ladle run` in a child process.

_CAP = 3 << 30
"""A regression must fail the test, not the machine: the child may map at most 3 GB."""
_HEADROOM_MB = 100
"""Over what ladle takes on a plain file of the same size (about 120-200 MB, by machine): a
hostile file of 100-300 KB may add a little, never the gigabytes it once took."""


def _hostile(directory: Path) -> dict[str, str]:
    """The files that took gigabytes, each 100-300 KB."""
    nested = "[" * 125_000 + "]" * 125_000
    deep_unit = "[" * 500 + "]" * 500
    files = {
        "open.json": "[" * 100_000,
        "nested.json": nested,
        "objects.json": '{"a":' * 50_000 + "1" + "}" * 50_000,
        "many.json": "[" + ",".join([deep_unit] * 250) + "]",
        "open.jsonl": "[" * 100_000 + "\n",
        "nested.jsonl": '{"a":' + nested + "}\n",
        "many.jsonl": "".join('{"a":' + deep_unit + "}\n" for _ in range(250)),
        "sixteen.jsonl": "".join('{"a":' + "[" * 16 + "]" * 16 + "}\n" for _ in range(50_000)),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return files


def _peak_of_run(directory: Path, name: str) -> tuple[int, float, str]:
    """Run `ladle run` on one file: (exit code, peak RSS in MB, the last line it printed)."""
    (directory / f"{name}.yaml").write_text(
        f"pipeline: hostile\ndestination: duckdb:///{name}.duckdb\n"
        f"resources:\n  items:\n    source: {{type: file, path: {name}}}\n"
    )
    code = (
        "import resource, subprocess, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({_CAP}, {_CAP}))\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(done.returncode, peak, (done.stdout.strip().splitlines() or [''])[-1])\n"
    )
    ladle = str(Path(sys.executable).with_name("ladle"))
    out = subprocess.run(
        [sys.executable, "-c", code, ladle, "run", f"{name}.yaml"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    returncode, peak_kib, last = out.strip().split(" ", 2)
    return int(returncode), int(peak_kib) / 1024, last


def test_hostile_files_stay_in_bounded_memory_and_fail_fast(tmp_path: Path) -> None:
    """Files of 100,000 brackets and of deep nesting (which took 5 GB and more, or minutes) run
    in a child within 100 MB of what a plain file of the same size takes (and within the
    child's timeout): documents fail naming line and column, lines are quarantined."""
    files = _hostile(tmp_path)
    (tmp_path / "plain.jsonl").write_text("".join(f'{{"a": {i}}}\n' for i in range(25_000)))
    returncode, baseline_mb, last = _peak_of_run(tmp_path, "plain.jsonl")
    assert returncode == 0, last
    for name in files:
        returncode, peak_mb, last = _peak_of_run(tmp_path, name)
        assert peak_mb < baseline_mb + _HEADROOM_MB, (name, peak_mb, baseline_mb)
        if name.endswith(".json"):
            assert returncode == 1, (name, last)
            assert "nest deeper than 64 levels" in last, (name, last)
            assert f"items: {name}: invalid JSON at line 1, column " in last, (name, last)
        else:
            assert returncode == 0, (name, last)


def test_the_child_measures_its_own_memory() -> None:
    """The measurement is real: a child that allocates 300 MB reports at least that."""
    code = "x = bytearray(300 << 20); x[::4096] = b'x' * len(x[::4096])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    assert done.returncode == 0
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 >= 300


def _wide(directory: Path) -> dict[str, str]:
    """Files whose keys are data: a new key on every line, flat or nested, or one record
    holding 5,000 keys. Their frames would take memory in columns x rows."""
    files = {
        "keys.jsonl": "".join(json.dumps({"id": i, f"k{i}": i}) + "\n" for i in range(25_000)),
        "nested.jsonl": "".join(
            json.dumps({"id": i, "a": {f"k{i}": i}}) + "\n" for i in range(25_000)
        ),
        "one.json": json.dumps([{f"k{i}": i for i in range(5_000)}]),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return files


_WIDE = (
    "the records hold {} (nested ones counted) than the 1,600 columns a table may have; "
    "keys that are data (ids, dates) belong in values: declare such a field `type: json` "
    "to keep it whole"
)


def test_records_wider_than_a_table_fail_with_a_message(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Records whose keys are data (more distinct fields than a table's 1,600 columns) fail
    the resource with a message saying so, and load nothing."""
    _wide(tmp_path)
    expected = {
        "keys.jsonl": f"keys.jsonl:1: {_WIDE.format('more distinct fields')}",
        "nested.jsonl": f"nested.jsonl:1: {_WIDE.format('more distinct fields')}",
        "one.json": f"one.json: {_WIDE.format('more distinct fields')}",
    }
    for name, message in expected.items():
        result = _run(write_pipeline(_pipeline(name)), destination_url)
        assert (result.status, result.error) == ("failed", message), name
        assert result.counts.inserted == 0


def test_wide_records_stay_in_bounded_memory(tmp_path: Path) -> None:
    """A 700 KB file with a new key on every line took 1.1 GB (3.5 GB with the load) before
    it failed; now a `ladle run` child fails on each wide file under 500 MB peak RSS."""
    files = _wide(tmp_path)
    for name in files:
        returncode, peak_mb, last = _peak_of_run(tmp_path, name)
        assert returncode == 1, (name, last)
        assert last.endswith("to keep it whole"), (name, last)
        assert peak_mb < 500, (name, peak_mb)
