"""Numbers in JSON and JSON Lines are read from their text, exactly, on every road."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.batch import SourceBatch
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource
from ladle.sources.flatten import records_to_frame, to_json_text
from ladle.sources.json_reader import read_jsonl


def _read(base: Path, name: str, content: bytes, **options: Any) -> list[SourceBatch]:
    (base / name).write_bytes(content)
    context = SourceContext("things", options.pop("batch_size", 10_000), base)
    source = FileSource(FileOptions(type="file", path=name, **options), context)
    return list(source.batches())


def _jsonl(base: Path, values: list[str], *, slow: bool = False) -> pl.Series:
    """Column ``v`` of a JSONL file holding ``values``; ``slow`` adds a bad line."""
    lines = [f'{{"v": {value}}}' for value in values] + (["{oops"] if slow else [])
    (batch,) = _read(base, "t.jsonl", "\n".join(lines).encode() + b"\n")
    assert len(batch.unreadable) == int(slow)
    return batch.frame.get_column("v")


def _document(base: Path, values: list[str]) -> pl.Series:
    """Column ``v`` of a JSON document holding ``values``."""
    text = "[" + ",".join(f'{{"v": {value}}}' for value in values) + "]"
    (batch,) = _read(base, "t.json", text.encode())
    return batch.frame.get_column("v")


ROADS = {
    "jsonl": _jsonl,
    "jsonl per line": lambda base, values: _jsonl(base, values, slow=True),
    "json document": _document,
}

CASES = [
    (["1", "-2"], pl.Int64, ["1", "-2"]),
    ([str(2**64), "1"], pl.Decimal(38, 0), [str(2**64), "1"]),
    ([str(10**39), "1"], pl.String, [str(10**39), "1"]),
    (["1", "1.5", "0.1", "2.5e-3"], pl.Float64, ["1.0", "1.5", "0.1", "0.0025"]),
    ([str(2**64), "1.5"], pl.Decimal(38, 1), [str(2**64), "1.5"]),
    ([str(10**17), "1.5"], pl.Float64, ["1e+17", "1.5"]),
    ([str(2**62 + 1), "1.5"], pl.Decimal(38, 1), [f"{2**62 + 1}.0", "1.5"]),
    (["9007199254740993.0"], pl.Decimal(38, 1), ["9007199254740993.0"]),
    (["0.10000000000000001", "2"], pl.Decimal(38, 17), ["0.10000000000000001", "2"]),
    (["1.2345e-320"], pl.String, ["1.2345E-320"]),
    (["1e400", "2"], pl.String, ["1E+400", "2"]),
]


@pytest.mark.parametrize("road", sorted(ROADS))
@pytest.mark.parametrize(("values", "dtype", "expected"), CASES)
def test_each_road_types_numbers_by_the_same_rule(
    tmp_path: Path, road: str, values: list[str], dtype: pl.DataType, expected: list[str]
) -> None:
    """Int64, Decimal(38,0), Float64 only if exact, Decimal(38,s), else exact text."""
    series = ROADS[road](tmp_path, values)
    assert series.dtype == dtype
    texts = series.cast(pl.String).to_list()
    if isinstance(dtype, pl.Decimal):
        assert [Decimal(t) for t in texts] == [Decimal(e) for e in expected]
    else:
        assert texts == expected


def test_one_float_among_big_ids_keeps_every_id(tmp_path: Path) -> None:
    """10,000 ids near 2**62 and one 1.5: a Decimal(38,1) column of 10,000 distinct values."""
    lines = [json.dumps({"id": 2**62 + i}) for i in range(9_999)]
    lines.insert(1234, '{"id": 1.5}')
    (batch,) = _read(tmp_path, "ids.jsonl", "\n".join(lines).encode())
    ids = batch.frame.get_column("id")
    assert ids.dtype == pl.Decimal(38, 1)
    assert ids.n_unique() == 10_000
    assert ids[0] == Decimal(2**62)
    assert ids[-1] == Decimal(2**62 + 9_998)


def test_big_integers_beside_floats_in_another_column_stay_fast_and_exact(tmp_path: Path) -> None:
    """Long ids in an integer column do not disturb a float column next to them."""
    lines = [json.dumps({"id": 2**62 + i, "price": i + 0.25}) for i in range(100)]
    (batch,) = _read(tmp_path, "t.jsonl", "\n".join(lines).encode())
    assert batch.frame.schema == {"id": pl.Int64, "price": pl.Float64}
    assert batch.frame.get_column("id").to_list()[-1] == 2**62 + 99


def test_numbers_in_lists_keep_every_digit(tmp_path: Path) -> None:
    """A list holding a number a double cannot hold keeps it digit for digit in its JSON."""
    series = _jsonl(tmp_path, ["[1.5, 9007199254740993.5]", "[0.5]"])
    assert series.to_list() == ["[1.5,9007199254740993.5]", "[0.5]"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(tmp_path: Path, constant: str) -> None:
    """A line holding NaN or Infinity is unreadable, with the reason; the others load."""
    content = f'{{"v": 1}}\n{{"v": {constant}}}\n{{"v": 2}}\n'.encode()
    (batch,) = _read(tmp_path, "t.jsonl", content)
    assert batch.frame.get_column("v").to_list() == [1, 2]
    (bad,) = batch.unreadable
    assert (bad.position, bad.message) == (
        "t.jsonl:2",
        f"invalid JSON: {constant} is not a JSON value (JSON numbers are finite) (column 7)",
    )


def test_exact_numbers_have_compact_json_text() -> None:
    """Nested values holding Decimals are JSON text with every digit kept."""
    value = {"a": [Decimal("0.10000000000000001"), 1, None], "b": "é"}
    assert to_json_text(value) == '{"a":[0.10000000000000001,1,null],"b":"é"}'


_NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.integers(0, 20)
    .flatmap(lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places))
    .map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(deadline=None, max_examples=60)
@given(st.lists(_NUMBER_TEXT, min_size=1, max_size=6))
def test_every_number_comes_back_with_its_value(values: list[str]) -> None:
    """Whatever the column's type, each value read equals the number written."""
    lines = "".join(f'{{"v": {value}}}\n' for value in values).encode()
    batches = list(
        read_jsonl(io.BytesIO(lines), "t", batch_size=100, encoding="utf-8", consumed=int)
    )
    series = batches[0].frame.get_column("v")
    written = [Decimal(value) for value in values]
    if series.dtype == pl.Float64:
        assert [Decimal(repr(v)) for v in series.to_list()] == written
    else:
        assert [Decimal(str(v)) for v in series.to_list()] == written
    reread = records_to_frame([json.loads(f'{{"v": {v}}}', parse_float=Decimal) for v in values])
    assert reread.get_column("v").dtype == series.dtype
