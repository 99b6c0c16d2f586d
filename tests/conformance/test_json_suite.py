"""JSONTestSuite through ladle's JSON and JSON Lines sources, end to end into a destination.

Every case is a file and a resource of its own; the whole suite runs as one pipeline in a
child process (:mod:`tests.conformance.harness`), once per destination, and the tests
below judge each case from its outcome, its table and its quarantine rows:

- ``n_`` (invalid JSON): refused, with the file and a line and column, nothing loaded;
- ``y_`` holding objects: each object loads exactly (an empty object, having no column,
  is quarantined); ``y_`` holding no objects: no row loaded;
- ``i_`` (either way is allowed): no crash, no hang;
- JSON Lines: each ``n_``/``y_`` input without a newline as a one-line file, likewise,
  and each such ``n_`` input as the value of a field of a line, refused as well;
- each ``y_`` input as the value of a field, ``{"value": ...}``: loaded exactly or
  quarantined with a reason, never altered, and the same outcome on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.expected import (
    first_wins_loads,
    flatten,
    holds_nul,
    is_json,
    row_mismatches,
    strict_loads,
)
from tests.conformance.fetch_suites import JSON_TEST_SUITE
from tests.conformance.harness import Outcome, quarantine_by_resource, read_tables, run_resources

PARSING = JSON_TEST_SUITE.directory / "data" / "parsing.js"


@dataclass(frozen=True)
class Case:
    """One file of JSONTestSuite's test_parsing/."""

    name: str
    input: str

    @property
    def stem(self) -> str:
        """The file name without ``.json``."""
        return self.name.removesuffix(".json")


def read_cases(path: Path = PARSING) -> list[Case]:
    """The cases of data/parsing.js: a JSON array after ``export default``."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index("export default") + len("export default") :].strip().rstrip(";")
    return [Case(entry["name"], entry["input"]) for entry in json.loads(body)]


@functools.cache
def _suite() -> tuple[Case, ...]:
    return tuple(read_cases()) if PARSING.exists() else ()


def _cases(prefix: str, select: Callable[[Case], bool] = lambda case: True) -> list[Any]:
    """The cases named ``prefix...`` that ``select`` keeps, as parameters.

    Without the suite there is one placeholder, whose fixtures fail and say what to run.
    """
    if not PARSING.exists():
        return [pytest.param(None, id="suite-not-fetched")]
    chosen = [c for c in _suite() if c.name.startswith(prefix) and select(c)]
    return [pytest.param(c, id=c.stem) for c in chosen]


def _as_line(case: Case) -> bool:
    """Whether the input can be one line of a JSON Lines file: no newline, not blank.

    A byte order mark alone is blank too: JSON Lines strips it, and an empty file holds
    no record rather than invalid JSON.
    """
    one_line = "\n" not in case.input and "\r" not in case.input
    return one_line and bool(case.input.lstrip("\ufeff").strip())


def _holds_objects(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict) for v in value)
    )


def _of_objects(case: Case) -> bool:
    """Whether a valid case's JSON is an object or an array holding objects."""
    return _holds_objects(strict_loads(case.input))


def _records(value: Any) -> list[Any]:
    """What the JSON source takes as records: a top-level object, or an array's items."""
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- the runs
#
# A resource's run costs tens of milliseconds of ledger and catalog work, so cases whose
# expected outcome is the same are grouped into one resource where the outcome still tells
# the cases apart (by their positions, or by a column of their own). A group that does not
# come out as expected (a crash, a failed run) is run again case by case, so that each
# case gets its own verdict.


@dataclass(frozen=True)
class Seen:
    """What one case came to: its run's outcome, its rows, its quarantine rows."""

    outcome: Outcome
    rows: list[dict[str, Any]]
    quarantined: list[dict[str, Any]]
    grouped: bool = False
    """Judged from a group's run: the outcome's counts are the case's own share."""


@dataclass
class _Group:
    """Several cases in one resource; ``member`` finds a case's quarantine rows and rows."""

    resource: str
    members: dict[str, Case]  # resource name when run alone -> case
    alone: dict[str, Any]  # the members' own resources, for the rerun

    def ok(self, outcome: Outcome) -> bool:
        """Whether the group's run can be judged case by case (else each runs alone)."""
        loads = self.resource == "values"  # the other groups are to load nothing
        return outcome.status == "succeeded" and outcome.balanced and (loads or not outcome.loaded)


