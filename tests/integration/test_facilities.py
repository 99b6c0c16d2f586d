"""The facilities example end to end on each destination: exact counts from the manifest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.cli import main
from ladle.destinations import connect
from ladle.quarantine import QUARANTINE
from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "facilities"


example = load_example("facilities", "generate")
generate: Callable[[int, int], tuple[dict[str, Any], dict[str, int]]] = example.generate
location_key: Callable[[dict[str, Any]], tuple[str, ...]] = example.location_key
WARDS: dict[tuple[str, ...], dict[str, Any]] = {location_key(w): w for w in example.wards()}


def _setup(tmp_path: Path, count: int = 300) -> tuple[Path, dict[str, Any], dict[str, int]]:
    shutil.copy(EXAMPLE / "pipeline.yaml", tmp_path / "pipeline.yaml")
    document, manifest = generate(count, 11)
    _write(tmp_path, document)
    (tmp_path / "data" / "wards.csv").write_text(example.wards_csv(), encoding="utf-8")
    return tmp_path / "pipeline.yaml", document, manifest


def _write(tmp_path: Path, document: dict[str, Any]) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "facilities.json").write_text(json.dumps(document))


def _run(path: Path, url: str, *, full_refresh: bool = False) -> Counts:
    options = RunOptions(destination=url, full_refresh=full_refresh)
    summary = Pipeline.from_yaml(path).run(options)
    assert summary.ok, summary.resources[0].error
    counts = summary.resources[0].counts
    assert counts.balanced
    return counts


def test_first_run_matches_manifest(tmp_path: Path, destination_url: str) -> None:
    """Valid, located facilities are inserted once; invalid and unlocated ones quarantined;
    re-sent ones deduplicated."""
    path, _, manifest = _setup(tmp_path)
    assert manifest["quarantined"] == manifest["invalid"] + manifest["unmatched"]
    assert manifest["matched"] == manifest["facilities"] + manifest["duplicates"]
    assert manifest["unmatched"] == 7
    counts = _run(path, destination_url)
    assert counts.fetched == manifest["records"]
    assert counts.inserted == manifest["facilities"]
    assert counts.quarantined == manifest["quarantined"]
    assert counts.deduplicated == manifest["duplicates"]
    assert (counts.updated, counts.unchanged) == (0, 0)


def test_summary_shows_the_quality_score(tmp_path: Path, destination_url: str) -> None:
    """The share of fetched records not quarantined is on the result and in the CLI summary."""
    path, _, manifest = _setup(tmp_path)
    result = CliRunner().invoke(main, ["run", str(path), "--destination", destination_url])
    assert result.exit_code == 0, result.output
    quality = 1 - manifest["quarantined"] / manifest["records"]
    assert "quality" in result.output
    assert f" {quality:.1%} " in result.output
    summary = Pipeline.from_yaml(path).run(
        RunOptions(destination=destination_url, full_refresh=True)
    )
    assert summary.resources[0].quality == pytest.approx(quality)


def test_loaded_rows_are_standardized(tmp_path: Path, destination_url: str) -> None:
    """Aliased fields are merged, names trimmed, counties upper-cased, latest duplicate kept."""
    path, document, _ = _setup(tmp_path)
    _run(path, destination_url)
    dest = connect(destination_url)
    rows = {r["facility_code"]: r for r in dest.read("facilities", {}).to_dicts()}
    dest.close()
    resent = [r for r in document["facilities"] if isinstance(r["beds"], int) and r["beds"] >= 1000]
    assert resent
    for record in resent:
        code = record.get("facility_code") or record.get("code")
        assert rows[code]["beds"] == record["beds"]
    for row in rows.values():
        assert row["facility_name"] == " ".join(row["facility_name"].split())
        assert row["county"] == row["county"].upper()
        assert row["facility_type"] in {"hospital", "health_centre", "dispensary", "clinic"}
        assert json.loads(row["services"])


def test_locations_get_the_ids_of_their_wards(tmp_path: Path, destination_url: str) -> None:
    """Names match the reference whatever their case and spacing, and are stored as typed."""
    path, document, _ = _setup(tmp_path)
    _run(path, destination_url)
    dest = connect(destination_url)
    rows = dest.read("facilities", {}).to_dicts()
    dest.close()
    typed = {
        (r.get("facility_code") or r.get("code")): r["location"] for r in document["facilities"]
    }
    for row in rows:
        ward = WARDS[location_key(row)]
        ids = (row["county_id"], row["sub_county_id"], row["ward_id"])
        assert ids == (ward["county_id"], ward["sub_county_id"], ward["ward_id"])
        location = typed[row["facility_code"]]
        assert (row["sub_county"], row["ward"]) == (location["sub_county"], location["ward"])
    loosely_typed = [r for r in rows if r["ward"] not in {w["ward"] for w in WARDS.values()}]
    assert len(loosely_typed) > len(rows) // 10


def test_quarantine_positions_point_at_bad_records(tmp_path: Path, destination_url: str) -> None:
    """Each quarantined record's position indexes the broken record in the source file."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    dest = connect(destination_url)
    rows = dest.read(QUARANTINE.name, {}).to_dicts()
    dest.close()
    assert len(rows) == manifest["quarantined"]
    rules = {}
    for row in rows:
        assert row["position"].startswith("data/facilities.json#facilities[")
        index = int(row["position"].split("[")[1].rstrip("]"))
        record = document["facilities"][index]
        errors = json.loads(row["errors"])
        rules[index] = {(e["field"], e["rule"]) for e in errors}
        location = record["location"]
        if "code" not in record and "facility_code" not in record:
            assert ("facility_code", "required") in rules[index]
        elif location["latitude"] > 90:
            assert ("location__latitude", "max") in rules[index]
        elif record["opened_on"] == "sometime in 1998":
            assert ("opened_on", "type") in rules[index]
        else:
            assert location_key(location) not in WARDS
            assert errors == [
                {
                    "field": "county",
                    "rule": "lookup",
                    "value": location["county"].upper(),
                    "message": f"county '{location['county'].upper()}' / sub_county "
                    f"'{location['sub_county']}' / ward '{location['ward']}' not found in "
                    "data/wards.csv",
                }
            ]
    expected = {("facility_code", "required"), ("location__latitude", "max"), ("opened_on", "type")}
    assert set().union(*rules.values()) == expected | {("county", "lookup")}
    lookups = [i for i, found in rules.items() if found == {("county", "lookup")}]
    assert len(lookups) == manifest["unmatched"]


