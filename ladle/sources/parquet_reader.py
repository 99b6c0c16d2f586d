"""Read Parquet record batch by record batch, structs flattened like JSON's objects.

Parquet already has types, so columns keep them; only nesting is resolved (structs to
``parent__child``, lists to JSON text) so that every file format reaches the steps flat.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.sources.flatten import ColumnClash, flatten_frame


def read_parquet(
    source: str | IO[bytes], name: str, *, batch_size: int, size: int
) -> Generator[SourceBatch, None, None]:
    """Yield batches of rows; positions are ``name#row=N``, N counted from 0 over the file.

    Parquet is read by column chunk, not front to back, so ``bytes_read`` is the file's
    ``size`` shared out in proportion to rows.
    """
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"not a Parquet file ({exc}); if it is another format, set `format:`", position=name
        ) from exc
    total = parquet.metadata.num_rows
    done = 0
    batches = parquet.iter_batches(batch_size=batch_size)
    while True:
        try:
            record_batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"cannot read Parquet: {exc}", position=f"{name}#row={done}") from exc
        if record_batch is None:
            return
        try:
            flat = flatten_frame(pl.DataFrame(record_batch))
        except ColumnClash as exc:
            raise SourceError(str(exc), position=f"{name}#row={done}") from exc
        positions = [f"{name}#row={row}" for row in range(done, done + flat.height)]
        share = size * (done + flat.height) // total - size * done // total
        done += flat.height
        yield SourceBatch(flat, positions, bytes_read=share)
