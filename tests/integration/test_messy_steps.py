"""Messy real files end to end, on every destination: dedupe over several order columns and
with its helper column dropped, children of scalar lists, self-referencing fk, lookup misses.

Each test writes its own small files and asserts the ledger's invariant.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ladle import ConfigError, Pipeline, RunOptions, RunSummary
from ladle.destinations import Destination, connect
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult
from ladle.quarantine import QUARANTINE

WritePipeline = Callable[[str], Path]


@pytest.fixture
def destination(destination_url: str) -> Iterator[Destination]:
    """An empty destination of each kind."""
    dest = connect(destination_url)
    yield dest
    dest.close()


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _run(path: Path, destination: Destination, *, full_refresh: bool = False) -> RunSummary:
    summary = Pipeline.from_yaml(path).run(
        RunOptions(full_refresh=full_refresh), destination=destination
    )
    for result in summary.resources:
        assert result.counts.balanced, result.counts
    return summary


def _counts(result: ResourceResult) -> tuple[int, int, int, int, int, int]:
    c = result.counts
    return (c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated, c.quarantined)


def _rows(destination: Destination, table: str, *order_by: str) -> list[dict[str, Any]]:
    return destination.read(table, {}, order_by=order_by).to_dicts()


def _errors(destination: Destination, resource: str) -> list[tuple[str, list[dict[str, Any]]]]:
    rows = destination.read(QUARANTINE.name, {"resource": resource}, order_by=["position"])
    return [(r["position"], json.loads(r["errors"])) for r in rows.to_dicts()]


# ---------------------------------------------------------------- 13: dedupe order_by list

INCIDENTS = """\
pipeline: desk
resources:
  incidents:
    source: {type: file, path: incidents.jsonl}
    primary_key: [id]
    write: merge
    batch_size: 2
    columns:
      id: bigint
      updated_at: timestamptz
      mod_count: bigint
    steps:
      - dedupe: {order_by: [updated_at, mod_count]}
"""

T1, T2 = "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"
EVENTS: list[dict[str, Any]] = [
    {"id": 1, "state": "new", "updated_at": T1, "mod_count": 1},
    {"id": 1, "state": "closed", "updated_at": T2, "mod_count": 3},
    {"id": 1, "state": "resolved", "updated_at": T2, "mod_count": 2},
    {"id": 2, "state": "open", "updated_at": T1, "mod_count": 1},
    {"id": 2, "state": "pending", "updated_at": T1, "mod_count": 1},
    {"id": 3, "state": "x", "updated_at": None, "mod_count": 5},
    {"id": 3, "state": "y", "updated_at": T1, "mod_count": None},
]


def test_dedupe_orders_by_several_columns_across_batches(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """Equal timestamps fall to mod_count, full ties to the later record, nulls rank lowest;
    the same winners whether the table was empty (copied directly) or not (staged merge)."""
    _jsonl(tmp_path / "incidents.jsonl", EVENTS)
    path = write_pipeline(INCIDENTS)
    first = _run(path, destination).resources[0]
    assert _counts(first) == (7, 3, 0, 0, 4, 0)
    states = [(r["id"], r["state"]) for r in _rows(destination, "incidents", "id")]
    assert states == [(1, "closed"), (2, "pending"), (3, "y")]
    again = _run(path, destination, full_refresh=True).resources[0]
    assert _counts(again) == (7, 0, 0, 3, 4, 0)
    assert [(r["id"], r["state"]) for r in _rows(destination, "incidents", "id")] == states


def test_an_order_column_no_record_has_orders_nothing(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """An order_by field absent from every record is null throughout: source order decides,
    in the step and in the load alike."""
    records = [{"id": 1, "state": "a"}, {"id": 2, "state": "x"}, {"id": 1, "state": "b"}]
    _jsonl(tmp_path / "incidents.jsonl", records)
    path = write_pipeline(INCIDENTS.replace("[updated_at, mod_count]", "[closed_at]"))
    result = _run(path, destination).resources[0]
    assert (result.error, _counts(result)) == (None, (3, 2, 0, 0, 1, 0))
    assert [r["state"] for r in _rows(destination, "incidents", "id")] == ["b", "x"]


EVENTS_SQL = """\
pipeline: desk
resources:
  incidents:
    source: {{type: sql, url: "sqlite:///{db}", table: events, order_by: [event_id]}}
    primary_key: [incident]
    write: merge
    incremental: {{cursor: at}}
    batch_size: 2
    steps:
      - dedupe: {{order_by: at}}
