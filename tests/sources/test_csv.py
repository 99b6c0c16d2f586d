"""The CSV reader: header, text values, nulls, positions, ragged rows, dialects, encodings."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ladle.batch import SourceBatch, Unreadable
from ladle.sources import SourceContext
from ladle.sources.csv_records import Dialect, Records, _QuoteScanner
from ladle.sources.files import FileOptions, FileSource


def _read(
    base: Path, content: bytes, *, batch_size: int = 100, **options: Any
) -> list[SourceBatch]:
    return _read_noting(base, content, batch_size=batch_size, **options)[0]


def _read_noting(
    base: Path, content: bytes, *, batch_size: int = 100, name: str = "t.csv", **options: Any
) -> tuple[list[SourceBatch], list[str]]:
    """The batches of one file, and the notices its reading left for the run summary."""
    (base / name).write_bytes(content)
    context = SourceContext("rows", batch_size, base)
    source = FileSource(FileOptions(type="file", path=name, **options), context)
    return list(source.batches()), context.notices


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
    """A quoted field may span lines; a record's position is its span of lines."""
    batch = _one(tmp_path, b'a,b\n"x, y","line 1\nline 2"\n3,4\n')
    assert batch.frame.rows() == [("x, y", "line 1\nline 2"), ("3", "4")]
    assert batch.positions == ["t.csv:2-3", "t.csv:4"]


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


def test_over_long_field_quarantines_its_whole_record(tmp_path: Path) -> None:
    """A field over the limit spoils its record, read to its real end: no line inside it
    becomes a record of its own."""
    big = b"x" * 200_000
    content = b'a,b\n1,"' + big + b'\ninjected,row from inside a quoted field\nend"\n2,ok\n'
    batch = _one(tmp_path, content)
    assert batch.frame.rows() == [("2", "ok")]
    assert batch.positions == ["t.csv:5"]
    assert batch.unreadable == [
        Unreadable(
            "t.csv:2-4",
            content[4:-6].decode(),
            "a field is longer than 131,072 characters (`max_field_chars`); "
            "the record is 200,048 characters long",
            "parse",
        )
    ]


def test_huge_record_keeps_only_the_start_of_its_text(tmp_path: Path) -> None:
    """Quarantine keeps the first 1,048,576 characters of a record and says how long it was."""
    content = b'a,b\n1,"' + b"y" * 1_100_000 + b'"\n2,ok\n'
    batch = _one(tmp_path, content)
    assert batch.frame.rows() == [("2", "ok")]
    (bad,) = batch.unreadable
    assert (bad.position, bad.raw) == ("t.csv:2", '1,"' + "y" * (1_048_576 - 3))
    assert bad.message == (
        "a field is longer than 131,072 characters (`max_field_chars`); the record is "
        "1,100,004 characters long, of which the first 1,048,576 are kept"
    )


def test_max_field_chars_sets_the_limit(tmp_path: Path) -> None:
    """A lower ``max_field_chars`` quarantines a record the csv module would read whole;
    a higher one loads a field the csv module alone would refuse."""
    batch = _one(tmp_path, b'a,b\n1,"ten\nchars"\n2,ok\n', max_field_chars=5)
    assert batch.frame.rows() == [("2", "ok")]
    assert batch.unreadable == [
        Unreadable(
            "t.csv:2-3",
            '1,"ten\nchars"',
            "a field is longer than 5 characters (`max_field_chars`); "
            "the record is 13 characters long",
            "parse",
        )
    ]
    big = "z" * 150_000
    batch = _one(tmp_path, f"a,b\n1,{big}\n".encode(), max_field_chars=200_000)
    assert batch.frame.rows() == [("1", big)]


STRAY = (
    "id;name;city;n\n"
    "1;Ann;Oslo;1\n"
    '2;"Big Company;Rome;2\n'
    "3;Bob;Lima;3\n"
    "4;Cy;Kiev;4\n"
    "5;Di;Nome;5\n"
    '6;pipe 5";Bonn;6\n'
    "7;Ed;Riga;7\n"
)


