"""The loading methods under comparison, each run as one measured process and then verified.

Each function prepares its own schema (dropped and recreated, untimed), runs the load
as a subprocess (timed, peak RSS from ``wait4``), then checks the table: row count,
checksum against the ``psql \\copy`` reference, and, for ladle, the ledger's counts.
A method that fails is reported as failed with the end of its error output; it never
stops the methods after it.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import database as db
from generate_tickets import FIELDS, Files
from measure import Measured, run_measured

BENCH = Path(__file__).resolve().parent
PIPELINE = BENCH / "tickets.yaml"


@dataclass
class Result:
    """One row of the report: what ran, how long, how big, and whether the data is right."""

    key: str
    label: str
    rows: int
    """Records the process loaded."""
    measured: Measured | None = None
    scale_to: int = 0
    """When the method ran on a sample: the row count its time is extrapolated to."""
    verified: bool = False
    check: str = ""
    """What was checked (or what did not match)."""
    note: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    repeats: list[Measured] = field(default_factory=list)
    """Every run of the method when it was repeated (this result is the median one)."""

    @property
    def seconds(self) -> float | None:
        """Measured seconds, scaled linearly to ``scale_to`` rows for a sample."""
        if self.measured is None or not self.measured.ok:
            return None
        if self.scale_to:
            return self.measured.seconds * self.scale_to / self.rows
        return self.measured.seconds

    @property
    def peak_rss_mb(self) -> float | None:
        """The largest peak RSS over all runs of the method: the conservative figure."""
        runs = self.repeats or ([self.measured] if self.measured else [])
        return max(m.peak_rss_mb for m in runs) if runs else None

    @property
    def rss_exact(self) -> bool:
        """Whether every peak RSS came from GNU time (else it is an upper bound)."""
        runs = self.repeats or ([self.measured] if self.measured else [])
        return all(m.rss_exact for m in runs)

    @property
    def runs(self) -> list[Measured]:
        """Every successful run of the method (one unless it was repeated)."""
        runs = self.repeats or ([self.measured] if self.measured else [])
        return [m for m in runs if m.ok]

    @property
    def cpu_seconds(self) -> float | None:
        """Median CPU seconds of the process, scaled like :attr:`seconds` for a sample."""
        return self._scaled([m.cpu_seconds for m in self.runs])

    @property
    def server_cpu_seconds(self) -> float | None:
        """Median CPU seconds of its PostgreSQL backends; None when nothing measured them."""
        values = [m.server_cpu_seconds for m in self.runs]
        return self._scaled([v for v in values if v is not None])

    @property
    def total_cpu_seconds(self) -> float | None:
        """Process plus server CPU seconds: the work the method cost the machine."""
        if self.cpu_seconds is None:
            return None
        return self.cpu_seconds + (self.server_cpu_seconds or 0.0)

    @property
    def max_load(self) -> float | None:
        """The highest 1-minute load average seen at the start or end of any of its runs."""
        loads = [x for m in self.runs for x in m.loads]
        return max(loads) if loads else None

    def _scaled(self, values: list[float]) -> float | None:
        if not values:
            return None
        value = statistics.median(values)
        return value * self.scale_to / self.rows if self.scale_to else value

    @property
    def rows_per_second(self) -> float | None:
        """Rows the process loaded per second it actually ran (never extrapolated)."""
        if self.measured is None or not self.measured.ok or self.measured.seconds <= 0:
            return None
        return self.rows / self.measured.seconds


@dataclass(frozen=True)
class Bench:
    """Everything the methods share: sizes, files, interpreters, where scratch files go."""

    rows: int
    files: Files
    manifest: dict[str, Any]
    out: Path
    venv_bin: Path
    dlt_python: Path
    rowwise_sample: int
    dlt_default_rows: int
    seconds_per_million: float = 240.0
    """Time limit of a bulk load, per million rows (about 30x what (a) needs on 2 cores)."""

    def limit(self, rows: int, per_million: float | None = None) -> float:
        """Seconds after which a load of ``rows`` is killed and reported as failed."""
        return max(120.0, (per_million or self.seconds_per_million) * rows / 1_000_000)

    def script(self, name: str, text: str) -> Path:
        """Write a psql script to the scratch directory and return its path."""
        path = self.out / name
        path.write_text(text, encoding="utf-8")
        return path


def median_run(runs: Sequence[Result]) -> Result:
    """One result for a method run several times: the run with the median time.

    If any run failed or loaded wrong data, the method is reported by that run: a
    benchmark that fails one time in three is not a benchmark that passes.
    """
    for number, run in enumerate(runs, 1):
        if run.error or not run.verified or run.seconds is None:
            if len(runs) > 1:
                where = f"round {number} of {len(runs)}: "
                run.error = run.error and where + run.error
                run.check = where + run.check
            return run
    ordered = sorted(runs, key=lambda r: r.seconds or 0.0)
    chosen = ordered[len(ordered) // 2]
    chosen.repeats = [r.measured for r in runs if r.measured is not None]
    return chosen


def _psql_path(path: Path) -> str:
    """A file name for psql's ``\\copy``, single-quoted."""
    return "'" + str(path).replace("'", "''") + "'"


