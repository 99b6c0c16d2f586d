"""The file source: options, globs, formats, gzip, unreadable files, byte counts, streaming."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.sources import SourceContext, registry
from ladle.sources.files import FileOptions, FileSource


def _source(base: Path, path: str, *, batch_size: int = 100, **options: Any) -> FileSource:
    return FileSource(
        FileOptions(type="file", path=path, **options), SourceContext("things", batch_size, base)
    )


def _read(base: Path, path: str, **options: Any) -> list[SourceBatch]:
    return list(_source(base, path, **options).batches())


def _error(base: Path, path: str, **options: Any) -> str:
    with pytest.raises(SourceError) as info:
        _read(base, path, **options)
    return str(info.value)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_registry_maps_file_to_these_options_and_source() -> None:
    """``type: file`` resolves to FileOptions and FileSource."""
    kind = registry()["file"]
    assert kind.options is FileOptions
    assert kind.build is FileSource


def test_options_reject_unknown_keys_and_bad_values() -> None:
    """A misspelt key, a two-character delimiter and an unknown encoding are config errors."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        FileOptions.model_validate({"type": "file", "path": "x.csv", "delimeter": ";"})
    with pytest.raises(ValidationError, match="must be a single character, got ';;'"):
        FileOptions(type="file", path="x.csv", delimiter=";;")
    with pytest.raises(ValidationError, match="unknown encoding 'utf-9'"):
        FileOptions(type="file", path="x.csv", encoding="utf-9")


def test_glob_reads_matching_files_in_sorted_order(tmp_path: Path) -> None:
    """Every match is read, sorted by path, each with positions relative to the base dir."""
    _jsonl(tmp_path / "data" / "b.jsonl", [{"f": "b"}])
    _jsonl(tmp_path / "data" / "a.jsonl", [{"f": "a"}, {"f": "a"}])
    _jsonl(tmp_path / "data" / "sub" / "c.jsonl", [{"f": "c"}])
    batches = _read(tmp_path, "data/**/*.jsonl")
    assert [batch.positions for batch in batches] == [
        ["data/a.jsonl:1", "data/a.jsonl:2"],
        ["data/b.jsonl:1"],
        ["data/sub/c.jsonl:1"],
    ]


def test_glob_characters_in_the_base_dir_are_literal(tmp_path: Path) -> None:
    """Only the ``path:`` option is a pattern; the pipeline's directory name is not."""
    base = tmp_path / "run[1]"
    _jsonl(base / "a.jsonl", [{"a": 1}])
    [batch] = _read(base, "*.jsonl")
    assert batch.positions == ["a.jsonl:1"]


