"""Read CSV with the stdlib ``csv`` module over a text stream, one batch at a time.

Values stay text (``pl.String``): typing them is the ``columns:`` declaration's job,
not a guess made here. An empty field, quoted or not, becomes null: Python 3.11's
``csv`` module cannot tell ``,,`` from ``,"",``, and an empty CSV field almost always
means "no value". A row whose field count differs from the header's, or that holds
bytes the encoding cannot decode, is unreadable on its own; the other rows load.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import IO

import polars as pl

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.memory import BatchBudget
from ladle.sources.decoding import is_utf8, show_undecodable, text_stream, undecodable

SNIFF_CHARS = 64 * 1024
"""How much of the file the dialect sniffer looks at."""

_DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class _Dialect:
    delimiter: str
    quotechar: str


@dataclass
class _Rows:
    """The rows of one batch as they are read, before they become a frame."""

    rows: list[list[str]] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.unreadable)


def read_csv(
    stream: IO[bytes],
    name: str,
    *,
    batch_size: int,
    encoding: str,
    delimiter: str | None,
    quotechar: str | None,
    header: bool,
    consumed: Callable[[], int],
    budget: BatchBudget | None = None,
    skip: int = 0,
) -> Generator[SourceBatch, None, None]:
    """Yield batches of rows; positions are ``name:LINE``, the line where the row starts.

    Batches hold ``batch_size`` rows (or what ``budget`` allows); the first ``skip`` rows
    are passed over (a resumed run), and each batch's checkpoint is the number of rows
    read so far (the header and blank lines not counted).
    """
    with text_stream(stream, "utf-8-sig" if is_utf8(encoding) else encoding, newline="") as text:
        # Finish the sample's last line, so that no physical line is split in two.
        sample = text.read(SNIFF_CHARS) + text.readline()
        dialect = _sniff(sample, delimiter=delimiter, quotechar=quotechar)
        lines = itertools.chain(io.StringIO(sample, newline=""), text)
        reader = csv.reader(lines, delimiter=dialect.delimiter, quotechar=dialect.quotechar)
        yield from _batches(
            reader,
            name,
            line_num=lambda: reader.line_num,
            delimiter=dialect.delimiter,
            budget=budget or BatchBudget(batch_size),
            header=header,
            encoding=encoding,
            consumed=consumed,
            skip=skip,
        )


def _sniff(sample: str, *, delimiter: str | None, quotechar: str | None) -> _Dialect:
    """Use what the options say; guess the rest from the sample, else ``,`` and ``"``."""
    if delimiter is not None and quotechar is not None:
        return _Dialect(delimiter, quotechar)
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        return _Dialect(delimiter or ",", quotechar or '"')
    return _Dialect(delimiter or sniffed.delimiter, quotechar or sniffed.quotechar or '"')


def _batches(
    reader: Iterator[list[str]],
    name: str,
    *,
    line_num: Callable[[], int],
    delimiter: str,
    budget: BatchBudget,
    header: bool,
    encoding: str,
    consumed: Callable[[], int],
    skip: int,
) -> Iterator[SourceBatch]:
    names: list[str] | None = None
    pending = _Rows()
    before = consumed()
    line_end = 0
    read = size = 0
    for row in _rows_or_errors(reader):
        start, line_end = line_end + 1, line_num()
        if not row:
            continue  # a blank line is not a record
        position = f"{name}:{start}"
        if names is None:
            names = _column_names(row, header, position, encoding)
            if header:
                continue
        read += 1
        if read <= skip:
            continue
        if budget.sizes and isinstance(row, list):
            length = sum(map(len, row)) + len(row)
            budget.check_record(length, position)
            size += length
        problem = _check_row(row, len(names), encoding)
        if problem is None and isinstance(row, list):
            pending.rows.append(row)
            pending.positions.append(position)
        elif problem is not None:
            rule, message = problem
            raw = "" if isinstance(row, csv.Error) else show_undecodable(delimiter.join(row))
            pending.unreadable.append(Unreadable(position, raw, message, rule=rule))
        if budget.full(len(pending), size):
            now = consumed()
            yield _to_batch(pending, names, now - before, read)
            before, pending, size = now, _Rows(), 0
    if len(pending) and names is not None:
        yield _to_batch(pending, names, consumed() - before, read)


def _rows_or_errors(reader: Iterator[list[str]]) -> Iterator[list[str] | csv.Error]:
    """The rows, with a row the csv module refuses (a field over its size limit) as its error.

    The reader goes on at the next line after such an error, so one row does not stop a file.
    """
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield exc


def _column_names(
    row: list[str] | csv.Error, header: bool, position: str, encoding: str
) -> list[str]:
    """Header names made usable (blank ones named, repeats numbered), or column_1...N."""
    if isinstance(row, csv.Error):
        raise SourceError(f"cannot read the first row: {row}", position=position)
    if not header:
        return [f"column_{i}" for i in range(1, len(row) + 1)]
    message = undecodable("".join(row), encoding)
    if message is not None:
        raise SourceError(f"in the header: {message}", position=position)
    names: list[str] = []
    for index, raw in enumerate(row, start=1):
        base = raw or f"column_{index}"
        candidate, suffix = base, 2
        while candidate in names:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        names.append(candidate)
    return names


def _check_row(row: list[str] | csv.Error, width: int, encoding: str) -> tuple[str, str] | None:
    """The rule and message that make a row unreadable, or None if it loads."""
    if isinstance(row, csv.Error):
        return "parse", f"cannot read the row: {row}"
    message = undecodable("".join(row), encoding)
    if message is not None:
        return "encoding", message
    if len(row) != width:
        return "parse", f"expected {width} fields, found {len(row)}"
    return None


def _to_batch(pending: _Rows, names: list[str], bytes_read: int, read: int) -> SourceBatch:
    schema = {column: pl.String() for column in names}
    frame = pl.DataFrame(pending.rows, schema=schema, orient="row")
    frame = frame.with_columns(pl.all().replace("", None))
    return SourceBatch(frame, pending.positions, pending.unreadable, bytes_read, checkpoint=read)
