"""The file source: options, globs, formats, compression, what a file holds, encodings,
the file column, unreadable files, byte counts, streaming."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.kinds import SOURCES
from ladle.sources import SourceContext, sniff
from ladle.sources.files import FileOptions, FileSource
from ladle.sources.sniff import HEAD, refusal


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
    kind = SOURCES["file"]
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


# ---------------------------------------------------------------- compression by content

_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("t.csv.bz2", "bz2"), ("t.jsonl.xz", "xz"), ("t.json.zst", "zstd"), ("t.csv.ZSTD", "zstd")],
)
def test_bz2_xz_and_zstd_files_are_read_and_counted_in_compressed_bytes(
    tmp_path: Path, name: str, kind: str
) -> None:
    """bz2, xz and zstd files are decompressed on the fly like gzip; their ``bytes_read``
    add up to the compressed size on disk."""
    ids = [str(i) for i in range(3000)]
    if ".csv" in name:
        text = "id\n" + "".join(f"{i}\n" for i in ids)
    elif ".json." in name:
        text = json.dumps([{"id": i} for i in ids])
    else:
        text = "".join(json.dumps({"id": i}) + "\n" for i in ids)
    (tmp_path / name).write_bytes(_COMPRESS[kind](text.encode()))
    source = _source(tmp_path, name, batch_size=1000)
    batches = list(source.batches())
    assert pl.concat([b.frame for b in batches]).get_column("id").to_list() == ids
    assert sum(batch.bytes_read for batch in batches) == (tmp_path / name).stat().st_size
    assert source.context.notices == []


def test_a_file_is_decompressed_by_its_magic_bytes_and_told(tmp_path: Path) -> None:
    """A ``.csv`` holding gzip is read through gzip, a ``.gz`` holding bz2 through bz2, and
    each is named in the notices; the format comes from the name without the compression."""
    (tmp_path / "a.csv").write_bytes(gzip.compress(b"id\n1\n"))
    (tmp_path / "b.csv.gz").write_bytes(bz2.compress(b"id\n2\n"))
    source = _source(tmp_path, "*")
    assert [b.frame.rows() for b in source.batches()] == [[("1",)], [("2",)]]
    assert source.context.notices == [
        "a.csv is gzip-compressed; read as gzip",
        "b.csv.gz is bz2-compressed, not gzip as its name says; read as bz2",
    ]


def test_zstd_file_of_several_frames_is_read_whole(tmp_path: Path) -> None:
    """Frames written one after another (as ``zstd`` appends) are all read."""
    compressor = zstandard.ZstdCompressor()
    frames = compressor.compress(b'{"n": 1}\n') + compressor.compress(b'{"n": 2}\n')
    (tmp_path / "x.jsonl.zst").write_bytes(frames)
    [batch] = _read(tmp_path, "x.jsonl.zst")
    assert batch.frame.rows() == [(1,), (2,)]


_RECORDS = {
    "x.jsonl": b"".join(b'{"a": %d}\n' % i for i in range(100_000)),
    "x.csv": b"a\n" + b"".join(b"%d\n" % i for i in range(200_000)),
    "x.json": b"[" + b",".join(b'{"a": %d}' % i for i in range(100_000)) + b"]",
}


@pytest.mark.parametrize("kind", ["bz2", "xz", "zstd"])
@pytest.mark.parametrize("name", sorted(_RECORDS))
def test_truncated_bz2_xz_and_zstd_are_errors(tmp_path: Path, kind: str, name: str) -> None:
    """A compressed stream cut short is an error naming the file and the compression,
    whichever reader was reading it."""
    whole = _COMPRESS[kind](_RECORDS[name])
    (tmp_path / name).write_bytes(whole[: len(whole) // 2])
    assert _error(tmp_path, name) == (
        f"{name}: the {kind} data is truncated or corrupt "
        "(Compressed file ended before the end-of-stream marker was reached)"
    )


def test_corrupt_zstd_is_an_error(tmp_path: Path) -> None:
    """zstd data that does not decompress names the file and zstd's own complaint."""
    (tmp_path / "x.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    assert _error(tmp_path, "x.csv.zst") == (
        "x.csv.zst: the zstd data is truncated or corrupt "
        "(zstd decompressor error: Unsupported frame parameter)"
    )


