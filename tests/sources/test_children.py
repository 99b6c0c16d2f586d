"""The children source: one record per list element, carried values, order, names, positions.

The parent is a real file source, built through the same ``build_source`` hook the
pipeline passes; the example end to end is in tests/integration/test_conversations.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ladle import ConfigError, Pipeline, RunOptions
from ladle.batch import SourceBatch
from ladle.destinations import connect
from ladle.errors import SourceError
from ladle.sources import Source, SourceContext
from ladle.sources.children import ChildrenOptions, ChildrenSource
from ladle.sources.files import FileOptions, FileSource

WritePipeline = Callable[[str], Path]

ANN, BOB = {"id": "u1", "displayName": "Ann"}, {"id": "u2", "displayName": "Bob"}


def _source(
    base: Path,
    conversations: list[Any],
    *,
    batch_size: int = 100,
    parent_batch_size: int = 100,
    name: str = "export.json",
    state: dict[str, Any] | None = None,
    resume: Any = None,
    **options: Any,
) -> ChildrenSource:
    """A children source over ``conversations`` written as ``{"conversations": [...]}``."""
    path = base / name
    if not path.exists():
        text = (
            "\n".join(json.dumps(c) for c in conversations)
            if name.endswith(".jsonl")
            else json.dumps({"conversations": conversations})
        )
        path.write_text(text, encoding="utf-8")
    parent = FileOptions(type="file", path=name)

    def build(resource: str, context: SourceContext) -> Source:
        assert resource == "conversations"
        return FileSource(parent, replace(context, resource=resource, batch_size=parent_batch_size))

    context = SourceContext(
        "messages", batch_size, base, state=state or {}, resume=resume, build_source=build
    )
    settings = {"path": "messages", "carry": {"conversation_id": "id"}, **options}
    return ChildrenSource(
        ChildrenOptions.model_validate({"type": "children", "of": "conversations", **settings}),
        context,
    )


def _rows(batches: list[SourceBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.frame.to_dicts()]


def _positions(batches: list[SourceBatch]) -> list[str]:
    return [p for batch in batches for p in batch.positions]


def test_each_element_becomes_a_record_with_its_parent_values_and_position(
    tmp_path: Path,
) -> None:
    """Elements are flattened; carried values, the index and a dotted position come along."""
    conversations = [
        {"id": "c1", "topic": "Hi", "messages": [{"m": 1, "meta": {"lang": "en"}}, {"m": 2}]},
        {"id": "c2", "topic": None, "messages": [{"m": 3, "tags": ["a", "b"]}]},
    ]
    source = _source(tmp_path, conversations, carry={"conversation_id": "id", "topic": "topic"})
    [batch] = list(source.batches())
    assert batch.frame.columns == [
        "conversation_id",
        "topic",
        "position",
        "m",
        "meta__lang",
        "tags",
    ]
    assert batch.frame.rows() == [
        ("c1", "Hi", 0, 1, "en", None),
        ("c1", "Hi", 1, 2, None, None),
        ("c2", None, 0, 3, None, '["a","b"]'),
    ]
    assert batch.positions == [
        "export.json#conversations[0].messages[0]",
        "export.json#conversations[0].messages[1]",
        "export.json#conversations[1].messages[0]",
    ]
    assert batch.unreadable == []


def test_carry_as_a_list_keeps_names_and_nested_fields_are_dotted(tmp_path: Path) -> None:
    """``carry: [owner.name]`` is the parent's ``owner__name``; ``path`` may be dotted too."""
    conversations = [{"owner": {"name": "Ann"}, "thread": {"messages": [{"m": 1}]}}]
    source = _source(tmp_path, conversations, path="thread.messages", carry=["owner.name"])
    [batch] = list(source.batches())
    assert batch.frame.to_dicts() == [{"owner__name": "Ann", "position": 0, "m": 1}]
    assert batch.positions == ["export.json#conversations[0].thread.messages[0]"]


