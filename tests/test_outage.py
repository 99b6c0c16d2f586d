"""PatientDestination: an unreachable PostgreSQL (behind a stopped proxy) is waited out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from ladle.destinations import Destination
from ladle.errors import DestinationError
from ladle.ledger import RUNS
from ladle.metrics import Metrics
from ladle.outage import Patience, PatientDestination, Stopped, destination_unavailable
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A proxy to the test's PostgreSQL, running."""
    with TcpProxy(urlsplit(postgres_url).port or 5432) as running:
        yield running


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{user}@127.0.0.1:{port}").geturl()


class _Calls:
    """What the patient destination called back: prepares and stop checks."""

    def __init__(self, *, stop_after: int | None = None) -> None:
        self.prepared: list[Destination] = []
        self.checks = 0
        self.stop_after = stop_after

    def patience(self) -> Patience:
        return Patience(
            resource="events",
            retry_max_s=0.05,
            tick_s=0.01,
            stopping=self.stopping,
            in_hand=lambda: 3,
        )

    def stopping(self) -> bool:
        self.checks += 1
        return self.stop_after is not None and self.checks > self.stop_after


def _value(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"resource": "events"})


def test_an_outage_is_waited_out_and_the_same_attempt_retried(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """Connections refused for a second: the attempt is retried until a connection (then
    prepared) lets it through; retries and the up gauge are on /metrics."""
    calls, metrics = _Calls(), Metrics()
    patient = PatientDestination(
        _through(postgres_url, proxy.port),
        base_dir=None,
        prepare=calls.prepared.append,
        patience=calls.patience(),
        metrics=metrics,
    )
    proxy.stop()
    try:
        threading.Timer(1.0, proxy.start).start()
        rows = patient.attempt(lambda destination: destination.read(RUNS.name, {}).height)
    finally:
        patient.close()
    assert rows == 0
    assert len(calls.prepared) == 1, "prepared once, on the connection that worked"
    retries = _value(metrics, "ladle_destination_retries_total")
    assert retries is not None
    assert retries >= 5
    assert _value(metrics, "ladle_destination_up") == 1


def test_a_stop_during_the_wait_ends_it(postgres_url: str, proxy: TcpProxy) -> None:
    """A worker asked to stop while it waits gets Stopped instead of waiting on."""
    calls, metrics = _Calls(stop_after=5), Metrics()
    patient = PatientDestination(
        _through(postgres_url, proxy.port),
        base_dir=None,
        prepare=calls.prepared.append,
        patience=calls.patience(),
        metrics=metrics,
    )
    proxy.stop()
    with pytest.raises(Stopped):
        patient.attempt(lambda destination: destination.read(RUNS.name, {}))
    patient.close()
    assert _value(metrics, "ladle_destination_up") == 0
    assert calls.prepared == []


def test_other_errors_are_raised_at_once(postgres_url: str) -> None:
    """An error that is no outage is the caller's: raised on the first attempt."""
    calls, metrics = _Calls(), Metrics()
    patient = PatientDestination(
        postgres_url,
        base_dir=None,
        prepare=calls.prepared.append,
        patience=calls.patience(),
        metrics=metrics,
    )
    attempts = []

    def fail(destination: Destination) -> None:
        attempts.append(destination)
        raise DestinationError("column 'size' is bigint")

    try:
        with pytest.raises(DestinationError, match="bigint"):
            patient.attempt(fail)
    finally:
        patient.close()
    assert len(attempts) == 1
    assert _value(metrics, "ladle_destination_retries_total") in (None, 0)


def test_what_counts_as_an_outage() -> None:
    """Transient destination errors are outages (a pool timeout is one: the destination marks
    it so, see tests/destinations/test_postgres_pool.py); the rest are not."""
    assert destination_unavailable(DestinationError("connection refused", transient=True))
    assert not destination_unavailable(DestinationError("value too long"))
    assert not destination_unavailable(ValueError("connection refused"))
