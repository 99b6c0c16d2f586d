"""Read Parquet record batch by record batch, structs flattened like JSON's objects.

Parquet already has types, so columns keep them; only nesting is resolved (structs to
``parent__child``, lists to JSON text) so that every file format reaches the steps flat.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.memory import BatchBudget
from ladle.sources.flatten import ColumnClash, flatten_frame

_PIECE = 1024
"""Under a memory budget, rows are read in pieces of this many and gathered into batches."""


def read_parquet(
    source: str | IO[bytes],
    name: str,
    *,
    batch_size: int,
    size: int,
    budget: BatchBudget | None = None,
    skip: int = 0,
) -> Generator[SourceBatch, None, None]:
    """Yield batches of rows; positions are ``name#row=N``, N counted from 0 over the file.

    Parquet is read by column chunk, not front to back, so ``bytes_read`` is the file's
    ``size`` shared out in proportion to rows. Batches hold ``batch_size`` rows (or what
    ``budget`` allows, by rows and in-memory bytes); the first ``skip`` rows are passed
    over (a resumed run), and each batch's checkpoint is the number of rows read so far.
    """
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"not a Parquet file ({exc}); if it is another format, set `format:`", position=name
        ) from exc
    total = parquet.metadata.num_rows
    budget = budget or BatchBudget(batch_size)
    piece = min(budget.rows, _PIECE) if budget.sizes else budget.rows
    done = skip
    for record_batch in _gathered(parquet.iter_batches(batch_size=piece), budget, name, skip):
        try:
            flat = flatten_frame(pl.DataFrame(record_batch))
        except ColumnClash as exc:
            raise SourceError(str(exc), position=f"{name}#row={done}") from exc
        positions = [f"{name}#row={row}" for row in range(done, done + flat.height)]
        share = size * (done + flat.height) // total - size * done // total
        done += flat.height
        yield SourceBatch(flat, positions, bytes_read=share, checkpoint=done)


def _gathered(
    pieces: Iterator[pa.RecordBatch], budget: BatchBudget, name: str, skip: int
) -> Iterator[pa.Table]:
    """The file's rows after ``skip``, gathered from ``pieces`` into batches the budget allows."""
    held: list[pa.RecordBatch] = []
    rows = size = seen = 0
    while True:
        try:
            piece = next(pieces, None)
        except (pa.ArrowException, OSError) as exc:
            where = f"{name}#row={seen}"
            raise SourceError(f"cannot read Parquet: {exc}", position=where) from exc
        if piece is None:
            break
        seen += piece.num_rows
        piece = piece.slice(max(skip - (seen - piece.num_rows), 0))
        while piece.num_rows:
            taken, piece = piece.slice(0, budget.rows - rows), piece.slice(budget.rows - rows)
            held.append(taken)
            rows, size = rows + taken.num_rows, size + taken.nbytes
            if budget.full(rows, size):
                yield pa.Table.from_batches(held)
                held, rows, size = [], 0, 0
    if held:
        yield pa.Table.from_batches(held)
