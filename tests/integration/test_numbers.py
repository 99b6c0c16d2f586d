"""Numbers end to end: read exactly, typed to hold every value, widened across batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import polars as pl
import psycopg
import pytest

from ladle import Pipeline, RunOptions
from ladle.batch import SEQ, Counts
from ladle.config import WriteMode
from ladle.destinations import LoadCounts, LoadTarget, connect

PIPELINE = """\
pipeline: numbers
resources:
  items:
    source: {{type: file, path: {path}}}
    write: {write}
    primary_key: [k]
    batch_size: {batch_size}
"""


def _run(
    tmp_path: Path,
    write_pipeline: Callable[[str], Path],
    url: str,
    records: list[str],
    *,
    write: str = "append",
    batch_size: int = 10_000,
    name: str = "items.jsonl",
) -> Counts:
    (tmp_path / name).write_text("".join(line + "\n" for line in records))
    text = PIPELINE.format(path=name, write=write, batch_size=batch_size)
    summary = Pipeline.from_yaml(write_pipeline(text)).run(RunOptions(destination=url))
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    assert result.counts.balanced
    return result.counts


def _query(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of a query on either destination (``{t}`` is the items table)."""
    if url.startswith("duckdb"):
        with duckdb.connect(urlsplit(url).path) as con:
            return con.execute(query.format(t="items")).fetchall()
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(url.split("?", maxsplit=1)[0]) as conn:
        return conn.execute(query.format(t=f'"{schema}".items')).fetchall()


def _texts(url: str, column: str) -> list[str]:
    """The column's values as the database spells them, in key order."""
    rows = _query(url, f"SELECT CAST({column} AS VARCHAR) FROM {{t}} ORDER BY k")
    return [row[0] for row in rows]


def _pg_schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


@pytest.fixture
def typed(destination_url: str) -> Callable[[str], str]:
    """The type of a column of ``items`` on this test's destination."""

    def kind(column: str) -> str:
        if destination_url.startswith("duckdb"):
            rows = _query(destination_url, f"SELECT typeof({column}) FROM {{t}} LIMIT 1")
            return str(rows[0][0]).lower().replace(" ", "")
        schema = _pg_schema(destination_url)
        rows = _query(
            destination_url,
            "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = 'items' "
            f"AND column_name = '{column}'",
        )
        data_type, precision, scale = rows[0]
        if data_type == "numeric":
            return f"decimal({precision},{scale})"
        return {"bigint": "bigint", "double precision": "double", "text": "varchar"}[data_type]

    return kind


