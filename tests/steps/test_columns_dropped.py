"""dropped_at: which step leaves a column out of the batch, read off the pipeline file."""

from __future__ import annotations

from typing import Any

import pytest

from ladle.config import StepConfig
from ladle.steps.columns import dropped_at


def _steps(*steps: tuple[str, Any]) -> list[StepConfig]:
    return [StepConfig(name, options, f"p.yaml:{i}") for i, (name, options) in enumerate(steps)]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ((("drop", ["Update Order"]),), 0),
        ((("drop", ["other"]),), None),
        ((("select", ["id"]),), 0),
        ((("select", ["id", "update_order"]),), None),
        ((("rename", {"update_order": "rank"}),), 0),
        ((("rename", {"rank": ["update_order", "order"]}),), 0),
        ((("drop", ["update_order"]), ("derive", {"update_order": "1"})), None),
        ((("drop", ["update_order"]), ("rename", {"x": "update_order"})), None),
        ((("derive", {"x": "1"}), ("drop", ["update_order"]), ("cast", None)), 1),
    ],
)
def test_dropped_at_names_the_step_that_removes_a_column_for_good(
    steps: tuple[tuple[str, Any], ...], expected: int | None
) -> None:
    """drop, select and rename remove a column; a later derive or rename makes it again."""
    assert dropped_at("update_order", _steps(*steps)) == expected
