"""fk end to end on every destination: parents load first, orphans are quarantined, keys typed.

Also :meth:`Destination.existing_keys` itself: typed keys, a missing table, a 50k-key batch,
and on PostgreSQL every pooled connection given back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ladle import Pipeline, RunOptions, RunSummary
from ladle.batch import ROW
from ladle.config import WriteMode
from ladle.destinations import Destination, LoadTarget, connect
from ladle.destinations.postgres import PostgresDestination
from ladle.quarantine import QUARANTINE
from ladle.schema import parse_type
from ladle.steps import StepContext
from ladle.steps.foreign_keys import ForeignKeys, Reference
from tests.steps.conftest import make_batch

WritePipeline = Callable[[str], Path]

SCHOOL = """\
pipeline: school
resources:
  sessions:
    source: {type: file, path: sessions.jsonl}
    primary_key: [session_id]
    write: merge
    batch_size: 2
    columns:
      tutor_id: bigint
    steps:
      - fk: {tutor_id: tutors}
  tutors:
    source: {type: file, path: tutors.jsonl}
    primary_key: [tutor_id]
    write: merge
"""

SESSIONS: list[dict[str, Any]] = [
    {"session_id": 10, "tutor_id": 1},
    {"session_id": 11, "tutor_id": 42},
    {"session_id": 12, "tutor_id": None},
    {"session_id": 13, "tutor_id": 3},
    {"session_id": 14, "tutor_id": 42},
    {"session_id": 15, "tutor_id": 7},
]


@pytest.fixture
def destination(destination_url: str) -> Iterator[Destination]:
    """An empty destination of each kind."""
    dest = connect(destination_url)
    yield dest
    dest.close()


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _school(tmp_path: Path, write_pipeline: WritePipeline, text: str = SCHOOL) -> Path:
    _jsonl(tmp_path / "tutors.jsonl", [{"tutor_id": i, "name": f"t{i}"} for i in (1, 2, 3)])
    _jsonl(tmp_path / "sessions.jsonl", SESSIONS)
    return write_pipeline(text)


def _run(path: Path, destination: Destination, *resources: str) -> RunSummary:
    summary = Pipeline.from_yaml(path).run(RunOptions(resources=resources), destination=destination)
    for result in summary.resources:
        counts = result.counts
        assert result.error is None
        assert counts.fetched == (
            counts.inserted + counts.updated + counts.unchanged + counts.deduplicated
            + counts.quarantined
        )  # fmt: skip
    return summary


def _errors(destination: Destination, resource: str) -> list[tuple[str, list[dict[str, Any]]]]:
    rows = destination.read(QUARANTINE.name, {"resource": resource}, order_by=["position"])
    return [(r["position"], json.loads(r["errors"])) for r in rows.to_dicts()]


def _ids(destination: Destination, table: str, column: str) -> list[Any]:
    return destination.read(table, {}, order_by=[column]).get_column(column).to_list()


def _missing(field: str, value: str, message: str) -> list[dict[str, Any]]:
    return [{"field": field, "rule": "fk", "value": value, "message": message}]


def test_parents_load_first_and_orphans_are_quarantined(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """sessions, listed first, runs after tutors; unknown tutor ids are quarantined, null passes."""
    summary = _run(_school(tmp_path, write_pipeline), destination)
    assert [r.resource for r in summary.resources] == ["tutors", "sessions"]
    tutors, sessions = (r.counts for r in summary.resources)
    assert (tutors.fetched, tutors.inserted, tutors.quarantined) == (3, 3, 0)
    assert (sessions.fetched, sessions.inserted, sessions.quarantined) == (6, 3, 3)
    assert _ids(destination, "sessions", "session_id") == [10, 12, 13]
    assert _errors(destination, "sessions") == [
        ("sessions.jsonl:2", _missing("tutor_id", "42", "tutor_id 42 is not in tutors.tutor_id")),
        ("sessions.jsonl:5", _missing("tutor_id", "42", "tutor_id 42 is not in tutors.tutor_id")),
        ("sessions.jsonl:6", _missing("tutor_id", "7", "tutor_id 7 is not in tutors.tutor_id")),
    ]


def test_resource_option_runs_only_that_resource(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """--resource sessions does not load tutors first: with no tutors table, no key exists."""
    summary = _run(_school(tmp_path, write_pipeline), destination, "sessions")
    assert [r.resource for r in summary.resources] == ["sessions"]
    counts = summary.resources[0].counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (6, 1, 5)
    assert _ids(destination, "sessions", "session_id") == [12]
    assert [e[0]["message"] for _, e in _errors(destination, "sessions")] == [
        "tutor_id 1 is not in tutors.tutor_id",
        "tutor_id 42 is not in tutors.tutor_id",
        "tutor_id 3 is not in tutors.tutor_id",
        "tutor_id 42 is not in tutors.tutor_id",
        "tutor_id 7 is not in tutors.tutor_id",
    ]


def test_keys_loaded_by_an_earlier_run_are_found(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """Tutors loaded by one run are in the destination when a later run loads sessions alone."""
    path = _school(tmp_path, write_pipeline)
    _run(path, destination, "tutors")
    counts = _run(path, destination, "sessions").resources[0].counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (6, 3, 3)


def test_composite_key(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """A composite key is checked as a whole, typed like the referenced columns, named in full."""
    _jsonl(
        tmp_path / "shifts.jsonl",
        [{"user_id": "ann", "date": "2024-01-01"}, {"user_id": "bob", "date": "2024-01-02"}],
    )
    _jsonl(
        tmp_path / "hours.jsonl",
        [
            {"user": "ann", "day": "2024-01-01", "hours": 8},
            {"user": "ann", "day": "2024-01-02", "hours": 7},
            {"user": "bob", "day": "2024-01-02", "hours": 6},
            {"user": "bob", "day": None, "hours": 1},
        ],
    )
    path = write_pipeline(
        """\
