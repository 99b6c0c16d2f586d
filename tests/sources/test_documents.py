"""The documents source: typed documents from SQL queries, their coverage, and its connections."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from click.testing import CliRunner

from ladle import Pipeline, RunOptions
from ladle.batch import Unreadable
from ladle.cli import main
from ladle.config import load
from ladle.errors import ConfigError, SourceError
from ladle.sources import SharedResources, SourceContext
from ladle.sources.coverage import CoverageReport
from ladle.sources.documents import DocumentsOptions, DocumentsSource
from ladle.sources.sql import SqlOptions, SqlSource

PEOPLE = """
CREATE TABLE users (user_id INTEGER, email TEXT);
INSERT INTO users VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x'), (4, 'd@x');
CREATE TABLE profile (user_id INTEGER, name TEXT, age INTEGER, joined_on TEXT);
INSERT INTO profile VALUES (1, 'Ann', 31, '2024-03-01'), (2, 'Bo', NULL, '2023-12-31'),
                           (3, 'Cy', 45, '2022-01-15'), (9, 'Old', 70, '2020-01-01');
CREATE TABLE skills (user_id INTEGER, skill TEXT, level INTEGER);
INSERT INTO skills VALUES (1, 'SQL', 3), (3, 'Go', 1), (1, 'Excel', 2), (3, 'Art', 2);
CREATE TABLE empty_table (user_id INTEGER, note TEXT);
"""


@pytest.fixture
def people(tmp_path: Path) -> str:
    """A SQLite database of four users, their profiles (one for a user who is gone) and skills."""
    path = tmp_path / "people.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(PEOPLE)
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def shared() -> Iterator[SharedResources]:
    """The run-scoped resources, closed (engines disposed) at the end of the test."""
    resources = SharedResources()
    yield resources
    resources.close()


PROFILE = {
    "query": "SELECT user_id, name, age, joined_on FROM profile",
    "template": "{{ name }} ({{ age }}), since {{ joined_on }}",
}
SKILLS = {
    "query": "SELECT user_id, skill, level FROM skills",
    "many": True,
    "order_by": "skill",
    "template": "{% for r in rows %}{{ r.skill }}={{ r.level }}{% if not loop.last %}, "
    "{% endif %}{% endfor %}",
}


def _source(
    url: str, shared: SharedResources, doc_types: dict[str, Any], **options: Any
) -> DocumentsSource:
    batch_size = options.pop("batch_size", 100)
    spec = {
        "type": "documents",
        "url": url,
        "entities": "SELECT user_id FROM users",
        "key": "user_id",
        "doc_types": doc_types,
        **options,
    }
    context = SourceContext("docs", batch_size, Path("."), shared=shared)
    return DocumentsSource(DocumentsOptions.model_validate(spec), context)


def _read(source: DocumentsSource) -> tuple[pl.DataFrame, list[Unreadable], list[str]]:
    """Every document (sorted), every record set apart, and the positions of the documents."""
    frames, rejects = [], []
    positions: list[str] = []
    for batch in source.batches():
        frames.append(batch.frame)
        rejects += batch.unreadable
        positions += batch.positions
    frame = pl.concat(frames) if frames else pl.DataFrame()
    return frame.sort("doc_type", "entity_key"), rejects, sorted(positions)


def _report(source: DocumentsSource) -> CoverageReport:
    (report,) = source.context.reports
    assert isinstance(report, CoverageReport)
    return report


def test_one_document_per_entity_with_content_and_text(
    people: str, shared: SharedResources
) -> None:
    """Each row makes a document: content is the row as JSON, text the rendered template."""
    source = _source(people, shared, {"profile": PROFILE})
    frame, rejects, positions = _read(source)
    assert frame.columns == ["doc_type", "entity_key", "content", "text"]
    assert frame.rows()[:2] == [
        (
            "profile",
            "1",
            '{"user_id":1,"name":"Ann","age":31,"joined_on":"2024-03-01"}',
            "Ann (31), since 2024-03-01",
        ),
        (
            "profile",
            "2",
            '{"user_id":2,"name":"Bo","age":null,"joined_on":"2023-12-31"}',
            "Bo (None), since 2023-12-31",
        ),
    ]
    assert rejects == []
    assert positions == ["profile#1", "profile#2", "profile#3", "profile#9"]


def test_many_rows_make_one_document_in_order(people: str, shared: SharedResources) -> None:
    """With `many`, an entity's rows make one document, ordered by `order_by`; it sees `rows`."""
    frame, _, _ = _read(_source(people, shared, {"skills": SKILLS}))
    assert frame.select("entity_key", "text").rows() == [
        ("1", "Excel=2, SQL=3"),
        ("3", "Art=2, Go=1"),
    ]
    assert json.loads(frame.item(0, "content")) == [
        {"user_id": 1, "skill": "Excel", "level": 2},
        {"user_id": 1, "skill": "SQL", "level": 3},
    ]


