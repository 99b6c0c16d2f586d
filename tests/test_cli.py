"""The CLI: a thin layer that prints summaries and one-line errors; non-zero exit on failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladle.cli import main


@pytest.fixture
def runner() -> CliRunner:
    """A click runner; stderr is kept apart so logs and output can be told apart."""
    return CliRunner()


def test_init_scaffold_runs_as_is(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ladle init` makes a pipeline whose first run loads, dedupes and quarantines exactly."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["init", "shop"])
    assert result.exit_code == 0, result.output
    assert "created shop/pipeline.yaml" in result.stdout
    monkeypatch.chdir(tmp_path / "shop")
    result = runner.invoke(main, ["run", "pipeline.yaml"])
    assert result.exit_code == 0, result.output
    assert "orders" in result.stdout
    assert (tmp_path / "shop" / "shop.duckdb").exists()
    runs = runner.invoke(main, ["runs", "pipeline.yaml"])
    assert runs.exit_code == 0, runs.output
    assert "succeeded" in runs.stdout
    again = runner.invoke(main, ["run", "pipeline.yaml"])
    assert again.exit_code == 0


def test_init_refuses_to_overwrite(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ladle init` into an existing pipeline stops with one line and exit 1."""
    monkeypatch.chdir(tmp_path)
    runner.invoke(main, ["init", "shop"])
    result = runner.invoke(main, ["init", "shop"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: shop/pipeline.yaml already exists; choose another name or remove it"
    )


def test_validate_error_is_one_line(
    runner: CliRunner, write_pipeline: Callable[[str], Path]
) -> None:
    """An invalid file prints file:line: key: message and exits 1, without a traceback."""
    path = write_pipeline(
        "pipeline: x\nresources:\n  a:\n    source: {type: file, path: a.jsonl}\n    writ: merge\n"
    )
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {path}:5: resources.a: unknown key 'writ' (did you mean 'write'?)"
    )


def test_validate_ok(runner: CliRunner, write_pipeline: Callable[[str], Path]) -> None:
    """A valid file is reported with its resources and destination."""
    path = write_pipeline(
        "pipeline: x\nresources:\n  a:\n    source: {type: file, path: a.jsonl}\n"
    )
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{path}: ok: pipeline 'x', resources: a",
        "destination: duckdb:///x.duckdb",
        f"not looked at: inputs, destination, expressions (`ladle check {path}` does)",
    ]


def test_run_failure_exits_non_zero_and_logs_json(
    runner: CliRunner, tmp_path: Path, write_pipeline: Callable[[str], Path]
) -> None:
    """A failed resource makes `ladle run` exit 1; logs are JSON lines when not on a terminal."""
    path = write_pipeline(
        "pipeline: x\n"
        f"destination: duckdb:///{tmp_path}/x.duckdb\n"
        "resources:\n  a:\n    source: {type: file, path: missing/*.jsonl}\n"
    )
    result = runner.invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert "no file matches" in result.stdout
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[-1]["event"] == "resource finished"
    assert events[-1]["status"] == "failed"


def test_quarantine_show_lists_errors(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ladle quarantine show RUN` prints each record's position, rule and message."""
    monkeypatch.chdir(tmp_path)
    runner.invoke(main, ["init", "shop"])
    monkeypatch.chdir(tmp_path / "shop")
    runner.invoke(main, ["run", "pipeline.yaml"])
    listing = runner.invoke(main, ["quarantine", "list", "pipeline.yaml"])
    assert listing.exit_code == 0
    assert "data/orders.jsonl:" in listing.stdout
    from ladle.destinations import connect

    dest = connect("duckdb:///shop.duckdb")
    run_id = dest.read("_ladle_runs", {}).get_column("run_id")[0]
    dest.close()
    shown = runner.invoke(main, ["quarantine", "show", run_id, "pipeline.yaml"])
    assert shown.exit_code == 0
    assert "orders data/orders.jsonl:4" in shown.stdout
    assert "status: [in]" in shown.stdout
    # Line 7's bad date and negative amount are listed together.
    assert (
        "orders data/orders.jsonl:7\n"
        "  ordered_at: [type] cannot parse 'not a date' as timestamptz (value 'not a date')\n"
        "  amount: [min] -3.00 is less than min 0 (value '-3.00')\n"
    ) in shown.stdout


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_doctor_reports_destination(
    runner: CliRunner, kind: str, request: pytest.FixtureRequest
) -> None:
    """`ladle doctor` says the destination answers, its version, and that tables can be made."""
    url = request.getfixturevalue(f"{kind}_url")
    result = runner.invoke(main, ["doctor", "--destination", url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok   destination answers: ")
    assert lines[1].startswith(
        "ok   server version: " + ("DuckDB" if kind == "duckdb" else "PostgreSQL")
    )
    assert lines[2].startswith("ok   can create tables: in schema ")


def test_doctor_fails_for_unreachable_server(runner: CliRunner) -> None:
    """An unreachable PostgreSQL is one error line, exit 1, with the password masked."""
    url = "postgresql://u:pw@127.0.0.1:1/x?connect_timeout=1"
    result = runner.invoke(main, ["doctor", "--destination", url])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: PostgreSQL error while connecting to postgresql://u:***@127.0.0.1:1/x"
    )
    assert "pw@" not in result.stderr
