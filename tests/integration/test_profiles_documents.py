"""The profiles_documents example end to end: PostgreSQL tables -> seven doc types, coverage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from ladle import Pipeline, RunOptions
from ladle.cli import main
from ladle.destinations import connect
from ladle.pipeline import ResourceResult
from ladle.sources.coverage import CoverageReport
from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "profiles_documents"


example = load_example("profiles_documents", "generate")
generate: Callable[..., tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]] = example.generate
write: Callable[[str, dict[str, list[dict[str, Any]]]], None] = example.write
DOC_TYPES = list(example.DOC_TYPES)
USERS, SEED = 40, 3


class Profiles:
    """The example's tables in a PostgreSQL schema of their own, reached by a unique app name."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.schema = f"ladle_profiles_{uuid.uuid4().hex[:8]}"
        self.app = f"ladle_profiles_{uuid.uuid4().hex[:8]}"
        separator = "&" if "?" in server else "?"
        self.url = (
            f"{server}{separator}application_name={self.app}&options=-csearch_path%3D{self.schema}"
        )
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')

    def fill(self, empty: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the generated tables; return them and the manifest."""
        tables, manifest = generate(USERS, SEED, empty)
        write(self.url, tables)
        return tables, manifest

    def sessions(self) -> int:
        """The server's sessions opened by ladle's source pool (by its application_name),
        once closed ones have gone: a backend leaves ``pg_stat_activity`` a moment after
        its client closes, so a count above 0 is read again for up to 5 s."""
        deadline = time.monotonic() + 5
        with psycopg.connect(self.server, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    [self.app],
                ).fetchone()
                assert row is not None
                if row[0] == 0 or time.monotonic() > deadline:
                    return int(row[0])
                time.sleep(0.1)

    def drop(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


@pytest.fixture
def profiles(postgres_server: str) -> Iterator[Profiles]:
    """The example's source database: a schema in the test PostgreSQL, dropped afterwards."""
    database = Profiles(postgres_server)
    yield database
    database.drop()


@pytest.fixture
def pipeline_file(tmp_path: Path, profiles: Profiles, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's pipeline file, reading the PostgreSQL tables through ``PROFILES_DB``."""
    monkeypatch.setenv("PROFILES_DB", profiles.url)
    shutil.copy(EXAMPLE / "pipeline.yaml", tmp_path / "pipeline.yaml")
    return tmp_path / "pipeline.yaml"


def _run(path: Path, url: str, *, strict: bool = False) -> ResourceResult:
    summary = Pipeline.from_yaml(path).run(RunOptions(destination=url, strict=strict))
    (result,) = summary.resources
    assert result.counts.balanced or result.status == "failed"
    return result


def _coverage(result: ResourceResult) -> CoverageReport:
    (report,) = result.reports
    assert isinstance(report, CoverageReport)
    return report


def _documents(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    dest = connect(url)
    try:
        rows = dest.read("documents", {}).to_dicts()
    finally:
        dest.close()
    return {(row["doc_type"], row["entity_key"]): row for row in rows}


def _one(tables: dict[str, list[dict[str, Any]]], table: str, user: int) -> dict[str, Any]:
    (row,) = [r for r in tables[table] if r["user_id"] == user]
    return row


def _expected_texts(tables: dict[str, list[dict[str, Any]]], user: int) -> dict[str, str]:
    """The seven texts the example's templates should render for ``user``, written out here."""
    p = _one(tables, "profile", user)
    q = _one(tables, "personality", user)
    s = _one(tables, "learning_style", user)
    t = _one(tables, "thinking_skills", user)
    f = _one(tables, "preferences", user)
    careers = sorted((r for r in tables["career_recommendations"] if r["user_id"] == user),
                     key=lambda r: r["rank"])  # fmt: skip
    skills = sorted((r for r in tables["competencies"] if r["user_id"] == user),
                    key=lambda r: r["skill"])  # fmt: skip
    return {
        "profile": f"{p['name']}, {p['age']}, lives in {p['city']}; "
        f"a member since {p['joined_on'].isoformat()}.",
        "personality": f"Personality type {q['type_code']}: openness {q['openness']}, "
        f"conscientiousness {q['conscientiousness']}, extraversion {q['extraversion']}, "
        f"agreeableness {q['agreeableness']}, neuroticism {q['neuroticism']} (0 to 1).",
        "learning_style": f"Learns mostly through {s['dominant']} material (visual "
        f"{s['visual']}%, auditory {s['auditory']}%, reading and writing {s['reading']}%, "
        f"kinesthetic {s['kinesthetic']}%).",
        "career_recommendations": "Recommended careers: "
        + "; ".join(f"{r['rank']}. {r['career']} ({r['match']}% match)" for r in careers)
        + ".",
        "thinking_skills": f"Thinking skills (1 to 10): critical {t['critical']}, creative "
        f"{t['creative']}, analytical {t['analytical']}, practical {t['practical']}.",
        "competencies": "Competencies: "
        + ", ".join(f"{r['skill']} ({r['level']})" for r in skills)
        + ".",
        "preferences": f"Prefers {f['work_mode']} work on a {f['schedule']} schedule in "
        f"{f['team_size']} teams; interested in {f['topics']}.",
    }


def test_the_manifest_has_gaps_in_every_doc_type() -> None:
    """The default data leaves some users without each doc type, none missing entirely."""
    _, manifest = generate(USERS, SEED)
    documents = {name: item["documents"] for name, item in manifest["doc_types"].items()}
    assert documents == {
        "profile": 35,
        "personality": 33,
        "learning_style": 34,
        "career_recommendations": 31,
        "thinking_skills": 26,
        "competencies": 37,
        "preferences": 24,
    }
    assert manifest["documents"] == 220
    assert manifest["missing"] == []
    assert manifest["doc_types"]["competencies"]["lacking"] == [2, 8, 33]


def test_documents_and_coverage_match_the_manifest(
    profiles: Profiles, pipeline_file: Path, destination_url: str
) -> None:
    """Every doc type makes one document per user with data; the coverage names exactly the
    users the manifest says lack each type; texts render as written; a re-run changes nothing;
    the source leaves no session open."""
    tables, manifest = profiles.fill()
    result = _run(pipeline_file, destination_url)
    assert result.status == "succeeded", result.error
    counts = result.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (manifest["documents"], 220, 0)

    report = _coverage(result)
    assert report.entities == USERS
    assert report.problems == []
    for name in DOC_TYPES:
        expected = manifest["doc_types"][name]
        item = report[name]
        assert (item.rows, item.documents) == (expected["rows"], expected["documents"])
        assert item.without == [str(user) for user in expected["lacking"]]
        assert item.outside == []

    documents = _documents(destination_url)
    per_type = {name: sum(1 for d, _ in documents if d == name) for name in DOC_TYPES}
    assert per_type == {name: manifest["doc_types"][name]["documents"] for name in DOC_TYPES}
    complete = next(u for u in range(1, USERS + 1) if all(
        u not in manifest["doc_types"][name]["lacking"] for name in DOC_TYPES))  # fmt: skip
    assert complete == 6
    assert documents[("competencies", "6")]["text"] == (
        "Competencies: Data analysis (advanced), Design thinking (advanced), Excel (advanced), "
        "Mentoring (advanced), Writing (advanced)."
    )
    for name, text in _expected_texts(tables, complete).items():
        assert documents[(name, str(complete))]["text"] == text
    content = documents[("competencies", str(complete))]["content"]
    content = json.loads(content) if isinstance(content, str) else content
    skills = sorted(r["skill"] for r in tables["competencies"] if r["user_id"] == complete)
    assert [r["skill"] for r in content] == skills

    again = _run(pipeline_file, destination_url)
    assert (again.counts.unchanged, again.counts.inserted, again.counts.updated) == (220, 0, 0)
    assert profiles.sessions() == 0


def test_an_empty_table_is_missing_and_fails_strict(
    profiles: Profiles, pipeline_file: Path, destination_url: str
) -> None:
    """With thinking_skills empty, `--strict` fails and loads nothing; without it the six
    other types load and the report names thinking_skills as missing, with no placeholder."""
    _, manifest = profiles.fill(frozenset({"thinking_skills"}))
    assert manifest["missing"] == ["thinking_skills"]
    strict = _run(pipeline_file, destination_url, strict=True)
    assert strict.status == "failed"
    assert strict.error == (
        "--strict: doc type 'thinking_skills' is missing: its query returned no rows; "
        "nothing of this resource was loaded"
    )
    dest = connect(destination_url)
    try:
        assert not dest.read("_ladle_runs", {"status": "succeeded"}).height
    finally:
        dest.close()

    lenient = _run(pipeline_file, destination_url)
    assert lenient.status == "succeeded"
    assert lenient.counts.inserted == manifest["documents"] == 220 - 26
    report = _coverage(lenient)
    assert report["thinking_skills"].missing
    assert report["thinking_skills"].without == [str(u) for u in range(1, USERS + 1)]
    assert not any(d == "thinking_skills" for d, _ in _documents(destination_url))
    assert profiles.sessions() == 0


def test_the_readme_commands_run_on_sqlite_and_duckdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python generate.py` then `ladle run pipeline.yaml`, as the README says, with no server."""
    for name in ("generate.py", "pipeline.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROFILES_DB", raising=False)
    monkeypatch.delenv("LADLE_DESTINATION", raising=False)
    generated = subprocess.run(
        [sys.executable, "generate.py"], capture_output=True, text=True, check=True
    )
    assert "  competencies              37  (2, 8, 33)\n" in generated.stdout
    result = CliRunner().invoke(main, ["run", "pipeline.yaml"])
    assert result.exit_code == 0, result.output
    assert "coverage of 40 entities by doc type" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("│ preferences")]
    assert lines[0].split("│")[1:7] == [
        " preferences            ",
        "   24 ",
        "        24 ",
        "            24 ",
        "               16 ",
        " 3, 4, 5, 10, 12, 15, 16, 17, 18, 21, 24, 26, 30, 34, 36, 38 ",
    ]
    assert (tmp_path / "profiles_documents.duckdb").exists()
