"""The JSON document reader: where the records are, their positions, and broken documents."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource
from ladle.sources.json_scan import DepthGuard, Refused, line_problem, screen_lines


def _read(
    base: Path, name: str, document: Any, *, batch_size: int = 100, **options: Any
) -> list[SourceBatch]:
    path = base / name
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    source = FileSource(
        FileOptions(type="file", path=name, **options),
        SourceContext("facilities", batch_size, base),
    )
    return list(source.batches())


def _error(base: Path, name: str, document: Any, **options: Any) -> str:
    with pytest.raises(SourceError) as info:
        _read(base, name, document, **options)
    return str(info.value)


def test_top_level_array_items_are_records(tmp_path: Path) -> None:
    """A document that is an array gives one record per item, positioned ``#[i]``."""
    [batch] = _read(tmp_path, "x.json", [{"a": 1}, {"a": 2, "b": {"c": "d"}}])
    assert batch.frame.rows() == [(1, None), (2, "d")]
    assert batch.frame.columns == ["a", "b__c"]
    assert batch.positions == ["x.json#[0]", "x.json#[1]"]


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"meta": {}, "data": [{"a": 1}], "items": [{"a": 2}]}, "data"),
        ({"results": [{"a": 4}], "items": [{"a": 2}], "records": [{"a": 3}]}, "items"),
        ({"records": [{"a": 3}], "results": [{"a": 4}]}, "records"),
        ({"data": {"not": "an array"}, "results": [{"a": 4}]}, "results"),
        ({"facilities": [{"a": 5}], "count": 1}, "facilities"),
    ],
)
def test_array_under_a_known_key_is_found(tmp_path: Path, document: Any, key: str) -> None:
    """Keys are tried in order data, items, records, results, the resource's name."""
    [batch] = _read(tmp_path, "x.json", document)
    assert batch.positions == [f"x.json#{key}[0]"]
    assert batch.frame.rows() == [(document[key][0]["a"],)]


def test_records_path_overrides_detection(tmp_path: Path) -> None:
    """``records:`` names the array by a dotted path, and positions use that path."""
    document = {"data": [{"a": 0}], "payload": {"facilities": [{"a": 1}, {"a": 2}]}}
    [batch] = _read(tmp_path, "f.json", document, records="payload.facilities")
    assert batch.frame.get_column("a").to_list() == [1, 2]
    assert batch.positions == ["f.json#payload.facilities[0]", "f.json#payload.facilities[1]"]


def test_object_without_a_known_array_is_one_record(tmp_path: Path) -> None:
    """An object with no array under a known key is itself the record, positioned ``#``."""
    [batch] = _read(tmp_path, "one.json", {"id": 7, "tags": ["a"], "data": "text"})
    assert batch.frame.rows() == [(7, '["a"]', "text")]
    assert batch.positions == ["one.json#"]


def test_records_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    """A ``records:`` path missing from the document stops the run, naming file and path."""
    message = _error(tmp_path, "f.json", {"payload": {}}, records="payload.facilities")
    assert message == (
        "f.json#payload.facilities: records: 'payload.facilities' is not in the document; "
        "set `records:` to the path of the array of records (keys joined by dots, [N] or [*] "
        "for the items of an array)"
    )


def test_records_path_that_is_not_an_array_is_an_error(tmp_path: Path) -> None:
    """A ``records:`` path that holds an object is an error that says what it holds."""
    message = _error(tmp_path, "f.json", {"payload": {"a": 1}}, records="payload")
    assert message == (
        "f.json#payload: records: 'payload' is an object, not an array; "
        "set `records:` to the path of the array of records (keys joined by dots, [N] or [*] "
        "for the items of an array)"
    )


def test_records_path_to_an_empty_array_gives_no_records(tmp_path: Path) -> None:
    """An empty array at the ``records:`` path is no records, not an error."""
    assert _read(tmp_path, "f.json", {"payload": []}, records="payload") == []


def test_items_that_are_not_objects_are_unreadable(tmp_path: Path) -> None:
    """An array item that is not an object is quarantined with its position."""
    [batch] = _read(tmp_path, "x.json", [{"a": 1}, [1, 2], "s", {"a": 2}])
    assert batch.frame.get_column("a").to_list() == [1, 2]
    assert batch.positions == ["x.json#[0]", "x.json#[3]"]
    assert batch.unreadable == [
        Unreadable("x.json#[1]", "[1,2]", "a record must be a JSON object, found an array"),
        Unreadable("x.json#[2]", '"s"', "a record must be a JSON object, found a string"),
    ]