"""


def test_a_sql_source_yields_ties_in_tie_breaker_order_so_keep_last_is_stable(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """Events of one incident at the same instant come ordered by the declared tie-breaker
    (whatever order the database stores them in), so keep: last keeps the later event."""
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE events (event_id INTEGER, incident INTEGER, at TEXT, state TEXT)")
        con.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            [
                (4, 1, "2026-01-01 10:05", "closed"),
                (3, 1, "2026-01-01 10:05", "resolved"),
                (1, 1, "2026-01-01 10:00", "new"),
                (9, 2, "2026-01-01 10:05", "open"),
            ],
        )
    result = _run(write_pipeline(EVENTS_SQL.format(db=db)), destination).resources[0]
    assert _counts(result) == (4, 2, 0, 0, 2, 0)
    states = [(r["incident"], r["state"]) for r in _rows(destination, "incidents", "incident")]
    assert states == [(1, "closed"), (2, "open")]


# ---------------------------------------------------------------- 14: helper column dropped

HELPER = """\
pipeline: desk
resources:
  tickets:
    source: {type: file, path: tickets.jsonl}
    primary_key: [id]
    write: merge
    batch_size: 2
    steps:
      - derive: {update_order: "rev * 10"}
      - dedupe: {order_by: update_order}
      - drop: [update_order]
"""


def test_an_order_column_dropped_after_dedupe_still_decides_across_batches(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """derive -> dedupe order_by -> drop loads the winner by the dropped column, which never
    reaches the table, even when a later batch's row loses to an earlier one."""
    _jsonl(
        tmp_path / "tickets.jsonl",
        [
            {"id": 1, "v": "a", "rev": 3},
            {"id": 2, "v": "x", "rev": 1},
            {"id": 1, "v": "b", "rev": 2},
            {"id": 2, "v": "y", "rev": 1},
            {"id": 1, "v": "c", "rev": 1},
        ],
    )
    result = _run(write_pipeline(HELPER), destination).resources[0]
    assert result.error is None
    assert _counts(result) == (5, 2, 0, 0, 3, 0)
    rows = _rows(destination, "tickets", "id")
    assert rows == [{"id": 1, "v": "a", "rev": 3}, {"id": 2, "v": "y", "rev": 1}]


def test_a_dropped_primary_key_is_a_config_error_before_anything_runs(
    write_pipeline: WritePipeline,
) -> None:
    """Dropping a column the merge needs is refused when the file is loaded."""
    path = write_pipeline(HELPER.replace("drop: [update_order]", "drop: [update_order, id]"))
    with pytest.raises(ConfigError) as error:
        Pipeline.from_yaml(path)
    assert str(error.value) == (
        f"{path}:11: resources.tickets.steps[2].drop: drops column 'id', which the load "
        "needs (the primary_key that merge matches rows on); remove it from this step"
    )


def test_a_dedupe_key_dropped_after_the_step_is_a_config_error(
    write_pipeline: WritePipeline,
) -> None:
    """The load dedupes across batches on the step's key: a later step may not drop it."""
    text = HELPER.replace("dedupe: {order_by: update_order}", "dedupe: {on: [email]}")
    path = write_pipeline(text.replace("drop: [update_order]", "select: [id, update_order]"))
    with pytest.raises(ConfigError) as error:
        Pipeline.from_yaml(path)
    assert str(error.value) == (
        f"{path}:11: resources.tickets.steps[2].select: drops column 'email', which the load "
        "needs (the key of dedupe, to dedupe across batches); remove it from this step"
    )


# ---------------------------------------------------------------- 12: children of scalars

SERVICES = """\
pipeline: desk
resources:
  incidents:
    source: {type: file, path: incidents.jsonl}
    primary_key: [id]
    write: merge
  incident_services:
    source:
      type: children
      of: incidents
      path: services
      carry: {incident_id: id}
      value: service_id
    primary_key: [incident_id, position]
    write: merge
"""


