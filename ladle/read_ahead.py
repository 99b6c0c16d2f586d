"""Reading ahead: a source's next batch is read on a second thread while this one loads.

Reading a file (decompressing, parsing JSON or CSV, flattening: Polars and Arrow, in
native code that lets go of the GIL) and loading a batch (the steps, encoding for COPY
or DuckDB's insert, the server's work) each keep about one core busy. In series, a
2-core machine sits half idle; overlapped, the run takes about as long as the slower of
the two. At most two batches are alive at once: the one loading and the one read ahead.

The thread only reads: steps, staging and commits stay on the caller's thread, in order,
so checkpoints commit exactly as they would in series. A source's exception reaches the
caller as itself, at the batch where it happened; when the caller stops early (an error
while loading, a stop signal), the reading thread stops before its next batch and closes
the source's generator itself (a generator belongs to the thread running it).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

AHEAD = 1
"""Batches read beyond the one in hand."""
_JOIN_SECONDS = 30.0
"""How long stopping waits for a batch being read to end (the thread is a daemon after)."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _End:
    pass


class ReadAhead(Generic[T]):
    """Iterate ``batches`` on a thread, :data:`AHEAD` batches ahead of the consumer."""

    def __init__(self, batches: Iterator[T], *, name: str = "ladle-read-ahead") -> None:
        self._batches = batches
        self._ready: queue.Queue[T | _Failed | _End] = queue.Queue()
        self._slots = threading.Semaphore(AHEAD + 1)
        self._stop = threading.Event()
        context = contextvars.copy_context()  # log fields bound by the caller go along
        self._thread = threading.Thread(
            target=context.run, args=(self._read,), name=name, daemon=True
        )

    def __iter__(self) -> Generator[T, None, None]:
        self._thread.start()
        try:
            while True:
                item = self._ready.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
                del item  # the batch is done with: its slot goes to the next
                self._slots.release()
        finally:
            self._stop.set()
            self._slots.release()  # a reader waiting for a slot wakes and sees the stop
            self._thread.join(_JOIN_SECONDS)

    def _read(self) -> None:
        try:
            while True:
                self._slots.acquire()
                if self._stop.is_set():
                    return
                try:
                    batch = next(self._batches)
                except StopIteration:
                    self._ready.put(_End())
                    return
                self._ready.put(batch)
        except BaseException as exc:  # handed to the consumer, raised there
            self._ready.put(_Failed(exc))
        finally:
            close = getattr(self._batches, "close", None)
            if close is not None:
                close()


def read_ahead(batches: Iterator[T]) -> Generator[T, None, None]:
    """``batches``, read one batch ahead on a second thread."""
    return iter(ReadAhead(batches))