def test_document_broken_midway_names_the_item_reached(tmp_path: Path) -> None:
    """Broken syntax stops the run with the index of the item being read and where it ends."""
    message = _error(tmp_path, "x.json", b'[{"a": 1}, {"a": 2}, {"a": 3')
    assert message == (
        "x.json#[2]: invalid JSON at the end of the file (line 1, column 29), after 2 records: "
        "parse error: premature EOF"
    )


def test_document_with_bytes_that_are_not_utf8_is_an_error(tmp_path: Path) -> None:
    """Undecodable bytes in a document stop the run and point at the encoding option."""
    message = _error(tmp_path, "x.json", b'{"data": [{"a": "caf\xe9"}]}')
    assert message == (
        "x.json#data[0]: invalid JSON at line 1, column 22, after 0 records: lexical error: "
        "invalid bytes in UTF8 string.; set `encoding:` to the file's encoding"
    )


def test_declared_encoding_is_decoded(tmp_path: Path) -> None:
    """``encoding: latin-1`` documents are read as such."""
    [batch] = _read(tmp_path, "x.json", b'[{"a": "caf\xe9"}]', encoding="latin-1")
    assert batch.frame.rows() == [("café",)]


def test_bytes_undefined_in_the_declared_encoding_name_the_byte(tmp_path: Path) -> None:
    """A byte the declared encoding cannot decode stops the run, naming the byte."""
    message = _error(tmp_path, "x.json", b'[{"a": "\x81"}]', encoding="cp1252")
    assert message == (
        "x.json: cannot decode byte 0x81 as cp1252; set `encoding:` to the file's encoding"
    )


def test_empty_document_is_an_error(tmp_path: Path) -> None:
    """An empty file is not a JSON document, and the message says what would be."""
    message = _error(tmp_path, "x.json", b"  \n")
    assert message == (
        "x.json: the file holds no JSON value (end of file at line 2, column 1); "
        "a JSON document needs at least [] or {}"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"42", "a record must be a JSON object, found a number"),
        (b' "text" ', "a record must be a JSON object, found a string"),
        (b"true", "a record must be a JSON object, found a boolean"),
    ],
)
def test_scalar_document_is_one_bad_record(tmp_path: Path, document: bytes, message: str) -> None:
    """A document that is a lone scalar is valid JSON: one record, quarantined as not an object."""
    [batch] = _read(tmp_path, "x.json", document)
    assert batch.frame.height == 0
    assert batch.unreadable == [Unreadable("x.json#", document.strip().decode(), message)]


def test_byte_order_mark_and_gzip_are_handled(tmp_path: Path) -> None:
    """A gzipped document with a UTF-8 BOM reads in both passes (key search, then items)."""
    content = b"\xef\xbb\xbf" + json.dumps({"items": [{"a": i} for i in range(5)]}).encode()
    batches = _read(tmp_path, "x.json.gz", content, batch_size=2)
    assert [batch.frame.height for batch in batches] == [2, 2, 1]
    assert batches[-1].positions == ["x.json.gz#items[4]"]
    assert sum(batch.bytes_read for batch in batches) == (tmp_path / "x.json.gz").stat().st_size


def test_types_are_decided_over_each_batch(tmp_path: Path) -> None:
    """Mixed types within a batch load as text; a later field is kept."""
    document = [{"v": 1}, {"v": "x"}, {"v": True, "late": {"k": [1]}}]
    [batch] = _read(tmp_path, "x.json", document)
    assert batch.frame.rows() == [("1", None), ("x", None), ("true", "[1]")]
    assert batch.frame.columns == ["v", "late__k"]


# ---------------------------------------------------------------------------------------
# Hostile documents: nesting, odd whitespace, positions.


def _reader(base: Path, name: str, content: bytes, **options: Any) -> FileSource:
    (base / name).write_bytes(content)
    return FileSource(
        FileOptions(type="file", path=name, **options), SourceContext("facilities", 100, base)
    )


_DEEP = (
    "invalid JSON at {where}: arrays and objects nest deeper than {limit} levels; "
    "if the data is meant to, raise the source's `max_depth:`"
)


def test_nesting_deeper_than_max_depth_is_refused_where_it_happens(tmp_path: Path) -> None:
    """100,000 opening brackets are refused at the 65th, by line and column, before parsing."""
    message = _error(tmp_path, "x.json", b"[\n" + b"[" * 100_000)
    assert message == "x.json: " + _DEEP.format(where="line 2, column 64", limit=64)


