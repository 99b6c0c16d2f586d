"""write: replace refuses to shrink a table by more than its limit (default half) before the swap.

Two of 47 county files of a registry came back as ``[]`` and a replace silently deleted
438 facilities. Now such a replace fails, names the numbers, and leaves the table as it was,
unless the run (``--allow-shrink``, ``RunOptions.allow_shrink``) or the file
(``replace: {max_shrink: …}``) allows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ladle import Pipeline, RunOptions
from ladle.cli import main
from ladle.destinations import connect
from ladle.errors import ConfigError
from ladle.ledger import RUNS
from ladle.pipeline import ResourceResult

PIPELINE = """\
pipeline: registry
destination: {url}
resources:
  facilities:
    source: {{type: file, path: "counties/*.json"}}
    write: replace
{extra}"""

REFUSED = (
    "replace would shrink 'facilities' from 1,000 to 438 rows (\u221256 %, more than the "
    "50 % allowed); nothing was changed. Pass --allow-shrink or set replace: "
    "{max_shrink: 0.57}"
)


def _county(tmp_path: Path, name: str, first: int, count: int) -> None:
    folder = tmp_path / "counties"
    folder.mkdir(exist_ok=True)
    records = [{"id": i, "name": f"facility {i}"} for i in range(first, first + count)]
    (folder / f"{name}.json").write_text(json.dumps(records))


def _registry(
    tmp_path: Path, write_pipeline: Callable[[str], Path], url: str, extra: str = ""
) -> Path:
    """Two counties, 438 + 562 facilities, loaded once by a replace that succeeds."""
    _county(tmp_path, "adams", 0, 438)
    _county(tmp_path, "brown", 438, 562)
    path = write_pipeline(PIPELINE.format(url=url, extra=extra))
    first = _run(path)
    assert (first.status, first.counts.inserted) == ("succeeded", 1000)
    return path


def _run(path: Path, options: RunOptions | None = None) -> ResourceResult:
    return Pipeline.from_yaml(path).run(options).resources[0]


def _state(url: str) -> tuple[int, list[dict[str, Any]]]:
    """Rows in the table, and the ledger rows oldest first."""
    dest = connect(url)
    try:
        rows = dest.read("facilities", {}).height
        ledger = dest.read(RUNS.name, {}, order_by=["started_at"]).to_dicts()
    finally:
        dest.close()
    return rows, ledger


def test_a_replace_that_would_remove_more_than_half_is_refused(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A county file back as ``[]`` would delete 562 of 1,000 rows: the run fails with the
    numbers, the table keeps its 1,000 rows, and the ledger row says failed."""
    path = _registry(tmp_path, write_pipeline, destination_url)
    (tmp_path / "counties" / "brown.json").write_text("[]")
    result = _run(path)
    assert (result.status, result.error) == ("failed", REFUSED)
    assert "counties/brown.json holds no records" in result.notices
    rows, ledger = _state(destination_url)
    assert rows == 1000
    assert [r["status"] for r in ledger] == ["succeeded", "failed"]
    failed = ledger[1]
    assert failed["error"] == REFUSED
    # Nothing was loaded: the 438 records read are not in the table. With no count for
    # records that were read and rolled back, the ledger row keeps what was read.
    counts = (failed["fetched"], failed["inserted"], failed["quarantined"])
    assert counts == (438, 0, 0)
    assert ledger[0]["fetched"] == ledger[0]["inserted"] == 1000


