"""Compressed files: gzip, bz2, xz and zstd, told apart by their first bytes, read as streams.

A file's compression is what its content shows, not only what its name says: a ``.csv``
that holds gzip is read through gzip. Data that cannot be decompressed (cut short,
corrupt) raises :class:`CorruptData` from any read, whichever library found it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Literal, cast

from ladle.errors import SourceError

Compression = Literal["gzip", "bz2", "xz", "zstd"]

_EXTENSIONS: dict[str, Compression] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
}
_BUFFER = 1 << 20
_ZSTD_CHUNK = 1 << 13
"""Compressed bytes fed to zstd at a time: what one read may expand is bounded by it."""
_TRUNCATED = "Compressed file ended before the end-of-stream marker was reached"


class CorruptData(Exception):
    """Compressed data that cannot be decompressed; the message says which compression."""


def split_name(filename: str) -> tuple[str, Compression | None]:
    """The name without its compression extension, and the compression that extension names."""
    stem, extension = os.path.splitext(filename)
    kind = _EXTENSIONS.get(extension.lower())
    return (stem, kind) if kind is not None else (filename, None)


def by_content(head: bytes) -> Compression | None:
    """The compression whose magic bytes ``head`` starts with, if any."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    # "BZh", a block size digit, then a block or end-of-stream magic: "BZh" alone could be text.
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


@contextmanager
def opened(
    path: str | os.PathLike[str],
    kind: Compression | None,
    name: str,
    *,
    seek: bool = False,
    wrap: Callable[[io.FileIO], io.RawIOBase] | None = None,
) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
    """The file's content as a binary stream, and how many bytes of the file it has consumed.

    The count is of bytes on disk (compressed ones, for a compressed file), so progress
    and ``bytes_read`` add up to the file's size. ``seek``: a stream that can seek
    (Parquet reads its footer first), whose errors are the decompressor's own. ``wrap``:
    what the unbuffered file is read through (one that hashes what it reads).
    """
    with open(path, "rb", buffering=0) as file:
        raw: io.RawIOBase = file if wrap is None else wrap(file)
        stream: IO[bytes]
        if kind is None:
            stream = io.BufferedReader(raw, _BUFFER)
        elif seek:
            stream = _seekable(cast("IO[bytes]", raw), kind, name)
        else:
            stream = io.BufferedReader(_Checked(cast("IO[bytes]", raw), kind, name), _BUFFER)
        with stream:
            yield stream, raw.tell


def _seekable(raw: IO[bytes], kind: Compression, name: str) -> IO[bytes]:
    if kind == "zstd":
        raise SourceError(
            "a zstd-compressed Parquet file cannot be read: Parquet is read by seeking, which "
            "zstd streams cannot do; decompress it first (zstd -d), Parquet compresses its "
            "pages itself",
            position=name,
        )
    return _decompressor(raw, kind, name)


def _decompressor(raw: IO[bytes], kind: Compression, name: str) -> IO[bytes]:
    # The stdlib file objects are binary streams; typeshed does not declare them as IO[bytes].
    if kind == "gzip":
        return cast("IO[bytes]", gzip.GzipFile(fileobj=raw, mode="rb"))
    if kind == "bz2":
        return cast("IO[bytes]", bz2.BZ2File(raw, mode="rb"))
    if kind == "xz":
        return cast("IO[bytes]", lzma.LZMAFile(raw, mode="rb"))
    return cast("IO[bytes]", _ZstdFrames(raw, name))


class _Checked(io.RawIOBase):
    """Reads through a decompressor, turning each library's complaint into CorruptData.

    It seeks only back to the start (a JSON document is read twice when its records are
    looked for), by starting the decompressor over.
    """

    def __init__(self, raw: IO[bytes], kind: Compression, name: str) -> None:
        self._raw = raw
        self._kind = kind
        self._name = name
        self._inner = _decompressor(raw, kind, name)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR and offset == 0:
            return self._position
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("a decompressing stream seeks only back to its start")
        self._raw.seek(0)
        self._inner = _decompressor(self._raw, self._kind, self._name)
        self._position = 0
        return 0

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except OSError as exc:
            if exc.errno is not None:  # the disk, not the data: reported as such by the caller
                raise
            raise CorruptData(self._message(exc)) from exc
        except (EOFError, zlib.error, lzma.LZMAError, _ZstdError) as exc:
            raise CorruptData(self._message(exc)) from exc
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()

    def _message(self, exc: Exception) -> str:
        return f"the {self._kind} data is truncated or corrupt ({exc})"


class _ZstdError(Exception):
    """zstandard's own error, re-raised under a name this module can catch without importing it."""


class _ZstdFrames:
    """zstd frames one after another, decompressed; a file cut inside a frame is an error.

    zstandard's stream reader ends quietly at a truncated frame, so frames are fed by hand
    to decompression objects that know whether their frame ended.
    """

    def __init__(self, raw: IO[bytes], name: str) -> None:
        try:
            import zstandard  # a driver: imported when a zstd file is read
        except ImportError:
            raise SourceError(
                "reading zstd-compressed files needs the zstandard package: pip install zstandard",
                position=name,
            ) from None
        self._zstd = zstandard
        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._out = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` decompressed bytes; empty at the end of the file."""
        while not self._out:
            chunk = self._raw.read(_ZSTD_CHUNK)
            if not chunk:
                if self._frame is not None:
                    raise EOFError(_TRUNCATED)
                return b""
            self._out = memoryview(self._feed(chunk))
        size = len(self._out) if size < 0 else size
        data, self._out = self._out[:size], self._out[size:]
        return bytes(data)

    def close(self) -> None:
        """Nothing to release: the file belongs to whoever opened it."""

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            while data:
                if self._frame is None:
                    self._frame = self._context.decompressobj()
                out.append(self._frame.decompress(data))
                if not self._frame.eof:
                    break
                data, self._frame = self._frame.unused_data, None
        except self._zstd.ZstdError as exc:
            raise _ZstdError(str(exc)) from exc
        return b"".join(out)