def test_max_depth_is_an_option_and_counts_exactly(tmp_path: Path) -> None:
    """``max_depth: 3`` reads three levels and refuses a fourth; strings' brackets don't count."""
    three = b'[{"a": ["[[[{{{\\"]]]"]}]'
    [batch] = _read(tmp_path, "x.json", three, max_depth=3)
    assert batch.frame.rows() == [('["[[[{{{\\"]]]"]',)]
    message = _error(tmp_path, "x.json", b'[{"a": [["x"]]}]', max_depth=3)
    assert message == "x.json: " + _DEEP.format(where="line 1, column 9", limit=3)


def test_depth_is_followed_across_reads(tmp_path: Path) -> None:
    """Nesting and strings that straddle the parser's 64 KB reads are followed exactly."""
    filler = json.dumps({"pad": 'x\\"[{' * 30_000})  # a long string with escapes and brackets
    document = ("[" + filler + "," + "[" * 63 + "]" * 63 + "]").encode()
    [batch] = _read(tmp_path, "x.json", document)
    assert batch.unreadable[0].raw == "[" * 63 + "]" * 63
    deeper = ("[" + filler + "," + "[" * 64 + "]" * 64 + "]").encode()
    message = _error(tmp_path, "x.json", deeper)
    assert message == "x.json: " + _DEEP.format(
        where=f"line 1, column {len(filler) + 66}", limit=64
    )


def test_form_feed_is_not_whitespace(tmp_path: Path) -> None:
    """`[\\f]` is not JSON (yajl takes the form feed for whitespace): refused with its position."""
    message = _error(tmp_path, "x.json", b'[{"a": 1},\n\x0c{"a": 2}]')
    assert message == "x.json: invalid JSON at line 2, column 1: a form feed is not JSON whitespace"
    message = _error(tmp_path, "x.json", b"[\x0b]")
    assert (
        message == "x.json: invalid JSON at line 1, column 2: a vertical tab is not JSON whitespace"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            b'[{"a": 1},\n {"b": tru}]',
            "x.json#[1]: invalid JSON at line 2, column 11, after 1 records: "
            "lexical error: invalid string in json text.",
        ),
        (
            '[{"é": "ü"}, {"b": 1,,}]'.encode(),
            "x.json#[1]: invalid JSON at line 1, column 22, after 1 records: "
            "parse error: invalid object key (must be a string)",
        ),
        (
            b'{"data": [1, 2]} {"data": [3]}',
            "x.json#data[2]: invalid JSON at line 1, column 18, after 2 records: "
            "parse error: trailing garbage; "
            "for one JSON value per line, use `format: jsonl`",
        ),
    ],
)
def test_malformed_document_names_line_and_column(
    tmp_path: Path, document: bytes, message: str
) -> None:
    """Every parse error names the line and column (in characters) where the parser stopped."""
    assert _error(tmp_path, "x.json", document) == message


def test_error_position_deep_into_a_large_document(tmp_path: Path) -> None:
    """An error past the first reads is found at its exact line and column."""
    lines = [json.dumps({"id": i, "text": "é" * 50}) + "," for i in range(3000)]
    document = ("[\n" + "\n".join(lines) + '\n{"id": x}]').encode()
    message = _error(tmp_path, "x.json", document)
    assert message == (
        "x.json#[3000]: invalid JSON at line 3002, column 8, after 3000 records: "
        "lexical error: invalid char in json text."
    )


@pytest.mark.parametrize("document", [b"null", b" [ ] ", b'{"results": []}', b'{"data": []}'])
def test_documents_without_records_are_named(tmp_path: Path, document: bytes) -> None:
    """A valid document that holds no record yields nothing and is named in the notices."""
    source = _reader(tmp_path, "x.json", document)
    assert list(source.batches()) == []
    assert source.context.notices == ["x.json holds no records"]


def test_records_with_no_fields_are_unreadable(tmp_path: Path) -> None:
    """`{}` (or only empty objects) gives no column: it is unreadable, not an empty row."""
    [batch] = _read(tmp_path, "x.json", [{}, {"a": {"b": {}}}, {"a": {"b": 1}}])
    assert batch.frame.rows() == [(1,)]
    assert batch.unreadable == [
        Unreadable("x.json#[0]", "{}", "the record has no fields"),
        Unreadable("x.json#[1]", '{"a":{"b":{}}}', "the record has no fields"),
    ]


