"""Resuming a file read at the byte its checkpoint names: the same records and positions
as a read that passes over the ones before it, the file's bytes not read again, and a
file changed under the checkpoint still noticed."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ladle.batch import SourceBatch
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource
from ladle.state import FILES

_RECORDS = [{"id": i, "name": f"n{i}", "note": "é" if i % 3 else None} for i in range(1, 24)]
JSONL = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in _RECORDS).encode()
CSV = (
    "id,name,note\n" + "".join(f"{r['id']},{r['name']},{r['note'] or ''}\n" for r in _RECORDS)
).encode()
MULTILINE = (
    b'id,name,note\r\n1,a,"two\r\nlines"\r\n\r\n2,b,plain\r\n3,"c, d","x\n""y""\nz"\r\n'
    b'4,e,"1\n2"\r\n5,f,g\r\n6,"g\nh",i\r\n7,j,k\r\n8,l,"m\n\nn"\r\n9,o,p\r\n'
)
STRAY = b'id;name;city\n1;Ann;Oslo\n2;"Bo;Rome\n3;Cy;Kiev\n4;Di;Lima\n5;Ed;Nice\n6;Fa;Graz\n'


def _source(base: Path, name: str, batch_size: int, resume: Any = None) -> FileSource:
    context = SourceContext("things", batch_size, base, resume=resume)
    return FileSource(FileOptions(type="file", path=name), context)


def _rows(batches: list[SourceBatch]) -> list[tuple[str, Any]]:
    """Every record read, parsed or not, with its position, in order."""
    found: list[tuple[str, Any]] = []
    for batch in batches:
        found += zip(batch.positions, batch.frame.rows(), strict=True)
        found += [(u.position, u.raw) for u in batch.unreadable]
    return sorted(found, key=lambda row: _line(row[0]))


def _line(position: str) -> int:
    return int(position.rsplit(":", 1)[1].split("-", maxsplit=1)[0])


def _each_resume(
    base: Path, name: str, batch_size: int
) -> list[tuple[list[tuple[str, Any]], list[tuple[str, Any]], FileSource, list[SourceBatch]]]:
    """For each batch of a whole read: the records after it, and a read resumed from it."""
    whole = list(_source(base, name, batch_size).batches())
    assert len(whole) >= 3
    out = []
    for index, batch in enumerate(whole[:-1]):
        source = _source(base, name, batch_size, resume=batch.checkpoint)
        resumed = list(source.batches())
        out.append((_rows(whole[index + 1 :]), _rows(resumed), source, resumed))
    return out


@pytest.mark.parametrize(
    ("name", "content", "batch_size"),
    [
        ("t.jsonl", JSONL, 5),
        ("t.csv", CSV, 4),
        ("bom.csv", b"\xef\xbb\xbf" + CSV, 6),
        ("multi.csv", MULTILINE, 2),
        ("stray.csv", STRAY, 2),
        ("bom.jsonl", b"\xef\xbb\xbf" + JSONL.replace(b"\n", b"\r\n"), 7),
    ],
)
def test_a_resumed_read_seeks_to_the_records_after_its_checkpoint(
    tmp_path: Path, name: str, content: bytes, batch_size: int
) -> None:
    """Resumed from any batch's checkpoint, a read gives the records after that batch with
    the same positions (line numbers) as the whole read, and reads only from that byte on."""
    (tmp_path / name).write_bytes(content)
    for after, resumed, source, batches in _each_resume(tmp_path, name, batch_size):
        assert resumed == after
        (notice,) = [n for n in source.context.notices if "resuming at byte" in n]
        byte = int(notice.split("byte ")[1].split(" ")[0].replace(",", ""))
        assert 0 < byte < len(content)
        assert "by seeking" in notice
        assert sum(b.bytes_read for b in batches) == len(content) - byte


def test_a_resumed_read_starts_at_the_byte_after_the_last_record(tmp_path: Path) -> None:
    """The checkpoint's byte is where the next record's line begins in the file."""
    (tmp_path / "multi.csv").write_bytes(MULTILINE)
    batches = list(_source(tmp_path, "multi.csv", 2).batches())
    for batch, following in itertools.pairwise(batches):
        at = batch.checkpoint["at"]
        rest = MULTILINE[at["byte"] :].lstrip(b"\r\n")
        assert rest.startswith(following.frame.row(0)[0].encode())
        assert MULTILINE[: at["byte"]].count(b"\n") == at["line"]


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize(("name", "content"), [("t.jsonl", JSONL), ("multi.csv", MULTILINE)])
def test_a_compressed_file_resumes_by_decompressing_up_to_the_byte(
    tmp_path: Path, kind: str, name: str, content: bytes
) -> None:
    """A compressed file cannot seek: it is decompressed up to the byte, unparsed, and
    the records after it are those of the whole read, under the same positions."""
    packed = gzip.compress(content) if kind == "gzip" else zstandard.compress(content)
    (tmp_path / f"{name}.{'gz' if kind == 'gzip' else 'zst'}").write_bytes(packed)
    compressed = f"{name}.{'gz' if kind == 'gzip' else 'zst'}"
    for after, resumed, source, _ in _each_resume(tmp_path, compressed, 2):
        assert resumed == after
        (notice,) = [n for n in source.context.notices if "resuming at byte" in n]
        assert "by decompressing up to it (a compressed file cannot seek)" in notice


def test_a_file_resumed_in_another_encoding_measures_its_bytes(tmp_path: Path) -> None:
    """cp1252 text (one byte per character, unlike the UTF-8 it is read into) resumes at
    the right byte."""
    (tmp_path / "w.csv").write_bytes(CSV.decode().replace("é", "é€").encode("cp1252"))
    whole = list(
        FileSource(
            FileOptions(type="file", path="w.csv", encoding="cp1252"),
            SourceContext("things", 4, tmp_path),
        ).batches()
    )
    context = SourceContext("things", 4, tmp_path, resume=whole[2].checkpoint)
    source = FileSource(FileOptions(type="file", path="w.csv", encoding="cp1252"), context)
    assert _rows(list(source.batches())) == _rows(whole[3:])
    assert any("by seeking" in notice for notice in context.notices)


def test_the_content_hash_of_a_resumed_read_is_the_whole_files(tmp_path: Path) -> None:
    """The bytes before the offset are hashed without being parsed: the hash a resumed
    read stores is the file's, so the next run knows the file is loaded."""
    (tmp_path / "t.jsonl").write_bytes(JSONL)
    whole = list(_source(tmp_path, "t.jsonl", 5).batches())
    source = _source(tmp_path, "t.jsonl", 5, resume=whole[1].checkpoint)
    list(source.batches())
    stored = source.final_state()[FILES]["t.jsonl"]
    assert stored["sha256"] == hashlib.sha256(JSONL).hexdigest()