pipeline: shifts
resources:
  hours:
    source: {type: file, path: hours.jsonl}
    columns: {day: date}
    steps:
      - fk: [{columns: [user, day], table: Shifts, references: [user_id, date]}]
  shifts:
    source: {type: file, path: shifts.jsonl}
    columns: {date: date}
"""
    )
    summary = _run(path, destination)
    assert [r.resource for r in summary.resources] == ["shifts", "hours"]
    assert _ids(destination, "hours", "hours") == [1, 6, 8]
    message = "(user, day) ('ann', '2024-01-02') is not in shifts (user_id, date)"
    assert _errors(destination, "hours") == [
        ("hours.jsonl:2", _missing("user", "('ann', '2024-01-02')", message))
    ]


def test_missing_referenced_table_quarantines_every_non_null_key(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """A table that exists nowhere holds no keys: every row with a key is quarantined."""
    _jsonl(tmp_path / "sessions.jsonl", SESSIONS)
    path = write_pipeline(
        """\
pipeline: school
resources:
  sessions:
    source: {type: file, path: sessions.jsonl}
    steps:
      - fk: [{columns: tutor_id, table: staff}]
"""
    )
    counts = _run(path, destination).resources[0].counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (6, 1, 5)
    assert _errors(destination, "sessions")[1] == (
        "sessions.jsonl:2",
        _missing("tutor_id", "42", "tutor_id 42 is not in staff.tutor_id"),
    )


def test_text_keys_are_quoted_and_typed_like_the_referenced_column(
    tmp_path: Path, write_pipeline: WritePipeline, destination: Destination
) -> None:
    """A text key finds its number in a bigint column; one that is not a number is quoted."""
    _jsonl(tmp_path / "tutors.jsonl", [{"tutor_id": 1}, {"tutor_id": 2}])
    _jsonl(
        tmp_path / "sessions.jsonl",
        [{"session_id": 1, "tutor": "1"}, {"session_id": 2, "tutor": "x'1"}],
    )
    path = write_pipeline(
        """\
pipeline: school
resources:
  sessions:
    source: {type: file, path: sessions.jsonl}
    steps:
      - fk: {tutor: tutors.tutor_id}
  tutors:
    source: {type: file, path: tutors.jsonl}
    columns: {tutor_id: bigint}