def test_children_of_a_list_of_ids_are_rows_of_parent_key_position_and_value(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """A list of service ids loads as (incident_id, position, service_id); an object among
    the ids is quarantined with its position and a message naming the rule."""
    _jsonl(
        tmp_path / "incidents.jsonl",
        [
            {"id": 1, "services": [101, 104]},
            {"id": 2, "services": []},
            {"id": 3, "services": [104, {"id": 105}]},
        ],
    )
    summary = _run(write_pipeline(SERVICES), destination)
    children = summary.resources[1]
    assert _counts(children) == (4, 3, 0, 0, 0, 1)
    assert children.quality == 0.75
    assert _rows(destination, "incident_services", "incident_id", "position") == [
        {"incident_id": 1, "position": 0, "service_id": 101},
        {"incident_id": 1, "position": 1, "service_id": 104},
        {"incident_id": 3, "position": 0, "service_id": 104},
    ]
    message = (
        "an element of services must be a single value (a string, number or boolean) "
        "like the first one, found an object"
    )
    assert _errors(destination, "incident_services") == [
        (
            "incidents.jsonl:3.services[1]",
            [{"field": None, "rule": "parse", "value": None, "message": message}],
        )
    ]


# ---------------------------------------------------------------- 15: self-referencing fk

TREE = """\
pipeline: desk
resources:
  tickets:
    source: {type: file, path: "tickets*.jsonl"}
    primary_key: [id]
    write: merge
    batch_size: 3
    columns:
      id: bigint
      parent_id: bigint
    steps:
      - fk: {parent_id: tickets.id}
"""


def _orphan(parent: int) -> list[dict[str, Any]]:
    message = f"parent_id {parent} is not in tickets.id"
    return [{"field": "parent_id", "rule": "fk", "value": str(parent), "message": message}]


def test_a_self_reference_sees_the_rows_of_the_same_load(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """A parent in the same batch (even after its child) or an earlier one passes; a parent
    in a later batch, an unknown one or a rejected one does not; a later run finds the
    table's rows."""
    _jsonl(
        tmp_path / "tickets1.jsonl",
        [
            {"id": 1, "parent_id": None},
            {"id": 3, "parent_id": 2},
            {"id": 2, "parent_id": 1},
            {"id": 4, "parent_id": 1},
            {"id": 5, "parent_id": 6},
            {"id": 7, "parent_id": 99},
            {"id": 8, "parent_id": 7},
            {"id": 6, "parent_id": 1},
        ],
    )
    path = write_pipeline(TREE)
    result = _run(path, destination).resources[0]
    assert _counts(result) == (8, 5, 0, 0, 0, 3)
    assert result.notices == ["3 records had a parent_id not in tickets.id (quarantined)"]
    ids = [r["id"] for r in _rows(destination, "tickets", "id")]
    assert ids == [1, 2, 3, 4, 6]
    assert _errors(destination, "tickets") == [
        ("tickets1.jsonl:5", _orphan(6)),
        ("tickets1.jsonl:6", _orphan(99)),
        ("tickets1.jsonl:7", _orphan(7)),
    ]
    _jsonl(tmp_path / "tickets2.jsonl", [{"id": 9, "parent_id": 3}, {"id": 5, "parent_id": 6}])
    assert _counts(_run(path, destination).resources[0]) == (2, 2, 0, 0, 0, 0)
    assert [r["id"] for r in _rows(destination, "tickets", "id")] == [1, 2, 3, 4, 5, 6, 9]


# ---------------------------------------------------------------- 17: misses in the summary

FACILITIES = """\
pipeline: health
resources:
  facilities:
    source: {type: file, path: facilities.csv}
    primary_key: [code]
    write: merge
    batch_size: 2
    steps:
      - lookup:
          from: {file: wards.csv}
          on: [county, ward]
          add: [ward_id]
          unmatched: null
"""


def test_lookup_misses_reach_the_summary_and_the_ledger(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """Keys the reference lacks are counted over all batches into a notice and the ledger
    row's notes; a null key is a null, not a miss."""
    (tmp_path / "wards.csv").write_text("county,ward,ward_id\nNairobi,Kibra,102\n", "utf-8")
    (tmp_path / "facilities.csv").write_text(
        "code,county,ward\nA,Nairobi,Kibra\nB,Nairobbi,Kibra\nC,Nairobi,\nD,Mombasa,Nowhere\n",
        "utf-8",
    )
    result = _run(write_pipeline(FACILITIES), destination).resources[0]
    assert _counts(result) == (4, 4, 0, 0, 0, 0)
    message = "2 records had no match in wards.csv for county/ward (set to null)"
    assert result.notices == [message]
    [ledger] = destination.read(RUNS.name, {"resource": "facilities"}).to_dicts()
    assert json.loads(ledger["notes"]) == [{"step": "lookup", "count": 2, "message": message}]
    ward_ids = [r["ward_id"] for r in _rows(destination, "facilities", "code")]
    assert ward_ids == ["102", None, None, None]


def test_a_self_reference_under_replace_ignores_the_rows_being_replaced(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """write: replace drops the table's rows, so a parent only there is not found (the run
    allows the table to shrink: every record of it is quarantined)."""
    path = write_pipeline(
        TREE.replace("write: merge", "write: replace\n    replace: {max_shrink: 1}")
    )
    _jsonl(tmp_path / "tickets1.jsonl", [{"id": 1, "parent_id": None}])
    assert _counts(_run(path, destination).resources[0]) == (1, 1, 0, 0, 0, 0)
    _jsonl(tmp_path / "tickets1.jsonl", [{"id": 2, "parent_id": 1}, {"id": 3, "parent_id": 2}])
    result = _run(path, destination).resources[0]
    assert _counts(result) == (2, 0, 0, 0, 0, 2)
    assert result.notices == ["2 records had a parent_id not in tickets.id (quarantined)"]
    assert _rows(destination, "tickets", "id") == []
