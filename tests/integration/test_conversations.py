"""The conversations example end to end on each destination: a chat export becomes a
``conversations`` and a ``messages`` table, with exact counts from the generator's manifest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ladle
from ladle import Pipeline, RunOptions
from ladle.batch import Counts
from ladle.destinations import connect
from ladle.pipeline import RunSummary
from ladle.quarantine import QUARANTINE
from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "conversations"


example = load_example("conversations", "generate")
generate: Callable[[int, int], tuple[dict[str, Any], dict[str, int]]] = example.generate


def _setup(tmp_path: Path, count: int = 60) -> tuple[Path, dict[str, Any], dict[str, int]]:
    shutil.copy(EXAMPLE / "pipeline.yaml", tmp_path / "pipeline.yaml")
    document, manifest = generate(count, 11)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "export.json").write_text(json.dumps(document), encoding="utf-8")
    return tmp_path / "pipeline.yaml", document, manifest


def _run(path: Path, url: str, *, full_refresh: bool = False) -> dict[str, Counts]:
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=url, full_refresh=full_refresh))
    assert summary.ok, [r.error for r in summary.resources]
    for result in summary.resources:
        assert result.counts.balanced, result.resource
    return {r.resource: r.counts for r in summary.resources}


def _table(url: str, name: str) -> pl.DataFrame:
    dest = connect(url)
    try:
        return dest.read(name, {})
    finally:
        dest.close()


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_first_run_matches_manifest(tmp_path: Path, destination_url: str) -> None:
    """Conversations load before their messages; every count is the manifest's."""
    path, document, manifest = _setup(tmp_path)
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=destination_url))
    assert [r.resource for r in summary.resources] == ["conversations", "messages"]
    counts = {r.resource: r.counts for r in summary.resources}
    conversations, messages = counts["conversations"], counts["messages"]
    assert (conversations.fetched, conversations.inserted, conversations.quarantined) == (
        manifest["conversations"],
        manifest["conversations_loaded"],
        manifest["conversations_quarantined"],
    )
    assert (messages.fetched, messages.inserted, messages.quarantined) == (
        manifest["messages"],
        manifest["messages_loaded"],
        manifest["messages_quarantined"],
    )
    assert manifest["messages_loaded"] == 1085
    for c in (conversations, messages):
        assert c.balanced
        assert (c.updated, c.unchanged, c.deduplicated) == (0, 0, 0)
    assert summary.resources[1].notices == [
        "2 of the conversations records could not be read (they are quarantined under "
        "conversations), so the messages in them are not loaded",
        f"{_unknown_senders(document)} records of messages had a from not in the "
        "participants of their conversations record (sender_name set to null)",
    ]


def _unknown_senders(document: dict[str, Any]) -> int:
    """Messages read whose sender is not a participant, loaded or later quarantined."""
    return sum(
        1
        for c in document["conversations"]
        if isinstance(c, dict) and isinstance(c["messages"], list)
        for m in c["messages"]
        if isinstance(m, dict)
        and m.get("from") is not None
        and m["from"] not in {p["id"] for p in c["participants"]}
    )


def test_messages_carry_their_conversation_and_keep_their_place(
    tmp_path: Path, destination_url: str
) -> None:
    """Each row is the element at its position in its conversation, with the parent's values."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    by_id = {c["id"]: c for c in document["conversations"] if isinstance(c, dict) and "id" in c}
    rows = _table(destination_url, "messages").to_dicts()
    assert len(rows) == manifest["messages_loaded"]
    for row in rows:
        conversation = by_id[row["conversation_id"]]
        message = conversation["messages"][row["position"]]
        assert row["topic"] == conversation["topic"]
        assert (row["message_id"], row["sender_id"]) == (message["id"], message["from"])
        assert (row["content"], row["messagetype"]) == (message["content"], message["messagetype"])
        assert row["arrived_at"] == _instant(message["originalarrivaltime"])
    tables = _table(destination_url, "conversations")
    assert "messages" not in tables.columns
    assert tables.height == manifest["conversations_loaded"]


def test_messages_are_numbered_in_arrival_order(tmp_path: Path, destination_url: str) -> None:
    """Within a conversation, ``sequence`` follows the arrival time (ties by list order),
    while ``position`` keeps the export's own order, which is not the arrival order."""
    path, _, _ = _setup(tmp_path)
    _run(path, destination_url)
    rows = _table(destination_url, "messages").sort("conversation_id", "sequence")
    reordered = 0
    for (_,), group in rows.group_by(["conversation_id"]):
        ordered = group.sort("sequence")
        keys = list(zip(ordered["arrived_at"], ordered["position"], strict=True))
        assert keys == sorted(keys)
        reordered += ordered["position"].to_list() != sorted(ordered["position"])
    assert reordered > 40
    ties = rows.group_by("conversation_id", "arrived_at").len().filter(pl.col("len") > 1)
    assert ties.height > 0


