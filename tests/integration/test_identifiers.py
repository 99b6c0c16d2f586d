"""Names from the data become identifiers that never collide, the same on every destination.

PostgreSQL cuts names at 63 bytes: three long headers of an official statistics CSV that
differ only at the end became one name and the load failed. ladle shortens long names
itself (a prefix, ``_`` and a hash of the whole name), transliterates accents, names a
header that has nothing usable in it, and says in the run summary what it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.pipeline import ResourceResult

LONG = "Numero medio annuo di addetti delle unità locali delle imprese attive ai fini statistici - "
TABLE = "giacenze_e_movimenti_delle_merci_nei_magazzini_generali_autorizzati_per_provincia"
SHORT_TABLE = "giacenze_e_movimenti_delle_merci_nei_magazzini_generali_bdcc5b"

PIPELINE = """\
pipeline: names
resources:
  {resource}:
    source: {{type: file, path: {path}}}
    primary_key: [{key}]
    write: {write}
"""


def _run(
    write_pipeline: Callable[[str], Path],
    url: str,
    *,
    path: str,
    resource: str = "items",
    key: str = "id",
    write: str = "merge",
) -> ResourceResult:
    text = PIPELINE.format(resource=resource, path=path, key=key, write=write)
    summary = Pipeline.from_yaml(write_pipeline(text)).run(RunOptions(destination=url))
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    assert result.counts.balanced
    return result


def _table(url: str, table: str = "items") -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(table, {}, order_by=["id"]).to_dicts()
    finally:
        dest.close()


def test_long_headers_that_share_63_bytes_stay_apart(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Three headers equal in their first 63 bytes load into three columns, with notices."""
    header = ",".join(["id", *(f'"{LONG}{part}"' for part in ("totale", "maschi", "femmine"))])
    (tmp_path / "stats.csv").write_text(f"{header}\n1,10,4,6\n2,20,11,9\n", encoding="utf-8")
    result = _run(write_pipeline, destination_url, path="stats.csv")
    prefix = "numero_medio_annuo_di_addetti_delle_unita_locali_delle_i"
    names = [f"{prefix}_4a25b4", f"{prefix}_d788cc", f"{prefix}_61a9d3"]
    assert result.notices == [
        f"column '{LONG}{part}' is stored as '{name}' (names are at most 63 bytes)"
        for part, name in zip(("totale", "maschi", "femmine"), names, strict=True)
    ]
    assert (result.counts.fetched, result.counts.inserted) == (2, 2)
    assert _table(destination_url) == [
        {"id": "1", names[0]: "10", names[1]: "4", names[2]: "6"},
        {"id": "2", names[0]: "20", names[1]: "11", names[2]: "9"},
    ]


@pytest.mark.parametrize("write", ["replace", "merge", "append"])
def test_long_resource_name_gets_a_short_table(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path], write: str
) -> None:
    """A resource name over 63 bytes loads (twice) into a shortened table; its staging and
    replacement tables are shortened too, and the summary says so."""
    (tmp_path / "items.jsonl").write_text('{"id": 1, "v": "a"}\n{"id": 2, "v": "b"}\n')
    first = _run(write_pipeline, destination_url, path="items.jsonl", resource=TABLE, write=write)
    (tmp_path / "items.jsonl").write_text('{"id": 2, "v": "c"}\n{"id": 3, "v": "d"}\n')
    second = _run(write_pipeline, destination_url, path="items.jsonl", resource=TABLE, write=write)
    notice = (
        f"table '{TABLE}' of resource '{TABLE}' is stored as '{SHORT_TABLE}' "
        "(names are at most 63 bytes)"
    )
    assert first.table == second.table == SHORT_TABLE
    assert first.notices == [notice]
    assert notice in second.notices
    expected = {
        "replace": [(2, "c"), (3, "d")],
        "merge": [(1, "a"), (2, "c"), (3, "d")],
        "append": [(1, "a"), (2, "b"), (2, "c"), (3, "d")],
    }
    values = [(row["id"], row["v"]) for row in _table(destination_url, SHORT_TABLE)]
    assert values == expected[write]