@pytest.mark.parametrize(
    ("path", "ids", "positions"),
    [
        ("[0].records", [1, 2], ["[0].records[0]", "[0].records[1]"]),
        ("[1].records", [3], ["[1].records[0]"]),
        ("[*].records", [1, 2, 3], ["[*].records[0]", "[*].records[1]", "[*].records[2]"]),
        ("[1].meta.rows", [9], ["[1].meta.rows[0]"]),
    ],
)
def test_records_path_indexes_arrays(
    tmp_path: Path, path: str, ids: list[int], positions: list[str]
) -> None:
    """`[N]` takes one item of an array and `[*]` each; keys join with dots."""
    document = [
        {"records": [{"id": 1}, {"id": 2}], "meta": {"rows": [{"id": 8}]}},
        {"records": [{"id": 3}], "meta": {"rows": [{"id": 9}]}},
    ]
    [batch] = _read(tmp_path, "x.json", document, records=path)
    assert batch.frame.get_column("id").to_list() == ids
    assert batch.positions == [f"x.json#{p}" for p in positions]


@pytest.mark.parametrize("path", ["a..b", "[x]", ".a", "a.", "a[0"])
def test_records_path_that_is_not_a_path_is_an_error(tmp_path: Path, path: str) -> None:
    """A ``records:`` value that is not a path says how to write one."""
    message = _error(tmp_path, "x.json", [], records=path)
    assert message == (
        f"x.json#{path}: records: {path!r} is not a path; write keys joined by dots, and [N] "
        "or [*] for the items of an array, e.g. data.items or [0].records"
    )


def test_lone_record_with_a_big_array_gets_a_notice(tmp_path: Path) -> None:
    """An object read as one record, holding 100 objects under a key, suggests `records:`."""
    document = {"meta": {"page": 1}, "payload": {"rows": [{"id": i} for i in range(100)]}}
    source = _reader(tmp_path, "x.json", json.dumps(document).encode())
    [batch] = list(source.batches())
    assert batch.frame.height == 1
    assert source.context.notices == [
        "x.json holds one record whose 'payload.rows' is an array of 100 objects; "
        "if those are the records, set `records: 'payload.rows'`"
    ]


def test_declared_json_fields_are_not_flattened(tmp_path: Path) -> None:
    """A top-level field the resource declares `type: json` stays one JSON text."""
    (tmp_path / "x.json").write_text(json.dumps([{"p": {"a": [1]}, "q": {"b": 2}}, {"p": "s"}]))
    context = SourceContext("facilities", 100, tmp_path, json_columns=frozenset({"p"}))
    [batch] = list(FileSource(FileOptions(type="file", path="x.json"), context).batches())
    assert batch.frame.to_dicts() == [
        {"q__b": 2, "p": '{"a":[1]}'},
        {"q__b": None, "p": '"s"'},
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\x0c', max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON, st.lists(st.integers(min_value=1, max_value=8), max_size=10))
def test_guard_measures_depth_exactly_in_any_pieces(value: Any, cuts: list[int]) -> None:
    """Fed a JSON text in pieces cut anywhere, the guard allows its depth and refuses one less."""
    text = json.dumps(value).encode()
    depth = _depth(value)

    def feed(limit: int) -> None:
        guard, at = DepthGuard(limit), 0
        for size in [*cuts, len(text)]:
            guard.feed(text[at : at + size])
            at += size

    feed(depth)
    if depth:
        with pytest.raises(Refused):
            feed(depth - 1)


def test_long_strings_full_of_escaped_quotes_scan_in_linear_time(tmp_path: Path) -> None:
    """A 2 MB string of escaped quotes across many reads (once quadratic: minutes) reads fast."""
    document = json.dumps([{"s": '"' * 1_000_000}]).encode()
    started = time.monotonic()
    [batch] = _read(tmp_path, "x.json", document)
    assert batch.frame.rows() == [('"' * 1_000_000,)]
    assert time.monotonic() - started < 10


@settings(max_examples=300, deadline=None)
@given(st.lists(_JSON, min_size=1, max_size=4))
def test_line_screen_finds_exactly_the_lines_too_deep(values: list[Any]) -> None:
    """JSON Lines: a line is refused exactly when it nests deeper than the limit."""
    lines = [json.dumps(value).encode() + b"\n" for value in values]
    for limit in (1, 2, 3):
        screened = screen_lines(lines, limit)
        refused = [i for i in screened.suspects if line_problem(lines[i], limit) is not None]
        assert refused == [i for i, value in enumerate(values) if _depth(value) > limit]
