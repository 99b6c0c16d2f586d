"""Split CSV text into records as the csv module does, and catch where it would lose some.

The csv module decides where each record ends; this module keeps the physical lines
behind each record (for its line span and its raw text) and steps in where the
module's answer would lose or invent records silently:

- **A stray quote.** A quote that opens and does not close as intended swallows the
  lines after it into one value. When :data:`SWALLOWED_LINES` lines in a row inside
  one quoted value each read on their own as a whole record (as many fields as the
  header), the quote is taken for a stray one: the lines up to the one where it opened
  become one unreadable record, and reading resumes on the line after it.
- **An over-long field.** A field longer than ``max_field_chars`` makes its whole
  record unreadable, its raw text kept up to :data:`RAW_CHARS`; reading resumes
  after the record's last line, not in the middle of the field (where the csv module
  would resume, reading the rest of the field as records).
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

MAX_FIELD_CHARS = 131_072
"""The default longest field: the csv module's own default limit."""

RAW_CHARS = 1 << 20
"""How much of an over-long record's text quarantine keeps: its first 1,048,576 characters."""

Ragged = Literal["quarantine", "ignore_empty_extra"]
"""What to do with a row whose field count is not the header's (``ragged:``)."""

SWALLOWED_LINES = 3
"""Lines in a row inside one quoted value that read as whole records: a stray quote."""


@dataclass(frozen=True)
class Dialect:
    """How fields are separated and quoted; ``quotechar`` None: quoting is off."""

    delimiter: str
    quotechar: str | None

    def reader(self, lines: Iterator[str] | list[str]) -> Iterator[list[str]]:
        """A csv module reader of ``lines`` in this dialect."""
        if self.quotechar is None:
            return csv.reader(lines, delimiter=self.delimiter, quoting=csv.QUOTE_NONE)
        return csv.reader(lines, delimiter=self.delimiter, quotechar=self.quotechar)


@dataclass(frozen=True)
class Record:
    """One record and the physical lines ``first`` to ``last`` it was read from.

    ``fields`` is None when the record cannot be read; ``problem`` then says why and
    ``lines`` hold its raw text (cut at :data:`RAW_CHARS` for an over-long one).
    """

    first: int
    last: int
    fields: list[str] | None
    lines: list[str]
    problem: str | None = None

    @property
    def raw(self) -> str:
        """The record's text as in the file, without its final line break."""
        return "".join(self.lines).removesuffix("\n").removesuffix("\r")


class Records:
    """The records of CSV text, read one after another; see the module docstring.

    Set :attr:`width` (the header's field count) once it is known: stray quotes are
    recognised from then on.
    """

    def __init__(
        self, lines: Iterator[str], dialect: Dialect, *, max_field_chars: int, first_line: int = 1
    ) -> None:
        self.width: int | None = None
        self._lines = _Lines(lines)
        self._feed = iter(self._lines)
        self._next = first_line
        """The number of the next line to read (``first_line``: a text read from its middle)."""
        self._dialect = dialect
        self._scanner = _QuoteScanner(dialect)
        self._max = max_field_chars
        # The csv module's limit is process-wide: raise it to ours if ours is higher. Ours
        # is checked on every record, as another reader may have raised the module's.
        if csv.field_size_limit() < max_field_chars:
            csv.field_size_limit(max_field_chars)
        self._reader = dialect.reader(self._feed)

    def __iter__(self) -> Iterator[Record]:
        lines = self._lines
        while True:
            taken = lines.taken = []
            first = self._next
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error:
                yield self._refused(first, taken)
                continue
            last = first + len(taken) - 1
            self._next = last + 1
            if len(taken) > SWALLOWED_LINES:
                stray = self._stray_quote(first, taken)
                if stray is not None:
                    yield stray
                    continue
            if max(map(len, fields), default=0) > self._max:
                yield self._over_long(first, last, taken)
                continue
            yield Record(first, last, fields, taken)

    def _stray_quote(self, first: int, taken: list[str]) -> Record | None:
        """The lines up to a stray quote as an unreadable record; the rest are read again."""
        opened = _stray_quote_line(taken, self._scanner, self._dialect, self.width)
        if opened is None:
            return None
        where, end = first + opened, first + len(taken) - 1
        self._lines.put_back(taken[opened + 1 :])
        self._next = where + 1
        # The reader may have met the end of the text: give it a new one over what is left.
        self._feed = iter(self._lines)
        self._reader = self._dialect.reader(self._feed)
        problem = (
            f"the quote that opens on line {where} runs to line {end} over lines that read "
            f"as whole records: line {where} is quarantined and reading goes on from line "
            f"{where + 1} (if quotes in this file are data, set `quote: none`)"
        )
        return Record(first, where, None, taken[: opened + 1], problem)

    def _refused(self, first: int, taken: list[str]) -> Record:
        """A record the csv module refused (a field over its limit), read to its real end."""
        stray = self._stray_quote(first, taken) if len(taken) > SWALLOWED_LINES else None
        if stray is not None:
            return stray
        in_quote = False
        for line in taken:
            in_quote = self._scanner.ends_in_quote(line, in_quote=in_quote)
        raw = _Raw(RAW_CHARS)
        raw.extend(taken)
        last = first + len(taken) - 1
        while in_quote:
            self._lines.taken = []  # hold only the kept part of a huge record
            more = next(self._feed, None)
            if more is None:
                break
            last += 1
            raw.extend([more])
            in_quote = self._scanner.ends_in_quote(more, in_quote=True)
        self._next = last + 1
        return self._over_long(first, last, raw.lines, total=raw.total)

    def _over_long(
        self, first: int, last: int, lines: list[str], *, total: int | None = None
    ) -> Record:
        raw = _Raw(RAW_CHARS)
        raw.extend(lines)
        size = raw.total if total is None else total
        kept = "" if size <= RAW_CHARS else f", of which the first {RAW_CHARS:,} are kept"
        problem = (
            f"a field is longer than {self._max:,} characters (`max_field_chars`); "
            f"the record is {size:,} characters long{kept}"
        )
        return Record(first, last, None, raw.lines, problem)


