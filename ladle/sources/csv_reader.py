"""Read CSV with the stdlib ``csv`` module over a text stream, one batch at a time.

Values stay text (``pl.String``): typing them is the ``columns:`` declaration's job,
not a guess made here. An empty field, quoted or not, becomes null: Python 3.11's
``csv`` module cannot tell ``,,`` from ``,"",``, and an empty CSV field almost always
means "no value". A row whose field count differs from the header's, or that holds
bytes the encoding cannot decode, is unreadable on its own; the other rows load.
Lines that are empty or hold only delimiters are not records: they are skipped and
counted. Every guess (a generated column name, skipped lines, ignored empty extra
fields, text that looks mis-decoded) becomes a notice in the run summary.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import IO

import polars as pl

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.memory import BatchBudget
from ladle.sources.csv_records import MAX_FIELD_CHARS, Dialect, Ragged, Record, Records
from ladle.sources.decoding import is_utf8, show_undecodable, text_stream, undecodable
from ladle.sources.offsets import LineEnds, Offset, go_to, line_bytes

SNIFF_CHARS = 64 * 1024
"""How much of the file the dialect sniffer looks at."""

_DELIMITERS = ",;\t|"
_C1 = re.compile("[\x80-\x9f]")


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV file: the CSV keys of the file source's options."""

    encoding: str = "utf-8"
    delimiter: str | None = None
    """None: sniffed."""
    quotechar: str | None = None
    """None: sniffed (when quoting is on)."""
    quoting: bool = True
    header: bool = True
    ragged: Ragged = "quarantine"
    max_field_chars: int = MAX_FIELD_CHARS


@dataclass
class _Rows:
    """The rows of one batch as they are read, before they become a frame."""

    rows: list[list[str]] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.unreadable)


@dataclass
class _Tally:
    """What was skipped or guessed in one file, for the run summary."""

    latin1: bool
    """Whether the file is read as latin-1: text then is checked for C1 controls."""
    blank: int = 0
    extra_ignored: int = 0
    c1: int = 0
    generated: list[str] = field(default_factory=list)

    def notices(self, name: str) -> list[str]:
        found = []
        if self.generated:
            found.append(f"{name}: header names generated: {', '.join(self.generated)}")
        if self.blank:
            found.append(f"{_count(self.blank, 'blank line')} skipped in {name}")
        if self.extra_ignored:
            rows = _count(self.extra_ignored, "row")
            found.append(f"{rows} of {name} had empty extra fields, ignored")
        if self.c1:
            found.append(
                f"{_count(self.c1, 'row')} of {name} {'holds' if self.c1 == 1 else 'hold'} "
                "C1 control characters "
                "(U+0080-U+009F) as decoded from latin-1: the file is probably cp1252; "
                "set `encoding: cp1252`"
            )
        return found


