"""Quarantine replay: after a fix, quarantined records go through the current steps again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

import ladle
from ladle import Pipeline, RunOptions
from ladle.cli import main
from ladle.destinations import connect
from ladle.errors import LadleError
from ladle.ledger import RUNS
from ladle.quarantine import QUARANTINE
from ladle.replay import replay

PIPELINE = """\
pipeline: shop
resources:
  orders:
    source: {{type: file, path: orders.jsonl}}
    primary_key: [order_id]
    write: {write}
    columns:
      order_id: {{type: bigint}}
      status: {{type: text, in: {statuses}}}
      amount: {{type: double, min: {minimum}, required: true}}
    steps:
      - rename: {{amount: {aliases}}}
"""
ORDERS = [
    '{"order_id": 1, "status": "open", "amount": 10}',
    '{"order_id": 2, "status": "shipped", "amount": 5}',
    '{"order_id": 3, "status": "paid", "amount": -1}',
    '{"order_id": 4, "status": "refunded", "amount": 3}',
    '{"order_id": 5, "status": "open", "amount": ',
    '{"order_id": 6, "status": "open", "Order Total": 7}',
]
STRICT = {"statuses": "[open, paid]", "minimum": 0, "aliases": "[amount]"}
FIXED = {
    "statuses": "[open, paid, shipped, refunded]",
    "minimum": 0,
    "aliases": "[amount, order_total]",
}


@pytest.fixture
def shop(tmp_path: Path, write_pipeline: Callable[[str], Path]) -> Callable[..., Path]:
    """Write the orders and the pipeline file with the given rules; return the file."""
    (tmp_path / "orders.jsonl").write_text("\n".join(ORDERS) + "\n")

    def write(write: str = "merge", **rules: str | int) -> Path:
        return write_pipeline(PIPELINE.format(write=write, **(STRICT | rules)))

    return write


def _read(url: str, table: str, where: dict[str, Any], order_by: list[str]) -> list[dict[str, Any]]:
    dest = connect(url)
    try:
        return dest.read(table, where, order_by=order_by).to_dicts()
    finally:
        dest.close()


def _first_run(shop: Callable[..., Path], url: str, **options: str) -> str:
    summary = Pipeline.from_yaml(shop(**options)).run(RunOptions(destination=url))
    counts = summary.resources[0].counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (6, 1, 5)
    return summary.run_id


@pytest.mark.parametrize("write", ["merge", "append"])
def test_replay_loads_what_now_passes(
    shop: Callable[..., Path], destination_url: str, write: str
) -> None:
    """Relaxed rules and a fixed rename load the records they fail no more; the rest stay."""
    run_id = _first_run(shop, destination_url, write=write)

    summary = replay(
        Pipeline.from_yaml(shop(write=write, **FIXED)), run_id, destination=destination_url
    )

    result = summary.resources[0]
    assert result.status == "succeeded"
    c = result.counts
    assert (c.fetched, c.inserted, c.updated, c.unchanged, c.deduplicated, c.quarantined) == (
        5, 3, 0, 0, 0, 2,
    )  # fmt: skip
    orders = _read(destination_url, "orders", {}, ["order_id"])
    assert [(o["order_id"], o["amount"]) for o in orders] == [(1, 10), (2, 5), (4, 3), (6, 7)]
    assert _read(destination_url, QUARANTINE.name, {"run_id": run_id}, ["position"]) == []
    left = _read(destination_url, QUARANTINE.name, {"run_id": summary.run_id}, ["position"])
    assert [r["position"] for r in left] == ["orders.jsonl:3", "orders.jsonl:5"]
    raw = {k: v for k, v in json.loads(left[0]["raw"]).items() if v is not None}
    assert raw == {"order_id": 3, "status": "paid", "amount": -1}
    assert [e["rule"] for e in json.loads(left[0]["errors"])] == ["min"]
    assert json.loads(left[1]["raw"]) == {"text": '{"order_id": 5, "status": "open", "amount": '}
    ledger = _read(destination_url, RUNS.name, {"run_id": summary.run_id}, [])
    assert len(ledger) == 1
    row = ledger[0]
    assert (row["replay_of"], row["status"], row["write_mode"]) == (run_id, "succeeded", write)
    terms = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
    assert row["fetched"] == sum(row[k] for k in terms) == 5
    original = _read(destination_url, RUNS.name, {"run_id": run_id}, [])
    assert original[0]["replay_of"] is None


def test_replay_of_a_replay_after_a_further_fix(shop: Callable[..., Path], duckdb_url: str) -> None:
    """What a replay left can be replayed in turn; the original run has nothing left."""
    run_id = _first_run(shop, duckdb_url)
    first = replay(Pipeline.from_yaml(shop(**FIXED)), run_id, destination=duckdb_url)

    relaxed = Pipeline.from_yaml(shop(**(FIXED | {"minimum": -100})))
    second = replay(relaxed, first.run_id, destination=duckdb_url)

    c = second.resources[0].counts
    assert (c.fetched, c.inserted, c.quarantined) == (2, 1, 1)
    with pytest.raises(LadleError) as raised:
        replay(relaxed, run_id, destination=duckdb_url)
    assert str(raised.value) == (
        f"run '{run_id}' has no quarantined records (left); "
        "`ladle quarantine list` shows the runs that have some"
    )


@ladle.step
def replay_raises(frame: pl.DataFrame, *, order_id: int) -> pl.DataFrame:
    """A step with a bug that one record triggers: it raises for the whole batch."""
    if order_id in frame.get_column("order_id").to_list():
        raise ValueError(f"no exchange rate for order {order_id}")
    return frame


def test_a_record_that_makes_a_step_raise_stays_quarantined_and_the_rest_replays(
    shop: Callable[..., Path], duckdb_url: str
) -> None:
    """A record whose step raises is isolated: it stays quarantined with the error (and
    replays once the step is fixed); the records around it are replayed."""
    run_id = _first_run(shop, duckdb_url)
    path = shop(**FIXED)
    fixed = path.read_text()
    path.write_text(fixed + "      - replay_raises: {order_id: 4}\n")

    summary = replay(Pipeline.from_yaml(path), run_id, destination=duckdb_url)

    result = summary.resources[0]
    assert result.status == "succeeded"
    c = result.counts
    assert (c.fetched, c.inserted, c.quarantined) == (5, 2, 3)
    orders = _read(duckdb_url, "orders", {}, ["order_id"])
    assert [o["order_id"] for o in orders] == [1, 2, 6]
    left = _read(duckdb_url, QUARANTINE.name, {"run_id": summary.run_id}, ["position"])
    errors = {r["position"]: json.loads(r["errors"])[0] for r in left}
    assert sorted(errors) == ["orders.jsonl:3", "orders.jsonl:4", "orders.jsonl:5"]
    assert errors["orders.jsonl:4"]["rule"] == "poison"
    assert errors["orders.jsonl:4"]["message"] == (
        "resource 'orders', step 'replay_raises': tests.integration.test_replay.replay_raises "
        "raised ValueError: no exchange rate for order 4"
    )
    path.write_text(fixed)
    again = replay(Pipeline.from_yaml(path), summary.run_id, destination=duckdb_url)
    c = again.resources[0].counts
    assert (c.fetched, c.inserted, c.quarantined) == (3, 1, 2)
    assert [o["amount"] for o in _read(duckdb_url, "orders", {"order_id": 4}, [])] == [3]


def test_replay_of_an_unknown_run(shop: Callable[..., Path], duckdb_url: str) -> None:
    """An unknown run id is an error that says where to look."""
    _first_run(shop, duckdb_url)
    with pytest.raises(LadleError) as raised:
        replay(Pipeline.from_yaml(shop()), "nope", destination=duckdb_url)
    assert str(raised.value) == f"no run 'nope' in {duckdb_url}; `ladle runs` lists the runs"


TWO = """\
pipeline: two
resources:
  a:
    source: {{type: file, path: a.jsonl}}
    columns: {{n: {{type: bigint, max: {max}}}}}
  b:
    source: {{type: file, path: b.jsonl}}
    columns: {{n: {{type: bigint, max: {max}}}}}
