"""A quarantined record lists every error at once, and the quarantine reads in file order.

A record with a bad date and a missing required field used to show only the date: cast
took it out and validate never saw it. Now validate's rules run on the records cast
refused too, on the values that did cast, with a refused value counted as present.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ladle import Pipeline
from ladle.cli import main
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE, position_key

SITES = """\
pipeline: sites
destination: {url}
resources:
  sites:
    source: {{type: file, path: sites.jsonl}}
    columns:
      id: {{type: bigint, required: true}}
      name: {{type: text, required: true}}
      opened: {{type: date}}
      amount: {{type: double, required: true, min: 0}}
    steps:
      - validate:
          - {{expr: "opened >= DATE '2020-01-01'", name: recent, field: opened}}
          - {{expr: "amount < 100", name: small, field: amount}}
"""

RECORDS = [
    {"id": 1, "name": "ok", "opened": "2024-01-05", "amount": "12.5"},
    {"id": 2, "name": "", "opened": "2024-02-31", "amount": "3"},
    {"id": 3, "name": "c", "opened": "2024-03-01", "amount": "abc"},
    {"id": 4, "name": "d", "opened": "soon", "amount": "500"},
    {"id": "x", "name": None, "opened": "2019-01-01", "amount": "-1"},
]


def _error(field: str, rule: str, value: str | None, message: str) -> dict[str, Any]:
    return {"field": field, "rule": rule, "value": value, "message": message}


def test_a_record_lists_its_type_and_rule_errors_together(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A bad date and a blank required name are both listed; a value cast refused is not also
    'required'; a check that reads a refused value is not run; the ledger balances."""
    (tmp_path / "sites.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    path = write_pipeline(SITES.format(url=destination_url))
    result = Pipeline.from_yaml(path).run().resources[0]
    assert result.status == "succeeded"
    assert result.counts.balanced
    assert (result.counts.fetched, result.counts.inserted, result.counts.quarantined) == (5, 1, 4)
    dest = connect(destination_url)
    try:
        rows = dest.read(QUARANTINE.name, {}).to_dicts()
        ledger = dest.read(RUNS.name, {}).to_dicts()
    finally:
        dest.close()
    assert (ledger[0]["fetched"], ledger[0]["inserted"], ledger[0]["quarantined"]) == (5, 1, 4)
    errors = {row["position"]: json.loads(row["errors"]) for row in rows}
    assert errors == {
        "sites.jsonl:2": [
            _error("opened", "type", "2024-02-31", "cannot parse '2024-02-31' as date"),
            _error("name", "required", "", "value is required"),
        ],
        "sites.jsonl:3": [_error("amount", "type", "abc", "cannot parse 'abc' as double")],
        "sites.jsonl:4": [
            _error("opened", "type", "soon", "cannot parse 'soon' as date"),
            _error("amount", "small", "500.0", "check failed: amount < 100"),
        ],
        "sites.jsonl:5": [
            _error("id", "type", "x", "cannot parse 'x' as bigint"),
            _error("name", "required", None, "value is required"),
            _error("amount", "min", "-1.0", "-1.0 is less than min 0"),
            _error("opened", "recent", "2019-01-01", "check failed: opened >= DATE '2020-01-01'"),
        ],
    }


ORDER = """\
pipeline: order
destination: {url}
resources:
  items:
    source: {{type: file, path: items.json}}
    columns: {{n: bigint}}
  lines:
    source: {{type: file, path: "lines/*.jsonl"}}
    columns: {{n: bigint}}
  spans:
    source: {{type: file, path: spans.csv}}
    columns: {{n: bigint}}
"""


def _order_inputs(tmp_path: Path) -> None:
    """Bad records at ``items.json#[2]``/``#[10]``, ``lines/c2.jsonl:2``/``:12514``,
    ``lines/c10.jsonl:3`` and ``spans.csv:3-5``/``:12``: text order gets each pair wrong."""
    items = [{"n": "bad" if i in (2, 10) else i} for i in range(12)]
    (tmp_path / "items.json").write_text(json.dumps(items))
    (tmp_path / "lines").mkdir()
    lines = [{"n": "bad" if i in (2, 12514) else i} for i in range(1, 12515)]
    (tmp_path / "lines" / "c2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "lines" / "c10.jsonl").write_text('{"n": 1}\n{"n": 2}\n{"n": "bad"}\n')
    csv = ["n,note", "1,a", 'bad,"one', "two", 'three"', *(f"{i},x" for i in range(6, 12))]
    (tmp_path / "spans.csv").write_text("\n".join([*csv, "bad,z", "13,y"]) + "\n")


ORDERED = [
    ("items", "items.json#[2]"),
    ("items", "items.json#[10]"),
    ("lines", "lines/c2.jsonl:2"),
    ("lines", "lines/c2.jsonl:12514"),
    ("lines", "lines/c10.jsonl:3"),
    ("spans", "spans.csv:3-5"),
    ("spans", "spans.csv:12"),
]


def test_quarantine_show_and_list_read_positions_in_numeric_order(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """`quarantine show` sorts by resource, file, then line, span or index as numbers (text
    would put `:12514` before `:2`); `list` shows the first of that order; both have --json."""
    _order_inputs(tmp_path)
    path = write_pipeline(ORDER.format(url=destination_url))
    summary = Pipeline.from_yaml(path).run()
    assert [r.status for r in summary.resources] == ["succeeded"] * 3
    assert all(r.counts.balanced for r in summary.resources)
    quarantined = [(r.resource, r.counts.quarantined) for r in summary.resources]
    assert quarantined == [("items", 2), ("lines", 3), ("spans", 2)]
    runner = CliRunner()

    shown = runner.invoke(main, ["quarantine", "show", summary.run_id, str(path)])
    assert shown.exit_code == 0, shown.output
    heads = [line for line in shown.stdout.splitlines() if not line.startswith(" ")]
    assert heads == [f"{resource} {position}" for resource, position in ORDERED]

    as_json = runner.invoke(main, ["quarantine", "show", summary.run_id, str(path), "--json"])
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["resource"], r["position"]) for r in records] == ORDERED
    assert records[0] == {
        "run_id": summary.run_id,
        "resource": "items",
        "position": "items.json#[2]",
        "errors": [_error("n", "type", "bad", "cannot parse 'bad' as bigint")],
        "raw": {"n": "bad"},
    }

    first = runner.invoke(main, ["quarantine", "show", summary.run_id, str(path), "--limit", "3"])
    assert first.stdout.splitlines()[-1] == "showing 3 of 7 records; --limit N shows more"

    listed = runner.invoke(main, ["quarantine", "list", str(path), "--json"])
    groups = [json.loads(line) for line in listed.stdout.splitlines()]
    firsts = [
        ("items", 2, "items.json#[2]"),
        ("lines", 3, "lines/c2.jsonl:2"),
        ("spans", 2, "spans.csv:3-5"),
    ]
    assert sorted(
        ({k: v for k, v in g.items() if k != "reasons"} for g in groups),
        key=lambda g: g["resource"],
    ) == [
        {"run_id": summary.run_id, "resource": name, "records": n, "first_position": first}
        for name, n, first in firsts
    ]
    # Each group counts its errors by field and rule (grouped in the database).
    assert all(sum(g["reasons"].values()) >= g["records"] for g in groups)


def test_position_key_reads_numbers_as_numbers() -> None:
    """Lines, spans, indexes, row numbers and numbered file names sort numerically."""
    positions = [
        "f.csv:100",
        "f.csv:12-80",
        "f.csv:9",
        "c10.jsonl:1",
        "c2.jsonl:1",
        "x.json#[10]",
        "x.json#[9]",
        "t#row=11",
        "t#row=2",
        "f.csv:07",
        "f.csv:7",
    ]
    assert sorted(positions, key=position_key) == [
        "c2.jsonl:1",
        "c10.jsonl:1",
        "f.csv:07",
        "f.csv:7",
        "f.csv:9",
        "f.csv:12-80",
        "f.csv:100",
        "t#row=2",
        "t#row=11",
        "x.json#[9]",
        "x.json#[10]",
    ]