def read_csv(
    stream: IO[bytes],
    name: str,
    options: CsvOptions,
    *,
    batch_size: int,
    consumed: Callable[[], int],
    budget: BatchBudget | None = None,
    skip: int = 0,
    notices: list[str] | None = None,
    start: Offset | None = None,
    compressed: bool = False,
) -> Generator[SourceBatch, None, None]:
    """Yield batches of rows; positions are ``name:LINE``, or ``name:FIRST-LAST`` when a
    record spans lines.

    Batches hold ``batch_size`` rows (or what ``budget`` allows). Each batch's checkpoint
    is the number of rows read so far (the header and blank lines not counted), with the
    line and byte its last record ends at (:meth:`Offset.checkpoint`) when they can be
    told. A resumed run reads the header, then goes to ``start`` (an earlier checkpoint's
    offset: the stream seeks there, or is decompressed up to it when ``compressed``) and
    numbers lines on from its line; without one it passes over the first ``skip`` rows.
    What the file made ladle skip or guess is appended to ``notices`` once it is read.
    """
    encoding = options.encoding
    utf8 = is_utf8(encoding)
    measure = line_bytes(encoding)
    if measure is None and start is not None:  # cannot seek in this encoding: read to it
        skip = start.read
        start = None
    reading = _Reading(
        name,
        options,
        budget or BatchBudget(batch_size),
        consumed,
        _Tally(latin1=codecs.lookup(encoding).name == "iso8859-1"),
        measure,
    )
    # UTF-8's byte order mark is dropped here, not by the codec, to count its bytes.
    with text_stream(stream, "utf-8" if utf8 else encoding, newline="") as text:
        # Finish the sample's last line, so that no physical line is split in two.
        sample = text.read(SNIFF_CHARS) + text.readline()
        byte = 0
        if utf8 and sample.startswith(_BOM):
            sample, byte = sample[1:], len(_BOM.encode())
        reading.dialect = _sniff(sample, options)
        lines = itertools.chain(io.StringIO(sample, newline=""), text)
        if start is None:
            yield from reading.batches(lines, _At(1, byte, skip=skip))
        else:
            header = reading.records(lines, _At(1, byte))[0]
            names = _column_names(*_first_record(header, name), options, reading.tally)
    if start is not None:
        go_to(stream, start.byte, compressed=compressed)
        with text_stream(stream, "utf-8" if utf8 else encoding, newline="") as text:
            at = _At(start.line + 1, start.byte, read=start.read, names=names)
            yield from reading.batches(text, at)
    if notices is not None:
        notices.extend(reading.tally.notices(name))


_BOM = "\ufeff"


@dataclass(frozen=True)
class _At:
    """Where reading starts: the first line's number and byte; rows read before it, and
    to pass over from it; the column names when the header is already read."""

    line: int
    byte: int
    read: int = 0
    skip: int = 0
    names: list[str] | None = None


@dataclass
class _Reading:
    """One file's reading: what stays the same from its header to its last row."""

    name: str
    options: CsvOptions
    budget: BatchBudget
    consumed: Callable[[], int]
    tally: _Tally
    measure: Callable[[str], int] | None
    """How many bytes a line took in the file; None: not known (no byte checkpointed)."""
    dialect: Dialect = field(default_factory=lambda: Dialect(",", '"'))

    def records(self, lines: Iterator[str], at: _At) -> tuple[Records, LineEnds | None]:
        """The records of ``lines``, and the ends of their lines when they can be measured."""
        ends = None
        if self.measure is not None:
            ends = LineEnds(self.measure, byte=at.byte, line=at.line - 1)
            lines = ends.wrap(lines)
        records = Records(
            lines, self.dialect, max_field_chars=self.options.max_field_chars, first_line=at.line
        )
        return records, ends

    def batches(self, lines: Iterator[str], at: _At) -> Iterator[SourceBatch]:
        """The rows of ``lines`` in batches, the first ``at.skip`` passed over."""
        records, ends = self.records(lines, at)
        name, options, budget, tally = self.name, self.options, self.budget, self.tally
        names = at.names
        if names is not None:
            records.width = len(names)
        pending = _Rows()
        before = self.consumed()
        read, size = at.read, 0
        last: Record | None = None
        for record in records:
            row = record.fields
            if row is not None and not any(row):
                tally.blank += 1  # an empty line, or one of only delimiters: not a record
                continue
            position = _position(name, record)
            if names is None:
                names = _column_names(record, position, options, tally)
                records.width = len(names)
                if options.header:
                    continue
            read += 1
            if read <= at.skip:
                continue
            last = record
            if row is not None and budget.sizes:
                length = sum(map(len, row)) + len(row)
                budget.check_record(length, position)
                size += length
            outcome = _outcome(record, position, len(names), options, tally)
            if isinstance(outcome, Unreadable):
                pending.unreadable.append(outcome)
            else:
                pending.rows.append(outcome)
                pending.positions.append(position)
            if budget.full(len(pending), size):
                now = self.consumed()
                yield _to_batch(pending, names, now - before, _checkpoint(read, record, ends))
                before, pending, size = now, _Rows(), 0
        if len(pending) and names is not None and last is not None:
            yield _to_batch(pending, names, self.consumed() - before, _checkpoint(read, last, ends))