def test_one_float_among_big_ids_does_not_round_them(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """10,000 ids near 2**62 with one 1.5 among them merge as 10,000 distinct exact keys."""
    records = [json.dumps({"k": 2**62 + i, "v": i}) for i in range(9_999)]
    records.insert(5_000, json.dumps({"k": 1.5, "v": -1}))
    counts = _run(tmp_path, write_pipeline, destination_url, records, write="merge")
    assert (counts.fetched, counts.inserted, counts.deduplicated) == (10_000, 10_000, 0)
    assert typed("k") == "decimal(38,1)"
    texts = _texts(destination_url, "k")
    assert texts[:3] == ["1.5", "4611686018427387904.0", "4611686018427387905.0"]
    assert texts[-1] == f"{2**62 + 9_998}.0"


def test_numbers_in_a_text_column_keep_their_spelling(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """A column of strings and numbers is text, and each number is its own text: not
    respelled as a double prints it (1.10 stays 1.10, a long number keeps every digit)."""
    records = [
        '{"k": 1, "v": "x", "n": {"w": "y"}}',
        '{"k": 2, "v": 12345678901234567890.5, "n": {"w": 2.50}}',
        '{"k": 3, "v": 1.10, "n": {"w": -0.0}}',
        '{"k": 4, "v": 123, "n": {"w": 7}}',
    ]
    counts = _run(tmp_path, write_pipeline, destination_url, records)
    assert (counts.fetched, counts.inserted, counts.quarantined) == (4, 4, 0)
    assert (typed("v"), typed("n__w")) == ("varchar", "varchar")
    assert _texts(destination_url, "v") == ["x", "12345678901234567890.5", "1.10", "123"]
    assert _texts(destination_url, "n__w") == ["y", "2.50", "-0.0", "7"]


def test_integers_beyond_bigint_load_as_decimal_or_text(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """2**64 loads as decimal(38,0); an integer of 40 digits loads as its exact text."""
    records = [
        f'{{"k": 1, "big": {2**64}, "huge": {10**39 + 7}}}',
        f'{{"k": 2, "big": -{2**70}, "huge": 3}}',
    ]
    counts = _run(tmp_path, write_pipeline, destination_url, records)
    assert (counts.fetched, counts.inserted) == (2, 2)
    assert (typed("big"), typed("huge")) == ("decimal(38,0)", "varchar")
    assert _texts(destination_url, "big") == [str(2**64), str(-(2**70))]
    assert _texts(destination_url, "huge") == [str(10**39 + 7), "3"]


@pytest.mark.parametrize("write", ["append", "merge"])
def test_column_widens_across_batches_and_keeps_earlier_values(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
    write: str,
) -> None:
    """Batches of one record holding 1, 1.5 and 2**64 end in decimal(38,1), every value exact."""
    records = [
        f'{{"k": 1, "v": {2**62 + 1}}}',
        '{"k": 2, "v": 1.5}',
        f'{{"k": 3, "v": {2**64}}}',
        '{"k": 4, "v": 1}',
    ]
    counts = _run(tmp_path, write_pipeline, destination_url, records, write=write, batch_size=1)
    assert (counts.fetched, counts.inserted) == (4, 4)
    assert typed("v") == "decimal(38,1)"
    assert _texts(destination_url, "v") == [f"{2**62 + 1}.0", "1.5", f"{2**64}.0", "1.0"]


def test_double_column_takes_exact_integers_and_widens_to_text_for_others(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """A double column takes 2 as it is; 2**62 + 1 turns it into text, earlier values kept.

    The doubles already stored are spelled by the database (PostgreSQL writes ``2``,
    DuckDB ``2.0``): the same values.
    """
    records = ['{"k": 1, "v": 0.1}', '{"k": 2, "v": 2}', f'{{"k": 3, "v": {2**62 + 1}}}']
    counts = _run(tmp_path, write_pipeline, destination_url, records, write="merge", batch_size=1)
    assert (counts.fetched, counts.inserted) == (3, 3)
    assert typed("v") == "varchar"
    texts = _texts(destination_url, "v")
    assert [float(text) for text in texts[:2]] == [0.1, 2.0]
    assert texts[2] == str(2**62 + 1)


def test_exact_fractions_stay_double_and_others_become_decimal(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """0.1 and 2.5e-3 load as doubles; 9007199254740993.0 makes its column decimal(38,1)."""
    records = [
        '{"k": 1, "d": 0.1, "x": 9007199254740993.0}',
        '{"k": 2, "d": 2.5e-3, "x": 0.5}',
    ]
    counts = _run(tmp_path, write_pipeline, destination_url, records)
    assert (counts.fetched, counts.inserted) == (2, 2)
    assert (typed("d"), typed("x")) == ("double", "decimal(38,1)")
    assert _texts(destination_url, "d") == ["0.1", "0.0025"]
    assert _texts(destination_url, "x") == ["9007199254740993.0", "0.5"]


def test_nan_is_quarantined_not_loaded(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A line holding NaN is not JSON: it is quarantined, its neighbours load."""
    records = ['{"k": 1, "v": 1.5}', '{"k": 2, "v": NaN}', '{"k": 3, "v": 2.5}']
    counts = _run(tmp_path, write_pipeline, destination_url, records)
    assert (counts.fetched, counts.inserted, counts.quarantined) == (3, 2, 1)
    assert _texts(destination_url, "v") == ["1.5", "2.5"]


def test_decimal_column_widens_its_scale(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """bigint, then 1.5, then 0.25: decimal(38,1) then decimal(38,2), earlier values exact."""
    records = [f'{{"k": 1, "v": {2**62 + 1}}}', '{"k": 2, "v": 1.5}', '{"k": 3, "v": 0.25}']
    counts = _run(tmp_path, write_pipeline, destination_url, records, write="merge", batch_size=1)
    assert (counts.fetched, counts.inserted) == (3, 3)
    assert typed("v") == "decimal(38,2)"
    assert _texts(destination_url, "v") == [f"{2**62 + 1}.00", "1.50", "0.25"]


def test_declared_column_does_not_widen(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """A declared bigint stays bigint: a value beyond it is quarantined, not widened for."""
    (tmp_path / "items.jsonl").write_text(f'{{"k": 1, "v": 1}}\n{{"k": 2, "v": {2**64}}}\n')
    text = PIPELINE.format(path="items.jsonl", write="merge", batch_size=1)
    text += "    columns:\n      v: {type: bigint}\n"
    summary = Pipeline.from_yaml(write_pipeline(text)).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.counts.balanced
    assert (result.counts.inserted, result.counts.quarantined) == (1, 1)
    assert typed("v") == "bigint"


@pytest.mark.parametrize(
    ("values", "kind", "texts"),
    [
        ([2**64, -(2**100)], "decimal(38,0)", [str(2**64), str(-(2**100))]),
        ([2**127 - 1, 1], "varchar", [str(2**127 - 1), "1"]),
    ],
)
def test_int128_batches_load(
    destination_url: str,
    typed: Callable[[str], str],
    values: list[int],
    kind: str,
    texts: list[str],
) -> None:
    """An Int128 column (from a step or a SQL source) loads as decimal(38,0), or text past 38
    digits."""
    frame = pl.DataFrame({"k": [1, 2], "v": pl.Series(values, dtype=pl.Int128), SEQ: [0, 1]})
    dest = connect(destination_url)
    try:
        load = dest.begin(LoadTarget("numbers", "items", WriteMode.APPEND, (), {}))
        load.stage(frame)
        assert load.finish() == LoadCounts(inserted=2, updated=0, unchanged=0, deduplicated=0)
        load.commit()
    finally:
        dest.close()
    assert typed("v") == kind
    assert _texts(destination_url, "v") == texts


def test_key_column_widens_too(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """A merge key of ids near 2**62 then 1.5 widens to decimal(38,1); the merge still counts."""
    records = [
        f'{{"k": {2**62 + 1}, "v": 1}}',
        '{"k": 1.5, "v": 2}',
        f'{{"k": {2**62 + 1}, "v": 3}}',
    ]
    counts = _run(tmp_path, write_pipeline, destination_url, records, write="merge", batch_size=1)
    assert (counts.fetched, counts.inserted, counts.deduplicated) == (3, 2, 1)
    assert typed("k") == "decimal(38,1)"
    assert _texts(destination_url, "k") == ["1.5", f"{2**62 + 1}.0"]
    assert _texts(destination_url, "v") == ["2", "3"]


def test_scale_that_would_not_hold_stored_values_gives_text(
    tmp_path: Path,
    destination_url: str,
    write_pipeline: Callable[[str], Path],
    typed: Callable[[str], str],
) -> None:
    """A 30-digit decimal stored, then a fraction of 10 places: no decimal(38,s) holds both."""
    records = [f'{{"k": 1, "v": {10**29 + 1}.5}}', '{"k": 2, "v": 0.0000000001}']
    counts = _run(tmp_path, write_pipeline, destination_url, records, batch_size=1)
    assert (counts.fetched, counts.inserted) == (2, 2)
    assert typed("v") == "varchar"
    assert _texts(destination_url, "v") == [f"{10**29 + 1}.5", "1e-10"]