def test_stray_quote_spoils_only_its_line(tmp_path: Path) -> None:
    """A quote that swallows lines which read as whole records is taken for a stray one:
    its line is quarantined and the lines it swallowed load as the records they are."""
    batch = _one(tmp_path, STRAY.encode())
    assert batch.frame.get_column("id").to_list() == ["1", "3", "4", "5", "6", "7"]
    assert batch.frame.row(4) == ("6", 'pipe 5"', "Bonn", "6")
    assert batch.positions == ["t.csv:2", "t.csv:4", "t.csv:5", "t.csv:6", "t.csv:7", "t.csv:8"]
    assert batch.unreadable == [
        Unreadable(
            "t.csv:3",
            '2;"Big Company;Rome;2',
            "the quote that opens on line 3 runs to line 7 over lines that read as whole "
            "records: line 3 is quarantined and reading goes on from line 4 (if quotes in "
            "this file are data, set `quote: none`)",
            "parse",
        )
    ]


def test_stray_quote_that_never_closes(tmp_path: Path) -> None:
    """A quote open to the end of the file is a stray one too; the rest of the file loads."""
    batch = _one(tmp_path, STRAY.replace('pipe 5"', "pipe 5").encode())
    assert batch.frame.get_column("id").to_list() == ["1", "3", "4", "5", "6", "7"]
    assert [u.position for u in batch.unreadable] == ["t.csv:3"]


def test_quoted_lines_that_are_not_records_stay_one_value(tmp_path: Path) -> None:
    """A long quoted value whose lines do not read as records is one value, as written."""
    note = "Dear Ann;\nthanks\nfor the\nlong;letter\n"
    batch = _one(tmp_path, f'id;note;n\n1;"{note}";2\n3;x;4\n'.encode())
    assert batch.frame.rows() == [("1", note, "2"), ("3", "x", "4")]
    assert batch.positions == ["t.csv:2-6", "t.csv:7"]


def test_quote_none_reads_quotes_as_data(tmp_path: Path) -> None:
    """``quote: none``: quote characters are data and every line is a record."""
    content = b'id;name\n1;"Big Company\n2;pipe 5"\n'
    for declared in ({}, {"delimiter": ";"}):
        batch = _one(tmp_path, content, quote="none", **declared)
        assert batch.frame.rows() == [("1", '"Big Company'), ("2", 'pipe 5"')]


def test_quote_none_and_quotechar_conflict() -> None:
    """``quote: none`` with a ``quotechar`` is refused: the two contradict each other."""
    with pytest.raises(ValidationError, match=r"`quote: none` turns quoting off; drop `quotechar`"):
        FileOptions(type="file", path="t.csv", quote="none", quotechar="'")


def test_blank_and_delimiter_only_lines_are_counted_not_loaded(tmp_path: Path) -> None:
    """Empty lines and lines of only delimiters are no records; the summary counts them."""
    batches, notices = _read_noting(tmp_path, b"a,b,c\n\n1,2,3\n,,\n,,,,\n4,5,6\n\n")
    (batch,) = batches
    assert batch.frame.rows() == [("1", "2", "3"), ("4", "5", "6")]
    assert batch.positions == ["t.csv:3", "t.csv:6"]
    assert notices == ["4 blank lines skipped in t.csv"]


def test_generated_header_names_are_reported(tmp_path: Path) -> None:
    """Each made-up column name is named in a notice with its column and reason."""
    batches, notices = _read_noting(tmp_path, b"id,,id,id,\n1,2,3,4,5\n")
    assert batches[0].frame.columns == ["id", "column_2", "id_2", "id_3", "column_5"]
    assert notices == [
        "t.csv: header names generated: column_2 for column 2 (blank), id_2 for column 3 "
        "(repeats 'id'), id_3 for column 4 (repeats 'id'), column_5 for column 5 (blank)"
    ]