def test_senders_get_their_names_from_the_participants(
    tmp_path: Path, destination_url: str
) -> None:
    """``sender_name`` is the participant's displayName; a sender who is not a participant
    has none, and the manifest counts them."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    names = {
        c["id"]: {p["id"]: p["displayName"] for p in c["participants"]}
        for c in document["conversations"]
        if isinstance(c, dict) and "id" in c
    }
    rows = _table(destination_url, "messages").to_dicts()
    for row in rows:
        assert row["sender_name"] == names[row["conversation_id"]].get(row["sender_id"])
    unknown = [r for r in rows if r["sender_name"] is None]
    assert len(unknown) == manifest["unknown_senders"]
    assert unknown


def test_quarantine_positions_point_into_the_lists(tmp_path: Path, destination_url: str) -> None:
    """Each quarantined message names its conversation and index; the rules are the manifest's."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    quarantine = _table(destination_url, QUARANTINE.name).filter(pl.col("resource") == "messages")
    rules: dict[str, int] = {}
    for row in quarantine.to_dicts():
        head, _, tail = row["position"].partition(".messages")
        assert head.startswith("data/export.json#conversations[")
        conversation = document["conversations"][int(head.split("[")[1].rstrip("]"))]
        [error] = json.loads(row["errors"])
        rules[error["rule"]] = rules.get(error["rule"], 0) + 1
        if error["rule"] == "parse" and tail:
            assert not isinstance(conversation["messages"][int(tail.strip("[]"))], dict)
        elif error["rule"] == "parse":
            assert not isinstance(conversation["messages"], list)
        elif error["rule"] == "required":
            assert "id" not in conversation
        else:
            assert (error["rule"], error["field"]) == ("type", "arrived_at")
    assert rules == {
        "parse": manifest["messages_not_objects"] + manifest["messages_not_lists"],
        "required": manifest["messages_without_conversation"],
        "type": manifest["messages_bad_times"],
    }


def test_second_run_skips_the_export_and_a_full_refresh_changes_nothing(
    tmp_path: Path, destination_url: str
) -> None:
    """Both resources remember the file; read again in full, every row is unchanged."""
    path, _, manifest = _setup(tmp_path)
    _run(path, destination_url)
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=destination_url))
    skipped = (
        "1 of 1 files were loaded before and have not changed; --full-refresh reads them again"
    )
    assert [(r.counts.fetched, r.notices) for r in summary.resources] == [
        (0, [skipped]),
        (0, [skipped]),
    ]
    again = _run(path, destination_url, full_refresh=True)
    assert (again["messages"].inserted, again["messages"].updated) == (0, 0)
    assert again["messages"].unchanged == manifest["messages_loaded"]
    assert again["conversations"].unchanged == manifest["conversations_loaded"]


def test_a_changed_export_gives_exact_counts(tmp_path: Path, destination_url: str) -> None:
    """An edited message and a new one give one update and one insert; the rest is unchanged."""
    path, document, manifest = _setup(tmp_path)
    _run(path, destination_url)
    valid = [
        c
        for c in document["conversations"]
        if isinstance(c, dict)
        and "id" in c
        and isinstance(c["messages"], list)
        and len(c["messages"]) > 2
        and all(
            isinstance(m, dict) and m["originalarrivaltime"] not in example.BAD_TIMES
            for m in c["messages"]
        )
    ]
    first, second = valid[0], valid[1]
    first["messages"][0]["content"] = "<p>edited</p>"
    newest = dict(second["messages"][0], id="1", originalarrivaltime="2030-01-01T00:00:00Z")
    second["messages"].append(newest)  # a new last position, and the last in arrival order
    (tmp_path / "data" / "export.json").write_text(json.dumps(document), encoding="utf-8")
    counts = _run(path, destination_url)["messages"]
    assert (counts.inserted, counts.updated) == (1, 1)
    assert counts.unchanged == manifest["messages_loaded"] - 1


_FAILURES = {"left": 0}


@ladle.step
def fail_once_in_conversations_test(frame: pl.DataFrame) -> pl.DataFrame:
    """When armed with N, raise at the Nth batch: a run that fails after committing chunks."""
    if _FAILURES["left"] > 0:
        _FAILURES["left"] -= 1
        if _FAILURES["left"] == 0:
            raise RuntimeError("simulated crash")
    return frame


def test_a_failed_run_resumes_after_the_last_committed_parent_batch(
    tmp_path: Path, destination_url: str
) -> None:
    """With ``commit_every``, a run that fails mid-way keeps its chunks; the next run starts
    at the parent batch after the last checkpoint: no message twice, none missed."""
    path, _, manifest = _setup(tmp_path)
    text = path.read_text().replace(
        "    write: merge\n    columns:\n      conversation_id",
        "    write: append\n    batch_size: 50\n    commit_every: 100\n    columns:\n"
        "      conversation_id",
    )
    text = text.replace("    primary_key: [id]\n", "    primary_key: [id]\n    batch_size: 8\n")
    text += "      - fail_once_in_conversations_test: {}\n"
    path.write_text(text)
    _FAILURES["left"] = 12
    first = Pipeline.from_yaml(path).run(RunOptions(destination=destination_url))
    failed = first.resources[1]
    assert (failed.resource, failed.status) == ("messages", "failed")
    committed = _table(destination_url, "messages").height
    assert 0 < committed < manifest["messages_loaded"]
    second: RunSummary = Pipeline.from_yaml(path).run(
        RunOptions(destination=destination_url, resources=("messages",))
    )
    [resumed] = second.resources
    assert resumed.status == "succeeded"
    assert resumed.notices[0].startswith("resuming after the last checkpoint of run ")
    rows = _table(destination_url, "messages")
    assert rows.height == manifest["messages_loaded"]
    assert rows.select("conversation_id", "position").n_unique() == rows.height
    assert committed + resumed.counts.inserted == manifest["messages_loaded"]


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_other_write_modes_balance(tmp_path: Path, destination_url: str, mode: str) -> None:
    """append and replace load the same messages and keep the invariant."""
    path, _, manifest = _setup(tmp_path)
    path.write_text(path.read_text().replace("write: merge", f"write: {mode}"))
    first = _run(path, destination_url)["messages"]
    second = _run(path, destination_url, full_refresh=True)["messages"]
    assert first.inserted == second.inserted == manifest["messages_loaded"]
    loaded = _table(destination_url, "messages").height
    assert loaded == manifest["messages_loaded"] * (2 if mode == "append" else 1)