def test_allow_shrink_lets_the_replace_through(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``RunOptions(allow_shrink=True)`` swaps the smaller table in; the ledger balances."""
    path = _registry(tmp_path, write_pipeline, destination_url)
    (tmp_path / "counties" / "brown.json").write_text("[]")
    result = _run(path, RunOptions(allow_shrink=True))
    assert (result.status, result.error) == ("succeeded", None)
    assert result.counts.balanced
    assert (result.counts.fetched, result.counts.inserted) == (438, 438)
    rows, ledger = _state(destination_url)
    assert rows == 438
    assert [r["status"] for r in ledger] == ["succeeded", "succeeded"]


def test_cli_allow_shrink(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``ladle run`` prints the refusal as one line and exits 1; ``--allow-shrink`` passes."""
    path = _registry(tmp_path, write_pipeline, destination_url)
    (tmp_path / "counties" / "brown.json").write_text("[]")
    runner = CliRunner()
    refused = runner.invoke(main, ["run", str(path)])
    assert refused.exit_code == 1
    assert _state(destination_url)[0] == 1000
    allowed = runner.invoke(main, ["run", str(path), "--allow-shrink"])
    assert allowed.exit_code == 0, allowed.output
    rows, ledger = _state(destination_url)
    assert rows == 438
    assert [r["status"] for r in ledger] == ["succeeded", "failed", "succeeded"]
    assert ledger[1]["error"] == REFUSED


def test_max_shrink_in_the_file_sets_the_limit(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``replace: {max_shrink: 0.6}`` lets 56 % go; ``0.1`` refuses a 20 % shrink."""
    path = _registry(tmp_path, write_pipeline, destination_url, "    replace: {max_shrink: 0.6}\n")
    (tmp_path / "counties" / "brown.json").write_text("[]")
    assert _run(path).status == "succeeded"
    assert _state(destination_url)[0] == 438

    path.write_text(path.read_text().replace("0.6", "0.1"))
    _county(tmp_path, "adams", 0, 350)
    result = _run(path)
    assert (result.status, result.error) == (
        "failed",
        "replace would shrink 'facilities' from 438 to 350 rows (\u221220 %, more than the "
        "10 % allowed); nothing was changed. Pass --allow-shrink or set replace: "
        "{max_shrink: 0.21}",
    )
    assert _state(destination_url)[0] == 438


def test_a_replace_of_nothing_into_a_table_with_rows_is_refused(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Every source file empty: the replace would leave 0 of 1,000 rows, and is refused."""
    path = _registry(tmp_path, write_pipeline, destination_url)
    for name in ("adams", "brown"):
        (tmp_path / "counties" / f"{name}.json").write_text("[]")
    result = _run(path)
    assert (result.status, result.error) == (
        "failed",
        "replace would shrink 'facilities' from 1,000 to 0 rows (\u2212100 %, more than the "
        "50 % allowed); nothing was changed. Pass --allow-shrink or set replace: "
        "{max_shrink: 1}",
    )
    assert result.counts.fetched == 0
    rows, ledger = _state(destination_url)
    assert rows == 1000
    assert (ledger[1]["status"], ledger[1]["fetched"], ledger[1]["inserted"]) == ("failed", 0, 0)


def test_a_new_or_empty_table_is_never_refused(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """A replace into a table that does not exist, or that is empty, loads whatever it has,
    even nothing; a limit of 0 still lets a table grow."""
    _county(tmp_path, "adams", 0, 0)
    path = write_pipeline(
        PIPELINE.format(url=destination_url, extra="    replace: {max_shrink: 0}\n")
    )
    empty = _run(path)
    assert (empty.status, empty.counts.fetched) == ("succeeded", 0)
    _county(tmp_path, "adams", 0, 5)
    grown = _run(path)
    assert (grown.status, grown.counts.inserted) == ("succeeded", 5)
    assert grown.counts.balanced
    _county(tmp_path, "adams", 0, 0)
    refused = _run(path, RunOptions())
    assert refused.status == "failed"
    assert _state(destination_url)[0] == 5


def test_replace_options_only_go_with_write_replace(
    tmp_path: Path, duckdb_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """``replace:`` on an append resource is a config error naming the line and the key."""
    text = PIPELINE.format(url=duckdb_url, extra="    replace: {max_shrink: 0.9}\n")
    path = write_pipeline(text.replace("write: replace", "write: append"))
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_yaml(path)
    assert str(caught.value) == (
        f"{path}:7: resources.facilities.replace: only goes with write: replace "
        "(this resource is write: append)"
    )


def test_replay_into_a_replace_table_appends(
    tmp_path: Path, destination_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """Replaying a replace resource's quarantine adds the records that now pass to the table;
    it does not swap in a table of only those (which the shrink limit would now refuse)."""
    from ladle.replay import replay

    _county(tmp_path, "adams", 0, 10)
    extra = "    columns: {id: {type: bigint, max: 8}}\n"
    path = write_pipeline(PIPELINE.format(url=destination_url, extra=extra))
    first = Pipeline.from_yaml(path).run()
    assert (first.resources[0].counts.inserted, first.resources[0].counts.quarantined) == (9, 1)
    path.write_text(path.read_text().replace("max: 8", "max: 9"))
    replayed = replay(Pipeline.from_yaml(path), first.run_id).resources[0]
    assert (replayed.status, replayed.error) == ("succeeded", None)
    assert replayed.counts.balanced
    assert (replayed.counts.fetched, replayed.counts.inserted) == (1, 1)
    assert _state(destination_url)[0] == 10