def _first_record(records: Records, name: str) -> tuple[Record, str]:
    """The first record that is not blank, and its position: the header (or first row)."""
    for record in records:
        if record.fields is None or any(record.fields):
            return record, _position(name, record)
    raise SourceError("the file holds no header row", position=name)


def _checkpoint(read: int, record: Record, ends: LineEnds | None) -> int | dict[str, int]:
    """Rows read, with where the last one ends if its line is still known."""
    byte = None if ends is None else ends.end_of(record.last)
    return read if byte is None else Offset(byte, record.last, read).checkpoint()


def sniff_dialect(sample: str, options: CsvOptions) -> Dialect:
    """The delimiter and quote character ``read_csv`` would use for a file starting with
    ``sample`` (what ``ladle check`` reports)."""
    return _sniff(sample, options)


def _sniff(sample: str, options: CsvOptions) -> Dialect:
    """Use what the options say; guess the rest from the sample, else ``,`` and ``"``."""
    guess_quote = options.quoting and options.quotechar is None
    if options.delimiter is not None and not guess_quote:
        return Dialect(options.delimiter, options.quotechar if options.quoting else None)
    quotechar: str | None
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
        delimiter, quotechar = sniffed.delimiter, sniffed.quotechar or '"'
    except csv.Error:
        delimiter, quotechar = ",", '"'
    if not guess_quote:
        quotechar = options.quotechar if options.quoting else None
    return Dialect(options.delimiter or delimiter, quotechar)


def _outcome(
    record: Record, position: str, width: int, options: CsvOptions, tally: _Tally
) -> list[str] | Unreadable:
    """The row as it loads (empty extra fields dropped if allowed), or why it cannot."""
    row = record.fields
    problem: tuple[str, str]
    if row is None:
        problem = "parse", str(record.problem)
    elif (message := undecodable("".join(row), options.encoding)) is not None:
        problem = "encoding", message
    elif len(row) == width or (
        len(row) > width and options.ragged == "ignore_empty_extra" and not any(row[width:])
    ):
        if len(row) > width:
            tally.extra_ignored += 1
            row = row[:width]
        if tally.latin1 and _C1.search("".join(row)):
            tally.c1 += 1
        return row
    else:
        problem = "parse", f"expected {width} fields, found {len(row)}"
    rule, text = problem
    return Unreadable(position, show_undecodable(record.raw), text, rule=rule)


def _position(name: str, record: Record) -> str:
    if record.last > record.first:
        return f"{name}:{record.first}-{record.last}"
    return f"{name}:{record.first}"


def _column_names(record: Record, position: str, options: CsvOptions, tally: _Tally) -> list[str]:
    """Header names made usable (blank ones named, repeats numbered), or column_1...N.

    Each name made up for a header is reported (``tally.generated``).
    """
    row = record.fields
    if row is None:
        raise SourceError(f"cannot read the first row: {record.problem}", position=position)
    if not options.header:
        return [f"column_{i}" for i in range(1, len(row) + 1)]
    message = undecodable("".join(row), options.encoding)
    if message is not None:
        raise SourceError(f"in the header: {message}", position=position)
    names: list[str] = []
    for index, raw in enumerate(row, start=1):
        base = raw or f"column_{index}"
        candidate, suffix = base, 2
        while candidate in names:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        names.append(candidate)
        if candidate != raw:
            why = "blank" if not raw else f"repeats {raw!r}"
            tally.generated.append(f"{candidate} for column {index} ({why})")
    return names


def _to_batch(
    pending: _Rows, names: list[str], bytes_read: int, checkpoint: int | dict[str, int]
) -> SourceBatch:
    schema = {column: pl.String() for column in names}
    frame = pl.DataFrame(pending.rows, schema=schema, orient="row")
    frame = frame.with_columns(pl.all().replace("", None))
    return SourceBatch(
        frame, pending.positions, pending.unreadable, bytes_read, checkpoint=checkpoint
    )


def _count(number: int, noun: str) -> str:
    """``1 row``, ``2,836 rows``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