def test_order_by_sorts_each_parents_children_by_instant_and_numbers_them(
    tmp_path: Path,
) -> None:
    """Offsets are compared as instants, ties keep list order, unreadable and null come last."""
    times = [
        "2024-01-01T10:05:00Z",
        "2024-01-01T10:00:00+01:00",  # 09:00Z: first
        "not a time",
        "2024-01-01T09:30:00Z",
        None,
        "2024-01-01T09:30:00Z",  # ties with index 3: after it
    ]
    conversations = [
        {"id": "c1", "messages": [{"at": t} for t in times]},
        {"id": "c2", "messages": [{"at": "2024-01-02T00:00:00Z"}, {"at": "2024-01-01T00:00:00Z"}]},
    ]
    source = _source(tmp_path, conversations, order_by="at", sequence="sequence")
    rows = _rows(list(source.batches()))
    assert [(r["conversation_id"], r["position"], r["sequence"]) for r in rows] == [
        ("c1", 1, 0),
        ("c1", 3, 1),
        ("c1", 5, 2),
        ("c1", 0, 3),
        ("c1", 2, 4),
        ("c1", 4, 5),
        ("c2", 1, 0),
        ("c2", 0, 1),
    ]
    assert list(rows[0]) == ["conversation_id", "position", "sequence", "at"]


def test_order_by_a_number_sorts_numerically_and_positions_follow_the_rows(
    tmp_path: Path,
) -> None:
    """A numeric field sorts as numbers; each row keeps its own position after the sort."""
    conversations = [{"id": "c1", "messages": [{"n": 10}, {"n": 9}, {"n": 100}]}]
    batches = list(_source(tmp_path, conversations, order_by="n").batches())
    assert [r["n"] for r in _rows(batches)] == [9, 10, 100]
    assert _positions(batches) == [
        "export.json#conversations[0].messages[1]",
        "export.json#conversations[0].messages[0]",
        "export.json#conversations[0].messages[2]",
    ]


def test_names_map_ids_to_display_names_from_the_parents_list(tmp_path: Path) -> None:
    """An id found in the parent's list gets its name; an unknown one stays null and is
    counted in the log and the run summary."""
    conversations = [
        {
            "id": "c1",
            "participants": [ANN, BOB, {"id": "u1", "displayName": "Ann again"}, {"id": 7}],
            "messages": [{"from": "u2"}, {"from": "u9"}, {"from": None}, {"from": "u1"}],
        },
        {
            "id": "c2",
            "participants": [{"id": 42, "displayName": "Num"}],
            "messages": [{"from": "42"}],
        },
        {"id": "c3", "messages": [{"from": "u1"}]},
    ]
    names = {"list": "participants", "value": "displayName", "match": "from", "as": "sender"}
    source = _source(tmp_path, conversations, names=names)
    with capture_logs() as logs:
        rows = _rows(list(source.batches()))
    assert [r["sender"] for r in rows] == ["Bob", None, None, "Ann", "Num", None]
    assert source.unmatched == {"sender": 2}
    assert source.context.notices == [
        "2 records of messages had a from not in the participants of their conversations "
        "record (sender set to null)"
    ]
    assert logs == [
        {
            "event": "names unmatched",
            "resource": "messages",
            "column": "sender",
            "count": 2,
            "log_level": "warning",
        }
    ]


def test_bad_elements_and_lists_are_unreadable_with_their_position(tmp_path: Path) -> None:
    """A non-object element, or a list field that is no list, is quarantined where it is."""
    conversations = [
        {"id": "c1", "messages": [{"m": 1}, "oops", None, [1]]},
        {"id": "c2", "messages": "not available"},
        {"id": "c3", "messages": {"error": "archived"}},
        {"id": "c4", "messages": []},
        {"id": "c5", "messages": None},
        {"id": "c6"},
    ]
    [batch] = list(_source(tmp_path, conversations).batches())
    assert batch.frame.height == 1
    found = [(u.position, u.raw, u.message) for u in batch.unreadable]
    where = "export.json#conversations"
    element = "an element of messages must be a JSON object, found"
    listed = "messages must be a JSON array, found"
    assert found == [
        (f"{where}[0].messages[1]", '"oops"', f"{element} a string"),
        (f"{where}[0].messages[2]", "null", f"{element} null"),
        (f"{where}[0].messages[3]", "[1]", f"{element} an array"),
        (f"{where}[1].messages", "not available", f"{listed} a string"),
        (f"{where}[2].messages", '{"error":"archived"}', f"{listed} an object"),
    ]