"""


def test_resource_filter(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """--resource replays that resource only; the other's records stay where they were."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"n": 1}\n{"n": 50}\n')
    run = Pipeline.from_yaml(write_pipeline(TWO.format(max=10))).run(
        RunOptions(destination=destination_url)
    )
    fixed = Pipeline.from_yaml(write_pipeline(TWO.format(max=100)))

    summary = replay(fixed, run.run_id, resource="a", destination=destination_url)

    assert [(r.resource, r.counts.inserted) for r in summary.resources] == [("a", 1)]
    left = _read(destination_url, QUARANTINE.name, {"run_id": run.run_id}, ["resource"])
    assert [(r["resource"], r["position"]) for r in left] == [("b", "b.jsonl:2")]
    assert [r["n"] for r in _read(destination_url, "a", {}, ["n"])] == [1, 50]
    assert [r["n"] for r in _read(destination_url, "b", {}, ["n"])] == [1]


def test_replay_that_fails_changes_nothing(shop: Callable[..., Path], duckdb_url: str) -> None:
    """A replay whose load fails rolls back: the quarantine stays, the ledger says failed."""
    run_id = _first_run(shop, duckdb_url)
    path = shop(**FIXED)
    path.write_text(path.read_text() + '      - derive: {amount: "no_such_column + 1"}\n')

    summary = replay(Pipeline.from_yaml(path), run_id, destination=duckdb_url)

    result = summary.resources[0]
    assert result.status == "failed"
    assert result.error is not None
    assert "no_such_column" in result.error
    assert len(_read(duckdb_url, QUARANTINE.name, {"run_id": run_id}, [])) == 5
    ledger = _read(duckdb_url, RUNS.name, {"run_id": summary.run_id}, [])
    assert (ledger[0]["status"], ledger[0]["replay_of"], ledger[0]["fetched"]) == (
        "failed", run_id, 0,
    )  # fmt: skip


def test_cli_replay(shop: Callable[..., Path], duckdb_url: str) -> None:
    """`ladle quarantine replay RUN FILE` prints the counts; an unknown run is one red line."""
    run_id = _first_run(shop, duckdb_url)
    runner = CliRunner()
    path = shop(**FIXED)

    result = runner.invoke(
        main, ["quarantine", "replay", run_id, str(path), "--destination", duckdb_url]
    )

    assert result.exit_code == 0, result.output
    assert f"replay of run {run_id}: 5 quarantined records through the current steps" in (
        result.output
    )
    assert "2 still fail" in result.output
    missing = runner.invoke(
        main, ["quarantine", "replay", "nope", str(path), "--destination", duckdb_url]
    )
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        f"error: no run 'nope' in {duckdb_url}; `ladle runs` lists the runs"
    )