def _copy_command(table: str, csv_path: Path) -> str:
    return f"\\copy {table} FROM {_psql_path(csv_path)} WITH (FORMAT csv, HEADER true)\n"


def failed(result: Result, measured: Measured) -> Result:
    result.measured = measured
    result.error = measured.failure()
    return result


def compare(result: Result, got: db.Checksum, want: db.Checksum | None) -> Result:
    """Mark the result verified when row count and checksum equal the reference's."""
    if want is None:
        result.check = f"{got.short()} (no reference to compare)"
    elif got == want:
        result.verified = True
        result.check = f"{got.rows:,} rows, checksum = (a)"
    else:
        result.check = f"MISMATCH: {got.short()} vs (a) {want.short()}"
    return result


# ---------------------------------------------------------------- (a) psql \copy


REFERENCE_SCHEMA = "bench_copy"


def copy_ceiling(bench: Bench) -> tuple[Result, db.Checksum | None]:
    """(a) ``psql \\copy`` of the CSV into the empty table with its primary key."""
    result = Result("a", "psql `\\copy` CSV → empty table with PK (the reference)", bench.rows)
    db.reset_schema(REFERENCE_SCHEMA)
    db.create_reference_table(REFERENCE_SCHEMA)
    script = bench.script(
        "a_copy.sql", _copy_command(f"{REFERENCE_SCHEMA}.tickets", bench.files.tickets_csv)
    )
    db.settle()
    measured = run_measured(
        [*db.psql_args(), "-f", str(script)], timeout=bench.limit(bench.rows), database=db.DATABASE
    )
    if not measured.ok:
        return failed(result, measured), None
    result.measured = measured
    reference = db.checksum(REFERENCE_SCHEMA)
    result.verified = reference.rows == bench.rows
    result.check = f"{reference.rows:,} rows; reference checksum …{reference.digest[-10:]}"
    return result, reference


# ---------------------------------------------------------------- (c') hand merge

_VALUES = FIELDS[1:]


def _hand_merge_sql(schema: str, csv_path: Path) -> str:
    """COPY into a TEMP table, then one set-based upsert that skips unchanged rows."""
    names = ", ".join(_VALUES)
    excluded = ", ".join(f"EXCLUDED.{c}" for c in _VALUES)
    current = ", ".join(f"t.{c}" for c in _VALUES)
    return (
        "BEGIN;\n"
        f"CREATE TEMP TABLE changes (LIKE {schema}.tickets) ON COMMIT DROP;\n"
        + _copy_command("changes", csv_path)
        + "WITH merged AS (\n"
        f"  INSERT INTO {schema}.tickets AS t SELECT * FROM changes\n"
        f"  ON CONFLICT (ticket_id) DO UPDATE SET ({names}) = ROW({excluded})\n"
        f"  WHERE ({current}) IS DISTINCT FROM ({excluded})\n"
        "  RETURNING (xmax = 0) AS inserted)\n"
        "SELECT count(*) FILTER (WHERE inserted) || ' ' || count(*) FILTER (WHERE NOT inserted)\n"
        "FROM merged;\n"
        "COMMIT;\n"
    )


def hand_merge(bench: Bench, reference: db.Checksum | None) -> tuple[Result, db.Checksum | None]:
    """(c') the change file by hand in psql, into a fresh copy of the base table.

    The base rows are loaded with ``\\copy`` first (untimed, and checked against (a)),
    so the timed part is exactly the COPY to TEMP plus the one upsert.
    """
    change_rows = int(bench.manifest["change_rows"])
    result = Result("c'", "psql by hand: `\\copy` → TEMP + one `INSERT … ON CONFLICT`", change_rows)
    schema = "bench_hand_merge"
    db.reset_schema(schema)
    db.create_reference_table(schema)
    base = bench.script(
        "c_prime_base.sql", _copy_command(f"{schema}.tickets", bench.files.tickets_csv)
    )
    loaded = run_measured([*db.psql_args(), "-f", str(base)], timeout=bench.limit(bench.rows))
    if not loaded.ok:
        return failed(result, loaded), None
    if reference is not None and db.checksum(schema) != reference:
        result.error = "the base table did not match (a) before the merge"
        return result, None
    script = bench.script("c_prime_merge.sql", _hand_merge_sql(schema, bench.files.changes_csv))
    db.settle()
    command = [*db.psql_args(), "-At", "-f", str(script)]
    measured = run_measured(command, timeout=bench.limit(bench.rows), database=db.DATABASE)
    if not measured.ok:
        return failed(result, measured), None
    result.measured = measured
    inserted, updated = (int(n) for n in measured.stdout.split())
    after = db.checksum(schema)
    want = (int(bench.manifest["expected_inserted"]), int(bench.manifest["expected_updated"]))
    result.verified = (inserted, updated) == want and after.rows == bench.rows + want[0]
    result.check = (
        f"{inserted:,} inserted, {updated:,} updated, "
        f"{change_rows - inserted - updated:,} unchanged; table {after.rows:,} rows"
    )
    return result, after