def test_zstd_without_its_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the zstandard package a zstd file fails with the command that installs it."""
    (tmp_path / "x.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(b"id\n1\n"))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    assert _error(tmp_path, "x.csv.zst") == (
        "x.csv.zst: reading zstd-compressed files needs the zstandard package: "
        "pip install zstandard"
    )


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz"])
def test_compressed_parquet_is_read(tmp_path: Path, kind: str) -> None:
    """A Parquet file compressed whole (gzip, bz2, xz) is read through a seekable stream."""
    buffer = io.BytesIO()
    pl.DataFrame({"id": [1, 2, 3]}).write_parquet(buffer)
    (tmp_path / "t.parquet.c").write_bytes(_COMPRESS[kind](buffer.getvalue()))
    batches = _read(tmp_path, "t.parquet.c", format="parquet")
    assert [b.frame.rows() for b in batches] == [[(1,), (2,), (3,)]]


def test_zstd_parquet_says_to_decompress_it(tmp_path: Path) -> None:
    """A zstd-compressed Parquet file (zstd streams cannot seek) asks to be decompressed."""
    buffer = io.BytesIO()
    pl.DataFrame({"id": [1]}).write_parquet(buffer)
    (tmp_path / "t.parquet.zst").write_bytes(_COMPRESS["zstd"](buffer.getvalue()))
    assert _error(tmp_path, "t.parquet.zst") == (
        "t.parquet.zst: a zstd-compressed Parquet file cannot be read: Parquet is read by "
        "seeking, which zstd streams cannot do; decompress it first (zstd -d), Parquet "
        "compresses its pages itself"
    )


def test_empty_gz_file_holds_no_records(tmp_path: Path) -> None:
    """An empty ``.gz`` file (nothing to tell its compression by) is a file with no records."""
    (tmp_path / "x.jsonl.gz").write_bytes(b"")
    source = _source(tmp_path, "x.jsonl.gz")
    assert list(source.batches()) == []
    assert source.context.notices == ["x.jsonl.gz holds no records"]


# ---------------------------------------------------------------- what a file holds

_EXTRACT = (
    "extract it and point `path:` at the files inside (ladle decompresses gzip, bz2, xz and "
    "zstd itself)"
)
_HTML_ADVICE = (
    "a download that was redirected to a login or error page saves one: fetch the file again"
)


def _zip(name: str, content: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _tar_gz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"id\n1\n"
        info = tarfile.TarInfo("inner.csv")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "tickets.csv",
            b"\n  <!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
            "looks like an HTML page, not CSV (it starts with '<!DOCTYPE html>'); " + _HTML_ADVICE,
        ),
        (
            "t.csv",
            b"\xef\xbb\xbf<html lang='en'>\n<head><title>503</title></head>\n",
            "looks like an HTML page, not CSV (it starts with \"<html lang='en'>\"); "
            + _HTML_ADVICE,
        ),
        (
            "t.jsonl",
            b"<!-- error page -->\n<html>...</html>\n",
            "looks like an HTML page, not JSON Lines (it starts with '<!-- error page -->'); "
            + _HTML_ADVICE,
        ),
        (
            "t.json",
            b'<?xml version="1.0"?>\n<records><r id="1"/></records>\n',
            "looks like an XML document, not JSON (it starts with '<?xml version=\"1.0\"?>'); "
            "ladle reads CSV, JSON, JSON Lines and Parquet",
        ),
        (
            "t.csv",
            b"<rss version='2.0'>\n<channel><title>News feed of the week</title></channel>\n",
            "looks like an XML document, not CSV (it starts with \"<rss version='2.0'>\"); "
            "ladle reads CSV, JSON, JSON Lines and Parquet",
        ),
        ("t.csv", _zip("inner.csv", "id\n1\n"), "looks like a zip archive, not CSV; " + _EXTRACT),
        (
            "t.csv",
            _zip("xl/workbook.xml", "<workbook/>"),
            "looks like an Excel workbook (xlsx), not CSV; export it as CSV",
        ),
        ("t.csv.gz", _tar_gz(), "looks like a tar archive, not CSV; " + _EXTRACT),
        (
            "t.jsonl",
            b"7z\xbc\xaf\x27\x1c\x00\x04",
            "looks like a 7z archive, not JSON Lines; " + _EXTRACT,
        ),
        ("t.csv", b"Rar!\x1a\x07\x01\x00", "looks like a RAR archive, not CSV; " + _EXTRACT),
        (
            "t.csv",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100,
            "looks like an Office document (xls, doc), not CSV; export it as CSV",
        ),
        (
            "t.csv",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
            "looks like a PDF document, not CSV; check where the file came from",
        ),
        (
            "t.json",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "looks like a PNG image, not JSON; check where the file came from",
        ),
        (
            "t.csv",
            b"\xff\xd8\xff\xe0\x00\x10JFIF",
            "looks like a JPEG image, not CSV; check where the file came from",
        ),
        (
            "t.csv",
            b"GIF89a\x01\x00",
            "looks like a GIF image, not CSV; check where the file came from",
        ),
        (
            "t.csv",
            b"SQLite format 3\x00" + b"\x10\x00" * 50,
            "looks like an SQLite database, not CSV; check where the file came from",
        ),
        ("t.csv", b"PAR1\x15\x04", "looks like a Parquet file, not CSV; set `format: parquet`"),
        (
            "t.csv",
            b"id,name\n" + b"\x00\x01\x02\x03binary\x00\x00\x07\x00" * 20,
            "looks like binary data, not CSV (160 of its first 288 bytes are control "
            "characters such as NUL); check where the file came from",
        ),
        (
            "t.csv",
            "id,name\n1,Ann\n".encode("utf-16-le"),
            "looks like UTF-16 text without a byte order mark, not CSV; set `encoding: utf-16-le`",
        ),
        (
            "t.csv",
            b"<title>Service unavailable</title>\n<p>Try again later</p>\n",
            "looks like an HTML page, not CSV (it starts with "
            "'<title>Service unavailable</title>'); " + _HTML_ADVICE,
        ),
        (
            "t.json",
            b"<error><code>403</code></error>",
            "looks like an XML document, not JSON (it starts with "
            "'<error><code>403</code></error>'); "
            "ladle reads CSV, JSON, JSON Lines and Parquet",
        ),
        (
            "t.parquet",
            b"<!doctype html><html></html>",
            "looks like an HTML page, not Parquet (it starts with '<!doctype html><html></html>'); "
            + _HTML_ADVICE,
        ),
    ],
)
def test_a_file_that_is_not_its_format_is_refused(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    """HTML, XML, archives, documents, images and binary data fail the file, named, before
    a record is read."""
    (tmp_path / name).write_bytes(content)
    assert _error(tmp_path, name) == f"{name}: {message}"


@pytest.mark.parametrize(
    ("content", "options"),
    [
        (b"<id>,name\n1,Ann\n", {}),
        (b"<title>,<body>\n1,Ann\n", {}),
        (b"id,note\n1,ok\n2,x\x00y\n3,also ok\n", {}),
        ("id,name\n1,Ann\n".encode("utf-16"), {"encoding": "utf-16"}),
        ("id,name\n1,Ann\n".encode("utf-16-le"), {"encoding": "utf-16-le"}),
    ],
)
def test_text_that_only_resembles_another_kind_is_read(
    tmp_path: Path, content: bytes, options: dict[str, Any]
) -> None:
    """A CSV header in angle brackets, a stray NUL and declared UTF-16 are text, not refused."""
    (tmp_path / "t.csv").write_bytes(content)
    batches = _read(tmp_path, "t.csv", **options)
    assert sum(b.fetched for b in batches) in (1, 3)


@given(
    st.text(
        st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from('\t\n\r,;"'),
        max_size=300,
    ).filter(lambda text: not text.lstrip().startswith("<"))
)
@settings(max_examples=200, deadline=None)
def test_text_never_looks_like_another_kind(text: str) -> None:
    """Text without control characters that does not start with ``<`` is never refused."""
    for fmt in ("csv", "json", "jsonl"):
        assert refusal(text.encode()[:HEAD], fmt, encoding="utf-8") is None


# ---------------------------------------------------------------- encoding: auto


@pytest.mark.parametrize(
    ("content", "detected", "name"),
    [
        (
            "id;name\n1;Jürgen Müller “groß” \u2013 5 €\n".encode("cp1252"),
            "cp1252",
            "Jürgen Müller “groß” \u2013 5 €",
        ),
        ("id;name\n1;Jürgen\n".encode("utf-8-sig"), "utf-8", "Jürgen"),
        ("id;name\n1;Jürgen\n".encode("utf-16"), "utf-16", "Jürgen"),
        (b"id;name\n1;Ann\n", "utf-8", "Ann"),
        (
            "id;name\n1;Иван Петров, Москва\n2;Мария Смирнова\n".encode("cp1251"),
            "cp1251",
            "Иван Петров, Москва",
        ),
    ],
)
def test_encoding_auto_detects_and_names_the_encoding(
    tmp_path: Path, content: bytes, detected: str, name: str
) -> None:
    """``encoding: auto`` reads each file in the encoding it detects and says which."""
    (tmp_path / "data.csv").write_bytes(content)
    source = _source(tmp_path, "data.csv", encoding="auto")
    [batch] = list(source.batches())
    assert batch.frame.get_column("name").to_list()[0] == name
    assert source.context.notices == [f"data.csv: encoding detected as {detected}"]


def test_encoding_auto_on_a_sample_cut_inside_a_character(tmp_path: Path) -> None:
    """A UTF-8 file whose 64 KiB sample ends inside a character is still taken for UTF-8."""
    line = "1," + "é" * 99 + "\n"
    text = "id,text\n" + "1," + "x" * (sniff.SAMPLE - 9) + "\n" + line * 1000
    assert len(text.encode()[: sniff.SAMPLE + 1]) == sniff.SAMPLE + 1
    (tmp_path / "t.csv").write_bytes(text.encode())
    source = _source(tmp_path, "t.csv", encoding="auto", batch_size=5000)
    assert sum(b.frame.height for b in source.batches()) == 1001
    assert source.context.notices == ["t.csv: encoding detected as utf-8"]


def test_encoding_auto_that_finds_nothing_asks_for_the_encoding(tmp_path: Path) -> None:
    """Bytes that no encoding reads well fail the file with what to set."""
    (tmp_path / "t.csv").write_bytes(bytes(range(0x80, 0x100)) * 4)
    assert _error(tmp_path, "t.csv", encoding="auto") == (
        "t.csv: cannot detect the encoding from the first 512 bytes; "
        "set `encoding:` to the file's encoding"
    )


def test_encoding_auto_is_a_valid_option() -> None:
    """``auto`` passes validation; a misspelt encoding names auto among the suggestions."""
    assert FileOptions(type="file", path="x.csv", encoding="auto").encoding == "auto"
    with pytest.raises(ValidationError, match="try utf-8, latin-1, cp1252 or auto"):
        FileOptions(type="file", path="x.csv", encoding="autodetect")


# ---------------------------------------------------------------- file_column


def _frame_file_columns(batches: list[SourceBatch]) -> list[tuple[str, str]]:
    frame = pl.concat(
        [b.frame.select(pl.col("id").cast(pl.String), "source_file") for b in batches]
    )
    return [(str(row[0]), row[1]) for row in frame.rows()]


def test_file_column_holds_the_path_below_the_glob_root_in_every_format(
    tmp_path: Path,
) -> None:
    """CSV, JSON, JSON Lines and Parquet records all get the path the glob matched."""
    data = tmp_path / "exports"
    (data / "north").mkdir(parents=True)
    (data / "north" / "a.csv").write_text("id\n1\n")
    (data / "north" / "b.json").write_text('[{"id": 2}]')
    _jsonl(data / "south" / "c.jsonl", [{"id": 3}])
    pl.DataFrame({"id": [4]}).write_parquet(data / "south" / "d.parquet")
    batches = _read(tmp_path, "exports/*/*.*", file_column="source_file")
    assert _frame_file_columns(batches) == [
        ("1", "north/a.csv"),
        ("2", "north/b.json"),
        ("3", "south/c.jsonl"),
        ("4", "south/d.parquet"),
    ]


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("data/x/t.jsonl", "t.jsonl"),
        ("data/**/*.jsonl", "x/t.jsonl"),
        ("**/t.jsonl", "data/x/t.jsonl"),
        ("data/x/t.json[l]", "t.jsonl"),
    ],
)
def test_file_column_root_is_the_fixed_part_of_the_pattern(
    tmp_path: Path, pattern: str, value: str
) -> None:
    """The column is relative to the pattern's leading directories without glob characters."""
    _jsonl(tmp_path / "data" / "x" / "t.jsonl", [{"id": 1}])
    [batch] = _read(tmp_path, pattern, file_column="source_file")
    assert batch.frame.get_column("source_file").to_list() == [value]


