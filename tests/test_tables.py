"""CLI tables fit the terminal without cutting a run id or a number; `--json` is for scripts;
read-only commands create nothing; the small consistencies of issue 15."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner

from ladle.batch import Counts
from ladle.cli import _print_summary, main
from ladle.config import WriteMode
from ladle.destinations import LoadTarget, connect
from ladle.ledger import RunEntry
from ladle.pipeline import ResourceResult, RunSummary
from ladle.quarantine import storable_json

RUNS = ["3f9c2a7b1d04", "8e1b5c0a9f27", "c47d19e2b8a3"]
RESOURCES = ["orders", "customers", "order_line_items"]
START = datetime.now(UTC) - timedelta(hours=5)
PIPELINE = "pipeline: shop\ndestination: duckdb:///PATH\nresources:\n" + "".join(
    f"  {name}:\n    source: {{type: file, path: {name}.jsonl}}\n" for name in RESOURCES
)


@pytest.fixture
def shop(write_pipeline: Callable[[str], Path], tmp_path: Path) -> Path:
    """Three runs of three resources, each fetching 1,000,000 records, with quarantine."""
    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    dest = connect(url)
    try:
        for hour, run_id in enumerate(RUNS):
            for i, resource in enumerate(RESOURCES):
                started = START + timedelta(hours=hour, minutes=i)
                dest.record_run(
                    RunEntry(
                        run_id=run_id,
                        pipeline="shop",
                        resource=resource,
                        table_name=resource,
                        write_mode="merge",
                        config_hash="c0ffee",
                        ladle_version="0.1.0",
                        counts=Counts(1_000_000, 999_000, 0, 0, 0, 1_000),
                        status="succeeded",
                        started_at=started,
                        finished_at=started + timedelta(seconds=42),
                    )
                )
        load = dest.begin(LoadTarget("shop", "orders", WriteMode.MERGE))
        errors = [{"field": "amount", "rule": "min", "value": "-1", "message": "below 0"}]
        rows = pl.DataFrame(
            {
                "position": [f"data/orders-2026-12-05.jsonl:{n}" for n in (1_000_000, 12)],
                "raw": [storable_json({"amount": -1})] * 2,
                "errors": [storable_json(errors)] * 2,
            }
        )
        load.write_quarantine(rows, run_id=RUNS[-1], resource="orders")
        load.commit()
    finally:
        dest.close()
    return write_pipeline(PIPELINE.replace("PATH", str(tmp_path / "shop.duckdb")))


def _invoke(args: list[str], columns: int) -> click.testing.Result:
    return CliRunner().invoke(main, args, env={"COLUMNS": str(columns)})


def _fits(text: str, columns: int) -> None:
    too_long = [line for line in text.splitlines() if len(line) > columns]
    assert too_long == [], f"wider than {columns} columns"


@pytest.mark.parametrize("columns", [80, 120])
def test_runs_fit_the_width_with_ids_and_numbers_whole(shop: Path, columns: int) -> None:
    """`ladle runs` at 80 and 120 columns: no line is wider, each run id and 1,000,000 whole
    on one line, and the columns left out are named."""
    result = _invoke(["runs", str(shop)], columns)
    assert result.exit_code == 0, result.output
    _fits(result.stdout, columns)
    lines = result.stdout.splitlines()
    for run_id in RUNS:
        assert sum(run_id in line for line in lines) == len(RESOURCES)
    assert sum("1,000,000" in line for line in lines) == len(RUNS) * len(RESOURCES)
    assert "order_line_items" in result.stdout
    assert "--wide adds: " in result.stdout


def test_runs_wide_shows_every_column(shop: Path) -> None:
    """`--wide` draws every column, however wide that makes the table."""
    result = _invoke(["runs", str(shop), "--wide"], 80)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "run" in line and "┃" in line)
    for name in ("updated", "unchanged", "started (UTC)", "seconds", "rolled back", "error"):
        assert name in header
    assert "--wide adds" not in result.stdout


def test_runs_json_and_last_counts_runs(shop: Path) -> None:
    """`runs --json --last 2` prints one object per ledger row of the two newest runs."""
    result = _invoke(["runs", str(shop), "--json", "--last", "2"], 80)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["run_id"] for row in rows] == [RUNS[2]] * 3 + [RUNS[1]] * 3
    assert rows[0]["resource"] == "order_line_items"
    assert {k: rows[0][k] for k in ("status", "fetched", "inserted", "quarantined", "seconds")} == {
        "status": "succeeded",
        "fetched": 1_000_000,
        "inserted": 999_000,
        "quarantined": 1_000,
        "seconds": 42.0,
    }
    assert datetime.fromisoformat(rows[0]["started_at"]) == START + timedelta(hours=2, minutes=2)


@pytest.mark.parametrize("columns", [80, 120])
def test_run_summary_fits_the_width(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary after a run keeps the resource, status and the counts whole at 80 columns."""
    monkeypatch.setenv("COLUMNS", str(columns))
    counts = Counts(1_000_000, 999_000, 0, 0, 0, 1_000)
    summary = RunSummary(
        RUNS[0],
        "shop",
        "postgresql://loader@db.internal.example.com:5432/warehouse?schema=shop",
        dry_run=False,
        resources=[ResourceResult(name, name, "succeeded", counts, 12.5) for name in RESOURCES],
    )
    _print_summary(summary)
    printed = capsys.readouterr().out
    _fits(printed, columns)
    assert RUNS[0] in printed
    lines = printed.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert sum("1,000,000" in line and "999,000" in line for line in rows) == 3
    assert sum("order_line_items" in line and "succeeded" in line for line in lines) == 1
    # Every count is told, in the table or (when the table leaves some out) in a line each.
    told = " ".join(printed.split())
    for name in RESOURCES:
        header = next(line for line in lines if line.startswith("┃"))
        in_table = "deduplicated" in header and "unchanged" in header
        assert in_table or (
            f"{name}: 1,000,000 fetched = 999,000 inserted + 0 updated + 0 unchanged + "
            "0 deduplicated + 1,000 quarantined" in told
        )