# ---------------------------------------------------------------- (b), (c) ladle


LADLE_SCHEMA = "bench_ladle"


_LEDGER = (
    "status", "fetched", "inserted", "updated", "unchanged", "deduplicated", "quarantined",
    "peak_memory_mb", "error",
)  # fmt: skip


LEDGER_SQL = f"SELECT {', '.join(_LEDGER)} FROM {{}}_ladle_runs ORDER BY started_at DESC LIMIT 1"


def _ledger(schema: str) -> dict[str, Any]:
    """The newest row of ladle's run ledger in ``schema``: the counts ladle reports."""
    rows = db.query(LEDGER_SQL.format(f"{schema}."))
    return dict(zip(_LEDGER, rows[0], strict=True)) if rows else {}


def ledger_row(row: Sequence[Any] | None) -> dict[str, Any]:
    """A row of :data:`LEDGER_SQL` as a dict (empty when there was none)."""
    return dict(zip(_LEDGER, row, strict=True)) if row else {}


def ladle_run(
    bench: Bench,
    result: Result,
    *,
    source: Path,
    schema: str,
    destination: str | None = None,
    ledger: Callable[[], dict[str, Any]] | None = None,
) -> Result:
    """Run ``ladle run tickets.yaml`` on ``source`` into ``schema``; read its ledger row.

    ``destination`` (a ``duckdb:///`` URL) and ``ledger`` replace PostgreSQL's ``schema``.
    """
    url = destination or db.url(schema)
    env = {"LADLE_DESTINATION": url, "LADLE_BENCH_FILE": str(source)}
    db.settle()
    command = [str(bench.venv_bin / "ladle"), "run", str(PIPELINE)]
    limit = bench.limit(max(result.rows, bench.rows))
    database = None if destination else db.DATABASE
    measured = run_measured(command, env=env, timeout=limit, database=database)
    if not measured.ok:
        return failed(result, measured)
    result.measured = measured
    try:
        result.extra["ledger"] = ledger() if ledger else _ledger(schema)
    except Exception as exc:
        result.error = f"could not read the ledger of {url}: {exc}"
    return result


def ledger_counts(ledger: dict[str, Any]) -> str:
    keys = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
    return ", ".join(f"{ledger.get(k, 0):,} {k}" for k in keys if ledger.get(k) or k == "inserted")


def ladle_initial(bench: Bench, reference: db.Checksum | None) -> Result:
    """(b) ``ladle run`` merge of the JSONL into an empty table: parse, cast, validate, load."""
    result = Result("b", "ladle run: merge JSONL → empty table", bench.rows)
    db.reset_schema(LADLE_SCHEMA)
    ladle_run(bench, result, source=bench.files.tickets_jsonl, schema=LADLE_SCHEMA)
    if result.measured is None or not result.measured.ok or result.error:
        return result
    ledger = result.extra["ledger"]
    compare(result, db.checksum(LADLE_SCHEMA), reference)
    result.check += f"; ledger: {ledger_counts(ledger)}"
    result.verified &= ledger.get("inserted") == bench.rows and ledger.get("status") == "succeeded"
    return result


def ladle_changes(bench: Bench, after_hand_merge: db.Checksum | None, initial: Result) -> Result:
    """(c) ``ladle run`` merge of the change file into the table (b) loaded."""
    label = "ladle run: merge change file → loaded table"
    result = Result("c", label, bench.manifest["change_rows"])
    if not initial.verified or initial.error:
        result.error = "not run: it merges into the table (b) loads, and (b) failed"
        return result
    ladle_run(bench, result, source=bench.files.changes_jsonl, schema=LADLE_SCHEMA)
    if result.measured is None or not result.measured.ok or result.error:
        return result
    ledger = result.extra["ledger"]
    got = db.checksum(LADLE_SCHEMA)
    want = (bench.manifest["expected_inserted"], bench.manifest["expected_updated"], 0)
    counts = (ledger.get("inserted"), ledger.get("updated"), ledger.get("unchanged"))
    same_table = after_hand_merge is not None and got == after_hand_merge
    result.verified = counts == want and same_table
    result.check = f"ledger: {ledger_counts(ledger)}; table {got.rows:,} rows, checksum " + (
        "= (c')" if same_table else f"≠ (c') …{got.digest[-10:]}"
    )
    return result


