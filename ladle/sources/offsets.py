"""Where a line reader stands in its file, in bytes, so a resumed read can seek there.

A JSON Lines or CSV reader's checkpoint says how many records it has read, the line
its last record ended on, and the byte just after that line in the file's content
(decompressed, for a compressed file). A resumed read goes straight to that byte
instead of reading and dropping every record before it: a plain file seeks; a
compressed one cannot, so its content is decompressed up to the byte and dropped,
unparsed. Text decoded from another encoding than UTF-8 is measured by encoding each
line again, which is exact for every encoding but those that write a byte order mark
of their own (UTF-16, UTF-32): their readers checkpoint no byte, and resume by reading.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

_DISCARD = 1 << 20
"""Decompressed bytes read and dropped at a time on the way to a compressed file's offset."""

LINES_HELD = 8192
"""How many of the latest lines' ends a CSV reader keeps: a record whose first line is
further back than this (a quoted value over thousands of lines) checkpoints no byte."""


@dataclass(frozen=True)
class Offset:
    """Where a resumed read of a file starts: just after record ``read``, which ended on
    line ``line``, at ``byte`` of the file's content."""

    byte: int
    line: int
    read: int

    def checkpoint(self) -> dict[str, int]:
        """The reader's checkpoint: the records read, as before, with the line and byte."""
        return {"read": self.read, "line": self.line, "byte": self.byte}

    @classmethod
    def from_checkpoint(cls, value: Any) -> Offset | None:
        """The offset a reader's checkpoint holds, if it holds one."""
        if not isinstance(value, dict):
            return None
        fields = (value.get("byte"), value.get("line"), value.get("read"))
        if not all(isinstance(field, int) and field >= 0 for field in fields):
            return None
        byte, line, read = fields
        return cls(int(byte or 0), int(line or 0), int(read or 0))


def records_read(checkpoint: Any) -> int | None:
    """How many records a reader's checkpoint (an int, or :meth:`Offset.checkpoint`) covers."""
    if isinstance(checkpoint, dict):
        checkpoint = checkpoint.get("read")
    return checkpoint if isinstance(checkpoint, int) else None


def go_to(stream: IO[bytes], byte: int, *, compressed: bool) -> None:
    """Put ``stream`` (the file's content) at ``byte``: seek, or for a compressed file
    go back to its start and decompress up to the byte, dropping what comes out."""
    stream.seek(0 if compressed else byte)
    left = byte if compressed else 0
    while left > 0:
        got = len(stream.read(min(left, _DISCARD)))
        if not got:
            raise EOFError(f"the content ends before byte {byte:,}")
        left -= got


def line_bytes(encoding: str) -> Callable[[str], int] | None:
    """How many bytes a decoded line took in the file, or None if that cannot be told
    (an encoding that writes a byte order mark per call: UTF-16, UTF-32, UTF-8-SIG)."""
    name = codecs.lookup(encoding).name
    if name.startswith(("utf-16", "utf-32", "utf-8-sig")):
        return None
    if name in ("utf-8", "ascii"):
        return _utf8_bytes
    encoder = codecs.getincrementalencoder(name)(errors="surrogateescape")
    return lambda line: len(encoder.encode(line))


def _utf8_bytes(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogateescape"))


class LineEnds:
    """The byte after each of the latest lines drawn from a text's lines, by line number.

    Wraps the lines a CSV reader parses: the reader may draw lines ahead of the record
    it hands out (a stray quote's lines are read again), so the end of any recent line
    can be asked for, not only the last one's.
    """

    def __init__(self, measure: Callable[[str], int], *, byte: int, line: int) -> None:
        self._measure = measure
        self._ends: deque[int] = deque(maxlen=LINES_HELD)
        self._byte = byte
        """The byte the lines start at."""
        self._line = line
        """The number of the last line drawn."""

    def wrap(self, lines: Iterator[str]) -> Iterator[str]:
        """``lines``, each measured as it is drawn."""
        measure, append = self._measure, self._ends.append
        utf8 = measure is _utf8_bytes
        byte = self._byte
        for line in lines:
            # UTF-8 measured inline: this runs for every line of a CSV file.
            byte += len(line) if utf8 and line.isascii() else measure(line)
            append(byte)
            self._line += 1
            yield line

    def end_of(self, line: int) -> int | None:
        """The byte just after ``line``, if it is one of the latest lines drawn."""
        back = self._line - line
        if back < 0 or back >= len(self._ends):
            return None
        return self._ends[-1 - back]
