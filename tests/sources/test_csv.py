"""The CSV reader: header, text values, nulls, positions, ragged rows, dialects, encodings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ladle.batch import SourceBatch, Unreadable
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


def _read(
    base: Path, content: bytes, *, batch_size: int = 100, **options: Any
) -> list[SourceBatch]:
    (base / "t.csv").write_bytes(content)
    source = FileSource(
        FileOptions(type="file", path="t.csv", **options), SourceContext("rows", batch_size, base)
    )
    return list(source.batches())


def _one(base: Path, content: bytes, **options: Any) -> SourceBatch:
    batches = _read(base, content, **options)
    assert len(batches) == 1
    return batches[0]


def test_header_names_columns_and_values_stay_text(tmp_path: Path) -> None:
    """Every column is ``pl.String``; numbers are not guessed at."""
    batch = _one(tmp_path, b"id,name,score\n1,Ann,2.5\n2,Bob,007\n")
    assert batch.frame.schema == dict.fromkeys(["id", "name", "score"], pl.String)
    assert batch.frame.rows() == [("1", "Ann", "2.5"), ("2", "Bob", "007")]
    assert batch.positions == ["t.csv:2", "t.csv:3"]


def test_empty_fields_are_null_quoted_or_not(tmp_path: Path) -> None:
    """``,,`` and ``,"",`` both mean no value (the csv module cannot tell them apart)."""
    batch = _one(tmp_path, b'a,b,c\n,"",x\n" ",,\n')
    assert batch.frame.rows() == [(None, None, "x"), (" ", None, None)]


def test_quoted_fields_hold_newlines_and_delimiters(tmp_path: Path) -> None:
    """A quoted field may span lines; the next record's position is its own first line."""
    batch = _one(tmp_path, b'a,b\n"x, y","line 1\nline 2"\n3,4\n')
    assert batch.frame.rows() == [("x, y", "line 1\nline 2"), ("3", "4")]
    assert batch.positions == ["t.csv:2", "t.csv:4"]


def test_ragged_rows_are_unreadable_and_the_rest_load(tmp_path: Path) -> None:
    """A row with more or fewer fields than the header is quarantined, re-joined as raw."""
    batch = _one(tmp_path, b"a,b,c\n1,2,3\n1,2,3,4\n5,6,7\n8,9\n")
    assert batch.frame.rows() == [("1", "2", "3"), ("5", "6", "7")]
    assert batch.positions == ["t.csv:2", "t.csv:4"]
    assert batch.unreadable == [
        Unreadable("t.csv:3", "1,2,3,4", "expected 3 fields, found 4", "parse"),
        Unreadable("t.csv:5", "8,9", "expected 3 fields, found 2", "parse"),
    ]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    """Blank lines are not records (and not ragged rows) but still count as lines."""
    batch = _one(tmp_path, b"a,b\n\n1,2\n\n\n3,4\n")
    assert batch.frame.rows() == [("1", "2"), ("3", "4")]
    assert batch.positions == ["t.csv:3", "t.csv:6"]


def test_delimiter_and_quotechar_are_sniffed(tmp_path: Path) -> None:
    """Semicolons and single quotes are recognised from the start of the file."""
    batch = _one(tmp_path, b"a;b\n'x;y';2\n'z';3\n")
    assert batch.frame.rows() == [("x;y", "2"), ("z", "3")]


def test_tab_separated_file_is_sniffed(tmp_path: Path) -> None:
    """Tabs are recognised as the delimiter without being declared."""
    batch = _one(tmp_path, b"a\tb\n1\t2,5\n")
    assert batch.frame.rows() == [("1", "2,5")]


def test_declared_delimiter_wins_over_sniffing(tmp_path: Path) -> None:
    """``delimiter: "|"`` is used even where the sniffer would guess otherwise."""
    batch = _one(tmp_path, b"a|b\n1,5|2\n", delimiter="|", quotechar='"')
    assert batch.frame.rows() == [("1,5", "2")]


def test_single_column_falls_back_to_comma(tmp_path: Path) -> None:
    """When the sniffer cannot decide, ``,`` and ``"`` are used."""
    batch = _one(tmp_path, b"name\nAnn\nBob\n")
    assert batch.frame.rows() == [("Ann",), ("Bob",)]


def test_without_header_columns_are_numbered(tmp_path: Path) -> None:
    """``header: false`` names columns ``column_1``... and the first row is a record."""
    batch = _one(tmp_path, b"1,2\n3,4\n", header=False)
    assert batch.frame.columns == ["column_1", "column_2"]
    assert batch.positions == ["t.csv:1", "t.csv:2"]


def test_blank_and_repeated_header_names_are_made_unique(tmp_path: Path) -> None:
    """A blank header is ``column_N``; a repeated one gets ``_2``, ``_3``."""
    batch = _one(tmp_path, b"id,,id,id\n1,2,3,4\n")
    assert batch.frame.columns == ["id", "column_2", "id_2", "id_3"]


def test_undecodable_bytes_spoil_only_their_row(tmp_path: Path) -> None:
    """A row with a byte that is not UTF-8 is unreadable by rule ``encoding``."""
    batch = _one(tmp_path, b"a,b\n1,caf\xe9\n2,ok\n")
    assert batch.frame.rows() == [("2", "ok")]
    assert batch.unreadable == [
        Unreadable(
            "t.csv:2",
            "1,caf\\xe9",
            "cannot decode byte 0xe9 as utf-8; set `encoding:` to the file's encoding",
            "encoding",
        )
    ]


def test_declared_encoding_and_bom(tmp_path: Path) -> None:
    """Latin-1 is decoded when declared; a UTF-8 BOM never reaches the first column name."""
    assert _one(tmp_path, b"a\ncaf\xe9\n", encoding="latin-1").frame.rows() == [("café",)]
    assert _one(tmp_path, b"\xef\xbb\xbfa,b\n1,2\n").frame.columns == ["a", "b"]


def test_batches_hold_at_most_batch_size_records(tmp_path: Path) -> None:
    """Rows, ragged ones included, come in batches of at most ``batch_size``."""
    rows = b"".join(b"%d,x\n" % i if i != 4 else b"4\n" for i in range(7))
    batches = _read(tmp_path, b"n,v\n" + rows, batch_size=3)
    assert [batch.fetched for batch in batches] == [3, 3, 1]
    assert [len(batch.unreadable) for batch in batches] == [0, 1, 0]
    assert batches[2].positions == ["t.csv:8"]


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    """A file with just a header yields no batch at all."""
    assert _read(tmp_path, b"a,b\n") == []


def test_row_the_csv_module_refuses_is_unreadable(tmp_path: Path) -> None:
    """A field over the csv module's size limit spoils its row only; reading goes on."""
    big = b"x" * 200_000
    batch = _one(tmp_path, b"a,b\n1," + big + b"\n2,ok\n")
    assert batch.frame.rows() == [("2", "ok")]
    assert batch.unreadable == [
        Unreadable(
            "t.csv:2", "", "cannot read the row: field larger than field limit (131072)", "parse"
        )
    ]
