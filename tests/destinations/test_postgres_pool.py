"""The PostgreSQL destination's pool: its timeouts come from the URL, a pool that gets no
connection in time is a transient error, and a destination that fails to open leaves no
thread behind. A TCP proxy (:mod:`tests.tcp_proxy`) stands in for a server that went away
or hangs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from ladle.destinations.postgres import PostgresDestination
from ladle.errors import DestinationError
from ladle.ledger import RUNS
from tests.tcp_proxy import TcpProxy, through


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A proxy to the test's PostgreSQL, running."""
    with TcpProxy(urlsplit(postgres_url).port or 5432) as running:
        yield running


def _pool_threads() -> set[threading.Thread]:
    """The threads of ladle's pools (psycopg_pool names them after the pool)."""
    return {
        t for t in threading.enumerate() if t.name.startswith(("ladle-scheduler", "ladle-worker"))
    }


def test_a_pool_that_gets_no_connection_in_pool_timeout_is_a_transient_error(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """The server gone: after ``?pool_timeout=1`` (not 30 s) a read fails with a transient
    DestinationError, which a worker waits out instead of splitting its batch."""
    url = through(postgres_url, proxy, pool_timeout=1)
    dest = PostgresDestination(url)
    try:
        proxy.stop()
        started = time.monotonic()
        with pytest.raises(DestinationError) as caught:
            dest.read(RUNS.name, {})
        waited = time.monotonic() - started
    finally:
        dest.close()
    assert str(caught.value) == (
        f"PostgreSQL error while reading {RUNS.name}: couldn't get a connection after 1.00 sec"
    )
    assert caught.value.transient
    assert 0.9 < waited < 5


def test_connect_timeout_in_the_url_bounds_a_server_that_hangs(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """A server that accepts and never answers: ``?connect_timeout=2`` ends the first
    connection after about 2 s (libpq's parameter, no longer overridden by ladle's 10 s)."""
    proxy.hang_after = 0
    url = through(postgres_url, proxy, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(DestinationError) as caught:
        PostgresDestination(url)
    waited = time.monotonic() - started
    assert str(caught.value).startswith(f"PostgreSQL error while connecting to {url}: ")
    assert "timeout expired" in str(caught.value)
    assert caught.value.transient
    assert 1.5 < waited < 6


def test_a_pool_that_cannot_open_leaves_no_thread(postgres_url: str, proxy: TcpProxy) -> None:
    """The first connection gets through, the pool's hangs: the destination fails with a
    transient error after ``pool_timeout`` and the pool's threads are gone (no leak)."""
    before = _pool_threads()
    proxy.hang_after = 1
    url = through(postgres_url, proxy, connect_timeout=2, pool_timeout=1)
    with pytest.raises(DestinationError) as caught:
        PostgresDestination(url)
    assert str(caught.value) == (
        f"PostgreSQL error while connecting to {url}: pool initialization incomplete after 1.0 sec"
    )
    assert caught.value.transient
    assert proxy.held >= 1, "the pool's connection hung"
    assert _pool_threads() <= before


def test_a_destination_whose_setup_fails_closes_its_pool(postgres_url: str) -> None:
    """The pool opened but ladle's tables cannot be created (a schema name PostgreSQL
    reserves): the error is the server's, and the pool's threads are gone."""
    before = _pool_threads()
    url = postgres_url.partition("?")[0] + "?schema=pg_ladle"
    with pytest.raises(DestinationError) as caught:
        PostgresDestination(url)
    assert str(caught.value).startswith(
        'PostgreSQL error while creating ladle\'s tables: unacceptable schema name "pg_ladle"'
    )
    assert not caught.value.transient
    assert _pool_threads() <= before


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_pool_timeout_must_be_seconds_above_zero(postgres_url: str, value: str) -> None:
    """A pool_timeout that is no positive number is refused before connecting."""
    url = f"{postgres_url}&pool_timeout={value}"
    with pytest.raises(DestinationError) as caught:
        PostgresDestination(url)
    assert str(caught.value) == (
        f"{url}: pool_timeout must be a number of seconds above 0, not {value!r}"
    )
