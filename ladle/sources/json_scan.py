"""Look at JSON text before a parser does: how deep it nests, and where a byte is.

Parsers spend memory per level of nesting, and some per level *per value*: ijson keeps
the path of every open level as text (100,000 opening brackets took 23 GB), Polars builds
a type per level, ``json.loads`` a stack frame. So the bytes are scanned first, at C speed,
and input nested deeper than the limit is refused before any parser sees it. The same
scan refuses a form feed or vertical tab outside strings, which JSON does not count as
whitespace (yajl and Polars do).

The scan cuts strings out, then counts brackets. Without a backslash before a quote, a
split at the quotes does it (strings are every other piece); otherwise one regular
expression, slower. A document's strings are cut as its parser reads them (a raw newline
inside would be a parse error there); a line's string ends at the end of its line.

Positions are lines and columns, counted in characters from 1, as editors show them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, count

DEFAULT_MAX_DEPTH = 64
"""Deeper than any real data we have seen (GeoJSON, API payloads stay under 20)."""

# A string, closed or not: the closing quote is optional so that the expression always
# matches at an opening quote, and never rescans a long open string from each quote in it.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_LINE_STRING = re.compile(rb'"[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"?')
_SPECIAL = rb"|[\[\]{}\x0b\x0c]"
_TOKEN = re.compile(_STRING.pattern + _SPECIAL, re.DOTALL)
_LINE_TOKEN = re.compile(_LINE_STRING.pattern + _SPECIAL)
_ODD_QUOTES = re.compile(rb'^(?:"")*"$', re.MULTILINE)
_PROBE = b'a"x'
"""Appended to a piece: ``x`` is left over only if the piece ended inside a string."""
_ONLY_QUOTES = bytes(sorted(set(range(256)) - set(b'"\n')))
_NOT_KEPT = bytes(sorted(set(range(256)) - set(b'"[]{}\x0b\x0c')))
_NOT_KEPT_LINES = bytes(sorted(set(range(256)) - set(b'"[]{}\x0b\x0c\n')))
_TWO_PER_OPENING = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_ALL = frozenset(range(256))
_NOT_BRACKET = bytes(sorted(_ALL - set(b"[]{}")))
_NOT_BRACKET_OR_NEWLINE = bytes(sorted(_ALL - set(b"[]{}\n")))
_NOT_OPENING_OR_NEWLINE = bytes(sorted(_ALL - set(b"[{\n")))
_CONTINUATION = bytes(range(0x80, 0xC0))
_NOT_WHITESPACE = {0x0B: "a vertical tab", 0x0C: "a form feed"}


class Refused(Exception):
    """The text breaks a rule of the scan at ``index`` (of the bytes given to the scan)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


def too_deep(limit: int) -> str:
    """The message for nesting deeper than ``limit``."""
    return (
        f"arrays and objects nest deeper than {limit} levels; if the data is meant to, "
        "raise the source's `max_depth:`"
    )


def _chars(data: bytes) -> int:
    """How many UTF-8 characters ``data`` holds (continuation bytes do not start one)."""
    return len(data.translate(None, _CONTINUATION))


@dataclass
class TextPosition:
    """Line and column of the next byte of a text fed to it in order."""

    line: int = 1
    column: int = 1

    def at(self, data: bytes, index: int) -> tuple[int, int]:
        """Line and column of ``data[index]``, ``data`` being the bytes that come next."""
        before = data[:index]
        newline = before.rfind(b"\n")
        if newline < 0:
            return self.line, self.column + _chars(before)
        return self.line + before.count(b"\n"), 1 + _chars(before[newline + 1 :])

    def advance(self, data: bytes) -> None:
        """Move past ``data``."""
        self.line, self.column = self.at(data, len(data))

    def describe(self, data: bytes, index: int) -> str:
        """``line L, column C`` of ``data[index]``."""
        line, column = self.at(data, index)
        return f"line {line}, column {column}"


def _strings_cut(text: bytes, *, lines: bool) -> tuple[bytes, bool]:
    """What of the text lies outside strings, and whether it ends inside one.

    Only brackets, odd spaces and (for lines) newlines are kept. The fast way keeps them
    and the quotes, drops each ``""`` left by a string without brackets (which keeps every
    other quote's parity), then splits at the quotes: outside is every other piece.
    """
    if b'\\"' not in text:
        kept = text.translate(None, _NOT_KEPT_LINES if lines else _NOT_KEPT).replace(b'""', b"")
        if not lines or _ODD_QUOTES.search(kept.translate(None, _ONLY_QUOTES)) is None:
            parts = kept.split(b'"')
            return b"".join(parts[::2]), len(parts) % 2 == 0
    pattern = _LINE_STRING if lines else _STRING
    structure = pattern.sub(b"", text + _PROBE)
    return structure[:-1], structure.endswith(b"x")


