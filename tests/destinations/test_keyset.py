"""KeySet: which rows of a batch carry a key new to the load."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from ladle.destinations.keyset import KeySet, key_hashes


def test_marks_first_occurrences_across_batches() -> None:
    """A key is new once: later in its batch or in a later batch it is not."""
    keys = KeySet()
    first = keys.add(key_hashes(pl.DataFrame({"id": [1, 2, 1]}), ["id"]))
    second = keys.add(key_hashes(pl.DataFrame({"id": [3, 2, 4]}), ["id"]))
    assert first.to_list() == [True, True, False]
    assert second.to_list() == [True, False, True]
    assert keys.repeated
    assert len(keys) == 4


def test_no_repeat_is_reported_as_such() -> None:
    """Distinct keys in every batch leave `repeated` false."""
    keys = KeySet()
    for start in range(0, 50, 10):
        batch = pl.DataFrame({"a": range(start, start + 10), "b": ["x"] * 10})
        keys.add(key_hashes(batch, ["a", "b"]))
    assert not keys.repeated
    assert len(keys) == 50


@given(st.lists(st.lists(st.integers(0, 40), max_size=15), max_size=12))
def test_matches_a_python_set(batches: list[list[int]]) -> None:
    """Over any sequence of batches, the masks equal what a plain set would say."""
    keys = KeySet()
    seen: set[int] = set()
    for batch in batches:
        mask = keys.add(key_hashes(pl.DataFrame({"k": batch}, schema={"k": pl.Int64}), ["k"]))
        expected = []
        for value in batch:
            expected.append(value not in seen)
            seen.add(value)
        assert mask.to_list() == expected
