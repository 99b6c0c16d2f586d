"""lookup: reference data joined on a unique key, from a file, the destination or a query."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from ladle import Pipeline, RunOptions
from ladle.batch import ROW
from ladle.columns import ColumnSpec
from ladle.config import load
from ladle.destinations import connect
from ladle.errors import ConfigError, StepError
from ladle.ledger import Note
from ladle.schema import parse_type
from ladle.steps import StepContext
from ladle.steps.lookup import Lookup, LookupOptions
from tests.steps.conftest import Batch, make_batch

WARDS_CSV = """county,ward,ward_id,region_id
Nairobi,Kilimani,101,1
Nairobi,Kibra,102,1
Mombasa,Tudor,201,2
Mombasa,Kilimani,202,2
"""


def _options(**options: Any) -> LookupOptions:
    defaults: dict[str, Any] = {
        "from": {"file": "wards.csv"},
        "on": {"county": "county", "ward": "ward"},
        "add": ["ward_id", "region_id"],
    }
    return LookupOptions.model_validate({**defaults, **options})


@pytest.fixture
def ref_dir(tmp_path: Path) -> Path:
    """A directory holding ``wards.csv``, as the pipeline file's directory."""
    (tmp_path / "wards.csv").write_text(WARDS_CSV, encoding="utf-8")
    return tmp_path


@pytest.fixture
def lookup(ref_dir: Path) -> Callable[..., Lookup]:
    """Build a lookup over ``wards.csv`` with options overriding the defaults."""

    def build(context: StepContext | None = None, **options: Any) -> Lookup:
        context = context or StepContext(resource="facilities", base_dir=ref_dir)
        return Lookup(_options(**options), context)

    return build


def _error(build: Callable[[], object]) -> str:
    with pytest.raises(StepError) as caught:
        build()
    return str(caught.value)


# ---------------------------------------------------------------- matching


def test_csv_reference_adds_columns_in_row_order(lookup: Callable[..., Lookup]) -> None:
    """Each row gets the added columns of the reference row with its key; order is kept."""
    frame = make_batch(
        county=["Mombasa", "Nairobi", "Nairobi"], ward=["Tudor", "Kibra", "Kilimani"]
    )
    result = lookup()(frame)
    assert result.frame.columns == [ROW, "county", "ward", "ward_id", "region_id"]
    assert result.frame.get_column(ROW).to_list() == [0, 1, 2]
    assert result.frame.get_column("ward_id").to_list() == ["201", "102", "101"]
    assert result.frame.get_column("region_id").to_list() == ["2", "1", "1"]
    assert result.rejects.height == 0


def test_composite_key_tells_same_named_wards_apart(lookup: Callable[..., Lookup]) -> None:
    """Kilimani exists in two counties: the county part of the key picks the right one."""
    frame = make_batch(county=["Nairobi", "Mombasa"], ward=["Kilimani", "Kilimani"])
    result = lookup()(frame)
    assert result.frame.get_column("ward_id").to_list() == ["101", "202"]


def test_json_reference_keeps_its_types(tmp_path: Path) -> None:
    """A JSON reference is read by the file source: numbers stay numbers."""
    rows = [{"code": "KE-1", "region": {"id": 7, "name": "Coast"}}, {"code": "KE-2"}]
    (tmp_path / "ref.json").write_text(json.dumps({"items": rows}), encoding="utf-8")
    options = {"from": {"file": "ref.json"}, "on": ["code"], "add": {"region_id": "region__id"}}
    context = StepContext(resource="r", base_dir=tmp_path)
    step = Lookup(LookupOptions.model_validate(options), context)
    result = step(make_batch(code=["KE-2", "KE-1", "KE-3"]))
    assert result.frame.get_column("region_id").to_list() == [None, 7, None]
    assert result.frame.schema["region_id"] == pl.Int64


def test_key_types_that_differ_compare_as_text(lookup: Callable[..., Lookup]) -> None:
    """An integer key in the batch finds its text spelling in a CSV reference."""
    step = lookup(on={"code": "ward_id"}, add={"ward": "ward"})
    result = step(make_batch(code=[202, 999, None]))
    assert result.frame.get_column("ward").to_list() == ["Kilimani", None, None]


