"""The step registry: options as a pipeline file writes them build working steps."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from ladle.batch import ROW
from ladle.columns import ColumnSpec
from ladle.kinds import STEPS
from ladle.schema import parse_type
from ladle.steps import StepContext

CONTEXT = StepContext(
    resource="tickets",
    columns={"id": ColumnSpec(type=parse_type("bigint"), required=True)},
    primary_key=("id",),
)


@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("rename", {"TKT-Ticket ID": "id", "name": ["full_name", "nm"]}),
        ("select", ["id", "name"]),
        ("drop", ["name"]),
        ("cast", None),
        ("cast", {"id": "bigint"}),
        ("derive", {"twice": "id * 2"}),
        ("validate", None),
        ("validate", [{"expr": "id > 0", "name": "positive", "field": "id"}]),
        ("dedupe", {"keep": "first"}),
        ("dedupe", None),
    ],
)
def test_every_step_builds_from_file_options_and_runs(key: str, options: Any) -> None:
    """Each registered step validates its options, builds, and keeps the row column."""
    kind = STEPS[key]
    step = kind.build(kind.options.validate_python(options), CONTEXT)
    frame = pl.DataFrame({ROW: [0, 1], "id": [1, 2], "name": ["a", "b"]})
    result = step(frame)
    assert ROW in result.frame.columns
    assert result.frame.height + result.rejects.height + result.deduplicated == 2
