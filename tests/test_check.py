"""`ladle check`: inputs, destination and every SQL expression checked before a run, with lines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladle.cli import main
from ladle.config import load
from ladle.errors import ConfigError
from tests.examples import EXAMPLES, load_example

EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "pipeline.yaml").exists())
CSV = "id,status,created_at\n1,open,2024-01-06T10:00:00Z\n2,closed,2024-01-08T09:00:00Z\n"
PIPELINE = """\
pipeline: shop
resources:
  tickets:
    source: {{type: file, path: {path}}}
    columns:
      id: bigint
      created_at: timestamptz
    steps:
{steps}
"""


def _check(path: Path, destination: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", str(path), "--destination", destination])
    return result.exit_code, result.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without_root_overrides(command: list[str]) -> list[str]:
    """Run as root would without its power to read and write anything (DAC override):
    file modes then apply to root too, as they do to every other user."""
    if os.geteuid() != 0:
        return command
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]


def _check_as_user(path: Path, destination: str) -> subprocess.CompletedProcess[str]:
    ladle = str(Path(sys.executable).parent / "ladle")
    command = _without_root_overrides([ladle, "check", str(path), "--destination", destination])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def test_a_good_pipeline_is_ok(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """Inputs, destination and expressions all fine: exit 0, a short report ending in ok."""
    (tmp_path / "tickets.csv").write_text(CSV)
    steps = '      - derive: {is_weekend: "dayofweek(created_at) IN (0, 6)"}'
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps=steps))
    code, out = _check(path, destination_url)
    assert code == 0, out
    assert (
        f"ok: {path}:4: resources.tickets.source.path: tickets.csv: CSV, utf-8, delimiter ',', "
        "with a header; 3 columns in its first 2 records\n"
    ) in out
    assert out.endswith(f"{path}: ok\n")


def test_a_missing_file_is_a_problem(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A file that is not there is reported with the source's line; exit 1."""
    path = write_pipeline(PIPELINE.format(path="nothere.csv", steps="      - drop: [x]"))
    code, out = _check(path, destination_url)
    assert code == 1
    assert (
        f"problem: {path}:4: resources.tickets.source: nothere.csv: file not found "
        f"(looked in {tmp_path})\n"
    ) in out


def test_an_unreadable_file_is_a_problem(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A file ladle may not read is reported as such, not found later by `ladle run`."""
    (tmp_path / "tickets.csv").write_text(CSV)
    (tmp_path / "tickets.csv").chmod(0)
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    result = _check_as_user(path, duckdb_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"problem: {path}:4: resources.tickets.source.path: tickets.csv: cannot read the file: "
        "Permission denied\n"
    ) in result.stdout


def test_html_saved_as_csv_is_a_problem(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A login page saved as tickets.csv is told from its first bytes."""
    (tmp_path / "tickets.csv").write_text("<!DOCTYPE html>\n<html><head><title>Log in</title>\n")
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    code, out = _check(path, destination_url)
    assert code == 1
    assert (
        f"problem: {path}:4: resources.tickets.source.path: tickets.csv: looks like an HTML "
        "page, not CSV (it starts with '<!DOCTYPE html>'); a download that was redirected to a "
        "login or error page saves one: fetch the file again\n"
    ) in out


def test_an_unreachable_postgres_host_is_a_problem(
    tmp_path: Path, write_pipeline: Callable[..., Path]
) -> None:
    """A PostgreSQL destination on a closed port is reported at once, with the server's words."""
    (tmp_path / "tickets.csv").write_text(CSV)
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    port = _closed_port()
    code, out = _check(path, f"postgresql://postgres@127.0.0.1:{port}/test")
    assert code == 1
    assert (
        f"problem: destination: postgresql://postgres@127.0.0.1:{port}/test does not answer: "
        f'connection failed: connection to server at "127.0.0.1", port {port} failed: '
        "Connection refused Is the server running on that host and accepting TCP/IP "
        "connections?\n"
    ) in out


def test_duckdb_in_an_unwritable_directory_is_a_problem(
    tmp_path: Path, write_pipeline: Callable[..., Path]
) -> None:
    """A DuckDB file that could not be created is reported, and nothing is created."""
    (tmp_path / "tickets.csv").write_text(CSV)
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = _check_as_user(path, f"duckdb:///{locked / 'db' / 'shop.duckdb'}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"problem: destination: cannot create {locked / 'db' / 'shop.duckdb'}: the directory "
        f"{locked} is not writable\n"
    ) in result.stdout
    assert list(locked.iterdir()) == []


def test_check_writes_nothing(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A DuckDB file that does not exist yet is not created by the check."""
    (tmp_path / "tickets.csv").write_text(CSV)
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    code, out = _check(path, duckdb_url)
    assert code == 0, out
    assert not (tmp_path / "test.duckdb").exists()


def test_a_derive_typo_gets_did_you_mean(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A misspelled column in a derive expression: its line, the closest column, the columns."""
    (tmp_path / "tickets.csv").write_text(CSV)
    steps = (
        "      - derive:\n"
        '          is_weekend: "dayofweek(crated_at) IN (0, 6)"\n'
        '          loud: "upper(is_weekend::text)"'
    )
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps=steps))
    code, out = _check(path, destination_url)
    assert code == 1
    assert (
        f"problem: {path}:10: resources.tickets.steps[0].derive.is_weekend: 'dayofweek(crated_at)"
        " IN (0, 6)': no column 'crated_at' at this step (did you mean 'created_at'?); the "
        "columns here: id, status, created_at\n"
    ) in out
    assert "loud" not in out  # checked against a null is_weekend: it binds


