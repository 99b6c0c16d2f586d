"""Hostile records round-trip exactly through JSON Lines and CSV into both destinations.

Each example is a handful of records holding hostile strings (quotes, delimiters, CR/LF,
tabs, backslashes, astral-plane and combining characters, U+2028, edge spaces, empty
strings, NUL) and edge numbers (0, -0, ±2^53±1, ±2^63, 2^64, 1e308, 1e-320, decimals of
many digits), written as a file and loaded by one pipeline run. Every row read back must
equal its record; every record missing from the table must be in ``_ladle_quarantine``
with a reason; the ledger must balance. A record may be refused, never altered.

CSV columns are declared (``bigint``, ``decimal(38,10)``, ``double``, ``text``) and the
dialect is given, since random fields defeat sniffing. An empty CSV field is NULL (see
:mod:`ladle.sources.csv_reader`), so an empty string is expected back as NULL there.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ladle import Pipeline, RunOptions
from tests.conformance.expected import as_number
from tests.conformance.harness import quarantine_by_resource, read_tables

HOSTILE = [
    '"', "'", '""', ",", ";", "\t", "|", "\r", "\n", "\r\n", "\\", "\\n", "\\u0000",
    "\u2028", "\u2029", "\U0001f600", "\U00010348", "e\u0301", "\u0301", "\ufeff",
    " lead", "trail ", " ", "", "\x00", "NULL", "null", "\\N", "0012", "1e5", "true",
    "=1+1", "{}", "[1]", "caf\u00e9", "\u00c5ngstr\u00f6m", "\u0130",
]  # fmt: skip

EDGE_NUMBERS = [
    "0", "-0", "0.0", "-0.0", "1", "-1",
    str(2**53 - 1), str(2**53 + 1), str(-(2**53) - 1), str(-(2**53) + 1),
    str(2**63 - 1), str(2**63), str(-(2**63)), str(-(2**63) - 1), str(2**64),
    "1e308", "-1e308", "1.7976931348623157e308", "1e-320", "5e-324", "2.2250738585072014e-308",
    "0.1", "0.30000000000000004", "1.000000000000000005", "3.1415926535",
    "3.14159265358979323846264338327950288419716939937510",
    "123456789012345678901234567890.123456789", "1E+2", "1.5e-7", "-9.999999999e9",
]  # fmt: skip

strings = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=5).map("".join),
    st.text(max_size=12),
)
"""Hostile fragments, alone or run together, and arbitrary text (no lone surrogates)."""

numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=10).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
"""Numbers as the text a file holds: edge values, decimals, doubles' shortest spellings."""

integers = st.one_of(
    st.sampled_from([n for n in EDGE_NUMBERS if n.lstrip("-").isdigit()]),
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
)
"""Integers as text, some beyond 64 bits."""

doubles = st.floats(allow_nan=False, allow_infinity=False).map(repr)


@dataclass(frozen=True)
class Record:
    """One record; numbers are kept as the text written to the file."""

    id: int
    s: str | None
    n: str | None
    d: str | None
    i: str | None
    b: bool | None


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    """A few records, ids 1..N."""
    size = draw(st.integers(min_value=1, max_value=6))
    return [
        Record(
            index,
            draw(st.none() | strings),
            draw(st.none() | numbers),
            draw(st.none() | doubles),
            draw(st.none() | integers),
            draw(st.none() | st.booleans()),
        )
        for index in range(1, size + 1)
    ]


PROPERTY = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    # One pipeline run per example: shrinking a failure would cost hundreds of runs, so the
    # first failing example is reported as found.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


# ---------------------------------------------------------------- the destination


@dataclass
class Target:
    """A destination reused by every example of a test, each example in a table of its own."""

    url: str
    base: Path
    names: Iterator[int]

    def load(self, text: str, suffix: str, extra: dict[str, Any]) -> tuple[Any, str]:
        """Write ``text`` as a file, load it in one run; (result, resource name)."""
        name = f"ex{next(self.names)}"
        (self.base / f"{name}.{suffix}").write_bytes(text.encode("utf-8"))
        source = {"type": "file", "path": f"{name}.{suffix}", **extra.pop("source", {})}
        resource = {"source": source, "write": "append", **extra}
        config = {"pipeline": "roundtrip", "resources": {name: resource}}
        summary = Pipeline.from_dict(config, base_dir=self.base).run(
            RunOptions(destination=self.url)
        )
        return summary.resources[0], name


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Target:
    """Each destination in turn, with a schema (or file) kept for the whole module."""
    base = tmp_path_factory.mktemp(f"roundtrip-{request.param}")
    if request.param == "duckdb":
        url = f"duckdb:///{base / 'roundtrip.duckdb'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    return Target(url, base, itertools.count())


