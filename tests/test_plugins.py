"""The Python API: user steps and sources (decorators and entry points) and pipelines in code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ladle
from ladle import plugins
from ladle.destinations import connect
from ladle.kinds import SOURCES, STEPS


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into empty tables, so registrations never leak between tests."""
    for kinds in (STEPS, SOURCES):
        monkeypatch.setattr(kinds, "_functions", {})
        monkeypatch.setattr(kinds, "_kinds", {})
        monkeypatch.setattr(kinds, "_entry_points_loaded", False)


def _rows(url: str, table: str) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(table, {}, order_by=["id"]).to_dicts()
    finally:
        dest.close()


def test_user_step_and_source_run_from_a_pipeline_file(tmp_path: Path, duckdb_url: str) -> None:
    """A decorated source feeds a decorated step; options arrive as arguments; counts balance."""

    @ladle.source("numbers")
    def numbers(options: dict[str, Any], context: ladle.SourceContext) -> Iterator[dict[str, Any]]:
        for i in range(options["count"]):
            yield {"id": i, "amount": float(i)}

    @ladle.step
    def add_vat(frame: pl.DataFrame, *, rate: float = 0.2) -> pl.DataFrame:
        return frame.with_columns(vat=pl.col("amount") * rate)

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""\
pipeline: plugged
destination: {duckdb_url}
resources:
  sales:
    source: {{type: numbers, count: 25}}
    primary_key: [id]
    write: merge
    batch_size: 10
    steps:
      - add_vat: {{rate: 0.5}}
"""
    )
    summary = ladle.Pipeline.from_yaml(path).run()
    (result,) = summary.resources
    assert result.status == "succeeded", result.error
    assert (result.counts.fetched, result.counts.inserted) == (25, 25)
    rows = _rows(duckdb_url, "sales")
    assert [row["vat"] for row in rows] == [i * 0.5 for i in range(25)]


def test_a_source_may_yield_dataframes_and_positions_count_records(
    tmp_path: Path,
) -> None:
    """DataFrames pass as batches; records between them are gathered; positions number both."""

    @ladle.source("mixed")
    def mixed(options: dict[str, Any], context: ladle.SourceContext) -> Iterator[Any]:
        yield {"id": 0}
        yield pl.DataFrame({"id": [1, 2]})
        yield {"id": 3}

    from ladle.kinds import SOURCES
    from ladle.sources import SourceContext

    source = SOURCES["mixed"].build(
        plugins.UserSourceOptions(type="mixed"), SourceContext("r", 10, tmp_path)
    )
    batches = list(source.batches())
    assert [b.frame.get_column("id").to_list() for b in batches] == [[0], [1, 2], [3]]
    assert [b.positions for b in batches] == [["mixed#0"], ["mixed#1", "mixed#2"], ["mixed#3"]]


def test_a_step_that_drops_rows_fails_in_words(tmp_path: Path, duckdb_url: str) -> None:
    """A function returning fewer rows fails the resource with what to do instead."""

    @ladle.step
    def shrink(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.head(1)

    pipeline = (
        ladle.Pipeline.builder("shrinking", destination=duckdb_url)
        .base_dir(tmp_path)
        .resource("items", source={"type": "file", "path": "items.jsonl"}, steps=[{"shrink": None}])
        .build()
    )
    (tmp_path / "items.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (result,) = pipeline.run().resources
    assert result.status == "failed"
    assert result.error == (
        "resource 'items', step 'shrink': tests.test_plugins.test_a_step_that_drops_rows_fails_in_"
        "words.<locals>.shrink returned 1 rows for 2; a step may add or change columns, but to "
        "take rows out it returns a StepResult with the rejects"
    )


def test_options_that_do_not_fit_the_function_are_refused(tmp_path: Path) -> None:
    """An option the function does not take is an error naming it, before anything runs."""

    @ladle.step
    def scale(frame: pl.DataFrame, *, factor: float) -> pl.DataFrame:
        return frame

    pipeline = (
        ladle.Pipeline.builder("opts")
        .base_dir(tmp_path)
        .resource("items", source={"type": "file", "path": "x.jsonl"}, steps=[{"scale": {"f": 2}}])
        .build()
    )
    (tmp_path / "x.jsonl").write_text('{"id": 1}\n')
    (result,) = pipeline.run(ladle.RunOptions(dry_run=True)).resources
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(
        "resource 'items', step 'scale': the options ['f'] do not fit "
        "tests.test_plugins.test_options_that_do_not_fit_the_function_are_refused.<locals>.scale"
    )


def test_names_are_checked() -> None:
    """Built-in names and names taken by another function are refused."""

    with pytest.raises(ladle.LadleError, match=r"user steps may not take the built-in names"):

        @ladle.step("rename")
        def not_rename(frame: pl.DataFrame) -> pl.DataFrame:
            return frame

    assert not STEPS["rename"].plugin

    @ladle.source("feed")
    def first(options: dict[str, Any], context: ladle.SourceContext) -> list[Any]:
        return []

    with pytest.raises(ladle.LadleError, match=r"the source name 'feed' is taken by"):

        @ladle.source("feed")
        def second(options: dict[str, Any], context: ladle.SourceContext) -> list[Any]:
            return []


def test_an_installed_package_registers_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duckdb_url: str
) -> None:
    """A distribution's ``ladle.steps`` entry point is found without importing it by hand."""
    package = tmp_path / "site"
    package.mkdir()
    (package / "ladle_upper.py").write_text(
        "import polars as pl\n\n"
        "def upper(frame, *, column):\n"
        "    return frame.with_columns(pl.col(column).str.to_uppercase())\n"
    )
    dist = package / "ladle_upper-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ladle-upper\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ladle.steps]\nupper = ladle_upper:upper\n")
    monkeypatch.syspath_prepend(str(package))
    data = tmp_path / "names.jsonl"
    data.write_text('{"id": 1, "name": "ada"}\n')
    pipeline = ladle.Pipeline.from_dict(
        {
            "pipeline": "entry",
            "destination": duckdb_url,
            "resources": {
                "names": {
                    "source": {"type": "file", "path": str(data)},
                    "steps": [{"upper": {"column": "name"}}],
                }
            },
        }
    )
    assert pipeline.run().ok
    assert [row["name"] for row in _rows(duckdb_url, "names")] == ["ADA"]
    sys.modules.pop("ladle_upper", None)


def test_a_pipeline_in_code_is_validated_like_a_file() -> None:
    """A mistake in a pipeline built in code names the key, as a file's would."""
    with pytest.raises(ladle.ConfigError) as error:
        ladle.Pipeline.builder("bad").resource(
            "items", source={"type": "file", "path": "x"}, primary_ky=["id"]
        ).build()
    assert str(error.value) == (
        "<pipeline defined in code>: resources.items: unknown key 'primary_ky' "
        "(did you mean 'primary_key'?)"
    )