"""
    )
    counts = _run(path, destination).resources[1].counts
    assert (counts.inserted, counts.quarantined) == (1, 1)
    assert _errors(destination, "sessions") == [
        ("sessions.jsonl:2", _missing("tutor", "x'1", "tutor 'x''1' is not in tutors.tutor_id")),
    ]


def test_dry_run_skips_the_check(
    tmp_path: Path, write_pipeline: WritePipeline, destination_url: str
) -> None:
    """Without a destination every row would be loaded; nothing is written."""
    path = _school(tmp_path, write_pipeline)
    options = RunOptions(destination=destination_url, dry_run=True)
    summary = Pipeline.from_yaml(path).run(options)
    assert [(r.resource, r.ready, r.counts.quarantined) for r in summary.resources] == [
        ("tutors", 3, 0),
        ("sessions", 6, 0),
    ]


# ---------------------------------------------------------------- existing_keys


def _tutors(destination: Destination, ids: list[int]) -> None:
    target = LoadTarget("p", "tutors", WriteMode.APPEND, declared={"id": parse_type("bigint")})
    load = destination.begin(target)
    load.stage(pl.DataFrame({"id": ids, "_ladle_seq": range(len(ids))}))
    load.finish()
    load.commit()


def test_existing_keys_returns_the_distinct_keys_present(destination: Destination) -> None:
    """Duplicates are answered once, absent keys not at all, in the caller's type."""
    _tutors(destination, [1, 2, 3])
    keys = pl.DataFrame({"id": ["3", "1", "9", "1", "x"]})
    found = destination.existing_keys("tutors", ["id"], keys)
    assert found.schema == pl.Schema({"id": pl.String()})
    assert sorted(found.get_column("id").to_list()) == ["1", "3"]


def test_existing_keys_in_a_missing_table_is_empty(destination: Destination) -> None:
    """No table, or no such column in it: no key exists, and that is not an error."""
    keys = pl.DataFrame({"id": [1, 2]})
    assert destination.existing_keys("nowhere", ["id"], keys).to_dicts() == []
    _tutors(destination, [1])
    assert destination.existing_keys("tutors", ["code"], keys.rename({"id": "code"})).height == 0


def test_existing_keys_composite(destination: Destination) -> None:
    """Several columns are matched together, dates and text alike."""
    target = LoadTarget("p", "shifts", WriteMode.APPEND, declared={"day": parse_type("date")})
    load = destination.begin(target)
    days = [date(2024, 1, 1), date(2024, 1, 2)]
    load.stage(pl.DataFrame({"who": ["ann", "bob"], "day": days, "_ladle_seq": [0, 1]}))
    load.finish()
    load.commit()
    keys = pl.DataFrame({"who": ["ann", "ann", "bob"], "day": ["2024-01-01", "2024-01-02", None]})
    found = destination.existing_keys("shifts", ["who", "day"], keys)
    assert found.to_dicts() == [{"who": "ann", "day": "2024-01-01"}]


def test_existing_keys_with_fifty_thousand_keys(destination: Destination) -> None:
    """A 50k-key batch is one lookup: every other key exists."""
    _tutors(destination, list(range(0, 100_000, 2)))
    keys = pl.DataFrame({"id": range(50_000)})
    found = destination.existing_keys("tutors", ["id"], keys)
    assert found.height == 25_000
    assert found.get_column("id").sort().to_list() == list(range(0, 50_000, 2))


def test_postgres_lookups_give_every_connection_back(
    tmp_path: Path, write_pipeline: WritePipeline, postgres_url: str
) -> None:
    """Lookups borrow a pooled connection next to the load's and always return it."""
    destination = connect(postgres_url)
    assert isinstance(destination, PostgresDestination)
    try:
        before = destination.connections_in_use()
        _run(_school(tmp_path, write_pipeline), destination)
        destination.existing_keys("nowhere", ["id"], pl.DataFrame({"id": [1]}))
        destination.existing_keys("tutors", ["tutor_id"], pl.DataFrame({"tutor_id": [1]}))
        assert destination.connections_in_use() == before == 0
        stats = destination._pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"]
        assert stats["pool_size"] <= stats["pool_max"] == 4
    finally:
        destination.close()


def test_each_failed_check_is_a_reject_and_an_absent_column_passes(
    destination: Destination,
) -> None:
    """A row failing two checks gets two rejects; a check whose column is absent passes."""
    _tutors(destination, [1, 2])
    options = [
        Reference(columns=["tutor_id"], table="tutors", references=["id"]),
        Reference(columns=["backup_id"], table="tutors", references=["id"]),
        Reference(columns=["room_id"], table="rooms"),
    ]
    step = ForeignKeys(options, StepContext(resource="sessions", destination=destination))
    result = step(make_batch(tutor_id=[1, 5, 6], backup_id=[2, 5, None]))
    assert result.frame.get_column(ROW).to_list() == [0]
    assert result.rejects.sort(ROW, "message").rows() == [
        (1, "backup_id", "fk", "5", "backup_id 5 is not in tutors.id"),
        (1, "tutor_id", "fk", "5", "tutor_id 5 is not in tutors.id"),
        (2, "tutor_id", "fk", "6", "tutor_id 6 is not in tutors.id"),
    ]
