"""Files taken for what they hold, on both destinations: an HTML page saved as CSV fails the
run naming it, compressed files are read by their magic bytes, the file's path can be a
column, and ``encoding: auto`` names what it detected; the ledger balances throughout."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult

PIPELINE = """\
pipeline: content
resources:
  items:
    source: {{type: file, path: '{path}'{extra}}}
    primary_key: [id]
    write: merge
    columns:
      id: {{type: bigint}}
{steps}"""

Writer = Callable[[str], Path]

HTML = b"""<!DOCTYPE html>
<html lang="en"><head><title>Sign in</title></head>
<body><form action="/login">Your session has expired</form></body></html>
"""


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _run(
    write_pipeline: Writer, url: str, path: str, *, extra: str = "", steps: str = ""
) -> ResourceResult:
    """Run the pipeline; a run that succeeds accounts for every record it fetched."""
    pipeline = write_pipeline(PIPELINE.format(path=path, extra=extra, steps=steps))
    summary = Pipeline.from_yaml(pipeline).run(RunOptions(destination=url))
    result = summary.resources[0]
    assert result.counts.balanced or result.status == "failed"
    return result


def _table(url: str, name: str, order_by: list[str]) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(name, {}, order_by=order_by).to_dicts()
    finally:
        dest.close()


def _counts(result: ResourceResult) -> tuple[int, int, int, int, int, int]:
    c = result.counts
    return c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated, c.quarantined


def test_html_page_and_zip_saved_as_csv_fail_the_run_and_load_nothing(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """An HTML page and a zip archive named ``.csv`` are both named; no record of the run
    is loaded, the earlier load stays, and the ledger records the failure."""
    _write(tmp_path / "exports/a.csv", b"id,name\n1,Ann\n2,Bob\n")
    first = _run(write_pipeline, destination_url, "exports/*.csv")
    assert _counts(first) == (2, 2, 0, 0, 0, 0)
    _write(tmp_path / "exports/b.csv", b"id,name\n3,Cy\n")
    _write(tmp_path / "exports/tickets.csv", HTML)
    with zipfile.ZipFile(tmp_path / "exports/z.csv", "w") as archive:
        archive.writestr("inner.csv", "id,name\n4,Di\n")
    failed = _run(write_pipeline, destination_url, "exports/*.csv")
    assert failed.status == "failed"
    # b.csv's record was read, then rolled back with the rest: nothing of the run is loaded.
    assert _counts(failed) == (1, 0, 0, 0, 0, 0)
    assert failed.error == (
        "exports/*.csv: 2 files cannot be read, so nothing of them was loaded: "
        "exports/tickets.csv: looks like an HTML page, not CSV (it starts with "
        "'<!DOCTYPE html>'); a download that was redirected to a login or error page saves "
        "one: fetch the file again; "
        "exports/z.csv: looks like a zip archive, not CSV; extract it and point `path:` at "
        "the files inside (ladle decompresses gzip, bz2, xz and zstd itself)"
    )
    assert _table(destination_url, "items", ["id"]) == [
        {"id": 1, "name": "Ann"},
        {"id": 2, "name": "Bob"},
    ]
    ledger = _table(destination_url, RUNS.name, ["started_at"])
    assert [(r["status"], r["error"]) for r in ledger] == [
        ("succeeded", None),
        ("failed", failed.error),
    ]


def test_compressed_files_are_read_by_their_magic_bytes(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """bz2, xz and zstd files load like gzip ones; a ``.csv`` holding gzip is read through
    gzip (and said so); the ledger counts the compressed bytes read."""
    text = "id,name\n{0},Café {0}\n{1},Zoë {1}\n"
    _write(tmp_path / "in/a.csv.bz2", bz2.compress(text.format(1, 2).encode("latin-1")))
    _write(tmp_path / "in/b.csv.xz", lzma.compress(text.format(3, 4).encode("latin-1")))
    zstd = zstandard.ZstdCompressor().compress(text.format(5, 6).encode("latin-1"))
    _write(tmp_path / "in/c.csv.zst", zstd)
    _write(tmp_path / "in/d.csv", gzip.compress(text.format(7, 8).encode("latin-1")))
    result = _run(write_pipeline, destination_url, "in/*", extra=", encoding: latin-1")
    assert result.status == "succeeded", result.error
    assert _counts(result) == (8, 8, 0, 0, 0, 0)
    assert result.notices == ["in/d.csv is gzip-compressed; read as gzip"]
    rows = _table(destination_url, "items", ["id"])
    assert [r["name"] for r in rows] == [f"{'Café' if i % 2 else 'Zoë'} {i}" for i in range(1, 9)]
    sizes = sum(path.stat().st_size for path in (tmp_path / "in").iterdir())
    [ledger] = _table(destination_url, RUNS.name, ["started_at"])
    assert ledger["bytes_read"] == sizes


def test_file_column_names_each_record_s_file_for_derive(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """``file_column: source_file`` holds the path below the glob's fixed part; ``derive`` takes the
    region and the month from it."""
    _write(tmp_path / "exports/north/orders-2024-05.csv", b"id,total\n1,10\n2,20\n")
    _write(tmp_path / "exports/south/orders-2024-06.csv", b"id,total\n3,30\n")
    steps = (
        "    steps:\n"
        "      - derive:\n"
        "          region: \"split_part(source_file, '/', 1)\"\n"
        "          month: \"regexp_extract(source_file, '(\\\\d{4}-\\\\d{2})', 1)\"\n"
    )
    result = _run(
        write_pipeline,
        destination_url,
        "exports/*/orders-*.csv",
        extra=", file_column: source_file",
        steps=steps,
    )
    assert result.status == "succeeded", result.error
    assert _counts(result) == (3, 3, 0, 0, 0, 0)
    rows = _table(destination_url, "items", ["id"])
    assert [(r["id"], r["source_file"], r["region"], r["month"]) for r in rows] == [
        (1, "north/orders-2024-05.csv", "north", "2024-05"),
        (2, "north/orders-2024-05.csv", "north", "2024-05"),
        (3, "south/orders-2024-06.csv", "south", "2024-06"),
    ]


def test_encoding_auto_detects_each_file_and_says_so(
    tmp_path: Path, destination_url: str, write_pipeline: Writer
) -> None:
    """A cp1252 file and a UTF-8 file load with their own encodings, each named in the
    run summary."""
    text = "id;name;note\n1;Jürgen Müller;Größe “groß” \u2013 5 €\n2;Bärbel Schäfer;Straße\n"
    _write(tmp_path / "data/a.csv", text.encode("cp1252"))
    _write(tmp_path / "data/b.csv", text.replace("1;", "3;").replace("2;", "4;").encode())
    result = _run(write_pipeline, destination_url, "data/*.csv", extra=", encoding: auto")
    assert result.status == "succeeded", result.error
    assert _counts(result) == (4, 4, 0, 0, 0, 0)
    assert result.notices == [
        "data/a.csv: encoding detected as cp1252",
        "data/b.csv: encoding detected as utf-8",
    ]
    rows = _table(destination_url, "items", ["id"])
    assert [r["note"] for r in rows] == ["Größe “groß” \u2013 5 €", "Straße"] * 2
