"""Shared fixtures: a DuckDB destination in a temporary directory, and a pipeline writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    """A DuckDB destination URL for a file that exists only for this test."""
    return f"duckdb:///{tmp_path / 'test.duckdb'}"


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline file into the test's directory and return its path."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