def test_file_outside_the_base_dir_is_shown_absolute(tmp_path: Path) -> None:
    """A path outside the pipeline's directory is shown in full, as the user would find it."""
    _jsonl(tmp_path / "elsewhere" / "x.jsonl", [{"a": 1}])
    (tmp_path / "pipeline").mkdir()
    [batch] = _read(tmp_path / "pipeline", "../elsewhere/x.jsonl")
    assert batch.positions == [f"{tmp_path}/elsewhere/x.jsonl:1"]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A plain path that does not exist says where it was looked for."""
    message = _error(tmp_path, "data/x.jsonl")
    assert message == f"data/x.jsonl: file not found (looked in {tmp_path})"


def test_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    """A glob with no match is an error, not an empty run."""
    message = _error(tmp_path, "data/*.jsonl")
    assert message == f"data/*.jsonl: no file matches 'data/*.jsonl' (looked in {tmp_path})"


def test_unknown_extension_asks_for_a_format(tmp_path: Path) -> None:
    """A file whose extension says nothing names itself and asks for ``format:``."""
    (tmp_path / "x.dat").write_text("{}\n")
    assert _error(tmp_path, "x.dat") == (
        "x.dat: cannot tell the format from extension '.dat'; set `format:` to one of "
        "json, jsonl, ndjson, csv, parquet"
    )


def test_declared_format_wins_over_the_extension(tmp_path: Path) -> None:
    """``format: ndjson`` reads a ``.txt`` file as JSON Lines."""
    _jsonl(tmp_path / "x.txt", [{"a": 1}])
    [batch] = _read(tmp_path, "x.txt", format="ndjson")
    assert batch.frame.rows() == [(1,)]


@pytest.mark.parametrize("name", ["t.jsonl.gz", "t.ndjson.GZ", "t.csv.gz", "t.json.gz"])
def test_gzip_files_are_read_and_counted_in_compressed_bytes(tmp_path: Path, name: str) -> None:
    """A ``.gz`` file is decompressed on the fly; its bytes add up to its size on disk."""
    records = [{"id": str(i), "text": "x" * (i % 50)} for i in range(3000)]
    if ".csv" in name:
        text = "id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in records)
    elif ".json." in name:
        text = json.dumps(records)
    else:
        text = "".join(json.dumps(r) + "\n" for r in records)
    (tmp_path / name).write_bytes(gzip.compress(text.encode()))
    batches = _read(tmp_path, name, batch_size=1000)
    frame = pl.concat([batch.frame for batch in batches])
    assert frame.get_column("id").to_list() == [r["id"] for r in records]
    assert sum(batch.bytes_read for batch in batches) == (tmp_path / name).stat().st_size


def test_gz_file_that_is_not_gzip_is_an_error(tmp_path: Path) -> None:
    """A ``.gz`` that is not gzip names the file and suggests dropping the extension."""
    (tmp_path / "x.jsonl.gz").write_text('{"a": 1}\n')
    assert _error(tmp_path, "x.jsonl.gz") == (
        "x.jsonl.gz: not gzip-compressed (it starts with b'{\"a\": 1}'); "
        "if it is not compressed, drop the .gz extension"
    )


def test_truncated_gzip_is_an_error(tmp_path: Path) -> None:
    """A gzip stream cut short is an error naming the file, not a short read."""
    whole = gzip.compress(b"".join(b'{"a": %d}\n' % i for i in range(1000)))
    (tmp_path / "x.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    assert _error(tmp_path, "x.jsonl.gz") == (
        "x.jsonl.gz: the gzip data is truncated or corrupt (Compressed file ended before the "
        "end-of-stream marker was reached)"
    )


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv", "t.json", "t.parquet"])
def test_bytes_read_add_up_to_the_file_size(tmp_path: Path, name: str) -> None:
    """Over a whole file, ``bytes_read`` sums to its size, trailing blank lines included."""
    frame = pl.DataFrame({"id": range(500), "text": ["some text"] * 500})
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.write_parquet(path)
    elif name.endswith(".csv"):
        frame.write_csv(path)
        path.write_bytes(path.read_bytes() + b"\n\n\n")
    elif name.endswith(".json"):
        frame.write_json(path)
    else:
        frame.write_ndjson(path)
        path.write_bytes(path.read_bytes() + b"\n\n\n")
    batches = _read(tmp_path, name, batch_size=64)
    assert sum(batch.frame.height for batch in batches) == 500
    assert sum(batch.bytes_read for batch in batches) == path.stat().st_size


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv", "t.json"])
def test_first_batch_consumes_a_small_part_of_a_large_file(tmp_path: Path, name: str) -> None:
    """Reading streams: the first of many batches has consumed little of an 8 MB file."""
    frame = pl.DataFrame({"id": range(100_000), "text": ["x" * 60] * 100_000})
    path = tmp_path / name
    if name == "t.jsonl":
        frame.write_ndjson(path)
    elif name == "t.csv":
        frame.write_csv(path)
    else:
        frame.write_json(path)
    batches = _source(tmp_path, name, batch_size=100).batches()
    first = next(batches)
    assert first.frame.height == 100
    assert first.bytes_read < path.stat().st_size / 4


def test_every_bad_file_of_a_glob_is_named(tmp_path: Path) -> None:
    """Files that cannot be read are all named, in order, after reading on past the first;
    nothing after the first bad file is yielded."""
    _jsonl(tmp_path / "a.jsonl", [{"n": 1}])
    (tmp_path / "b.json").write_text("[1,")
    (tmp_path / "c.jsonl.gz").write_bytes(b"not gzip")
    _jsonl(tmp_path / "d.jsonl", [{"n": 4}])
    source = _source(tmp_path, "*")
    batches = source.batches()
    assert next(batches).frame.rows() == [(1,)]
    with pytest.raises(SourceError) as info:
        next(batches)
    assert str(info.value) == (
        "*: 2 files cannot be read, so nothing of them was loaded: "
        "b.json#[1]: invalid JSON at the end of the file (line 1, column 4), after 1 records: "
        "parse error: premature EOF; "
        "c.jsonl.gz: not gzip-compressed (it starts with b'not gzip'); "
        "if it is not compressed, drop the .gz extension"
    )


def test_one_bad_file_keeps_its_own_message(tmp_path: Path) -> None:
    """With one bad file the error is that file's, unwrapped."""
    (tmp_path / "a.json").write_text("[1,")
    _jsonl(tmp_path / "b.jsonl", [{"n": 1}])
    assert _error(tmp_path, "*") == (
        "a.json#[1]: invalid JSON at the end of the file (line 1, column 4), after 1 records: "
        "parse error: premature EOF"
    )


def test_files_with_no_records_are_named_in_notices(tmp_path: Path) -> None:
    """An empty JSON Lines file, a CSV with only a header and `[]` each get a notice."""
    (tmp_path / "a.jsonl").write_text("\n\n")
    (tmp_path / "b.csv").write_text("x,y\n")
    (tmp_path / "c.json").write_text("[]")
    source = _source(tmp_path, "*")
    assert list(source.batches()) == []
    assert source.context.notices == [
        "a.jsonl holds no records",
        "b.csv holds no records",
        "c.json holds no records",
    ]