@dataclass
class _Plan:
    base: Path
    resources: dict[str, Any]
    groups: list[_Group]

    def write(self, path: str, text: str, fmt: str) -> dict[str, Any]:
        """Write a file; return a resource reading it."""
        (self.base / path).parent.mkdir(parents=True, exist_ok=True)
        (self.base / path).write_bytes(text.encode("utf-8"))
        return {"source": {"type": "file", "path": path, "format": fmt}, "write": "append"}

    def add(self, resource: str, path: str, text: str, fmt: str) -> None:
        """Write a file and read it as a resource of its own."""
        self.resources[resource] = self.write(path, text, fmt)

    def group(self, resource: str, spec: dict[str, Any], members: dict[str, Any]) -> None:
        """Read several cases as one resource; ``members``: their own resources, by name."""
        self.resources[resource] = spec
        cases = {name: _suite()[int(name.rsplit("_", 1)[1])] for name in members}
        self.groups.append(_Group(resource, cases, members))


def _resource(kind: str, case: Case) -> str:
    """A resource (and table) name for a case: the kind and the case's index in the suite."""
    return f"{kind}_{_suite().index(case):03d}"


def _value_record(case: Case) -> str:
    """``{"case": STEM, "vN": <input>}``: the input as the value of a field of its own."""
    return f'{{"case": {json.dumps(case.stem)}, "{_value_column(case)}": {case.input}}}'


def _value_column(case: Case) -> str:
    return f"v{_suite().index(case)}"


def _plan(base: Path, *, exactness_only: bool) -> _Plan:
    plan = _Plan(base, {}, [])
    refused_lines: list[Case] = []
    objectless: list[Case] = []
    for case in _suite():
        valid = case.name.startswith("y_")
        of_objects = valid and _of_objects(case)
        if of_objects or not exactness_only:
            if valid and not of_objects and case.input.strip().startswith("["):
                objectless.append(case)
            else:
                plan.add(_resource("json", case), f"json/{case.name}", case.input, "json")
        if exactness_only or case.name.startswith("i_") or not _as_line(case):
            continue
        if of_objects:
            plan.add(_resource("jsonl", case), f"jsonl/{case.stem}.jsonl", case.input, "jsonl")
        else:
            refused_lines.append(case)
    values = [c for c in _suite() if c.name.startswith("y_")]
    _group_lines(plan, refused_lines)
    if not exactness_only:
        invalid = [c for c in _suite() if c.name.startswith("n_") and _as_line(c)]
        _group_lines(plan, invalid, "nvalue")
    _group_files(plan, objectless)
    _group_values(plan, values)
    return plan


def _group_lines(plan: _Plan, cases: list[Case], kind: str = "jsonl") -> None:
    """Lines that are all to be quarantined, as one JSON Lines file: the line names the case.

    ``kind`` ``nvalue``: each input as the value of a field, ``{"case": STEM, "v": ...}``.
    """
    if not cases:
        return
    line = _value_line if kind == "nvalue" else (lambda case: case.input)
    alone = {
        _resource(kind, c): plan.write(f"{kind}/{c.stem}.jsonl", line(c), "jsonl") for c in cases
    }
    text = "".join(line(c) + "\n" for c in cases)
    plan.group(f"{kind}_lines", plan.write(f"{kind}/lines.jsonl", text, "jsonl"), alone)


def _value_line(case: Case) -> str:
    return f'{{"case": {json.dumps(case.stem)}, "v": {case.input}}}'


def _group_files(plan: _Plan, cases: list[Case]) -> None:
    """Files holding no object, as one glob: a quarantine position names its file."""
    if not cases:
        return
    alone = {
        _resource("json", c): plan.write(f"objectless/{c.name}", c.input, "json") for c in cases
    }
    glob = {"source": {"type": "file", "path": "objectless/*.json", "format": "json"}}
    plan.group("json_objectless", glob, alone)