def test_second_run_skips_the_loaded_file(tmp_path: Path, destination_url: str) -> None:
    """A re-run reads no file that was loaded before and has not changed, and says so."""
    path, _, _ = _setup(tmp_path)
    _run(path, destination_url)
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=destination_url))
    result = summary.resources[0]
    assert (result.status, result.counts.fetched) == ("succeeded", 0)
    assert result.notices == [
        "1 of 1 files were loaded before and have not changed; --full-refresh reads them again"
    ]


def test_second_run_is_all_unchanged(tmp_path: Path, destination_url: str) -> None:
    """The same input again, read in full, inserts and updates nothing."""
    path, _, manifest = _setup(tmp_path)
    _run(path, destination_url)
    again = _run(path, destination_url, full_refresh=True)
    assert (again.inserted, again.updated) == (0, 0)
    assert again.unchanged == manifest["facilities"]
    assert again.deduplicated == manifest["duplicates"]
    assert again.quarantined == manifest["quarantined"]


def test_changed_input_gives_exact_counts(tmp_path: Path, destination_url: str) -> None:
    """Changing 7 facilities and adding 5 new ones gives 5 inserted and 7 updated."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    seen: set[str] = set()
    changed = 0
    for record in document["facilities"]:
        code = record.get("facility_code") or record.get("code")
        if code is None or code in seen or record["location"]["latitude"] > 90:
            continue
        if location_key(record["location"]) not in WARDS:
            continue
        if "sometime" in record["opened_on"]:
            continue
        seen.add(code)
        copies = [
            r for r in document["facilities"] if code in (r.get("code"), r.get("facility_code"))
        ]
        if len(copies) > 1:
            continue
        record["contacts"]["email"] = f"changed-{code}@example.org"
        changed += 1
        if changed == 7:
            break
    extra, _ = generate(5, 99)
    for i, record in enumerate(extra["facilities"][:5]):
        record.pop("code", None)
        record["facility_code"] = f"KE-{90000 + i:05d}"
        document["facilities"].append(record)
    _write(tmp_path, document)
    counts = _run(path, destination_url)
    new_valid = 5 - sum(
        1 for r in extra["facilities"][:5]
        if r["location"]["latitude"] > 90 or "sometime" in r["opened_on"]
        or location_key(r["location"]) not in WARDS
    )  # fmt: skip
    assert counts.updated == 7
    assert counts.inserted == new_valid
    assert counts.unchanged == manifest["facilities"] - 7


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_other_write_modes_balance(tmp_path: Path, destination_url: str, mode: str) -> None:
    """append and replace load the same valid rows and keep the invariant."""
    path, _, manifest = _setup(tmp_path)
    text = path.read_text().replace("write: merge", f"write: {mode}")
    path.write_text(text)
    first = _run(path, destination_url)
    second = _run(path, destination_url, full_refresh=True)
    assert first.inserted == second.inserted == manifest["facilities"]
    dest = connect(destination_url)
    loaded = dest.read("facilities", {}).height
    dest.close()
    assert loaded == manifest["facilities"] * (2 if mode == "append" else 1)