def _stray_quote_line(
    lines: list[str], scanner: _QuoteScanner, dialect: Dialect, width: int | None
) -> int | None:
    """The index of the line where a stray quote opened, if lines inside it read as records."""
    if width is None or width < 2 or dialect.quotechar is None:  # noqa: PLR2004 - no delimiter
        return None
    if not _enough_delimiters(lines[1:], dialect.delimiter, width - 1):
        return None  # the quick answer for most records over several lines
    in_quote = False
    opened, run = 0, 0
    for index, line in enumerate(lines):
        was = in_quote
        in_quote = scanner.ends_in_quote(line, in_quote=in_quote)
        if was and in_quote and len(next(dialect.reader([line]), [])) == width:
            run += 1
            if run >= SWALLOWED_LINES:
                return opened
        else:
            run = 0
        if in_quote and not was:
            opened = index
    return None


def _enough_delimiters(lines: list[str], delimiter: str, needed: int) -> bool:
    """Whether enough lines in a row hold ``needed`` delimiters to maybe be whole records."""
    run = 0
    for line in lines:
        run = run + 1 if line.count(delimiter) >= needed else 0
        if run >= SWALLOWED_LINES:
            return True
    return False


class _QuoteScanner:
    """Whether a line ends inside a quoted field, by the csv module's rules (not strict).

    A quote opens a field only at its start; inside, a doubled quote is a quote; after
    the closing quote, anything up to the delimiter is data, quotes included.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._delimiter = dialect.delimiter
        self._quote = dialect.quotechar or ""
        d = re.escape(dialect.delimiter)
        q = re.escape(self._quote or '"')  # unused when quoting is off
        self._inside = re.compile(f"(?:[^{q}]|{q}{q})*+")
        self._data = re.compile(f"[^{d}\r\n]*+")

    def ends_in_quote(self, line: str, *, in_quote: bool) -> bool:
        """Whether ``line`` ends inside a quoted field, given whether it starts inside one."""
        if not self._quote:
            return False
        pos, end = 0, len(line)
        at_field_start = not in_quote
        while True:
            if in_quote or (at_field_start and line.startswith(self._quote, pos)):
                pos = _end(self._inside, line, pos if in_quote else pos + 1)
                if pos >= end:
                    return True
                pos += 1  # the closing quote
                in_quote = False
            pos = _end(self._data, line, pos)
            if pos >= end or line[pos] != self._delimiter:
                return False
            pos += 1
            at_field_start = True


def _end(pattern: re.Pattern[str], line: str, pos: int) -> int:
    """Where a match of ``pattern`` (which may match nothing) from ``pos`` ends."""
    match = pattern.match(line, pos)
    return pos if match is None else match.end()


class _Lines:
    """Physical lines, each noted as it is handed out; lines may be put back, to be read again."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._source = lines
        self._again: deque[str] = deque()
        self.taken: list[str] = []
        """The lines handed out since the caller last replaced this list."""

    def __iter__(self) -> Iterator[str]:
        """The lines left, put-back ones first; a new iterator goes on where the last stopped.

        No line is held between two ``yield``: an iterator may be dropped at any point.
        """
        again, source = self._again, self._source
        while True:
            line = again.popleft() if again else next(source, None)
            if line is None:
                return
            self.taken.append(line)
            yield line

    def put_back(self, lines: list[str]) -> None:
        """Hand ``lines`` out again, before any other."""
        self._again.extendleft(reversed(lines))


class _Raw:
    """The first ``limit`` characters of a record's lines, and how long it is in all."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.lines: list[str] = []
        self.kept = 0
        self.total = 0
        self._break = 0

    def extend(self, lines: list[str]) -> None:
        for line in lines:
            # The total leaves out the record's final line break, as Record.raw does.
            self.total += self._break + len(line.rstrip("\r\n"))
            self._break = len(line) - len(line.rstrip("\r\n"))
            room = self._limit - self.kept
            if room > 0:
                self.lines.append(line[:room])
                self.kept += min(room, len(line))
