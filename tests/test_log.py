"""Log options: --log-format, --log-level, -q, -v and their LADLE_LOG_* variables; every
warning (ladle's own, Python's, other libraries') goes through the one logger."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from ladle import log
from ladle.cli import main

LITERAL_PASSWORD = "postgresql://app:hunter2@127.0.0.1:1/shop"  # noqa: S105 - the warning under test


@pytest.fixture
def pipeline(tmp_path: Path, write_pipeline: Callable[[str], Path]) -> Path:
    """A pipeline that loads two records from a file into a DuckDB file."""
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    return write_pipeline(
        f"pipeline: x\ndestination: duckdb:///{tmp_path}/x.duckdb\n"
        "resources:\n  a:\n    source: {type: file, path: a.jsonl}\n"
    )


def _invoke(args: list[str], **env: str) -> Result:
    result = CliRunner().invoke(
        main, args, env={"LADLE_LOG_FORMAT": "", "LADLE_LOG_LEVEL": "", **env}
    )
    assert result.exit_code == 0, result.output
    return result


def _events(result: Result) -> list[dict[str, object]]:
    """stderr as JSON objects, one a line (fails if a line is not one)."""
    return [json.loads(line) for line in result.stderr.splitlines()]


def _levels(result: Result) -> set[object]:
    return {event["level"] for event in _events(result)}


def test_log_format_json_gives_json_lines(pipeline: Path) -> None:
    """`--log-format json` writes one JSON object a line on stderr, with level and time."""
    events = _events(_invoke(["--log-format", "json", "run", str(pipeline)]))
    assert [e["event"] for e in events] == ["resource started", "batch staged", "resource finished"]
    assert all({"level", "timestamp"} <= e.keys() for e in events)


def test_log_format_console(pipeline: Path) -> None:
    """`--log-format console` writes lines for people, even off a terminal."""
    result = _invoke(["--log-format", "console", "run", str(pipeline)])
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert "[info     ] resource started" in lines[0]
    assert not lines[0].startswith("{")


def test_quiet_hides_info_and_verbose_shows_debug(pipeline: Path) -> None:
    """`-q` keeps warnings and errors only; `-v` adds debug lines; by default info and up."""
    assert _levels(_invoke(["run", str(pipeline)])) == {"info"}
    assert _invoke(["-q", "run", str(pipeline)]).stderr == ""
    verbose = _events(_invoke(["-v", "run", str(pipeline)]))
    assert {"connections in use"} == {e["event"] for e in verbose if e["level"] == "debug"}


def test_environment_chooses_format_and_level(pipeline: Path) -> None:
    """LADLE_LOG_LEVEL and LADLE_LOG_FORMAT do what the options do."""
    assert _invoke(["run", str(pipeline)], LADLE_LOG_LEVEL="warning").stderr == ""
    assert "debug" in _levels(_invoke(["run", str(pipeline)], LADLE_LOG_LEVEL="DEBUG"))
    console = _invoke(["run", str(pipeline)], LADLE_LOG_FORMAT="console")
    assert "[info     ] resource started" in console.stderr


def test_options_beat_environment(pipeline: Path) -> None:
    """An option given on the command line wins over its environment variable."""
    assert _invoke(["-q", "run", str(pipeline)], LADLE_LOG_LEVEL="debug").stderr == ""
    assert _levels(_invoke(["-v", "run", str(pipeline)], LADLE_LOG_LEVEL="error")) == {
        "debug",
        "info",
    }
    assert _levels(_invoke(["--log-level", "info", "run", str(pipeline)], LADLE_LOG_LEVEL="error"))
    console = _invoke(["--log-format", "console", "run", str(pipeline)], LADLE_LOG_FORMAT="json")
    assert not console.stderr.startswith("{")


def test_quiet_and_verbose_together_is_a_usage_error(pipeline: Path) -> None:
    """-q and -v contradict each other: exit 2 with the reason."""
    result = CliRunner().invoke(main, ["-q", "-v", "run", str(pipeline)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --quiet and --verbose contradict each other: give one"
    )


def test_quiet_draws_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, progress bars are drawn with console lines at info, not under -q or JSON."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert log.LogSettings().progress
    assert not log.LogSettings(level=logging.WARNING).progress
    assert not log.LogSettings("json").progress


def test_literal_password_warning_is_a_log_line(write_pipeline: Callable[[str], Path]) -> None:
    """The literal-password warning comes out as a ladle log line, JSON or console."""
    path = write_pipeline(
        f"pipeline: x\ndestination: {LITERAL_PASSWORD}\n"
        "resources:\n  a:\n    source: {type: file, path: a.jsonl}\n"
    )
    result = _invoke(["--log-format", "json", "validate", str(path)])
    (event,) = _events(result)
    assert {k: event[k] for k in ("event", "level", "line", "key")} == {
        "event": f"{path}:2: destination: a password is written in the file; "
        "take it from the environment instead, e.g. `${DATABASE_URL}`",
        "level": "warning",
        "line": 2,
        "key": "destination",
    }
    assert "hunter2" not in result.output
    console = _invoke(["--log-format", "console", "validate", str(path)])
    (line,) = console.stderr.splitlines()
    assert "[warning  ] " in line
    assert "Warning" not in line


def test_error_line_is_json_when_json_is_asked(write_pipeline: Callable[[str], Path]) -> None:
    """With `--log-format json` even the final error line is a JSON object."""
    path = write_pipeline("pipeline: x\nresources: {}\n")
    result = CliRunner().invoke(main, ["--log-format", "json", "validate", str(path)])
    assert result.exit_code == 1
    (event,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["level"] == "error"
    assert str(event["event"]).startswith(f"{path}:2: resources:")


def test_python_and_library_warnings_go_through_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`warnings.warn` and a stdlib logger's warning become log lines like any other."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            log.configure(log.LogSettings("json"))
            warnings.warn("old spelling", DeprecationWarning, stacklevel=1)
            logging.getLogger("somelib").warning("pool %s is full", "p1")
            logging.getLogger("somelib").info("not shown")
    finally:
        root.handlers, root.level = handlers, level
        structlog.reset_defaults()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["event"], e["level"]) for e in events] == [
        ("old spelling", "warning"),
        ("pool p1 is full", "warning"),
    ]
    assert events[0]["category"] == "DeprecationWarning"
    assert events[1]["logger"] == "somelib"
