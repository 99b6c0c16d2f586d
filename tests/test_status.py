"""`ladle status`: the last successful load per resource, its age, and freshness verdicts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladle.batch import Counts
from ladle.cli import main
from ladle.config import load, read_outline
from ladle.destinations import connect
from ladle.errors import ConfigError
from ladle.ledger import RunEntry
from ladle.status import FreshnessSpec, check_status

PIPELINE = """\
pipeline: shop
destination: ${SHOP_DESTINATION}
freshness: {warn_after: 2h, error_after: 1d}
resources:
  orders:
    source: {type: file, path: orders.jsonl}
  customers:
    source: {type: file, path: customers.jsonl}
    table: clients
    freshness: {warn_after: 30m}
  refunds:
    source: {type: http, url: "${SHOP_API}/refunds"}
"""

NOW = datetime.now(UTC)
"""Reset by the ``shop`` fixture for each test: the suite may start long after collection."""
# Ages a little past the whole minute, so that `3h 0m` stays true while the test runs.
SLACK = timedelta(seconds=20)


def _run(
    url: str,
    resource: str,
    run_id: str,
    *,
    age: timedelta,
    status: str = "succeeded",
    replay_of: str | None = None,
    counts: Counts | None = None,
) -> None:
    """Write one ledger row that finished ``age`` ago, as a run of long ago would have."""
    finished = NOW - age - SLACK
    entry = RunEntry(
        run_id=run_id,
        pipeline="shop",
        resource=resource,
        table_name=resource,
        write_mode="append",
        config_hash="c0ffee",
        ladle_version="0.1.0",
        counts=counts or Counts(fetched=12, inserted=7, updated=3, unchanged=2),
        status=status,
        started_at=finished - timedelta(seconds=5),
        finished_at=finished,
        error="boom" if status == "failed" else None,
        replay_of=replay_of,
    )
    destination = connect(url)
    try:
        destination.record_run(entry)
    finally:
        destination.close()


@pytest.fixture
def shop(
    write_pipeline: Callable[[str], Path], destination_url: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A pipeline whose ledger has: orders loaded 3h ago (a later run failed, a replay since),
    customers loaded 10m ago, refunds never loaded. ${SHOP_API} is not set."""
    global NOW  # noqa: PLW0603 - the tests' reference time, taken when each test starts
    NOW = datetime.now(UTC)
    monkeypatch.setenv("SHOP_DESTINATION", destination_url)
    monkeypatch.delenv("SHOP_API", raising=False)
    _run(destination_url, "orders", "o-1", age=timedelta(days=2))
    _run(destination_url, "orders", "o-2", age=timedelta(hours=3))
    _run(destination_url, "orders", "o-3", age=timedelta(hours=1), status="failed")
    _run(destination_url, "orders", "o-4", age=timedelta(minutes=5), replay_of="o-2")
    _run(destination_url, "customers", "c-1", age=timedelta(minutes=10))
    return write_pipeline(PIPELINE)