def test_a_list_field_that_is_an_object_in_every_record_is_reported(tmp_path: Path) -> None:
    """Flattened into ``messages__*`` columns, an object is still told apart from a list."""
    conversations = [{"id": "c1", "messages": {"error": "archived"}}, {"id": "c2"}]
    [batch] = list(_source(tmp_path, conversations).batches())
    assert [(u.position, u.raw) for u in batch.unreadable] == [
        ("export.json#conversations[0].messages", '{"error":"archived"}')
    ]


def test_children_are_batched_without_splitting_a_parents_sort(tmp_path: Path) -> None:
    """Batches hold at most batch_size children; only a parent batch's last carries its
    checkpoint, and the parent's bytes are counted once."""
    conversations = [
        {"id": f"c{i}", "messages": [{"n": n} for n in range(size, 0, -1)]}
        for i, size in enumerate([3, 0, 5, 2])
    ]
    source = _source(tmp_path, conversations, batch_size=2, parent_batch_size=2, order_by="n")
    batches = list(source.batches())
    assert [b.frame.height for b in batches] == [2, 1, 2, 2, 1, 2]
    assert [b.checkpoint is not None for b in batches] == [False, True, False, False, False, True]
    assert sum(b.bytes_read for b in batches) == (tmp_path / "export.json").stat().st_size
    rows = _rows(batches)
    assert [(r["conversation_id"], r["n"]) for r in rows][:5] == [
        ("c0", 1), ("c0", 2), ("c0", 3), ("c2", 1), ("c2", 2)
    ]  # fmt: skip