def test_ragged_ignore_empty_extra(tmp_path: Path) -> None:
    """``ragged: ignore_empty_extra`` drops empty extra fields and counts the rows; extra
    fields with a value still quarantine their row."""
    content = b"a,b\n1,2,,\n3,4\n5,6,x\n7,8,\n"
    batches, notices = _read_noting(tmp_path, content, ragged="ignore_empty_extra")
    (batch,) = batches
    assert batch.frame.rows() == [("1", "2"), ("3", "4"), ("7", "8")]
    assert batch.unreadable == [
        Unreadable("t.csv:4", "5,6,x", "expected 2 fields, found 3", "parse")
    ]
    assert notices == ["2 rows of t.csv had empty extra fields, ignored"]


def test_ragged_default_quarantines_empty_extras(tmp_path: Path) -> None:
    """By default a row with extra fields is quarantined even when they are empty."""
    batch = _one(tmp_path, b"a,b\n1,2,,\n")
    assert batch.unreadable == [Unreadable("t.csv:2", "1,2,,", "expected 2 fields, found 4")]


def test_null_values_for_every_column_and_per_column(tmp_path: Path) -> None:
    """A list applies to every column; a column's own list replaces the ``*`` list."""
    content = b"code,price,note\nNA,-,?\nDE,3,NA\n"
    batch = _one(tmp_path, content, null_values=["NA", "?"])
    assert batch.frame.rows() == [(None, "-", None), ("DE", "3", None)]
    batch = _one(tmp_path, content, null_values={"price": ["-"], "code": [], "*": ["NA"]})
    assert batch.frame.rows() == [("NA", None, "?"), ("DE", "3", None)]


def test_null_values_apply_to_json_text(tmp_path: Path) -> None:
    """JSON Lines text values are compared too; numbers are not text and stay as they are."""
    content = b'{"a": "N/A", "b": 1}\n{"a": "x", "b": 2}\n'
    batches, notices = _read_noting(
        tmp_path, content, name="t.jsonl", null_values={"a": ["N/A"], "typo": ["-"]}
    )
    assert batches[0].frame.rows() == [(None, 1), ("x", 2)]
    assert notices == ["null_values names columns that no file has: typo"]


def test_unquoted_yaml_null_in_null_values_is_refused() -> None:
    """YAML reads an unquoted NULL as no value: the option says to quote it."""
    with pytest.raises(ValidationError, match=r'quote it \("NULL"\)'):
        FileOptions.model_validate({"type": "file", "path": "t.csv", "null_values": ["NA", None]})


def test_latin1_c1_controls_suggest_cp1252(tmp_path: Path) -> None:
    """Text decoded as latin-1 holding U+0080-U+009F is loaded, with a notice naming cp1252."""
    batches, notices = _read_noting(tmp_path, b"a\n\x93quoted\x94\nplain\n", encoding="latin-1")
    assert batches[0].frame.rows() == [("\x93quoted\x94",), ("plain",)]
    assert notices == [
        "1 row of t.csv holds C1 control characters (U+0080-U+009F) as decoded from latin-1: "
        "the file is probably cp1252; set `encoding: cp1252`"
    ]


@given(st.text(alphabet='a",;\n\r ', max_size=60))
def test_quote_scanner_agrees_with_the_csv_module(text: str) -> None:
    """The quote scanner ends a record on exactly the line where the csv module does."""
    dialect = Dialect(";", '"')
    scanner = _QuoteScanner(dialect)
    lines = list(io.StringIO(text, newline=""))
    # Feed the csv module one line at a time and note where each record ends.
    fed: list[str] = []
    reader = dialect.reader(_Feed(lines, fed))
    ends: list[int] = []
    for _ in reader:
        ends.append(len(fed))
    in_quote = False
    ours: list[int] = []
    for number, line in enumerate(lines, start=1):
        in_quote = scanner.ends_in_quote(line, in_quote=in_quote)
        if not in_quote:
            ours.append(number)
    if in_quote:  # the csv module ends an open record at the end of the text
        ours.append(len(lines))
    assert ours == ends


class _Feed:
    """Lines handed to the csv module one by one, each noted as it is taken."""

    def __init__(self, lines: list[str], fed: list[str]) -> None:
        self._lines = iter(lines)
        self._fed = fed

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._fed.append(line)
        return line