def test_accents_are_transliterated_and_other_scripts_kept(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``Unità``, ``città``, ``Straße`` lose their accents, not their letters; CJK and
    Cyrillic names stay as they are (lower-cased), so they do not collide as ``_``."""
    header = "ID,Unità,città,Straße,名前,年齢,Имя"
    (tmp_path / "items.csv").write_text(f"{header}\n1,kg,Roma,Hauptstraße,太郎,30,Иван\n")
    result = _run(write_pipeline, destination_url, path="items.csv")
    assert result.notices == []
    assert _table(destination_url) == [
        {
            "id": "1",
            "unita": "kg",
            "citta": "Roma",
            "strasse": "Hauptstraße",
            "名前": "太郎",
            "年齢": "30",
            "имя": "Иван",
        }
    ]


def test_empty_and_nul_keys_get_a_name_and_a_notice(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A key ``""``, one of punctuation only and one with a NUL get names, told in notices."""
    records = [{"id": 1, "": "empty", "#": "hash", "foo\u0000bar": "nul"}, {"id": 2, "": "e2"}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _run(write_pipeline, destination_url, path="items.jsonl")
    assert result.notices == [
        "column '' is stored as 'column_e3b0c4' (it has no letter or digit to make a name of)",
        "column '#' is stored as 'column_334359' (it has no letter or digit to make a name of)",
        "column 'foo\\x00bar' is stored as 'foo_bar' (a name cannot hold a NUL byte)",
    ]
    assert _table(destination_url) == [
        {"id": 1, "column_e3b0c4": "empty", "column_334359": "hash", "foo_bar": "nul"},
        {"id": 2, "column_e3b0c4": "e2", "column_334359": None, "foo_bar": None},
    ]


def test_names_that_clash_are_numbered_with_a_notice(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``Total Amount`` and ``total_amount`` both snake_case to one name: the second is
    numbered, the summary names its position and original, and the numbering holds in
    later batches that bring only one of them."""
    records = [
        {"id": 1, "Total Amount": 1, "total_amount": 2},
        {"id": 2, "total_amount": 3},
        {"id": 3, "TotalAmount": 4},
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = PIPELINE.format(resource="items", path="items.jsonl", key="id", write="merge")
    pipeline = write_pipeline(text + "    batch_size: 1\n")
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    assert result.counts.balanced
    assert result.notices == [
        "column 3 'total_amount' is stored as 'total_amount_2' "
        "('total_amount' is the name of an earlier column)",
        "column 2 'TotalAmount' is stored as 'total_amount_3' "
        "('total_amount' is the name of an earlier column)",
    ]
    assert _table(destination_url) == [
        {"id": 1, "total_amount": 1, "total_amount_2": 2, "total_amount_3": None},
        {"id": 2, "total_amount": None, "total_amount_2": 3, "total_amount_3": None},
        {"id": 3, "total_amount": None, "total_amount_2": None, "total_amount_3": 4},
    ]


def test_long_primary_key_spelled_in_full(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A primary key named in the file by its whole snake_cased name merges on the
    shortened column: the second run updates instead of failing."""
    key = "codice_identificativo_della_unita_locale_nel_registro_statistico_asia"
    (tmp_path / "units.csv").write_text(
        "Codice identificativo della unità locale nel registro statistico ASIA,v\nA,1\nB,2\n"
    )
    _run(write_pipeline, destination_url, path="units.csv", key=key)
    (tmp_path / "units.csv").write_text(
        "Codice identificativo della unità locale nel registro statistico ASIA,v\nA,1\nB,3\n"
    )
    text = PIPELINE.format(resource="items", path="units.csv", key=key, write="merge")
    summary = Pipeline.from_yaml(write_pipeline(text)).run(
        RunOptions(destination=destination_url, full_refresh=True)
    )
    result = summary.resources[0]
    assert result.status == "succeeded", result.error
    counts = result.counts
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)
    dest = connect(destination_url)
    try:
        rows = dest.read("items", {}, order_by=["v"]).to_dicts()
    finally:
        dest.close()
    assert rows == [
        {"codice_identificativo_della_unita_locale_nel_registro_st_f93ce3": "A", "v": "1"},
        {"codice_identificativo_della_unita_locale_nel_registro_st_f93ce3": "B", "v": "3"},
    ]


def test_long_name_given_by_a_step_is_shortened(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A ``rename`` target over 63 bytes is stored shortened, with a notice."""
    long = "quantita_totale_delle_merci_movimentate_nel_periodo_di_riferimento_in_tonnellate"
    short = "quantita_totale_delle_merci_movimentate_nel_periodo_di_r_9a1df3"
    (tmp_path / "items.jsonl").write_text('{"id": 1, "q": 5}\n{"id": 2, "q": 7}\n')
    text = PIPELINE.format(resource="items", path="items.jsonl", key="id", write="merge")
    pipeline = write_pipeline(text + f"    steps:\n      - rename: {{q: {long}}}\n")
    result = Pipeline.from_yaml(pipeline).run(RunOptions(destination=destination_url))
    item = result.resources[0]
    assert item.status == "succeeded", item.error
    assert item.counts.balanced
    assert item.notices == [f"column '{long}' is stored as '{short}' (names are at most 63 bytes)"]
    assert _table(destination_url) == [{"id": 1, short: 5}, {"id": 2, short: 7}]
