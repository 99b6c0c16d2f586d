"""Connection accounting: every pooled connection goes back, on success and on failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladle import Pipeline
from ladle.destinations import LoadTarget, connect
from ladle.destinations.postgres import PostgresDestination, PostgresLoad
from ladle.ledger import RUNS

PIPELINE = """\
pipeline: conn
resources:
  items:
    source: {type: file, path: items.jsonl}
    primary_key: [id]
    write: merge
"""


def _ledger(url: str) -> list[dict[str, Any]]:
    dest = connect(url)
    rows = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    dest.close()
    return rows


def test_no_leak_after_success_and_failure(
    tmp_path: Path, postgres_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """After a good run and a failed one, no connection is checked out and none is recorded."""
    pipeline = write_pipeline(PIPELINE)
    (tmp_path / "items.jsonl").write_text('{"id": 1, "v": 1}\n')
    dest = PostgresDestination(postgres_url)
    try:
        assert Pipeline.from_yaml(pipeline).run(destination=dest).ok
        assert dest.connections_in_use() == 0
        (tmp_path / "items.jsonl").write_text('{"id": 2, "v": "not a number"}\n')
        failed = Pipeline.from_yaml(pipeline).run(destination=dest)
        assert not failed.ok
        assert dest.connections_in_use() == 0
    finally:
        dest.close()
    ledger = _ledger(postgres_url)
    assert [(r["status"], r["leaked_connections"]) for r in ledger] == [
        ("succeeded", 0),
        ("failed", 0),
    ]


class _ForgetfulDestination(PostgresDestination):
    """A destination whose loads never give their connection back: a leak, on purpose."""

    def begin(self, target: LoadTarget) -> PostgresLoad:
        load = super().begin(target)
        load._release = None  # the load keeps its connection
        return load


def test_leak_is_logged_and_recorded(
    tmp_path: Path, postgres_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A load that does not return its connection shows up in the ledger as a leak."""
    pipeline = write_pipeline(PIPELINE)
    (tmp_path / "items.jsonl").write_text('{"id": 1, "v": 1}\n')
    dest = _ForgetfulDestination(postgres_url)
    try:
        summary = Pipeline.from_yaml(pipeline).run(destination=dest)
        assert summary.ok
        assert dest.connections_in_use() == 1
    finally:
        dest.close()
    assert [r["leaked_connections"] for r in _ledger(postgres_url)] == [1]