@given(
    st.lists(
        st.lists(st.text(alphabet='ab "\n', max_size=8), min_size=3, max_size=3),
        min_size=1,
        max_size=8,
    )
)
def test_written_rows_read_back_exactly(rows: list[list[str]]) -> None:
    """Rows the csv module writes (quotes, line breaks) read back as written, one record each."""
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=";", lineterminator="\n").writerows([["x", "y", "z"], *rows])
    records = Records(
        iter(io.StringIO(text.getvalue(), newline="")), Dialect(";", '"'), max_field_chars=100
    )
    records.width = 3
    read = [r.fields for r in records]
    assert all(r is not None for r in read)
    assert read[1:] == rows


def test_stray_quote_past_the_field_limit(tmp_path: Path) -> None:
    """A stray quote that never closes runs into the field limit; it is still recognised
    as stray, and every record after it loads."""
    rows = "".join(f"{i};name {i};city {i}\n" for i in range(3, 10_003))
    batch = _one(tmp_path, f'id;name;city\n1;a;b\n2;"stray;c\n{rows}'.encode(), batch_size=20_000)
    assert batch.frame.height == 10_001
    assert batch.frame.get_column("id").to_list()[-1] == "10002"
    (bad,) = batch.unreadable
    assert (bad.position, bad.raw) == ("t.csv:3", '2;"stray;c')


def test_two_record_like_lines_in_a_quoted_value_are_data(tmp_path: Path) -> None:
    """Fewer than three lines in a row that read as records do not make a quote stray."""
    note = "intro\nx;y;z\nu;v;w\noutro"
    batch = _one(tmp_path, f'id;note;n\n1;"{note}";2\n'.encode())
    assert batch.frame.rows() == [("1", note, "2")]
    assert batch.positions == ["t.csv:2-5"]


def test_resume_after_blank_lines_and_a_stray_quote(tmp_path: Path) -> None:
    """A resumed read starts right after the last checkpoint, blank lines and stray quotes
    notwithstanding: every record is read exactly once."""
    content = ("\n\n" + STRAY.replace("4;Cy;Kiev\n", "4;Cy;Kiev\n;;;\n")).encode()
    batches = _read(tmp_path, content, batch_size=2)
    whole = [p for b in batches for p in [*b.positions, *(u.position for u in b.unreadable)]]
    context = SourceContext("rows", 2, tmp_path, resume=batches[1].checkpoint)
    rest = list(FileSource(FileOptions(type="file", path="t.csv"), context).batches())
    after = [p for b in rest for p in [*b.positions, *(u.position for u in b.unreadable)]]
    assert after == whole[4:]
    assert sum(b.fetched for b in batches) == 7


@given(st.text(alphabet='a";\n', max_size=80), st.sampled_from([8, 1000]))
def test_every_line_is_in_exactly_one_record(text: str, limit: int) -> None:
    """Records' line spans cover the text's lines once each, whatever its quotes: no line
    is lost and none is read twice, also past a stray quote or an over-long field."""
    saved = csv.field_size_limit(limit)  # a low limit makes the csv module refuse fields
    try:
        records = Records(
            iter(io.StringIO(text, newline="")), Dialect(";", '"'), max_field_chars=limit
        )
        records.width = 2
        spans = [(r.first, r.last) for r in records]
    finally:
        csv.field_size_limit(saved)
    covered = [line for first, last in spans for line in range(first, last + 1)]
    assert covered == list(range(1, len(io.StringIO(text, newline="").readlines()) + 1))


def test_stray_quote_with_crlf_line_ends(tmp_path: Path) -> None:
    """Windows line ends change nothing: same records, raw text without its line break."""
    batch = _one(tmp_path, STRAY.replace("\n", "\r\n").encode())
    assert batch.frame.get_column("id").to_list() == ["1", "3", "4", "5", "6", "7"]
    assert [(u.position, u.raw) for u in batch.unreadable] == [("t.csv:3", '2;"Big Company;Rome;2')]