@pytest.mark.parametrize("columns", [80, 120])
def test_quarantine_list_fits_and_json(shop: Path, columns: int) -> None:
    """`quarantine list` fits the width with the run id whole; `--json` has every field, the
    first position read as a number (12 before 1000000)."""
    result = _invoke(["quarantine", "list", str(shop)], columns)
    assert result.exit_code == 0, result.output
    _fits(result.stdout, columns)
    assert any(RUNS[2] in line for line in result.stdout.splitlines())
    as_json = _invoke(["quarantine", "list", str(shop), "--json"], columns)
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {
            "run_id": RUNS[2],
            "resource": "orders",
            "records": 2,
            "first_position": "data/orders-2026-12-05.jsonl:12",
            "reasons": {"amount: min": 2},
        }
    ]


@pytest.mark.parametrize("columns", [80, 120])
def test_status_fits_the_width(shop: Path, columns: int) -> None:
    """`status --table` fits the width with the last run's id whole."""
    result = _invoke(["status", str(shop), "--table"], columns)
    assert result.exit_code == 0, result.output
    _fits(result.stdout, columns)
    assert sum(RUNS[2] in line for line in result.stdout.splitlines()) == len(RESOURCES)


def test_quarantine_show_unknown_run_is_an_error(shop: Path) -> None:
    """An unknown run id exits 1 for `quarantine show`, as it does for `quarantine replay`."""
    result = _invoke(["quarantine", "show", "nosuchrun", str(shop)], 80)
    assert result.exit_code == 1
    url = f"duckdb:///{shop.parent / 'shop.duckdb'}"
    assert result.stderr == (f"error: no run 'nosuchrun' in {url}; `ladle runs` lists the runs\n")


@pytest.mark.parametrize(
    "args",
    [["runs"], ["status"], ["quarantine", "list"], ["quarantine", "show", "abc"], ["ui"]],
)
def test_read_only_commands_create_no_file(
    args: list[str], write_pipeline: Callable[[str], Path], tmp_path: Path
) -> None:
    """Without a database file, the commands that only look say so in one line, exit 1 and
    leave no file behind."""
    path = write_pipeline(PIPELINE.replace("PATH", str(tmp_path / "data" / "shop.duckdb")))
    result = _invoke([*args, str(path)], 80)
    assert result.exit_code == 1
    target = tmp_path / "data" / "shop.duckdb"
    assert result.stderr == f"error: no runs yet: {target} does not exist\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]


def test_ui_on_a_busy_port_says_so_in_one_line(shop: Path) -> None:
    """`ladle ui` on a port another process listens on: one line, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _invoke(["ui", str(shop), "--port", str(port)], 80)
    assert result.exit_code == 1
    assert result.stderr == f"error: port {port} is in use; choose another with --port\n"


def test_help_and_destination_are_consistent() -> None:
    """`-h` is `--help` on every command, and `--destination` reads the same everywhere."""
    assert _invoke(["-h"], 80).exit_code == 0
    assert "-h, --help" in _invoke(["quarantine", "list", "-h"], 80).stdout
    helps = set()
    stack: list[click.Command] = [main]
    while stack:
        command = stack.pop()
        if isinstance(command, click.Group):
            stack.extend(command.commands.values())
        helps |= {
            p.help
            for p in command.params
            if isinstance(p, click.Option) and p.name == "destination"
        }
    assert helps == {"Destination URL (default: the pipeline file's)."}