# ---------------------------------------------------------------- checking one load


def _check(target: Target, result: Any, name: str, expected: dict[int, dict[str, Any]]) -> None:
    """Rows equal their records; the missing are quarantined with reasons; the ledger balances."""
    assert result.status == "succeeded", result.error
    counts = result.counts
    rows = read_tables(target.url, [name])[name]
    quarantined = quarantine_by_resource(target.url).get(name, [])
    assert counts.balanced, counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (
        len(expected),
        len(rows),
        len(quarantined),
    )
    for row in quarantined:
        assert row["errors"], row
        assert all(error["message"] for error in row["errors"]), row
    seen = set()
    for row in rows:
        key = int(row["id"])
        seen.add(key)
        record = expected[key]
        for column, want in record.items():
            got = row.get(column)
            assert _same(got, want), f"record {key}, {column}: loaded {got!r}, wrote {want!r}"
    assert len(seen) == len(rows)
    assert len(expected) - len(seen) == len(quarantined)


def _same(got: Any, want: Any) -> bool:
    if want is None or isinstance(want, bool):
        return got is want
    if isinstance(want, _Exact):
        number = as_number(got)
        return number is not None and number == Decimal(want.text)
    if isinstance(want, _Double):
        return isinstance(got, float) and repr(got) == repr(float(want.text))
    return isinstance(got, str) and got == want


@dataclass(frozen=True)
class _Exact:
    """A number to be loaded exactly (DECIMAL, integer, text, or a double spelling it)."""

    text: str


def _to_scale(text: str, scale: int) -> str:
    """The number as a ``decimal(p, scale)`` holds it: rounded half away from zero."""
    with localcontext(prec=1000):  # room for 1e308 at scale 10
        return str(Decimal(text).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class _Double:
    """A number written by repr() of a double into a ``double`` column: the same double."""

    text: str


# ---------------------------------------------------------------- JSON Lines


def _jsonl_line(record: Record) -> str:
    fields = [f'"id": {record.id}']
    if record.s is not None:
        fields.append(f'"s": {json.dumps(record.s, ensure_ascii=False)}')
    numbers = (("n", record.n), ("d", record.d), ("i", record.i))
    fields += [f'"{k}": {v}' for k, v in numbers if v is not None]
    if record.b is not None:
        fields.append(f'"b": {json.dumps(record.b)}')
    return "{" + ", ".join(fields) + "}\n"


@given(records=batches())
@PROPERTY
def test_jsonl_round_trip(target: Target, records: list[Record]) -> None:
    """JSON Lines records come back exactly (numbers to the digit) or are quarantined."""
    text = "".join(_jsonl_line(r) for r in records)
    result, name = target.load(text, "jsonl", {})
    expected = {
        r.id: {
            "s": r.s,
            "n": None if r.n is None else _Exact(r.n),
            "d": None if r.d is None else _Exact(r.d),
            "i": None if r.i is None else _Exact(r.i),
            "b": r.b,
        }
        for r in records
    }
    _check(target, result, name, expected)


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = {"id": "bigint", "s": "text", "n": "decimal(38,10)", "d": "double", "i": "bigint"}


def _csv_text(records: list[Record]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r.id, r.s or "", r.n or "", r.d or "", r.i or ""])
    return out.getvalue()


@given(records=batches())
@PROPERTY
def test_csv_round_trip(target: Target, records: list[Record]) -> None:
    """CSV records with declared types come back exactly or are quarantined, never rounded.

    A number a declared ``bigint`` cannot hold exactly is refused; one with more than 10
    decimals is rounded to ``decimal(38,10)``'s scale half away from zero, as PostgreSQL's
    numeric rounds (the documented rule), and one with more than 28 digits before the point
    is refused.
    """
    options = {
        "source": {"format": "csv", "delimiter": ",", "quotechar": '"'},
        "columns": CSV_COLUMNS,
    }
    result, name = target.load(_csv_text(records), "csv", options)
    expected = {
        r.id: {
            "s": r.s or None,  # an empty field is NULL
            "n": None if r.n is None else _Exact(_to_scale(r.n, 10)),
            "d": None if r.d is None else _Double(r.d),
            "i": None if r.i is None else _Exact(r.i),
        }
        for r in records
    }
    _check(target, result, name, expected)