def test_declared_type_applies_to_an_added_column(ref_dir: Path) -> None:
    """A declared added column gets its type once, and replaces the cast's null column in place."""
    columns = {"ward_id": ColumnSpec(type=parse_type("int"))}
    context = StepContext(resource="facilities", columns=columns, base_dir=ref_dir)
    step = Lookup(_options(add=["ward_id"]), context)
    frame = make_batch(
        ward_id=pl.Series([None], dtype=pl.Int32), county=["Nairobi"], ward=["Kibra"]
    )
    result = step(frame)
    assert result.frame.columns == [ROW, "ward_id", "county", "ward"]
    assert result.frame.get_column("ward_id").to_list() == [102]
    assert result.frame.schema["ward_id"] == pl.Int32


def test_declared_type_a_reference_value_breaks(ref_dir: Path) -> None:
    """A reference value that does not fit the declared type stops the build, named."""
    columns = {"ward_id": ColumnSpec(type=parse_type("bool"))}
    context = StepContext(resource="facilities", columns=columns, base_dir=ref_dir)
    assert _error(lambda: Lookup(_options(), context)) == (
        "resource 'facilities', step 'lookup': column 'ward_id' is declared bool, but the "
        "reference wards.csv has values in 'ward_id' that are not: '101', '102', '201', '202'"
    )


# ---------------------------------------------------------------- normalize


def test_without_normalize_spelling_must_match_exactly(lookup: Callable[..., Lookup]) -> None:
    """Case and spacing count when normalize is off."""
    frame = make_batch(county=["NAIROBI", " Nairobi"], ward=["Kibra", "Kibra"])
    assert lookup()(frame).frame.get_column("ward_id").to_list() == [None, None]


def test_normalize_ignores_case_and_spacing_but_stores_values_as_they_came(
    lookup: Callable[..., Lookup],
) -> None:
    """Trimmed, inner spaces collapsed and lowercased for matching only."""
    frame = make_batch(county=["  NAIROBI ", "mombasa"], ward=["kibra", "Tu dor"])
    result = lookup(normalize=True)(frame)
    assert result.frame.get_column("ward_id").to_list() == ["102", None]
    assert result.frame.get_column("county").to_list() == ["  NAIROBI ", "mombasa"]


def test_normalize_applies_to_the_reference_too(tmp_path: Path) -> None:
    """Reference names typed loosely match batch names typed loosely."""
    (tmp_path / "r.csv").write_text("name,id\n  Embakasi   East ,5\n", encoding="utf-8")
    options = {"from": {"file": "r.csv"}, "on": ["name"], "add": ["id"], "normalize": True}
    step = Lookup(
        LookupOptions.model_validate(options), StepContext(resource="r", base_dir=tmp_path)
    )
    assert step(make_batch(name=["embakasi east"])).frame.get_column("id").to_list() == ["5"]


# ---------------------------------------------------------------- unmatched


def test_unmatched_null_keeps_rows_and_logs_the_count_once(lookup: Callable[..., Lookup]) -> None:
    """Unmatched rows keep null columns; the count over all batches is logged at finish."""
    step = lookup()
    with capture_logs() as logs:
        first = step(make_batch(county=["Nairobbi", "Nairobi"], ward=["Kibra", "Kibra"]))
        second = step(make_batch(county=["Mombasa"], ward=["Nowhere"]))
        assert logs == []
        notes = step.finish()
    assert notes == [
        Note("lookup", 2, "2 records had no match in wards.csv for county/ward (set to null)")
    ]
    assert first.frame.get_column("ward_id").to_list() == [None, "102"]
    assert second.frame.height == 1
    assert (first.rejects.height, second.rejects.height) == (0, 0)
    assert logs == [
        {
            "event": "lookup unmatched",
            "log_level": "warning",
            "resource": "facilities",
            "lookup": "wards.csv",
            "count": 2,
        }
    ]


def test_unmatched_quarantine_rejects_with_the_key_in_the_message(
    lookup: Callable[..., Lookup],
) -> None:
    """Each unmatched row is a reject with rule lookup on the first key column."""
    frame = make_batch(county=["Nairobbi", "Nairobi"], ward=["Kilimani", "Kilimani"])
    result = lookup(unmatched="quarantine")(frame)
    assert result.frame.get_column(ROW).to_list() == [1]
    assert result.rejects.to_dicts() == [
        {
            ROW: 0,
            "field": "county",
            "rule": "lookup",
            "value": "Nairobbi",
            "message": "county 'Nairobbi' / ward 'Kilimani' not found in wards.csv",
        }
    ]


def test_null_keys_are_neither_quarantined_nor_counted_as_misses(
    lookup: Callable[..., Lookup],
) -> None:
    """A null or blank key part leaves the columns null; quarantine and the count of misses
    are for wrong values."""
    frame = make_batch(county=["Nairobi", None, "Nairobi"], ward=[None, "Kibra", "  "])
    step = lookup(unmatched="quarantine")
    result = step(frame)
    assert result.rejects.height == 0
    assert result.frame.get_column("ward_id").to_list() == [None, None, None]
    assert (step.unmatched, step.finish()) == (0, [])