def test_a_validate_rule_typo_gets_did_you_mean(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """A misspelled column in a validate check is reported at the check's `expr:` line."""
    (tmp_path / "tickets.csv").write_text(CSV)
    steps = "      - validate:\n          - name: known\n            expr: \"stauts <> 'x'\""
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps=steps))
    code, out = _check(path, destination_url)
    assert code == 1
    assert (
        f"problem: {path}:11: resources.tickets.steps[0].validate[0].expr: \"stauts <> 'x'\": no "
        "column 'stauts' at this step (did you mean 'status'?); the columns here: id, status, "
        "created_at\n"
    ) in out


def test_every_problem_is_listed_at_once(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """Two broken resources and a typo: all three are reported in one go."""
    (tmp_path / "tickets.csv").write_text(CSV)
    text = PIPELINE.format(path="tickets.csv", steps='      - derive: {x: "nope + 1"}')
    text += "  other:\n    source: {type: file, path: missing.jsonl}\n"
    port = _closed_port()
    text += f"  api:\n    source: {{type: http, url: 'http://127.0.0.1:{port}/x'}}\n"
    path = write_pipeline(text)
    code, out = _check(path, duckdb_url)
    assert code == 1
    assert out.count("problem: ") == 3, out


def test_yaml_indentation_error_names_and_shows_the_line(
    write_pipeline: Callable[..., Path],
) -> None:
    """A key indented one space too far: the message names its line and shows it."""
    path = write_pipeline(
        "pipeline: x\nresources:\n  tickets:\n    source: {type: file, path: a.csv}\n"
        "     primary_key: [id]\n    write: merge\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}:5: invalid YAML: check the indentation of line 5: it has 5 spaces, line 4 "
        "has 4 spaces; the keys of one mapping (and the items of one list) start in the same "
        "column\n"
        "  4 |     source: {type: file, path: a.csv}\n"
        "  5 |      primary_key: [id]\n"
        "    |      ^"
    )


def test_yaml_key_without_colon_blames_its_own_line(write_pipeline: Callable[..., Path]) -> None:
    """PyYAML notices a missing colon a line late; the message names the line that lacks it."""
    path = write_pipeline("pipeline: x\nresources:\n  tickets\n    source: {type: file}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}:3: invalid YAML: line 3 has no ':' after its key (write `tickets:`), so "
        "line 4 cannot be nested under it\n"
        "  2 | resources:\n"
        "  3 |   tickets\n"
        "    |          ^"
    )


def test_datetime_alias_warns_that_timestamptz_is_usually_meant(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """`datetime` is a naive timestamp: check warns (and still passes); `timestamp` does not."""
    (tmp_path / "tickets.csv").write_text(CSV)
    text = PIPELINE.format(path="tickets.csv", steps="      - drop: [x]")
    path = write_pipeline(text.replace("created_at: timestamptz", "created_at: datetime"))
    code, out = _check(path, duckdb_url)
    assert code == 0, out
    assert (
        f"warning: {path}:7: resources.tickets.columns.created_at: type 'datetime' is a "
        "timestamp without time zone (naive); timestamptz is usually meant (a moment in time, "
        "stored in UTC). Write `timestamptz`, or `timestamp` if naive values are meant\n"
    ) in out
    path.write_text(text.replace("created_at: timestamptz", "created_at: timestamp"))
    assert load(path).warnings == []


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_checks_ok(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    postgres_url: str,
) -> None:
    """Each example, its data generated as its README says, passes `ladle check`."""
    shutil.copy(EXAMPLES / name / "pipeline.yaml", tmp_path / "pipeline.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LADLE_DESTINATION", postgres_url)
    data = tmp_path / "data"
    data.mkdir()
    generate = load_example(name, "generate")
    if name == "conversations":
        document, _ = generate.generate(20, 1)
        (data / "export.json").write_text(json.dumps(document), encoding="utf-8")
    elif name == "facilities":
        document, _ = generate.generate(20, 1)
        (data / "facilities.json").write_text(json.dumps(document), encoding="utf-8")
        (data / "wards.csv").write_text(generate.wards_csv(), encoding="utf-8")
    elif name == "profiles_documents":
        tables, _ = generate.generate(5, 1, frozenset())
        generate.write(generate.DEFAULT_URL, tables)
    if name != "servicedesk":
        result = CliRunner().invoke(main, ["check", "pipeline.yaml"])
        assert result.exit_code == 0, result.output
        return
    server = load_example("servicedesk", "server")
    records, manifest = generate.generate(20, 1, 1)
    generate.write(data, records, manifest)
    with server.ServiceDeskServer(data, token="t") as desk:  # noqa: S106 - a test token
        monkeypatch.setenv("SERVICEDESK_URL", str(desk.url).rstrip("/"))
        monkeypatch.setenv("SERVICEDESK_TOKEN", "t")
        result = CliRunner().invoke(main, ["check", "pipeline.yaml"])
    assert result.exit_code == 0, result.output


def test_a_csv_whose_first_row_is_data_gets_a_header_warning(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """With `header: true` (the default), a first row that looks like data is a warning."""
    (tmp_path / "tickets.csv").write_text("1,open,2024\n2,closed,2025\n3,pending,2026\n")
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps="      - drop: [x]"))
    code, out = _check(path, duckdb_url)
    assert code == 0, out
    assert (
        f"warning: {path}:4: resources.tickets.source.path: the first row looks like data, not "
        "column names; if the file has no header, set `header: false` (columns are then "
        "column_1, column_2, ...) (tickets.csv: CSV, utf-8, delimiter ',', with a header)\n"
    ) in out


def test_a_missing_lookup_file_is_a_problem(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[..., Path]
) -> None:
    """The reference file of a lookup step is an input too: its absence is reported."""
    (tmp_path / "tickets.csv").write_text(CSV)
    steps = "      - lookup: {from: {file: agents.csv}, on: [status], add: [agent]}"
    path = write_pipeline(PIPELINE.format(path="tickets.csv", steps=steps))
    code, out = _check(path, duckdb_url)
    assert code == 1
    assert (
        f"problem: {path}:9: resources.tickets.steps[0].lookup: resource 'tickets', step "
        f"'lookup': cannot read the reference: agents.csv: file not found (looked in {tmp_path})\n"
    ) in out
