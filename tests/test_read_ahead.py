"""Reading ahead on a second thread: order, errors where they happened, at most two
batches alive, and a source closed on its own thread when the consumer stops early."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ladle.read_ahead import read_ahead


class _Source:
    """Counts what it has produced, and remembers the thread that closed it."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.closed_on: str | None = None

    def batches(self) -> Iterator[int]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise ValueError(f"bad batch {i}")
                self.produced += 1
                yield i
        finally:
            self.closed_on = threading.current_thread().name


def test_batches_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(_Source(50).batches())) == list(range(50))


def test_at_most_one_batch_is_read_beyond_the_one_in_hand() -> None:
    source = _Source(20)
    for i in read_ahead(source.batches()):
        time.sleep(0.005)  # time for the reader to run ahead as far as it may
        assert source.produced <= i + 2


def test_the_reader_runs_ahead_while_a_batch_is_in_hand() -> None:
    source = _Source(3)
    batches = read_ahead(source.batches())
    assert next(batches) == 0
    deadline = time.monotonic() + 5
    while source.produced < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert source.produced == 2
    assert list(batches) == [1, 2]


def test_a_source_error_arrives_after_the_batches_before_it() -> None:
    batches = read_ahead(_Source(10, fail_at=3).batches())
    got = [next(batches) for _ in range(3)]
    assert got == [0, 1, 2]
    with pytest.raises(ValueError, match="bad batch 3"):
        next(batches)


def test_stopping_early_closes_the_source_on_its_own_thread() -> None:
    source = _Source(1000)
    batches = read_ahead(source.batches())
    for batch in batches:
        if batch == 5:
            break
    batches.close()  # what a for loop that raised does when the generator is collected
    assert source.closed_on is not None
    assert source.closed_on != threading.current_thread().name
    assert source.produced <= 7