def test_a_resumed_source_yields_exactly_the_children_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The parent's checkpoint is the children's: resuming skips the parents already done."""
    conversations = [{"id": f"c{i}", "messages": [{"n": 1}, {"n": 2}]} for i in range(5)]
    everything = list(_source(tmp_path, conversations, parent_batch_size=2).batches())
    checkpoints = [b.checkpoint for b in everything if b.checkpoint is not None]
    resumed = list(_source(tmp_path, [], parent_batch_size=2, resume=checkpoints[0]).batches())
    assert _positions(resumed) == _positions(everything)[4:]


def test_parents_without_children_leave_no_empty_batch(tmp_path: Path) -> None:
    """Their bytes and bad elements join a batch that has rows; its checkpoint covers them."""
    conversations = [
        {"id": "c0", "messages": [{"n": 1}]},
        {"id": "c1", "messages": ["bad"]},
        {"id": "c2", "messages": []},
    ]
    batches = list(_source(tmp_path, conversations, parent_batch_size=1).batches())
    assert len(batches) == 1
    [batch] = batches
    assert batch.frame.height == 1
    assert [u.position for u in batch.unreadable] == ["export.json#conversations[1].messages[0]"]
    assert batch.bytes_read == (tmp_path / "export.json").stat().st_size
    assert batch.checkpoint is not None
    assert batch.checkpoint["batches"] == 3


def test_a_list_of_single_values_gives_parent_key_position_and_value(tmp_path: Path) -> None:
    """Scalars become records (carried key, position, value); a null value is a record too,
    and an object or array among them is quarantined, saying the first element decided."""
    conversations = [
        {"id": "c1", "messages": ["S1", "S4"]},
        {"id": "c2", "messages": [7, None, {"s": 1}, ["S9"], True]},
    ]
    [batch] = list(_source(tmp_path, conversations, value="service").batches())
    assert batch.frame.to_dicts() == [
        {"conversation_id": "c1", "position": 0, "service": "S1"},
        {"conversation_id": "c1", "position": 1, "service": "S4"},
        {"conversation_id": "c2", "position": 0, "service": "7"},
        {"conversation_id": "c2", "position": 1, "service": None},
        {"conversation_id": "c2", "position": 4, "service": "true"},
    ]
    where = "export.json#conversations[1].messages"
    single = "an element of messages must be a single value (a string, number or boolean)"
    assert [(u.position, u.raw, u.message) for u in batch.unreadable] == [
        (f"{where}[2]", '{"s":1}', f"{single} like the first one, found an object"),
        (f"{where}[3]", '["S9"]', f"{single} like the first one, found an array"),
    ]


def test_single_values_named_like_an_added_column_are_an_error(tmp_path: Path) -> None:
    """The value column may not take the name of a carried column: ``value:`` renames it."""
    source = _source(tmp_path, [{"id": "c1", "messages": [1]}], carry={"value": "id"})
    with pytest.raises(SourceError) as error:
        list(source.batches())
    assert str(error.value) == (
        "children:conversations.messages: the elements of messages are single values, which "
        "go in column 'value', and the children source adds a column of that name (carry, "
        "position, sequence or names.as); set `value:` to another name"
    )


def test_only_bad_elements_still_come_out(tmp_path: Path) -> None:
    """With no child to join, unreadable elements come in a batch of their own."""
    batches = list(_source(tmp_path, [{"id": "c0", "messages": [None, [2]]}]).batches())
    assert [(b.frame.height, len(b.unreadable)) for b in batches] == [(0, 2)]


def test_unreadable_parents_are_left_to_the_parent_and_noted(tmp_path: Path) -> None:
    """A parent that cannot be read yields no children; the run summary says so."""
    source = _source(tmp_path, [{"id": "c0", "messages": [{"n": 1}]}, 7, "x"])
    batches = list(source.batches())
    assert sum(b.fetched for b in batches) == 1
    assert source.context.notices == [
        "2 of the conversations records could not be read (they are quarantined under "
        "conversations), so the messages in them are not loaded"
    ]


def test_lists_read_by_polars_from_json_lines_decode_exactly(tmp_path: Path) -> None:
    """JSON Lines parents (lists encoded by Polars) give the same elements, floats included."""
    conversations = [
        {"id": "c0", "messages": [{"n": 1, "x": 0.1}, {"n": 2, "x": 1e-7}]},
        {"id": "c1", "messages": [{"n": 3, "x": 2.5}]},
    ]
    batches = list(_source(tmp_path, conversations, name="export.jsonl").batches())
    assert [(r["n"], r["x"]) for r in _rows(batches)] == [(1, 0.1), (2, 1e-7), (3, 2.5)]
    assert _positions(batches)[2] == "export.jsonl:2.messages[0]"


def test_a_file_read_before_is_skipped_and_remembered_under_the_child(tmp_path: Path) -> None:
    """The parent file source keeps its state for this resource: files, as for any file."""
    conversations = [{"id": "c0", "messages": [{"n": 1}]}]
    first = _source(tmp_path, conversations)
    assert _rows(list(first.batches()))
    state = first.final_state()
    assert list(state) == ["files"]
    again = _source(tmp_path, conversations, state=state)
    assert list(again.batches()) == []
    assert again.context.notices == [
        "1 of 1 files were loaded before and have not changed; --full-refresh reads them again"
    ]


def test_an_element_field_named_like_an_added_column_is_an_error(tmp_path: Path) -> None:
    """Carried and added columns never silently replace an element's own field."""
    source = _source(tmp_path, [{"id": "c0", "messages": [{"Position": 1}]}])
    with pytest.raises(SourceError) as caught:
        list(source.batches())
    assert str(caught.value) == (
        "children:conversations.messages: the elements of messages have a field 'Position', "
        "and the children source adds a column of that name (carry, position, sequence or "
        "names.as); give the added column another name"
    )


def test_without_a_pipeline_there_is_no_parent_to_read(tmp_path: Path) -> None:
    """Built outside ``ladle run`` (no build_source), the source says why it cannot work."""
    options = ChildrenOptions.model_validate(
        {"type": "children", "of": "conversations", "path": "messages", "carry": ["id"]}
    )
    with pytest.raises(SourceError) as caught:
        ChildrenSource(options, SourceContext("messages", 10, tmp_path))
    assert str(caught.value) == (
        "children:conversations: a children source reads the records of resource "
        "'conversations', so it runs only as part of its pipeline (ladle run)"
    )


# ---------------------------------------------------------------- in a pipeline file

HEAD = """\
pipeline: chat
resources:
"""
PARENT = """\
  conversations:
    source: {type: file, path: export.json}
    primary_key: [id]
"""


