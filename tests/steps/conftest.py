"""Fixtures for step tests: batches as the pipeline hands them to steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from ladle.batch import ROW
from ladle.steps import StepContext

Batch = Callable[..., pl.DataFrame]


def make_batch(columns: dict[str, Any] | None = None, /, **kwargs: Any) -> pl.DataFrame:
    """A frame with the row column first, numbered from 0, then the given columns."""
    data = {**(columns or {}), **kwargs}
    frame = pl.DataFrame(data, strict=False) if data else pl.DataFrame()
    height = frame.height if data else 0
    return frame.select(pl.int_range(height, dtype=pl.Int64).alias(ROW), pl.all())


@pytest.fixture
def batch() -> Batch:
    """Build a batch from columns: ``batch(id=[1, 2])``."""
    return make_batch


@pytest.fixture
def context() -> StepContext:
    """A resource with no declarations, in UTC."""
    return StepContext(resource="tickets")