def test_file_column_outside_the_base_dir(tmp_path: Path) -> None:
    """A pattern reaching out of the pipeline's directory is rooted where it points."""
    _jsonl(tmp_path / "elsewhere" / "2024" / "x.jsonl", [{"id": 1}])
    (tmp_path / "pipeline").mkdir()
    [batch] = _read(tmp_path / "pipeline", "../elsewhere/*/x.jsonl", file_column="source_file")
    assert batch.frame.get_column("source_file").to_list() == ["2024/x.jsonl"]


def test_file_column_that_the_file_already_has_is_an_error(tmp_path: Path) -> None:
    """A column of that name in the data would be overwritten: the file is refused."""
    (tmp_path / "t.csv").write_text("id,Source File\n1,x\n")
    assert _error(tmp_path, "t.csv", file_column="source_file") == (
        "t.csv: `file_column: source_file` names a column the file already has; choose another name"
    )


def test_file_column_must_be_stored_as_written() -> None:
    """A name that snake-casing would change is refused, with the name it would become."""
    with pytest.raises(ValidationError) as info:
        FileOptions(type="file", path="*.csv", file_column="_file")
    assert info.value.errors()[0]["msg"] == (
        "Value error, '_file' would be stored as 'file' (column names are snake_cased); "
        "write `file_column: file`, or a name such as source_file"
    )