def test_an_absent_key_column_is_all_nulls(lookup: Callable[..., Lookup]) -> None:
    """A batch in which no record had a key field is unmatched, not an error."""
    step = lookup(unmatched="quarantine")
    result = step(make_batch(county=["Nairobi"]))
    assert (result.frame.height, result.rejects.height) == (1, 0)
    assert result.frame.get_column("ward_id").to_list() == [None]


def test_reference_rows_with_a_null_key_match_nothing(tmp_path: Path) -> None:
    """A reference row missing a key part is left out: it cannot be a duplicate either."""
    (tmp_path / "r.csv").write_text("k,v\n,1\n,2\na,3\n", encoding="utf-8")
    options = {"from": {"file": "r.csv"}, "on": ["k"], "add": ["v"]}
    step = Lookup(
        LookupOptions.model_validate(options), StepContext(resource="r", base_dir=tmp_path)
    )
    assert step(make_batch(k=["a", None])).frame.get_column("v").to_list() == ["3", None]


@settings(max_examples=50, deadline=None)
@given(
    counties=st.lists(
        st.one_of(st.none(), st.sampled_from(["Nairobi", "Mombasa", " nairobi", "X"])),
        max_size=12,
    ),
    wards=st.data(),
    quarantine=st.booleans(),
)
def test_a_lookup_never_changes_the_number_of_rows(
    tmp_path_factory: pytest.TempPathFactory,
    counties: list[str | None],
    wards: st.DataObject,
    quarantine: bool,
) -> None:
    """A left join on a unique key keeps every row, or rejects it: none is added or lost."""
    directory = tmp_path_factory.getbasetemp() / "lookup_property"
    directory.mkdir(exist_ok=True)
    (directory / "wards.csv").write_text(WARDS_CSV, encoding="utf-8")
    names = st.one_of(st.none(), st.sampled_from(["Kibra", "Kilimani", "Tudor", "kibra"]))
    ward = wards.draw(st.lists(names, min_size=len(counties), max_size=len(counties)))
    context = StepContext(resource="r", base_dir=directory)
    step = Lookup(
        _options(unmatched="quarantine" if quarantine else "null", normalize=True), context
    )
    result = step(make_batch(county=pl.Series(counties, dtype=pl.String), ward=ward))
    assert result.frame.height + result.rejects.height == len(counties)
    if not quarantine:
        assert result.frame.get_column(ROW).to_list() == list(range(len(counties)))


# ---------------------------------------------------------------- reference errors


def test_duplicate_keys_are_an_error_naming_them(tmp_path: Path) -> None:
    """A key that is not unique stops the build; no 'last one wins'."""
    text = WARDS_CSV + "Nairobi,Kibra,103,1\nNairobi,Kibra,104,1\nMombasa,Tudor,205,2\n"
    (tmp_path / "wards.csv").write_text(text, encoding="utf-8")
    context = StepContext(resource="facilities", base_dir=tmp_path)
    assert _error(lambda: Lookup(_options(), context)) == (
        "resource 'facilities', step 'lookup': the key (county, ward) must be unique in the "
        "reference wards.csv, but 2 values appear more than once: ('Nairobi', 'Kibra') 3 times; "
        "('Mombasa', 'Tudor') 2 times"
    )


def test_duplicates_after_normalizing_are_an_error_too(tmp_path: Path) -> None:
    """With normalize, two spellings of one name are one key; at most ten are shown."""
    lines = ["name,id"] + [f"w{i},{i}\nW{i} ,{i}" for i in range(12)]
    (tmp_path / "r.csv").write_text("\n".join(lines), encoding="utf-8")
    options = {"from": {"file": "r.csv"}, "on": ["name"], "add": ["id"], "normalize": True}
    context = StepContext(resource="r", base_dir=tmp_path)
    shown = "; ".join(f"'w{i}' 2 times" for i in range(10))
    assert _error(lambda: Lookup(LookupOptions.model_validate(options), context)) == (
        "resource 'r', step 'lookup': the key (name) must be unique in the reference r.csv, "
        "but 12 values appear more than once (compared ignoring case and extra spaces): "
        f"{shown}, and 2 more"
    )


