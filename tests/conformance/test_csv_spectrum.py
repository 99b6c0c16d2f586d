"""csv-spectrum through ladle's CSV file source, end to end into each destination.

Each ``csvs/X.csv`` is a resource of one pipeline, read with the source's defaults
(delimiter and quote sniffed) and loaded into DuckDB and into PostgreSQL; its table must
hold what ``json/X.json`` says, cell by cell, every value text. ladle reads an empty CSV
field as NULL (see :mod:`ladle.sources.csv_reader`), and the suite spells an empty field
``""``: an expected ``""`` is asserted as NULL.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from ladle import Pipeline, RunOptions
from ladle.schema import normalize_name
from tests.conformance.fetch_suites import CSV_SPECTRUM
from tests.conformance.harness import read_tables

CSVS = CSV_SPECTRUM.directory / "csvs"
DISAGREES = "location_coordinates"
"""Its JSON has another phone number than its CSV (and is an object, not an array)."""


def _names() -> list[Any]:
    if not CSVS.is_dir():
        return [pytest.param(None, id="suite-not-fetched")]
    return sorted(path.stem for path in CSVS.glob("*.csv"))


def _expected(name: str) -> list[dict[str, str | None]]:
    """The suite's rows for ``name``, columns named as ladle names them, ``""`` as NULL."""
    if name == DISAGREES:
        with (CSVS / f"{name}.csv").open(encoding="utf-8", newline="") as stream:
            records: Any = list(csv.DictReader(stream))
    else:
        records = json.loads((CSV_SPECTRUM.directory / "json" / f"{name}.json").read_text())
    return [{normalize_name(k): v or None for k, v in record.items()} for record in records]


def _load(base: Path, url: str) -> dict[str, Any]:
    """Load every CSV of the suite into ``url``; the results by resource."""
    resources = {
        name: {"source": {"type": "file", "path": str(CSVS / f"{name}.csv")}, "write": "append"}
        for name in _names()
    }
    pipeline = Pipeline.from_dict({"pipeline": "spectrum", "resources": resources}, base_dir=base)
    summary = pipeline.run(RunOptions(destination=url))
    return {result.resource: result for result in summary.resources}


@pytest.fixture(scope="module")
def loaded_duckdb(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The suite loaded into a DuckDB file: (url, results by resource)."""
    base = tmp_path_factory.mktemp("csv-spectrum")
    url = f"duckdb:///{base / 'spectrum.duckdb'}"
    return url, _load(base, url)


@pytest.fixture(scope="module")
def loaded_postgres(
    conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Any:
    """The suite loaded into a PostgreSQL schema: (url, results by resource)."""
    return module_postgres_url, _load(tmp_path_factory.mktemp("csv-spectrum"), module_postgres_url)


@pytest.fixture(params=["duckdb", "postgres"])
def loaded(request: pytest.FixtureRequest) -> Any:
    """Each destination's load in turn."""
    return request.getfixturevalue(f"loaded_{request.param}")


@pytest.mark.parametrize("name", _names())
def test_csv_loads_as_its_json_says(name: str, loaded: Any) -> None:
    """Each CSV's table matches the suite's JSON cell by cell, every value text, "" as NULL.

    ``location_coordinates.json`` disagrees with its own CSV (another phone number), so that
    case is checked against the CSV itself, parsed with Python's csv module.
    """
    url, results = loaded
    result = results[name]
    assert result.status == "succeeded", result.error
    expected = _expected(name)
    counts = result.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (len(expected),) * 2 + (0,)
    rows = read_tables(url, [name])[name]
    assert all(isinstance(v, str) for row in rows for v in row.values() if v is not None)
    assert sorted(rows, key=repr) == sorted(expected, key=repr)


def test_location_coordinates_json_disagrees_with_its_csv(conformance_dir: Path) -> None:
    """The one case checked against its CSV: its JSON does hold another phone number."""
    text = (CSV_SPECTRUM.directory / "json" / f"{DISAGREES}.json").read_text(encoding="utf-8")
    in_json = json.loads(text)
    assert in_json["Contact Phone Number"] != _expected(DISAGREES)[0]["contact_phone_number"]
