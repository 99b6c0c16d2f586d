"""The Parquet reader: types kept, structs flattened, row positions, files that are not Parquet."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from pathlib import Path

import polars as pl
import pytest

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.sources import SourceContext
from ladle.sources.files import FileOptions, FileSource


def _read(base: Path, name: str, *, batch_size: int = 100) -> list[SourceBatch]:
    source = FileSource(
        FileOptions(type="file", path=name), SourceContext("rows", batch_size, base)
    )
    return list(source.batches())


def test_columns_keep_their_parquet_types(tmp_path: Path) -> None:
    """Ints, dates and text arrive typed as the file says; positions are ``#row=N``."""
    frame = pl.DataFrame({"id": [1, 2], "day": [dt.date(2024, 1, 1), None], "s": ["a", "b"]})
    frame.write_parquet(tmp_path / "t.parquet")
    [batch] = _read(tmp_path, "t.parquet")
    assert batch.frame.equals(frame)
    assert batch.frame.schema == frame.schema
    assert batch.positions == ["t.parquet#row=0", "t.parquet#row=1"]


def test_structs_flatten_and_lists_become_json_text(tmp_path: Path) -> None:
    """Struct columns become ``parent__child`` and list columns compact JSON text."""
    frame = pl.DataFrame(
        {
            "id": [1, 2],
            "site": [{"geo": {"lat": 1.5}, "name": "x"}, None],
            "tags": [["a", "b"], []],
            "lines": [[{"sku": "k", "qty": 2}], None],
        }
    )
    frame.write_parquet(tmp_path / "t.parquet")
    [batch] = _read(tmp_path, "t.parquet")
    assert batch.frame.columns == ["id", "site__geo__lat", "site__name", "tags", "lines"]
    assert batch.frame.rows() == [
        (1, 1.5, "x", '["a","b"]', '[{"sku":"k","qty":2}]'),
        (2, None, None, "[]", None),
    ]


def test_rows_are_counted_across_batches_and_row_groups(tmp_path: Path) -> None:
    """Row numbers run over the whole file; bytes add up to the file's size."""
    pl.DataFrame({"n": range(10)}).write_parquet(tmp_path / "t.parquet", row_group_size=4)
    batches = _read(tmp_path, "t.parquet", batch_size=3)
    assert [batch.frame.height for batch in batches] == [3, 3, 3, 1]
    assert [p for batch in batches for p in batch.positions] == [
        f"t.parquet#row={n}" for n in range(10)
    ]
    assert sum(batch.bytes_read for batch in batches) == (tmp_path / "t.parquet").stat().st_size


def test_file_that_is_not_parquet_is_an_error(tmp_path: Path) -> None:
    """A ``.parquet`` file with other content stops the run, naming the file."""
    (tmp_path / "t.parquet").write_bytes(b"id,name\n1,x\n")
    with pytest.raises(SourceError) as info:
        _read(tmp_path, "t.parquet")
    assert str(info.value) == (
        "t.parquet: not a Parquet file (Parquet magic bytes not found in footer. Either the "
        "file is corrupted or this is not a parquet file.); if it is another format, set "
        "`format:`"
    )


def test_gzipped_parquet_is_read(tmp_path: Path) -> None:
    """A ``.parquet.gz`` file is decompressed and read like any Parquet file."""
    buffer = io.BytesIO()
    pl.DataFrame({"n": [1, 2, 3]}).write_parquet(buffer)
    (tmp_path / "t.parquet.gz").write_bytes(gzip.compress(buffer.getvalue()))
    [batch] = _read(tmp_path, "t.parquet.gz")
    assert batch.frame.rows() == [(1,), (2,), (3,)]
    assert batch.bytes_read == (tmp_path / "t.parquet.gz").stat().st_size