def test_status_json_reports_every_resource(shop: Path, destination_url: str) -> None:
    """Off a terminal the report is JSON: the last successful load (a replay is not one), its
    rows and age, the latest run, the verdict; refunds never loaded with error_after: exit 1."""
    result = CliRunner().invoke(main, ["status", str(shop)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    checked_at = report.pop("checked_at")
    assert datetime.fromisoformat(checked_at) >= NOW
    orders_at = NOW - timedelta(hours=3) - SLACK
    customers_at = NOW - timedelta(minutes=10) - SLACK
    assert report == {
        "pipeline": "shop",
        "destination": destination_url,
        "ok": False,
        "resources": [
            {
                "resource": "orders",
                "table": "orders",
                "verdict": "warn",
                "level": "warn",
                "last_run_id": "o-2",
                "last_success_at": orders_at.isoformat(),
                "age_seconds": pytest.approx(3 * 3600 + 20, abs=30),
                "rows": 10,
                "fetched": 12,
                "latest_run_id": "o-4",
                "latest_status": "succeeded",
                "last_data_run_id": "o-2",
                "last_data_at": orders_at.isoformat(),
                "data_age_seconds": pytest.approx(3 * 3600 + 20, abs=30),
                "clock": "new_data",
                "warn_after": "2h",
                "error_after": "1d",
            },
            {
                "resource": "customers",
                "table": "clients",
                "verdict": "ok",
                "level": "ok",
                "last_run_id": "c-1",
                "last_success_at": customers_at.isoformat(),
                "age_seconds": pytest.approx(10 * 60 + 20, abs=30),
                "rows": 10,
                "fetched": 12,
                "latest_run_id": "c-1",
                "latest_status": "succeeded",
                "last_data_run_id": "c-1",
                "last_data_at": customers_at.isoformat(),
                "data_age_seconds": pytest.approx(10 * 60 + 20, abs=30),
                "clock": "new_data",
                "warn_after": "30m",
                "error_after": None,
            },
            {
                "resource": "refunds",
                "table": "refunds",
                "verdict": "never",
                "level": "error",
                "last_run_id": None,
                "last_success_at": None,
                "age_seconds": None,
                "rows": None,
                "fetched": None,
                "latest_run_id": None,
                "latest_status": None,
                "last_data_run_id": None,
                "last_data_at": None,
                "data_age_seconds": None,
                "clock": "new_data",
                "warn_after": "2h",
                "error_after": "1d",
            },
        ],
    }
    assert result.stderr.splitlines() == [
        "warning: orders: last loaded 3h 0m ago by run o-2, past warn_after 2h",
        "error: refunds: never loaded successfully (error_after 1d)",
    ]


def test_status_table_and_warnings_exit_zero(shop: Path, destination_url: str) -> None:
    """`--table` draws the table; with refunds loaded, a warning alone still exits 0."""
    _run(destination_url, "refunds", "r-1", age=timedelta(hours=30), status="succeeded")
    _run(destination_url, "refunds", "r-2", age=timedelta(hours=1), status="failed")
    result = CliRunner().invoke(main, ["status", str(shop), "--table"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "warning: orders: last loaded 3h 0m ago by run o-2, past warn_after 2h",
        "error: refunds: last loaded 1d 6h ago by run r-1, past error_after 1d; its latest "
        "run r-2 failed",
    ]
    lines = [line for line in result.stdout.splitlines() if line[:1] in "│┃"]
    cells = [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in lines]
    headers = ["resource", "table", "last load (UTC)", "run", "age", "rows", "fetched"]
    assert cells[0] == [*headers, "latest run", "freshness", "thresholds"]
    assert [row[:2] + row[3:] for row in cells[1:]] == [
        ["orders", "orders", "o-2", "3h 0m", "10", "12", "succeeded", "warn", "warn 2h, error 1d"],
        ["customers", "clients", "c-1", "10m", "10", "12", "succeeded", "ok", "warn 30m"],
        ["refunds", "refunds", "r-1", "1d 6h", "10", "12", "failed", "error", "warn 2h, error 1d"],
    ]
    _run(destination_url, "refunds", "r-3", age=timedelta(minutes=1))
    again = CliRunner().invoke(main, ["status", str(shop), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ok"] is True
    assert again.stderr.splitlines() == [
        "warning: orders: last loaded 3h 0m ago by run o-2, past warn_after 2h"
    ]


def test_status_destination_option_and_no_freshness(
    write_pipeline: Callable[[str], Path], duckdb_url: str
) -> None:
    """`--destination` overrides the file's; without freshness, never loaded is no error."""
    path = write_pipeline(
        "pipeline: shop\nresources:\n  orders:\n    source: {type: file, path: o.jsonl}\n"
    )
    connect(duckdb_url).close()  # an empty ledger (no file at all is an error: test_cli.py)
    result = CliRunner().invoke(main, ["status", str(path), "--destination", duckdb_url])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    (resource,) = json.loads(result.stdout)["resources"]
    assert (resource["verdict"], resource["level"]) == ("never", "ok")


def test_check_status_judges_at_the_given_time(shop: Path, destination_url: str) -> None:
    """The library call takes `now`: a day later, orders are past error_after."""
    destination = connect(destination_url)
    try:
        report = check_status(read_outline(shop), destination, now=NOW + timedelta(days=1))
    finally:
        destination.close()
    assert [(r.resource, r.verdict, r.level) for r in report.resources] == [
        ("orders", "error", "error"),
        ("customers", "warn", "warn"),
        ("refunds", "never", "error"),
    ]
    assert not report.ok


STALLED = """\
pipeline: shop
destination: ${SHOP_DESTINATION}
freshness: {error_after: 1d}
resources:
  events:
    source: {type: file, path: events.jsonl}
  events_ran:
    source: {type: file, path: events.jsonl}
    freshness: {error_after: 1d, clock: success}
"""


def test_status_clock_new_data_sees_a_stalled_feed(
    write_pipeline: Callable[[str], Path], destination_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs that fetched nothing keep the success clock young but not the new-data clock:
    past error_after since the last loading run is an error by default, ok under `success`."""
    monkeypatch.setenv("SHOP_DESTINATION", destination_url)
    path = write_pipeline(STALLED)
    nothing = Counts()
    for resource in ("events", "events_ran"):
        _run(destination_url, resource, f"{resource}-1", age=timedelta(days=2))
        _run(destination_url, resource, f"{resource}-2", age=timedelta(hours=5), counts=nothing)
        _run(destination_url, resource, f"{resource}-3", age=timedelta(hours=1), counts=nothing)
    result = CliRunner().invoke(main, ["status", str(path), "--json"])
    assert result.exit_code == 1, result.output
    shown = {
        r["resource"]: (r["verdict"], r["clock"], r["last_run_id"], r["last_data_run_id"])
        for r in json.loads(result.stdout)["resources"]
    }
    assert shown == {
        "events": ("error", "new_data", "events-3", "events-1"),
        "events_ran": ("ok", "success", "events_ran-3", "events_ran-1"),
    }
    assert result.stderr.splitlines() == [
        "error: events: last loaded new data 2d 0h ago by run events-1, past error_after 1d; "
        "its last successful run events-3 (1h 0m ago) loaded nothing new"
    ]


def test_status_clock_new_data_never(
    write_pipeline: Callable[[str], Path], destination_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Successful runs that never loaded a row leave the new-data clock at `never`."""
    monkeypatch.setenv("SHOP_DESTINATION", destination_url)
    path = write_pipeline(STALLED)
    _run(
        destination_url,
        "events",
        "e-1",
        age=timedelta(minutes=30),
        counts=Counts(fetched=2, unchanged=2),
    )
    destination = connect(destination_url)
    try:
        report = check_status(read_outline(path), destination, now=NOW)
    finally:
        destination.close()
    events = report.resources[0]
    assert (events.verdict, events.level, events.last_run_id) == ("never", "error", "e-1")
    assert events.problem() == (
        "events: never loaded new data (error_after 1d); its last successful run e-1 "
        "(30m ago) loaded nothing new"
    )


def test_outline_reads_no_source_secret(
    write_pipeline: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_outline needs only name, destination, tables and freshness; `{}` checks nothing."""
    monkeypatch.delenv("SHOP_API", raising=False)
    path = write_pipeline(
        "pipeline: shop\nfreshness: {error_after: 1d}\nresources:\n"
        '  a:\n    source: {type: http, url: "${SHOP_API}/a"}\n    freshness: {}\n'
        '  b:\n    source: {type: http, url: "${SHOP_API}/b"}\n'
    )
    outline = read_outline(path)
    assert outline.name == "shop"
    assert outline.destination is None
    freshness = {name: res.freshness for name, res in outline.resources.items()}
    assert freshness == {"a": FreshnessSpec(), "b": FreshnessSpec(error_after="1d")}
    assert [f.error if f else None for f in freshness.values()] == [None, timedelta(days=1)]


@pytest.mark.parametrize(
    ("freshness", "message"),
    [
        (
            "{warn_after: 1d, error_after: 2h}",
            "resources.a.freshness: warn_after (1d) is longer than error_after (2h): a load "
            "would be an error before it is a warning",
        ),
        (
            "{warn_after: soon}",
            "resources.a.freshness.warn_after: 'soon' is not a duration; write e.g. 30s, 5m, "
            "2h or 1d",
        ),
        (
            "{error_after: 2h, clock: sucess}",
            "resources.a.freshness.clock: Input should be 'new_data' or 'success'",
        ),
        (
            "{warn_afer: 2h}",
            "resources.a.freshness: unknown key 'warn_afer' (did you mean 'warn_after'?)",
        ),
    ],
)
def test_bad_freshness_names_file_line_and_key(
    write_pipeline: Callable[[str], Path], freshness: str, message: str
) -> None:
    """A freshness mistake is a ConfigError with file, line and key, from load and outline."""
    path = write_pipeline(
        "pipeline: shop\nresources:\n  a:\n    source: {type: file, path: a.jsonl}\n"
        f"    freshness: {freshness}\n"
    )
    for read in (read_outline, load):
        with pytest.raises(ConfigError) as error:
            read(path)
        assert str(error.value) == f"{path}:5: {message}"
