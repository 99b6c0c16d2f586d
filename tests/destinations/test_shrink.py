"""check_shrink: the rule both destinations apply before a replace's swap."""

from __future__ import annotations

import pytest

from ladle.config import WriteMode
from ladle.destinations import LoadTarget, check_shrink
from ladle.errors import DestinationError

TARGET = LoadTarget("p", "facilities", WriteMode.REPLACE)


@pytest.mark.parametrize(
    ("before", "after", "limit"),
    [(1000, 500, 0.5), (0, 0, 0.5), (10, 0, 1.0), (10, 20, 0.0), (10, 10, 0.0), (10, 0, None)],
)
def test_within_the_limit_passes(before: int, after: int, limit: float | None) -> None:
    """Exactly the limit, an empty or growing table, or no limit at all: no refusal."""
    target = LoadTarget("p", "t", WriteMode.REPLACE, max_shrink=limit)
    check_shrink(target, before, after)


def test_a_share_that_rounds_to_the_limit_shows_a_decimal() -> None:
    """50.4 % against 50 % would read "-50 %, more than the 50 %": the message shows 50.4."""
    with pytest.raises(DestinationError) as caught:
        check_shrink(TARGET, 1000, 496)
    assert str(caught.value) == (
        "replace would shrink 'facilities' from 1,000 to 496 rows (\u221250.4 %, more than "
        "the 50.0 % allowed); nothing was changed. Pass --allow-shrink or set replace: "
        "{max_shrink: 0.51}"
    )