def test_coverage_says_who_lacks_which_doc_type(people: str, shared: SharedResources) -> None:
    """The report lists, per doc type, the entities without a document and keys not entities."""
    source = _source(people, shared, {"profile": PROFILE, "skills": SKILLS})
    _read(source)
    report = _report(source)
    assert report.entities == 4
    assert (report["profile"].documents, report["profile"].with_document) == (4, 3)
    assert report["profile"].without == ["4"]
    assert report["profile"].outside == ["9"]
    assert (report["skills"].rows, report["skills"].documents) == (4, 2)
    assert report["skills"].without == ["2", "4"]
    assert report.problems == []
    assert report.rows(limit=1) == [
        ("profile", "4", "4", "3", "1", "4"),
        ("skills", "4", "2", "2", "2", "2, … (+1 more)"),
    ]
    assert source.context.notices == [
        "doc type 'profile': 1 documents for keys the entities query does not return: 9"
    ]


def test_a_doc_type_whose_query_returns_nothing_is_missing(
    people: str, shared: SharedResources
) -> None:
    """No rows: no document, no placeholder, and the report names the doc type as missing."""
    notes = {"query": "SELECT user_id, note FROM empty_table", "template": "{{ note }}"}
    source = _source(people, shared, {"profile": PROFILE, "notes": notes})
    frame, _, _ = _read(source)
    assert frame.filter(pl.col("doc_type") == "notes").height == 0
    report = _report(source)
    assert report["notes"].missing
    assert report["notes"].without == ["1", "2", "3", "4"]
    assert report.problems == ["doc type 'notes' is missing: its query returned no rows"]
    assert report.rows()[1][-1] == "MISSING: its query returned no rows"


def test_two_rows_for_a_one_row_doc_type_are_set_apart(
    people: str, shared: SharedResources
) -> None:
    """An entity with two rows where one is expected gets no document: it is quarantined."""
    skills = {"query": "SELECT user_id, skill FROM skills", "template": "{{ skill }}"}
    source = _source(people, shared, {"skill": skills})
    frame, rejects, _ = _read(source)
    assert frame.height == 0
    assert [(r.position, r.rule, r.message) for r in rejects] == [
        (
            "skill#1",
            "documents",
            "2 rows for entity 1, but doc type 'skill' takes one row per entity; "
            "set `many: true` to make one document of all of them",
        ),
        (
            "skill#3",
            "documents",
            "2 rows for entity 3, but doc type 'skill' takes one row per entity; "
            "set `many: true` to make one document of all of them",
        ),
    ]
    assert sorted(json.dumps(row) for row in json.loads(rejects[0].raw)) == [
        '{"user_id": 1, "skill": "Excel"}',
        '{"user_id": 1, "skill": "SQL"}',
    ]
    assert _report(source)["skill"].problem == (
        "doc type 'skill' is missing: its 4 rows made no document (see the quarantine)"
    )


def test_a_row_without_a_key_is_set_apart(people: str, shared: SharedResources) -> None:
    """A row whose key is null belongs to no entity: it is quarantined at its row."""
    query = "SELECT user_id, name FROM profile UNION ALL SELECT NULL, 'nobody'"
    source = _source(people, shared, {"p": {"query": query, "template": "{{ name }}"}})
    frame, rejects, _ = _read(source)
    assert frame.height == 4
    assert [(r.position, r.raw, r.message) for r in rejects] == [
        (
            "sql:docs.p#row=1",
            '{"user_id":null,"name":"nobody"}',
            "user_id is null: the row belongs to no entity",
        )
    ]


def test_an_undefined_name_fails_naming_the_doc_type_and_the_name(
    people: str, shared: SharedResources
) -> None:
    """A template that uses a name its query does not return is an error, not an empty text."""
    profile = {**PROFILE, "template": "{{ nmae }}"}
    with pytest.raises(SourceError) as caught:
        _read(_source(people, shared, {"profile": profile}))
    assert str(caught.value) == (
        "profile#1: doc type 'profile': template error: 'nmae' is undefined "
        "(the template sees: age, doc_type, entity_key, joined_on, name, user_id)"
    )