def test_missing_reference_columns_are_named(lookup: Callable[..., Lookup]) -> None:
    """Columns that on and add name but the reference lacks are listed with its columns."""
    message = _error(
        lambda: lookup(on={"ward": "ward_name"}, add={"region": "reg", "w": "ward_id"})
    )
    assert message == (
        "resource 'facilities', step 'lookup': the reference wards.csv has no column "
        "'ward_name' (in `on`), 'reg' (in `add`); its columns are: county, ward, ward_id, "
        "region_id"
    )


def test_a_missing_reference_file_is_an_error(tmp_path: Path) -> None:
    """The file source's message, said to come from the reference."""
    context = StepContext(resource="r", base_dir=tmp_path)
    assert _error(lambda: Lookup(_options(**{"from": {"file": "nope.csv"}}), context)) == (
        f"resource 'r', step 'lookup': cannot read the reference: nope.csv: file not found "
        f"(looked in {tmp_path})"
    )


def test_a_ragged_reference_row_is_an_error(tmp_path: Path) -> None:
    """A reference must be read whole: a record it cannot read stops the build."""
    (tmp_path / "wards.csv").write_text(WARDS_CSV + "Nairobi,Lindi\n", encoding="utf-8")
    context = StepContext(resource="r", base_dir=tmp_path)
    assert _error(lambda: Lookup(_options(), context)) == (
        "resource 'r', step 'lookup': cannot read the reference: wards.csv:6: expected 4 "
        "fields, found 2 (1 unreadable records in this batch)"
    )


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            {"file": "a.csv", "table": "t"},
            "give exactly one of `file:` (a CSV or JSON file), `table:` (a table of the "
            "destination) or `sql:` (a SELECT, with `url:`)",
        ),
        ({"sql": "SELECT 1"}, "`sql:` and `url:` go together"),
        ({"table": "t", "encoding": "latin-1"}, "`format:`, `records:` and `encoding:` go with"),
        ({"file": "a.csv", "encoding": "nope"}, "unknown encoding 'nope'"),
    ],
)
def test_reference_options_are_checked(reference: dict[str, Any], message: str) -> None:
    """A reference is exactly one of a file, a table or a query, with its own options."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        _options(**{"from": reference})


def test_pipeline_file_options(
    write_pipeline: Callable[[str], Path], ref_dir: Path, duckdb_url: str
) -> None:
    """``on:`` is a key (not YAML 1.1's true), ``unmatched: null`` is the option null."""
    path = write_pipeline(
        """
pipeline: p
resources:
  facilities:
    source: {type: file, path: facilities.csv}
    steps:
      - lookup:
          from: {file: wards.csv}
          on: [county, ward]
          add: {ward_id: ward_id}
          unmatched: null
"""
    )
    options = load(path).resources["facilities"].steps[0].options
    assert isinstance(options, LookupOptions)
    assert (options.keys, options.unmatched) == ({"county": "county", "ward": "ward"}, "null")
    (ref_dir / "facilities.csv").write_text("county,ward\nNairobi,Kibra\n", encoding="utf-8")
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=duckdb_url))
    assert summary.ok, summary.resources[0].error
    dest = connect(duckdb_url)
    assert dest.read("facilities", {}).get_column("ward_id").to_list() == ["102"]
    dest.close()


def test_pipeline_file_option_errors_name_the_line(write_pipeline: Callable[[str], Path]) -> None:
    """An unknown value for unmatched is a ConfigError at its line."""
    path = write_pipeline(
        """
pipeline: p
resources:
  r:
    source: {type: file, path: r.csv}
    steps:
      - lookup: {from: {file: w.csv}, on: [a], add: [b], unmatched: drop}
"""
    )
    with pytest.raises(ConfigError, match=r"pipeline.yaml:7: resources\.r\.steps\[0\]\.lookup"):
        load(path)


# ---------------------------------------------------------------- destination and SQL


def test_destination_table_reference_loaded_earlier_in_the_run(
    write_pipeline: Callable[[str], Path], tmp_path: Path, destination_url: str
) -> None:
    """A resource listed earlier loads the reference table that a later one looks up."""
    (tmp_path / "wards.csv").write_text(WARDS_CSV, encoding="utf-8")
    (tmp_path / "facilities.csv").write_text(
        "code,county,ward\nA,nairobi,KIBRA\nB,Mombasa,Nowhere\n", encoding="utf-8"
    )
    path = write_pipeline(
        """
pipeline: p
resources:
  wards:
    source: {type: file, path: wards.csv}
    columns: {ward_id: {type: int}}
  facilities:
    source: {type: file, path: facilities.csv}
    batch_size: 1
    steps:
      - lookup:
          from: {table: wards}
          on: [county, ward]
          add: [ward_id]
          normalize: true
"""
    )
    with capture_logs() as logs:
        summary = Pipeline.from_yaml(path).run(RunOptions(destination=destination_url))
    assert summary.ok, [r.error for r in summary.resources]
    dest = connect(destination_url)
    rows = dest.read("facilities", {}, order_by=["code"]).select("code", "ward_id").rows()
    dest.close()
    assert rows == [("A", 102), ("B", None)]
    warnings = [e for e in logs if e["event"] == "lookup unmatched"]
    assert warnings == [
        {
            "event": "lookup unmatched",
            "log_level": "warning",
            "resource": "facilities",
            "lookup": "table wards",
            "count": 1,
        }
    ]


