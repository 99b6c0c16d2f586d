"""Bytes the declared encoding cannot decode: find them and say which byte, for any reader.

Text is decoded with ``errors="surrogateescape"`` so one bad byte spoils only its own
record: the byte survives as a lone surrogate, found here and reported by value.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

_SURROGATE = re.compile("[\udc80-\udcff]")


def is_utf8(encoding: str) -> bool:
    """Whether ``encoding`` names UTF-8 (``utf8``, ``UTF-8``...), which gets the fast roads."""
    return codecs.lookup(encoding).name == "utf-8"


def bad_byte_message(byte: int, encoding: str) -> str:
    """What to say about a byte that ``encoding`` cannot decode."""
    return f"cannot decode byte 0x{byte:02x} as {encoding}; set `encoding:` to the file's encoding"


def undecodable(text: str, encoding: str) -> str | None:
    """The message for the first undecodable byte in text read with surrogateescape, if any."""
    match = _SURROGATE.search(text)
    return None if match is None else bad_byte_message(ord(match.group()) - 0xDC00, encoding)


def show_undecodable(text: str) -> str:
    """Text read with surrogateescape, with each undecodable byte spelled ``\\xff``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@contextmanager
def text_stream(stream: IO[bytes], encoding: str, *, newline: str) -> Iterator[io.TextIOWrapper]:
    """Decode ``stream`` with surrogateescape, handing the binary stream back when done.

    The wrapper is detached rather than closed: the stream belongs to whoever opened it.
    """
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline=newline)
    try:
        yield text
    finally:
        if not stream.closed:  # detaching flushes, which a closed stream refuses
            text.detach()