def test_a_template_that_fails_on_a_value_sets_that_document_apart(
    people: str, shared: SharedResources
) -> None:
    """A template error caused by one row's data (a null in arithmetic) quarantines that one."""
    profile = {**PROFILE, "template": "{{ name }} turns {{ age + 1 }}"}
    frame, rejects, _ = _read(_source(people, shared, {"profile": profile}))
    assert frame.get_column("text").to_list() == ["Ann turns 32", "Cy turns 46", "Old turns 71"]
    assert [(r.position, r.rule) for r in rejects] == [("profile#2", "template")]
    assert rejects[0].message == (
        "template error: TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'"
    )


def test_the_template_is_sandboxed(people: str, shared: SharedResources) -> None:
    """A template cannot reach Python internals through its values."""
    profile = {**PROFILE, "template": "{{ name.__class__.__mro__ }}"}
    with pytest.raises(SourceError, match="template error: "):
        _read(_source(people, shared, {"profile": profile}))


def test_a_query_without_the_key_fails(people: str, shared: SharedResources) -> None:
    """Rows that cannot be joined to entities are an error naming the doc type's query."""
    bad = {"query": "SELECT name FROM profile", "template": "{{ name }}"}
    with pytest.raises(SourceError, match=r"^sql:docs\.bad: no such column: user_id"):
        _read(_source(people, shared, {"bad": bad}))


def _pipeline(url: str, doc_types: dict[str, Any], destination: str) -> dict[str, Any]:
    return {
        "pipeline": "docs",
        "destination": destination,
        "resources": {
            "documents": {
                "source": {
                    "type": "documents",
                    "url": url,
                    "entities": "SELECT user_id FROM users",
                    "key": "user_id",
                    "doc_types": doc_types,
                },
                "primary_key": ["doc_type", "entity_key"],
                "write": "merge",
                "columns": {"content": "json"},
            }
        },
    }


def test_a_template_syntax_error_names_file_line_and_key(
    write_pipeline: Callable[[str], Path],
) -> None:
    """A template that does not compile is refused when the file is loaded."""
    path = write_pipeline(
        "pipeline: docs\n"
        "resources:\n"
        "  documents:\n"
        "    source:\n"
        "      type: documents\n"
        "      url: sqlite:///people.db\n"
        "      entities: SELECT user_id FROM users\n"
        "      key: user_id\n"
        "      doc_types:\n"
        "        profile:\n"
        "          query: SELECT user_id, name FROM profile\n"
        '          template: "{{ name }"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}:12: resources.documents.source.doc_types.profile.template: "
        "template syntax error at line 1 of the template: unexpected '}'"
    )


def test_order_by_goes_with_many(write_pipeline: Callable[[str], Path]) -> None:
    """`order_by` on a one-row doc type is refused: there is nothing to order."""
    path = write_pipeline(
        "pipeline: docs\n"
        "resources:\n"
        "  documents:\n"
        "    source:\n"
        "      type: documents\n"
        "      url: sqlite:///people.db\n"
        "      entities: SELECT user_id FROM users\n"
        "      key: user_id\n"
        "      doc_types:\n"
        "        profile:\n"
        "          query: SELECT user_id, name FROM profile\n"
        "          template: '{{ name }}'\n"
        "          order_by: name\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}:10: resources.documents.source.doc_types.profile: `order_by:` orders the rows "
        "of a `many: true` document; a doc type without `many` has one row per entity"
    )


def test_strict_fails_the_resource_when_a_doc_type_is_missing(people: str, duckdb_url: str) -> None:
    """`--strict` fails and rolls back the load when a doc type is missing; without it the
    found documents load and the report says what is missing."""
    notes = {"query": "SELECT user_id, note FROM empty_table", "template": "{{ note }}"}
    spec = _pipeline(people, {"profile": PROFILE, "notes": notes}, duckdb_url)
    pipeline = Pipeline.from_dict(spec)
    strict = pipeline.run(RunOptions(strict=True)).resources[0]
    assert strict.status == "failed"
    assert strict.error == (
        "--strict: doc type 'notes' is missing: its query returned no rows; "
        "nothing of this resource was loaded"
    )
    assert strict.reports[0].problems == ["doc type 'notes' is missing: its query returned no rows"]
    lenient = pipeline.run(RunOptions()).resources[0]
    assert lenient.status == "succeeded"
    assert (lenient.counts.fetched, lenient.counts.inserted) == (4, 4)


def test_cli_prints_the_coverage_and_fails_with_strict(
    people: str, duckdb_url: str, write_pipeline: Callable[[str], Path]
) -> None:
    """`ladle run --strict` shows the coverage table, the reason, and exits 1."""
    notes = {"query": "SELECT user_id, note FROM empty_table", "template": "{{ note }}"}
    path = write_pipeline(
        json.dumps(_pipeline(people, {"profile": PROFILE, "notes": notes}, duckdb_url))
    )
    result = CliRunner().invoke(main, ["run", str(path), "--strict"])
    assert result.exit_code == 1
    assert "documents: coverage of 4 entities by doc type" in result.output
    assert "MISSING: its query returned no rows" in result.output
    assert (
        "documents: --strict: doc type 'notes' is missing: its query returned no rows; "
        "nothing of this resource was loaded\n"
    ) in result.output