def test_a_file_changed_under_its_checkpoint_is_read_again_from_the_start(
    tmp_path: Path,
) -> None:
    """A byte changed before the offset, size and mtime kept: the hash of the bytes read
    tells, and the file is read again from its first record, as the notice says."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(JSONL)
    whole = list(_source(tmp_path, "t.jsonl", 5).batches())
    stat = path.stat()
    path.write_bytes(JSONL.replace(b'"n2"', b'"m2"'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    source = _source(tmp_path, "t.jsonl", 5, resume=whole[1].checkpoint)
    again = list(source.batches())
    assert source.context.notices == [
        "t.jsonl changed since the interrupted run; reading it again from the start"
    ]
    assert _rows(again)[0] == ("t.jsonl:1", _rows(whole)[0][1])
    assert ("t.jsonl:2", (2, "m2", "é")) in _rows(again)
    assert (
        source.final_state()[FILES]["t.jsonl"]["sha256"]
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_a_file_cut_short_under_its_checkpoint_is_read_again(tmp_path: Path) -> None:
    """A file now shorter than where the checkpoint reached is a changed file."""
    path = tmp_path / "t.csv"
    path.write_bytes(CSV)
    whole = list(_source(tmp_path, "t.csv", 4).batches())
    path.write_bytes(CSV[:40])
    source = _source(tmp_path, "t.csv", 4, resume=whole[3].checkpoint)
    list(source.batches())
    assert "t.csv changed since the interrupted run; reading it again from the start" in (
        source.context.notices
    )


def test_a_checkpoint_without_a_byte_resumes_by_reading_up_to_it(tmp_path: Path) -> None:
    """A checkpoint written before byte offsets (the whole file's hash in its meta) still
    resumes: the records before it are read and passed over."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(JSONL)
    whole = list(_source(tmp_path, "t.jsonl", 5).batches())
    old = dict(whole[1].checkpoint)
    old["meta"] = {**old["meta"], "sha256": hashlib.sha256(JSONL).hexdigest()}
    del old["hashed"], old["at"]
    source = _source(tmp_path, "t.jsonl", 5, resume=old)
    assert _rows(list(source.batches())) == _rows(whole[2:])
    assert not any("resuming at byte" in notice for notice in source.context.notices)