def test_destination_table_that_does_not_exist(destination_url: str) -> None:
    """A reference table not in the destination is an error saying how to get it there."""
    dest = connect(destination_url)
    context = StepContext(resource="r", destination=dest)
    options = _options(**{"from": {"table": "wards"}})
    try:
        message = _error(lambda: Lookup(options, context))
    finally:
        dest.close()
    assert message == (
        "resource 'r', step 'lookup': the reference table 'wards' does not exist in the "
        "destination; load it first (resources load in the order of the file, so a resource "
        "listed earlier can load it)"
    )


def test_destination_table_in_a_dry_run() -> None:
    """A dry run opens no destination: the lookup is skipped, said once, columns left null."""
    options = _options(**{"from": {"table": "wards"}}, unmatched="quarantine")
    with capture_logs() as logs:
        step = Lookup(options, StepContext(resource="r"))
    result = step(make_batch(county=["Nairobi"], ward=["Kibra"], region_id=[3]))
    assert result.frame.columns == [ROW, "county", "ward", "region_id", "ward_id"]
    assert result.frame.row(0) == (0, "Nairobi", "Kibra", 3, None)
    assert result.rejects.height == 0
    assert logs == [
        {
            "event": "lookup skipped",
            "log_level": "warning",
            "resource": "r",
            "lookup": "table wards",
            "reason": "a dry run opens no destination to read the table from; the added "
            "columns stay null",
        }
    ]


def test_sql_reference_on_sqlite(tmp_path: Path) -> None:
    """A query through SQLAlchemy, with bound parameters, is a reference."""
    database = tmp_path / "ref.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE wards (county TEXT, ward TEXT, id INTEGER, active INTEGER)")
        conn.executemany(
            "INSERT INTO wards VALUES (?, ?, ?, ?)",
            [
                ("Nairobi", "Kibra", 102, 1),
                ("Nairobi", "Kibra", 999, 0),
                ("Mombasa", "Tudor", 201, 1),
            ],
        )
    conn.close()
    options = {
        "from": {
            "sql": "SELECT county, ward, id FROM wards WHERE active = :active",
            "url": f"sqlite:///{database}",
            "params": {"active": 1},
        },
        "on": ["county", "ward"],
        "add": {"ward_id": "id"},
        "unmatched": "quarantine",
    }
    step = Lookup(LookupOptions.model_validate(options), StepContext(resource="r"))
    result = step(make_batch(county=["Nairobi", "Mombasa"], ward=["Kibra", "Likoni"]))
    assert result.frame.get_column("ward_id").to_list() == [102]
    assert result.rejects.get_column("message").to_list() == [
        "county 'Mombasa' / ward 'Likoni' not found in the lookup query"
    ]


def test_sql_reference_on_postgres(postgres_server: str, batch: Batch) -> None:
    """The same on PostgreSQL, its column types kept."""
    options = {
        "from": {
            "sql": "SELECT * FROM (VALUES ('KE-1', 7), ('KE-2', 8)) AS t(code, region_id)",
            "url": postgres_server,
        },
        "on": ["code"],
        "add": ["region_id"],
    }
    step = Lookup(LookupOptions.model_validate(options), StepContext(resource="r"))
    result = step(batch(code=["KE-2", "KE-9"]))
    assert result.frame.get_column("region_id").to_list() == [8, None]
    assert result.frame.schema["region_id"] == pl.Int64


def test_sql_reference_errors_are_the_sources(tmp_path: Path) -> None:
    """A query that fails is reported as the reference that cannot be read."""
    options = {
        "from": {"sql": "SELECT * FROM nowhere", "url": f"sqlite:///{tmp_path / 'x.db'}"},
        "on": ["a"],
        "add": ["b"],
    }
    message = _error(lambda: Lookup(LookupOptions.model_validate(options), StepContext("r")))
    assert message == (
        "resource 'r', step 'lookup': cannot read the reference: sql:r: no such table: nowhere "
        "(while running the query)"
    )