# ---------------------------------------------------------------- PostgreSQL: one pool, no leaks


@pytest.fixture
def pg_people(postgres_server: str) -> Iterator[tuple[str, str]]:
    """The people tables in a PostgreSQL schema: (URL on that search_path, its application_name)."""
    schema = f"ladle_docs_{uuid.uuid4().hex[:10]}"
    app = f"ladle_docs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        for statement in PEOPLE.split(";"):
            if statement.strip():
                conn.execute(statement.replace(" TEXT)", " text)"))
    separator = "&" if "?" in postgres_server else "?"
    query = f"application_name={app}&options=-csearch_path%3D{schema}"
    yield f"{postgres_server}{separator}{query}", app
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _engine_pool(url: str, shared: SharedResources) -> Any:
    """The pool of the run's engine for ``url`` (the one every query of the run shares)."""
    probe = SqlSource(
        SqlOptions(type="sql", url=url, query="SELECT 1"),
        SourceContext("probe", 1, Path("."), shared=shared),
    )
    return probe.engine().pool


def _sleepers(count: int, seconds: float) -> dict[str, Any]:
    return {
        f"t{i}": {
            "query": f"SELECT user_id, name FROM profile, (SELECT pg_sleep({seconds})) AS s",
            "template": "{{ name }}",
        }
        for i in range(count)
    }


def test_queries_run_at_once_on_one_pool(
    pg_people: tuple[str, str], shared: SharedResources
) -> None:
    """Doc types' queries run concurrently, each on its own connection of the one shared pool."""
    url, _ = pg_people
    source = _source(url, shared, _sleepers(4, 0.4), workers=5)
    started = time.monotonic()
    frame, _, _ = _read(source)
    elapsed = time.monotonic() - started
    assert frame.height == 16
    assert elapsed < 1.2  # one after the other would take 1.6 s at least
    pool = _engine_pool(url, shared)
    assert pool.checkedout() == 0
    assert pool.checkedin() >= 4


def test_no_connection_is_kept(pg_people: tuple[str, str], shared: SharedResources) -> None:
    """Connections go back to the pool when the reading ends, stops early or fails."""
    url, _ = pg_people
    pool = _engine_pool(url, shared)
    _read(_source(url, shared, {"profile": PROFILE, "skills": SKILLS}))
    assert pool.checkedout() == 0

    batches = _source(url, shared, _sleepers(3, 0.2), batch_size=1).batches()
    next(batches)
    batches.close()
    assert pool.checkedout() == 0

    failing = {**_sleepers(2, 0.3), "bad": {"query": "SELECT * FROM nowhere", "template": "x"}}
    with pytest.raises(SourceError, match='relation "nowhere" does not exist'):
        _read(_source(url, shared, failing))
    assert pool.checkedout() == 0


def test_a_run_leaves_no_connection_open(pg_people: tuple[str, str], duckdb_url: str) -> None:
    """After `Pipeline.run`, the server has no session left from the source's pool."""
    url, app = pg_people
    pipeline = Pipeline.from_dict(
        _pipeline(url, {"profile": PROFILE, "skills": SKILLS}, duckdb_url)
    )
    summary = pipeline.run()
    assert summary.ok
    assert summary.resources[0].counts.inserted == 6
    server = url.split("?")[0]
    with psycopg.connect(server) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app]
        ).fetchone()
    assert row == (0,)


CRASH = """
import sys
from pathlib import Path
from ladle.sources import SharedResources, SourceContext
from ladle.sources.documents import DocumentsOptions, DocumentsSource

options = DocumentsOptions.model_validate({
    "type": "documents", "url": sys.argv[1], "entities": "SELECT user_id FROM users",
    "key": "user_id", "doc_types": {"p": {"query": "SELECT user_id, name FROM profile",
                                          "template": "{{ name }}"}}})
source = DocumentsSource(options, SourceContext("d", 1, Path("."), shared=SharedResources()))
for batch in source.batches():
    raise RuntimeError("boom")  # the generator is never closed: the traceback keeps it
"""


def test_a_crash_while_reading_does_not_hold_the_process(people: str) -> None:
    """Reader threads waiting for a consumer that crashed do not keep the process from exiting."""
    result = subprocess.run(
        [sys.executable, "-c", CRASH, people],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.endswith("RuntimeError: boom\n")