def _group_values(plan: _Plan, cases: list[Case]) -> None:
    """Every y_ input as the value of a column of its own, all in one JSON document."""
    if not cases:
        return
    alone = {
        _resource("value", c): plan.write(f"value/{c.stem}.json", _value_record(c), "json")
        for c in cases
    }
    text = "[\n" + ",\n".join(_value_record(c) for c in cases) + "\n]"
    plan.group("values", plan.write("values.json", text, "json"), alone)


@dataclass
class SuiteRun:
    """What every case came to in one destination, by (kind, case name)."""

    url: str
    seen: dict[tuple[str, str], Seen]
    reruns: list[str]
    """Groups that did not come out as expected and were run again case by case."""

    def __getitem__(self, key: tuple[str, Case]) -> Seen:
        kind, case = key
        return self.seen[(kind, case.name)]


def _run_suite(base: Path, url: str, *, exactness_only: bool) -> SuiteRun:
    plan = _plan(base, exactness_only=exactness_only)
    outcomes = run_resources({"pipeline": "conformance", "resources": plan.resources}, base, url)
    failed = [group for group in plan.groups if not group.ok(outcomes[group.resource])]
    if failed:
        alone = {name: spec for group in failed for name, spec in group.alone.items()}
        outcomes |= run_resources({"pipeline": "conformance", "resources": alone}, base, url)
    tables = read_tables(url, outcomes)
    quarantine = quarantine_by_resource(url)
    seen: dict[tuple[str, str], Seen] = {}
    for resource, outcome in outcomes.items():
        kind, _, index = resource.rpartition("_")
        if index.isdigit():
            case = _suite()[int(index)]
            seen[(kind, case.name)] = Seen(outcome, tables[resource], quarantine.get(resource, []))
    for group in plan.groups:
        if group in failed:
            continue
        found = quarantine.get(group.resource, [])
        for order, (resource, case) in enumerate(group.members.items()):
            mine = [q for q in found if _is_member(group.resource, q["position"], case, order)]
            rows = (
                [_own_columns(r, case) for r in tables[group.resource] if r["case"] == case.stem]
                if group.resource == "values"
                else []
            )
            seen[(resource.rpartition("_")[0], case.name)] = _member(
                outcomes[group.resource], rows, mine
            )
    reruns = [f"{group.resource}: {outcomes[group.resource]}" for group in failed]
    return SuiteRun(url, seen, reruns)


def _is_member(group: str, position: str, case: Case, order: int) -> bool:
    """Whether a group's quarantine position is the case's: its line, file, or record."""
    if group.endswith("_lines"):
        return position.endswith(f"lines.jsonl:{order + 1}")
    if group == "json_objectless":
        return position.startswith(f"objectless/{case.name}#")
    return position.endswith(f"#[{order}]")


def _own_columns(row: dict[str, Any], case: Case) -> dict[str, Any]:
    """The columns of a values row that hold the case's value (``vN``, ``vN__key``)."""
    column = _value_column(case)
    return {k: v for k, v in row.items() if k == column or k.startswith(column + "__")}


def _member(outcome: Outcome, rows: list[dict[str, Any]], mine: list[dict[str, Any]]) -> Seen:
    """A case's share of its group's run: its rows and quarantine rows, counted as its own."""
    counts = dict.fromkeys(("updated", "unchanged", "deduplicated"), 0)
    counts |= {"fetched": len(rows) + len(mine), "inserted": len(rows), "quarantined": len(mine)}
    return Seen(Outcome(outcome.status, outcome.error, counts), rows, mine, grouped=True)