def ladle_large(bench: Bench, files: Files, reference: db.Checksum | None) -> Result:
    """(b) again on a file several times larger, for peak RSS: it must not grow with input."""
    key = f"b x{files.rows // bench.rows}"
    result = Result(key, "ladle run: merge JSONL → empty table (peak RSS check)", files.rows)
    schema = "bench_ladle_large"
    db.reset_schema(schema)
    try:
        ladle_run(bench, result, source=files.tickets_jsonl, schema=schema)
        if result.measured is None or not result.measured.ok or result.error:
            return result
        ledger = result.extra["ledger"]
        count = db.query(f"SELECT count(*) FROM {schema}.tickets")[0][0]
        first = db.checksum(schema, max_id=bench.rows)
        result.verified = (
            count == files.rows and ledger.get("inserted") == files.rows and first == reference
        )
        result.check = f"{count:,} rows; first {bench.rows:,} ids checksum " + (
            "= (a)" if first == reference else "≠ (a)"
        )
    finally:
        # Several GB nobody reads again: give the disk back.
        db.drop_schema(schema)
    return result


# ---------------------------------------------------------------- (d) dlt


def dlt_merge(bench: Bench, mode: str, reference: Callable[[int], db.Checksum]) -> Result:
    """(d) dlt's merge of the same JSONL, in a separate virtualenv."""
    limit = bench.dlt_default_rows if mode == "default" else bench.rows
    labels = {
        "default": "dlt merge, default (dicts, insert_values)",
        "arrow-parquet": "dlt merge, fast path (Arrow tables, parquet via ADBC)",
        "arrow-csv": "dlt merge, fast path (Arrow tables, CSV via COPY)",
    }
    result = Result(f"d {mode}", labels[mode], limit)
    if limit < bench.rows:
        result.scale_to = bench.rows
    schema = "bench_dlt_" + mode.replace("-", "_")
    pipelines = bench.out / "dlt_pipelines" / schema
    shutil.rmtree(pipelines, ignore_errors=True)
    # dlt keeps a second schema, <dataset>_staging, for merges: it goes too.
    db.drop_schema(schema)
    db.drop_schema(f"{schema}_staging")
    command = [str(bench.dlt_python), str(BENCH / "dlt_load.py"), "--mode", mode]
    command += ["--file", str(bench.files.tickets_jsonl), "--credentials", db.url()]
    command += ["--dataset", schema, "--pipelines-dir", str(pipelines)]
    command += ["--limit", str(limit if limit < bench.rows else 0)]
    db.settle()
    # dlt reads config from ./.dlt: run it from the scratch directory, where there is none.
    # dlt's default path is known to be slow: allow it about an hour per million rows.
    timeout = bench.limit(limit, 3600.0 if mode == "default" else None)
    measured = run_measured(
        command,
        cwd=bench.out,
        env={"RUNTIME__LOG_LEVEL": "WARNING"},
        timeout=timeout,
        database=db.DATABASE,
    )
    if not measured.ok:
        return failed(result, measured)
    result.measured = measured
    report = json.loads(measured.stdout.strip().splitlines()[-1])
    result.extra["dlt"] = report
    result.note = "dlt steps (s): " + ", ".join(f"{k} {v}" for k, v in report["steps"].items())
    return compare(result, db.checksum(schema), reference(limit))


# ---------------------------------------------------------------- (e) row by row


def rowwise(bench: Bench, reference: Callable[[int], db.Checksum]) -> Result:
    """(e) one ``INSERT … ON CONFLICT`` per record on a sample, extrapolated to N."""
    sample = min(bench.rowwise_sample, bench.rows)
    result = Result("e", "row-by-row `INSERT … ON CONFLICT` (psycopg)", sample)
    result.scale_to = bench.rows if sample < bench.rows else 0
    schema = "bench_rowwise"
    db.reset_schema(schema)
    db.create_reference_table(schema)
    command = [str(bench.venv_bin / "python"), str(BENCH / "rowwise_upsert.py")]
    command += ["--file", str(bench.files.tickets_jsonl), "--url", db.url()]
    command += ["--schema", schema, "--limit", str(sample)]
    db.settle()
    measured = run_measured(command, timeout=bench.limit(sample, 20_000.0), database=db.DATABASE)
    if not measured.ok:
        return failed(result, measured)
    result.measured = measured
    return compare(result, db.checksum(schema), reference(sample))
