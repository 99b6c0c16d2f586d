"""Declared numbers end to end: loaded exactly on both destinations, or quarantined with why."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE

PIPELINE = """\
pipeline: exact
resources:
  items:
    source: {{type: file, path: {path}}}
    primary_key: [id]
    write: merge
    columns:
      id: {{type: bigint}}
      big: {{type: bigint}}
      small: {{type: int}}
      amount: {{type: "decimal(12,2)"}}
      precise: {{type: "decimal(38,10)"}}
      ratio: {{type: double}}
"""

COLUMNS = ("id", "big", "small", "amount", "precise", "ratio")
RECORDS = [
    ("1", "9007199254740993.0", "12.000", "1.005", "12345678901234567890.1234567890", "0.1"),
    ("2", "1.2e3", "+7", "-1.005", "1", "-inf"),
    ("3", " 12 ", "2147483647", "1.004", "", "NaN"),
    ("4", "1.5", "1", "1", "1", "1"),
    ("5", "-9223372036854775809", "1", "1", "1", "1"),
    ("6", "1", "2147483648", "1", "1", "1"),
    ("7", "1", "1", "1", "1", "1e309"),
    ("8", "1", "1", "1", "1", "1e-400"),
    ("9", "1", "1", "123456789012.5", "1", "1"),
    ("10", "abc", "1", "1", "1", "1"),
    ("11", "2.5", "1", "99999999999", "1", "1"),
]
"""Numbers as a file holds them: as text. Records 1-3 load; 4-11 are refused."""

LOADED = [
    (1, 9007199254740993, 12, Decimal("1.01"), Decimal("12345678901234567890.1234567890"), 0.1),
    (2, 1200, 7, Decimal("-1.01"), Decimal("1.0000000000"), -math.inf),
    (3, 12, 2147483647, Decimal("1.00"), None, math.nan),
]

AT_MOST_10 = "(at most 10 digits before the point)"
REFUSED = {
    4: [("big", "range", "1.5", "'1.5' is not a whole number (bigint)")],
    5: [
        (
            "big",
            "range",
            "-9223372036854775809",
            "'-9223372036854775809' is out of range for bigint",
        )
    ],
    6: [("small", "range", "2147483648", "'2147483648' is out of range for int")],
    7: [("ratio", "range", "1e309", "'1e309' is out of range for double")],
    8: [("ratio", "range", "1e-400", "'1e-400' is too close to zero for double (it would be 0)")],
    9: [
        (
            "amount",
            "range",
            "123456789012.5",
            f"'123456789012.5' does not fit decimal(12,2) {AT_MOST_10}",
        )
    ],
    10: [("big", "type", "abc", "cannot parse 'abc' as bigint")],
    11: [
        ("big", "range", "2.5", "'2.5' is not a whole number (bigint)"),
        (
            "amount",
            "range",
            "99999999999",
            f"'99999999999' does not fit decimal(12,2) {AT_MOST_10}",
        ),
    ],
}
"""Per refused record (by id): each error's field, rule, value as written and message."""


def _write_csv(directory: Path) -> str:
    lines = [",".join(COLUMNS)] + [",".join(f'"{v}"' for v in record) for record in RECORDS]
    (directory / "items.csv").write_text("\n".join(lines) + "\n")
    return "items.csv"


def _write_jsonl(directory: Path) -> str:
    lines = [json.dumps(dict(zip(COLUMNS, record, strict=True))) for record in RECORDS]
    (directory / "items.jsonl").write_text("\n".join(lines) + "\n")
    return "items.jsonl"


def _same(loaded: tuple[Any, ...], expected: tuple[Any, ...]) -> bool:
    """Equal, with NaN equal to NaN (the databases store it and give it back)."""
    return len(loaded) == len(expected) and all(
        (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        or (a == b and type(a) is type(b))
        for a, b in zip(loaded, expected, strict=True)
    )


@pytest.mark.parametrize("write", [_write_csv, _write_jsonl], ids=["csv", "jsonl"])
def test_numbers_load_exactly_or_are_quarantined_with_why(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    write: Callable[[Path], str],
) -> None:
    """Exact values reach the table on both destinations; each refused value is quarantined."""
    name = write(tmp_path)
    pipeline = write_pipeline(PIPELINE.format(path=name))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "succeeded"

    dest = connect(destination_url)
    rows = dest.read("items", {}, order_by=["id"]).select(COLUMNS).rows()
    quarantined = dest.read(QUARANTINE.name, {}).to_dicts()
    (ledger,) = dest.read(RUNS.name, {"resource": "items"}).to_dicts()
    dest.close()

    assert len(rows) == len(LOADED)
    for loaded, expected in zip(rows, LOADED, strict=True):
        assert _same(loaded, expected), (loaded, expected)

    first_line = 2 if name.endswith(".csv") else 1  # the CSV header is line 1
    errors = {q["position"]: json.loads(q["errors"]) for q in quarantined}
    assert errors == {
        f"{name}:{record_id - 1 + first_line}": [
            {"field": field, "rule": rule, "value": value, "message": message}
            for field, rule, value, message in refusals
        ]
        for record_id, refusals in REFUSED.items()
    }

    counts = (ledger["fetched"], ledger["inserted"], ledger["quarantined"])
    assert counts == (len(RECORDS), len(LOADED), len(REFUSED))
    assert ledger["fetched"] == (
        ledger["inserted"]
        + ledger["updated"]
        + ledger["unchanged"]
        + ledger["deduplicated"]
        + ledger["quarantined"]
    )
    assert result.counts.balanced


def test_json_numbers_that_do_not_fit_a_decimal_are_quarantined_not_raised(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A JSON number too wide for its decimal is one quarantined record; the run succeeds."""
    lines = [
        '{"id": 1, "big": 12, "amount": 1.005, "ratio": 0.1}',
        '{"id": 2, "big": 7, "amount": 123456789012.500, "ratio": 2}',
        '{"id": 3, "big": 12.0, "amount": -1.005, "ratio": 0.5}',
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    pipeline = write_pipeline(PIPELINE.format(path="items.jsonl"))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "succeeded"

    dest = connect(destination_url)
    rows = dest.read("items", {}, order_by=["id"]).select("id", "big", "amount", "ratio").rows()
    (quarantined,) = dest.read(QUARANTINE.name, {}).to_dicts()
    dest.close()

    assert rows == [(1, 12, Decimal("1.01"), 0.1), (3, 12, Decimal("-1.01"), 0.5)]
    assert quarantined["position"] == "items.jsonl:2"
    (error,) = json.loads(quarantined["errors"])
    # The value is as the JSON reader holds it (a float or an exact decimal); the message
    # quotes that same value.
    assert Decimal(error["value"]) == Decimal("123456789012.5")
    assert error == {
        "field": "amount",
        "rule": "range",
        "value": error["value"],
        "message": f"'{error['value']}' does not fit decimal(12,2) {AT_MOST_10}",
    }
    counts = result.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (3, 2, 1)
    assert counts.balanced