def _child(name: str, of: str, extra: str = "") -> str:
    return (
        f"  {name}:\n    source: {{type: children, of: {of}, path: messages, "
        f"carry: {{conversation_id: id}}{extra}}}\n"
    )


def _config_error(write_pipeline: WritePipeline, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_yaml(write_pipeline(HEAD + text))
    return str(caught.value)


@pytest.mark.parametrize(
    ("resources", "error"),
    [
        (
            _child("messages", "conversation") + PARENT,
            "4: resources.messages.source.of: no resource named 'conversation' (did you mean "
            "'conversations'?); of: names the resource whose records hold the list (the file "
            "has conversations)",
        ),
        (
            _child("messages", "messages") + PARENT,
            "4: resources.messages.source.of: a resource cannot read its own records; of: names "
            "the resource whose records hold the list (the file has conversations)",
        ),
        (
            PARENT + _child("a", "b") + _child("b", "a"),
            "7: resources.a.source.of: children sources form a cycle: a -> b -> a; one of them "
            "must read a source of its own",
        ),
        (
            PARENT + _child("messages", "conversations", ", position: conversation_id"),
            "7: resources.messages.source: 'conversation_id' is named for more than one added "
            "column (carry, position, sequence, names.as); give each its own name",
        ),
        (
            PARENT
            + _child(
                "messages",
                "conversations",
                ", names: {list: p, value: v, match: m, as: s, key_: k}",
            ),
            "7: resources.messages.source.names[0]: unknown key 'key_' (did you mean 'key'?)",
        ),
    ],
)
def test_bad_options_name_file_line_and_key(
    write_pipeline: WritePipeline, tmp_path: Path, resources: str, error: str
) -> None:
    """Each mistake in a children source is a ConfigError naming file:line:key."""
    assert _config_error(write_pipeline, resources) == f"{tmp_path / 'pipeline.yaml'}:{error}"


def test_children_load_after_their_parent_and_grandchildren_work(
    write_pipeline: WritePipeline, tmp_path: Path, duckdb_url: str
) -> None:
    """A children resource listed first still loads after its parent; children of children
    read their grandparent's input through their parent."""
    conversations = [
        {"id": "c1", "messages": [{"id": 1, "files": [{"f": "a"}, {"f": "b"}]}, {"id": 2}]}
    ]
    (tmp_path / "export.json").write_text(json.dumps({"conversations": conversations}))
    files = (
        "  files:\n    source: {type: children, of: messages, path: files, "
        "carry: {message_id: id, conversation_id: conversation_id}}\n"
        "    primary_key: [conversation_id, message_id, position]\n    write: merge\n"
    )
    messages = _child("messages", "conversations") + (
        "    primary_key: [conversation_id, position]\n    write: merge\n"
    )
    pipeline = Pipeline.from_yaml(write_pipeline(HEAD + files + messages + PARENT))
    summary = pipeline.run(RunOptions(destination=duckdb_url))
    assert [(r.resource, r.status, r.counts.inserted) for r in summary.resources] == [
        ("conversations", "succeeded", 1),
        ("messages", "succeeded", 2),
        ("files", "succeeded", 2),
    ]
    dest = connect(duckdb_url)
    loaded = dest.read("files", {}).sort("position")
    dest.close()
    assert loaded.select("conversation_id", "message_id", "position", "f").rows() == [
        ("c1", 1, 0, "a"),
        ("c1", 1, 1, "b"),
    ]


def test_a_cycle_through_a_children_source_and_an_fk_check_is_refused(
    write_pipeline: WritePipeline, tmp_path: Path
) -> None:
    """A parent whose fk step checks its own children's table cannot load first, nor can they."""
    parent = PARENT + "    steps:\n      - fk: {last_message: messages.id}\n"
    error = _config_error(write_pipeline, parent + _child("messages", "conversations"))
    assert error == (
        f"{tmp_path / 'pipeline.yaml'}:7: resources.conversations.steps[0].fk: fk checks form a "
        "cycle: conversations -> messages -> conversations (each checks keys in the next one's "
        "table or reads its records (children), so none of them can load first); remove one of "
        "these checks"
    )
