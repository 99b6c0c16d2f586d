"""The JSON document reader: where the records are, their positions, and broken documents."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


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
    assert message == "x.json: the file is empty; a JSON document needs at least [] or {}"


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
