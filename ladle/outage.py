"""Waiting out a destination outage: reconnect with a capped backoff, for as long as it takes.

A long-running consumer (``ladle worker``) must neither die nor give up on the work in
hand because the database went away for a while. :class:`PatientDestination` runs an
attempt against the destination; when the destination is unavailable (a lost or refused
connection, no connection in time) it drops the connection, waits (0.5 s, 1 s, 2 s ...
up to a cap), connects again from scratch and retries the same attempt. Every other
error is the caller's. Each wait is logged and counted on ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from ladle.destinations import Destination, connect
from ladle.errors import DestinationError, LadleError
from ladle.metrics import Metrics

_T = TypeVar("_T")
log = structlog.get_logger("ladle")


class Stopped(Exception):
    """Raised out of a wait when the caller asked to stop meanwhile."""


@dataclass(frozen=True)
class Patience:
    """How to wait, and what to do while waiting."""

    resource: str
    """The metrics' and the log lines' ``resource``."""
    retry_max_s: float
    """The longest wait between two attempts."""
    tick_s: float
    """How often ``stopping`` is asked during a wait."""
    stopping: Callable[[], bool]
    """True when the wait should end with :class:`Stopped`."""
    in_hand: Callable[[], int]
    """How many records wait with the attempt (for the log line)."""


class PatientDestination:
    """A destination connection that :meth:`attempt` waits for while it is unavailable."""

    def __init__(
        self,
        url: str,
        *,
        base_dir: Path | None,
        prepare: Callable[[Destination], None],
        patience: Patience,
        metrics: Metrics,
    ) -> None:
        self._url = url
        self._base_dir = base_dir
        self._prepare = prepare
        self._patience = patience
        self._metrics = metrics
        self._destination: Destination | None = None
        self._lost = False

    def connected(self) -> Destination:
        """The destination: connected on first use, and from scratch after an outage, with
        ``prepare`` run on each new connection (steps that read the destination hold it)."""
        if self._destination is None:
            destination = connect(self._url, base_dir=self._base_dir)
            try:
                self._prepare(destination)
            except BaseException:
                destination.close()
                raise
            self._destination = destination
            self._metrics.destination_up.labels(self._patience.resource).set(1)
            if self._lost:
                log.info("reconnected to the destination", resource=self._patience.resource)
        return self._destination

    def close(self) -> None:
        """Release the connection, if there is one."""
        destination, self._destination = self._destination, None
        if destination is not None:
            destination.close()

    def attempt(self, call: Callable[[Destination], _T]) -> _T:
        """``call(destination)`` until the destination lets it through; raise any other error,
        or :class:`Stopped` if asked to stop during a wait."""
        p = self._patience
        delay, tries, since = min(0.5, p.retry_max_s), 0, time.monotonic()
        while True:
            try:
                result = call(self.connected())
            except Exception as exc:
                if not destination_unavailable(exc):
                    raise
                tries += 1
                self._drop()
                self._metrics.destination_up.labels(p.resource).set(0)
                self._metrics.destination_retries.labels(p.resource).inc()
                log.warning(
                    "waiting for the destination; the batch in hand stays with this worker",
                    resource=p.resource,
                    attempt=tries,
                    retry_in_s=delay,
                    waited_s=round(time.monotonic() - since, 1),
                    entries=p.in_hand(),
                    error=str(exc),
                )
                self._wait(delay)
                delay = min(delay * 2, p.retry_max_s)
                continue
            if tries:
                waited = round(time.monotonic() - since, 1)
                log.info("the destination is back", resource=p.resource, waited_s=waited)
            self._metrics.destination_up.labels(p.resource).set(1)
            return result

    def _drop(self) -> None:
        """Forget the connection: a new one is refused at once while the server is down,
        where the pool would wait its whole timeout for a connection on every attempt."""
        destination, self._destination, self._lost = self._destination, None, True
        if destination is not None:
            with suppress(Exception):
                destination.close()

    def _wait(self, seconds: float) -> None:
        p = self._patience
        end = time.monotonic() + seconds
        while not p.stopping():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, p.tick_s))
        raise Stopped


def destination_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the destination cannot be reached right now: a lost or refused
    connection, a serialization failure, or a pool that found no live connection in time
    (the destinations mark those transient). Waiting helps then; splitting would not."""
    return isinstance(error, DestinationError) and error.transient


def describe(error: BaseException) -> str:
    """An error in one line: ladle's own message, or a bug's type and message."""
    text = str(error) if isinstance(error, LadleError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())
