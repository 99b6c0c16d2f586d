"""A file's content hash, computed from the reads that parse it rather than in a pass of its own.

The hash (sha256 of the bytes on disk) tells a changed file from one merely touched,
and whether a file is still the one an interrupted run checkpointed. Hashing as the
reader goes costs no extra pass before the first batch; a resumed read, which starts
past the bytes already loaded, hashes that prefix once in big blocks without parsing
it, and checks it against the prefix hash its checkpoint holds.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

_BLOCK = 1 << 23
"""Bytes hashed at a time where no reader reads them: the prefix of a resumed read, or
what a reader left unread."""


class ContentHash:
    """sha256 of one file's bytes in order, fed by :meth:`reader`'s reads and topped up
    from the file wherever a reader skipped ahead or stopped early."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hash = hashlib.sha256()
        self.hashed = 0
        """How many bytes from the start the hash covers."""

    def prefix(self) -> dict[str, Any]:
        """The hash so far and what it covers, for a checkpoint to check the file by."""
        return {"bytes": self.hashed, "sha256": self._hash.copy().hexdigest()}

    def resume(self, prefix: Any) -> bool:
        """Hash the file up to where ``prefix`` (what :meth:`prefix` said) reaches; whether
        it is the same. If not, start over from nothing."""
        if not isinstance(prefix, dict) or not isinstance(prefix.get("bytes"), int):
            return False
        with open(self.path, "rb", buffering=0) as file:
            self._top_up(file, prefix["bytes"])
        if self.hashed == prefix["bytes"] and self.prefix() == prefix:
            return True
        self._hash, self.hashed = hashlib.sha256(), 0
        return False

    def hexdigest(self) -> str:
        """The whole file's hash: what no reader read is hashed from the file now."""
        with open(self.path, "rb", buffering=0) as file:
            self._top_up(file, None)
        return self._hash.hexdigest()

    def reader(self, raw: io.FileIO) -> io.RawIOBase:
        """``raw`` (the file, opened unbuffered), hashing each byte the first time it is read."""
        return _Hashing(raw, self)

    def seen(self, position: int, data: memoryview) -> None:
        """``data`` was read at ``position``: hash what of it is new."""
        if position > self.hashed:  # a reader skipped ahead: hash the gap first
            with open(self.path, "rb", buffering=0) as file:
                self._top_up(file, position)
        start = self.hashed - position
        if 0 <= start < len(data):
            self._hash.update(data[start:])
            self.hashed = position + len(data)

    def _top_up(self, file: io.FileIO, upto: int | None) -> None:
        """Hash the file's bytes from where the hash stands to ``upto`` (None: the end)."""
        file.seek(self.hashed)
        buffer = bytearray(_BLOCK)
        view = memoryview(buffer)
        while upto is None or self.hashed < upto:
            want = _BLOCK if upto is None else min(_BLOCK, upto - self.hashed)
            got = file.readinto(view[:want])
            if not got:
                return
            self._hash.update(view[:got])
            self.hashed += got


class _Hashing(io.RawIOBase):
    """An unbuffered file whose reads feed a :class:`ContentHash`; it seeks as the file does."""

    def __init__(self, raw: io.FileIO, content: ContentHash) -> None:
        self._raw = raw
        self._content = content

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        position = self._raw.tell()
        view = memoryview(buffer).cast("B")
        got = self._raw.readinto(view)
        if got:
            self._content.seen(position, view[:got])
        return int(got or 0)

    def close(self) -> None:
        """The file belongs to whoever opened it."""
        super().close()