@pytest.fixture(scope="module")
def on_duckdb(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    """Every case, JSON and JSON Lines, into one DuckDB file."""
    base = tmp_path_factory.mktemp("json-suite-duckdb")
    return _run_suite(base, f"duckdb:///{base / 'suite.duckdb'}", exactness_only=False)


@pytest.fixture(scope="module")
def on_postgres(
    conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> SuiteRun:
    """The exactness cases (``y_`` objects and ``y_`` values) into one PostgreSQL schema."""
    base = tmp_path_factory.mktemp("json-suite-postgres")
    return _run_suite(base, module_postgres_url, exactness_only=True)


@pytest.fixture(params=["duckdb", "postgres"])
def suite_run(request: pytest.FixtureRequest) -> SuiteRun:
    """Each destination's run in turn."""
    run: SuiteRun = request.getfixturevalue(f"on_{request.param}")
    return run


# ---------------------------------------------------------------- judging one case

_LINE_COLUMN = re.compile(r"\bline \d+\D{1,12}column \d+|:\d+:\d+\b", re.IGNORECASE)
_LINE_THEN_COLUMN = re.compile(r"^\S+:\d+ .*\bcolumn \d+", re.IGNORECASE)
"""A JSON Lines quarantine row: ``file:LINE`` as its position, the column in its message."""


def _no_crash(outcome: Outcome) -> None:
    assert outcome.status in ("succeeded", "failed"), f"{outcome.status}: {outcome.detail}"
    if outcome.status == "succeeded":
        assert outcome.balanced, f"the ledger does not balance: {outcome.counts}"


def _assert_refused(seen: Seen, file_name: str) -> None:
    """Refused: a failed run naming the file, line and column, or every record quarantined
    with the file in its position and a line and column; nothing loaded either way."""
    outcome = seen.outcome
    _no_crash(outcome)
    assert outcome.loaded == 0, f"loaded {outcome.counts}"
    assert seen.rows == []
    if outcome.status == "failed":
        assert outcome.error is not None
        assert file_name in outcome.error, outcome.error
        assert _LINE_COLUMN.search(outcome.error), f"no line and column in: {outcome.error}"
        return
    assert outcome.counts["quarantined"] >= 1, f"nothing refused: {outcome.counts}"
    assert len(seen.quarantined) == outcome.counts["quarantined"]
    for row in seen.quarantined:
        assert file_name in row["position"] or seen.grouped, row["position"]
        where = row["position"] + " " + " ".join(e["message"] for e in row["errors"])
        found = _LINE_COLUMN.search(where) or _LINE_THEN_COLUMN.search(where)
        assert found, f"no line and column in: {where}"


def _assert_loads_exactly(seen: Seen, records: list[Any]) -> None:
    """Each object record is a row equal to it; empty objects and non-objects quarantined."""
    outcome = seen.outcome
    _no_crash(outcome)
    assert outcome.status == "succeeded", outcome.error
    expected = [flatten(r) for r in records if isinstance(r, dict) and flatten(r)]
    assert outcome.counts["fetched"] == len(records), outcome.counts
    assert outcome.counts["quarantined"] == len(records) - len(expected), outcome.counts
    assert all(e["message"] for q in seen.quarantined for e in q["errors"]), seen.quarantined
    assert len(seen.rows) == len(expected), seen.rows
    for row, columns in zip(seen.rows, expected, strict=True):
        assert row_mismatches(row, columns) == []


# ---------------------------------------------------------------- the suite itself


def test_suite_is_whole_and_n_cases_stay_invalid(conformance_dir: Path) -> None:
    """The package holds 318 cases; its U+FFFD replacements leave every n_ case invalid JSON."""
    cases = read_cases()
    kinds = [c.name[:2] for c in cases]
    counts = (len(cases), kinds.count("y_"), kinds.count("n_"), kinds.count("i_"))
    assert counts == (318, 95, 188, 35)
    assert len([c for c in cases if "\ufffd" in c.input]) == 25
    for case in cases:
        case.input.encode("utf-8")  # no lone surrogates: every case can be written as UTF-8
    assert [c.name for c in cases if c.name.startswith("n_") and is_json(c.input)] == []
    assert [c.name for c in cases if c.name.startswith("y_") and not is_json(c.input)] == []


def test_grouped_cases_needed_no_rerun(on_duckdb: SuiteRun, on_postgres: SuiteRun) -> None:
    """Cases grouped into one resource came out as a group should (else each ran alone)."""
    assert on_duckdb.reruns + on_postgres.reruns == []


# ---------------------------------------------------------------- JSON documents


@pytest.mark.parametrize("case", _cases("n_"))
def test_n_file_is_refused_with_its_position(case: Case, on_duckdb: SuiteRun) -> None:
    """An invalid JSON file is refused, naming the file, line and column; nothing loads."""
    _assert_refused(on_duckdb["json", case], case.name)


@pytest.mark.parametrize("case", _cases("y_", _of_objects))
def test_y_file_of_objects_loads_exactly(case: Case, suite_run: SuiteRun) -> None:
    """A valid file's objects load value for value (an empty object is quarantined)."""
    _assert_loads_exactly(suite_run["json", case], _records(strict_loads(case.input)))


@pytest.mark.parametrize("case", _cases("y_", lambda case: not _of_objects(case)))
def test_y_file_without_objects_loads_no_row(case: Case, on_duckdb: SuiteRun) -> None:
    """A valid file holding no object loads no row: none is invented."""
    seen = on_duckdb["json", case]
    _no_crash(seen.outcome)
    assert seen.outcome.loaded == 0, seen.outcome.counts
    assert seen.rows == []


@pytest.mark.parametrize("case", _cases("i_"))
def test_i_file_neither_crashes_nor_hangs(case: Case, on_duckdb: SuiteRun) -> None:
    """An implementation-defined file loads or is refused, without a traceback or a hang."""
    _no_crash(on_duckdb["json", case].outcome)


# ---------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize("case", _cases("n_", _as_line))
def test_n_line_is_refused_with_its_position(case: Case, on_duckdb: SuiteRun) -> None:
    """An invalid JSON line is refused with its file, line and column; nothing loads."""
    _assert_refused(on_duckdb["jsonl", case], f"{case.stem}.jsonl")


@pytest.mark.parametrize("case", _cases("n_", _as_line))
def test_n_value_in_a_line_is_refused_with_its_position(case: Case, on_duckdb: SuiteRun) -> None:
    """``{"case": ..., "v": <n_ input>}`` as a JSON line is refused too: nothing loads."""
    _assert_refused(on_duckdb["nvalue", case], f"{case.stem}.jsonl")


@pytest.mark.parametrize("case", _cases("y_", _as_line))
def test_y_line_loads_exactly_or_is_not_a_record(case: Case, on_duckdb: SuiteRun) -> None:
    """A valid JSON line that is an object loads exactly; any other value is quarantined.

    A key repeated in a line keeps its first value (``y_object_duplicated_key``).
    """
    _assert_loads_exactly(on_duckdb["jsonl", case], [first_wins_loads(case.input)])


# ---------------------------------------------------------------- values in a field


@pytest.mark.parametrize("case", _cases("y_"))
def test_y_value_in_a_field_loads_exactly_or_is_quarantined(
    case: Case, suite_run: SuiteRun
) -> None:
    """``{"vN": <y_ input>}`` loads exactly, or is quarantined with a reason: never altered.

    A value with no NUL character and no number other than a 64-bit integer must load.
    """
    seen = suite_run["value", case]
    _no_crash(seen.outcome)
    assert seen.outcome.status == "succeeded", seen.outcome.error
    columns = flatten({_value_column(case): strict_loads(case.input)})
    if seen.quarantined:
        reasons = [e["message"] for q in seen.quarantined for e in q["errors"]]
        assert all(reasons), "quarantined without a reason"
        assert not _must_load(columns), f"quarantined: {reasons}"
        assert seen.rows == []
        return
    assert len(seen.rows) == 1, (seen.outcome.counts, seen.rows)
    row = {k: v for k, v in seen.rows[0].items() if k != "case"}
    assert row_mismatches(row, columns) == []


def _must_load(columns: dict[str, Any]) -> bool:
    return not holds_nul(columns) and not any(_number_beyond_int64(v) for v in columns.values())


def _number_beyond_int64(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, list):
        return any(_number_beyond_int64(v) for v in value)
    if isinstance(value, dict):
        return any(_number_beyond_int64(v) for v in value.values())
    return True  # a decimal or an exponent


@pytest.mark.parametrize("case", _cases("y_"))
def test_y_value_has_the_same_outcome_on_both_destinations(
    case: Case, on_duckdb: SuiteRun, on_postgres: SuiteRun
) -> None:
    """DuckDB and PostgreSQL load, or quarantine, the same field value alike."""
    duck, pg = on_duckdb["value", case].outcome, on_postgres["value", case].outcome
    assert (duck.status, duck.loaded, duck.counts.get("quarantined")) == (
        pg.status,
        pg.loaded,
        pg.counts.get("quarantined"),
    ), (duck, pg)