def _deepest(brackets: bytes) -> int:
    """How far above its start a run of brackets goes (C iterators: no Python per bracket).

    After k brackets the depth is twice the openings among them, minus k.
    """
    if not brackets:
        return 0
    twice_openings: Iterator[int] = accumulate(brackets.translate(_TWO_PER_OPENING))
    depths: Iterator[int] = map(operator.sub, twice_openings, count(1))
    return max(depths)


class DepthGuard:
    """Fed a JSON document piece by piece, raises :class:`Refused` at the first byte
    nested deeper than ``limit`` or at whitespace JSON does not allow."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._depth = 0
        self._carry = b""
        """How the last piece ended inside a string: ``"``, or ``"\\`` after a backslash."""

    def feed(self, data: bytes) -> None:
        """Check the next piece; the index of a :class:`Refused` is into ``data``."""
        carried = len(self._carry)
        text = self._carry + data
        structure, inside = _strings_cut(text, lines=False)
        self._carry = b""
        if inside:
            odd = (len(text) - len(text.rstrip(b"\\"))) % 2
            self._carry = b'"' + b"\\" * odd
        brackets = structure.translate(None, _NOT_BRACKET)
        opening = brackets.count(b"[") + brackets.count(b"{")
        room = self.limit - self._depth
        if not _odd_space(structure) and (opening <= room or _deepest(brackets) <= room):
            self._depth = max(self._depth + 2 * opening - len(brackets), 0)
            return
        try:
            self._depth = _walk(text, self._depth, self.limit, _TOKEN)
        except Refused as exc:
            raise Refused(exc.message, exc.index - carried) from None


def _odd_space(structure: bytes) -> bool:
    return b"\x0b" in structure or b"\x0c" in structure


def _walk(text: bytes, depth: int, limit: int, tokens: re.Pattern[bytes]) -> int:
    """Depth after ``text``, bracket by bracket; raises Refused where a rule breaks."""
    for match in tokens.finditer(text):
        token = match.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise Refused(too_deep(limit), match.start())
        elif token in (b"]", b"}"):
            depth = max(depth - 1, 0)
        else:
            raise Refused(f"{_NOT_WHITESPACE[token[0]]} is not JSON whitespace", match.start())
    return depth


def line_problem(line: bytes, limit: int) -> Refused | None:
    """What is wrong with one JSON Lines line by the scan's rules, or None."""
    structure, _ = _strings_cut(line, lines=True)
    brackets = structure.translate(None, _NOT_BRACKET)
    if _deepest(brackets) <= limit and not _odd_space(structure):
        return None
    try:
        _walk(line, 0, limit, _LINE_TOKEN)
    except Refused as exc:
        return exc
    return None


@dataclass(frozen=True)
class Screened:
    """A chunk of JSON Lines, and the lines worth a closer look."""

    text: bytes
    """The chunk's lines joined, each ending in a newline."""
    suspects: list[int]
    """Lines nested deeper than the screen's depth, unbalanced, or with odd whitespace."""


_PAIR = re.compile(rb"[\[{][\]}]")


def screen_lines(lines: list[bytes], depth: int) -> Screened:
    """Find, at C speed, the lines that nest deeper than ``depth`` (or may break a rule):
    innermost bracket pairs are cut ``depth`` times; a line with brackets left is a suspect.
    :func:`line_problem` then tells for sure."""
    joined = b"".join(lines)
    if joined.count(b"\n") < len(lines) - 1:  # lines set aside as b"" keep their place
        joined = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
    # Common case first: no line opens more than ``depth`` brackets, strings' included.
    opening = joined.translate(None, _NOT_OPENING_OR_NEWLINE).split(b"\n")
    if max(map(len, opening)) <= depth and not _odd_space(joined):
        return Screened(joined, [])
    text, _ = _strings_cut(joined, lines=True)
    brackets = text.translate(None, _NOT_BRACKET_OR_NEWLINE)
    for _ in range(depth):
        if len(brackets) == len(lines):  # newlines only
            break
        brackets = _PAIR.sub(b"", brackets)
    found = {i for i, left in enumerate(brackets.split(b"\n")[: len(lines)]) if left}
    if _odd_space(text):
        pieces = text.split(b"\n")[: len(lines)]
        found.update(i for i, piece in enumerate(pieces) if _odd_space(piece))
    return Screened(joined, sorted(found))
