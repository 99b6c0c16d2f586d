"""fk: options in both forms, their errors, the load order they imply, and a dry run.

Lookups against real destinations are in tests/integration/test_foreign_keys.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ladle import ConfigError, Pipeline
from ladle.batch import ROW
from ladle.steps import StepContext
from ladle.steps.foreign_keys import ForeignKeys, Reference, load_order, references
from tests.steps.conftest import Batch

WritePipeline = Callable[[str], Path]

HEAD = """\
pipeline: school
resources:
"""


def _resource(name: str, steps: str = "") -> str:
    text = f"  {name}:\n    source: {{type: file, path: {name}.jsonl}}\n"
    return text + (f"    steps:\n      - fk: {steps}\n" if steps else "")


def _pipeline(write_pipeline: WritePipeline, *resources: str) -> Pipeline:
    return Pipeline.from_yaml(write_pipeline(HEAD + "".join(resources)))


def _checks(write_pipeline: WritePipeline, options: str) -> list[Reference]:
    pipeline = _pipeline(write_pipeline, _resource("sessions", options))
    return references(pipeline.config.resources["sessions"].steps[0].options)


def test_mapping_form(write_pipeline: WritePipeline) -> None:
    """`column: table.column` names the referenced column; `column: table` means the same name."""
    checks = _checks(write_pipeline, "{tutor_id: tutors.id, student_id: students}")
    assert checks == [
        Reference(columns=["tutor_id"], table="tutors", references=["id"]),
        Reference(columns=["student_id"], table="students", references=["student_id"]),
    ]


def test_list_form(write_pipeline: WritePipeline) -> None:
    """A list entry names columns and the table; references default to the same columns."""
    options = "[{columns: [user, day], table: shifts, references: [user_id, date]}, " + (
        "{columns: room, table: rooms}]"
    )
    checks = _checks(write_pipeline, options)
    assert [(c.columns, c.table, c.referenced) for c in checks] == [
        (["user", "day"], "shifts", ["user_id", "date"]),
        (["room"], "rooms", ["room"]),
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            "5",
            "resources.sessions.steps[0].fk: fk takes a mapping {column: table.column} or a "
            "list of {columns: [...], table: name, references: [...]}",
        ),
        (
            "{}",
            "resources.sessions.steps[0].fk: fk needs at least one key to check, e.g. "
            "{tutor_id: tutors.tutor_id}",
        ),
        (
            "[]",
            "resources.sessions.steps[0].fk: fk needs at least one key to check, e.g. "
            "{tutor_id: tutors.tutor_id}",
        ),
        (
            "{tutor_id: a.b.c}",
            "resources.sessions.steps[0].fk.tutor_id: write `table` or `table.column` "
            "(e.g. tutors.tutor_id), not 'a.b.c'",
        ),
        (
            "{tutor_id: .id}",
            "resources.sessions.steps[0].fk.tutor_id: write `table` or `table.column` "
            "(e.g. tutors.tutor_id), not '.id'",
        ),
        (
            "{tutor_id: 5}",
            "resources.sessions.steps[0].fk.tutor_id: Input should be a valid string",
        ),
        (
            "[{columns: [a, b], table: t, references: [x]}]",
            "resources.sessions.steps[0].fk[0]: references names 1 column(s) but columns names "
            "2; give one referenced column per column",
        ),
        (
            "[{columns: [a, a], table: t}]",
            "resources.sessions.steps[0].fk[0]: columns names 'a' more than once",
        ),
        ("[{columns: a}]", "resources.sessions.steps[0].fk[0]: missing required key 'table'"),
        (
            "[{columns: a, table: t, refs: [b]}]",
            "resources.sessions.steps[0].fk[0]: unknown key 'refs'",
        ),
        (
            "[{columns: [], table: t}]",
            "resources.sessions.steps[0].fk[0].columns: List should have at least 1 item after "
            "validation, not 0",
        ),
    ],
)
def test_bad_options_name_file_line_and_key(
    write_pipeline: WritePipeline, tmp_path: Path, options: str, error: str
) -> None:
    """Each malformed fk option is a ConfigError naming file:line:key and what to write."""
    with pytest.raises(ConfigError) as caught:
        _pipeline(write_pipeline, _resource("tutors"), _resource("sessions", options))
    assert str(caught.value) == f"{tmp_path / 'pipeline.yaml'}:8: {error}"


def _order(pipeline: Pipeline, *names: str) -> list[str]:
    selected = [pipeline.config.resources[n] for n in names or pipeline.config.resources]
    return [r.name for r in load_order(selected)]


def test_load_order_puts_parents_first_and_keeps_file_order_otherwise(
    write_pipeline: WritePipeline,
) -> None:
    """A resource follows the resources whose tables it references; the rest keep their place."""
    pipeline = _pipeline(
        write_pipeline,
        _resource("feedback", "{session_id: sessions, tutor_id: tutors}"),
        _resource("rooms"),
        _resource("sessions", "{tutor_id: tutors.tutor_id, room: Rooms.id}"),
        _resource("notes", "{note_id: notes.id}"),
        _resource("tutors"),
        _resource("audit", "{x: elsewhere}"),
    )
    assert _order(pipeline) == ["rooms", "notes", "tutors", "sessions", "feedback", "audit"]
    assert _order(pipeline, "feedback", "tutors") == ["tutors", "feedback"]
    assert _order(pipeline, "feedback") == ["feedback"]


def test_a_cycle_is_a_config_error_naming_the_resources(
    write_pipeline: WritePipeline, tmp_path: Path
) -> None:
    """Resources whose fk steps reference each other's tables cannot be ordered."""
    with pytest.raises(ConfigError) as caught:
        _pipeline(
            write_pipeline,
            _resource("rooms"),
            _resource("sessions", "{tutor_id: tutors, room_id: rooms}"),
            _resource("tutors", "{tutor_id: students}"),
            _resource("students", "{first_session: sessions.session_id}"),
        )
    assert str(caught.value) == (
        f"{tmp_path / 'pipeline.yaml'}:8: resources.sessions.steps[0].fk: fk checks form a "
        "cycle: sessions -> tutors -> students -> sessions (each checks keys in the next one's "
        "table, so none of them can load first); remove one of these checks"
    )


def test_without_a_destination_nothing_is_checked_and_a_warning_says_so(batch: Batch) -> None:
    """A dry run has no destination: every row passes, and one warning is logged at build."""
    options = [Reference(columns=["tutor_id"], table="Tutors")]
    with capture_logs() as logs:
        step = ForeignKeys(options, StepContext(resource="sessions"))
        result = step(batch(tutor_id=[1, 2]))
        step(batch(tutor_id=[3]))
    assert result.frame.get_column(ROW).to_list() == [0, 1]
    assert result.rejects.height == 0
    assert logs == [
        {
            "event": "fk checks skipped: no destination to look keys up in (dry run)",
            "resource": "sessions",
            "tables": ["tutors"],
            "log_level": "warning",
        }
    ]
