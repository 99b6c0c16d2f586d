"""``make bench``: load the same tickets every way, verify each table, report side by side.

Order: generate (or reuse) the files; then ``--repeat`` interleaved rounds (round 1 of
every method, then round 2, …) of (a) ``psql \\copy``, (b) ladle's initial merge, (f)
the loads a user would write by hand (pgpq, ADBC, DuckDB's postgres extension), (c')
and (c) the change file by hand and with ladle, (g') and (g) DuckDB alone and ladle's
DuckDB destination, (h') and (h) their change-file merges, and dlt's fast paths; then,
once each, dlt's default path, (e) row-by-row upserts on a sample, (b) on a file five
times larger for peak memory, and the streaming benchmark (``bench/stream.py``: ``ladle
worker`` from a Redis stream, at the default batch size). Prints the table and the
verdicts and writes ``BENCHMARKS.md`` (or ``--report``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import database as db
import duckdb_methods
import handmade
import methods
import report
import stream
import verdicts
from generate_tickets import Files, is_current

from ladle.config import DEFAULT_BATCH_SIZE

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DUCKDB_PG_PYTHON = BENCH / ".venv-duckdb-pg" / "bin" / "python"
ORDER = (
    "a", "b", "f pgpq", "f adbc", "f duckdb", "c", "c'", "g", "g'", "h", "h'",
    "d default", "d arrow-parquet", "d arrow-csv", "e",
)  # fmt: skip
"""The order of the table's rows (the large run of (b) comes last)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _files(
    out: Path, rows: int, *, seed: int, full: bool
) -> tuple[Files, dict[str, object], float]:
    """The files for ``rows``, generated unless the same parameters already made them.

    The generator runs as its own process: its buffers would otherwise raise this
    process's peak RSS, which Linux passes on to every child it starts.
    """
    files = Files(out, rows)
    started = time.perf_counter()
    if is_current(files, seed=seed, csv_too=full, changes=full):
        _say(f"using the files in {out} for {rows:,} rows (seed {seed})")
    else:
        command = [sys.executable, str(BENCH / "generate_tickets.py"), "--rows", str(rows)]
        command += ["--seed", str(seed), "--out", str(out)]
        command += [] if full else ["--no-csv", "--no-changes"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        _say(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s")
    manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
    return files, manifest, time.perf_counter() - started


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="base file size (N)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 50,000 rows (or --rows), one round, 2x for the large run, "
        "10,000 rows row by row, 50,000 messages; report in bench/out",
    )
    parser.add_argument("--skip-dlt", action="store_true", help="leave out (d)")
    parser.add_argument("--skip-large", action="store_true", help="leave out (b) at 5xN")
    parser.add_argument(
        "--skip-stream",
        action="store_true",
        help="leave out the streaming benchmark (the report keeps its previous section)",
    )
    parser.add_argument("--large-factor", type=int, default=5)
    parser.add_argument("--rowwise-sample", type=int, default=50_000)
    parser.add_argument(
        "--dlt-default-rows",
        type=int,
        default=0,
        help="run dlt's default merge on the first K rows and extrapolate (default: all N)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="rounds of (a), (b), (c), (c') and dlt's fast paths; the median is reported "
        "(default 3, 1 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument(
        "--report",
        type=Path,
        help="where the Markdown goes (default: BENCHMARKS.md, or --out/BENCHMARKS.quick.md "
        "with --quick)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 50_000 if args.rows == parser.get_default("rows") else args.rows
        if args.large_factor == parser.get_default("large_factor"):
            args.large_factor = 2
        args.rowwise_sample = min(args.rowwise_sample, 10_000)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.report is None:
        args.report = args.out / "BENCHMARKS.quick.md" if args.quick else ROOT / "BENCHMARKS.md"
    return args


def _report_step(result: methods.Result) -> methods.Result:
    """One line on stderr per run, so a long benchmark shows where it is."""
    took = f" {result.measured.seconds:.1f} s," if result.measured else ""
    status = "ok" if result.verified and not result.error else "FAILED"
    _say(f"  ({result.key}){took} {status}: {result.error or result.check}")
    return result


def _round(
    args: argparse.Namespace, bench: methods.Bench, first: db.Checksum | None
) -> tuple[list[methods.Result], db.Checksum | None]:
    """One round of the fast methods: (a), (b), (f), (c'), (c), (g'), (g), (h'), (h), dlt's
    fast paths.

    Each by-hand method runs before the ladle method checked against its table.
    """
    _say("(a) psql \\copy …")
    ceiling, reference = methods.copy_ceiling(bench)
    if first is not None and reference != first:
        ceiling.error = "the reference table differs from the first round's"
    _report_step(ceiling)
    reference = first or reference
    _say("(b) ladle initial merge …")
    initial = _report_step(methods.ladle_initial(bench, reference))
    results = [ceiling, initial]
    for mode in ("pgpq", "adbc"):
        _say(f"(f {mode}) by hand …")
        results.append(_report_step(handmade.by_hand(bench, mode, reference)))
    _say("(f duckdb) DuckDB's postgres extension …")
    results.append(_report_step(handmade.duckdb_to_postgres(bench, DUCKDB_PG_PYTHON, reference)))
    _say("(c') hand-written merge in psql …")
    hand, after = methods.hand_merge(bench, reference)
    _report_step(hand)
    _say("(c) ladle merge of the change file …")
    results += [_report_step(methods.ladle_changes(bench, after, initial)), hand]
    results += _duckdb_round(bench)
    if not args.skip_dlt:
        for mode in ("arrow-parquet", "arrow-csv"):
            _say(f"(d) dlt {mode} …")
            results.append(_report_step(methods.dlt_merge(bench, mode, _reference_for(args))))
    return results, reference


def _duckdb_round(bench: methods.Bench) -> list[methods.Result]:
    """(g'), (g), (h'), (h): DuckDB alone and ladle's DuckDB destination."""
    _say("(g') DuckDB alone …")
    alone, loaded = duckdb_methods.alone_initial(bench)
    _report_step(alone)
    _say("(g) ladle → DuckDB …")
    initial = _report_step(duckdb_methods.ladle_initial(bench, loaded))
    _say("(h') DuckDB alone: MERGE INTO …")
    alone_merge, merged = duckdb_methods.alone_merge(bench)
    _report_step(alone_merge)
    _say("(h) ladle → DuckDB: change file …")
    changes = _report_step(duckdb_methods.ladle_merge(bench, merged, initial))
    return [initial, alone, changes, alone_merge]


def _reference_for(args: argparse.Namespace) -> Callable[[int], db.Checksum]:
    """The checksum of (a)'s table, or of its first ``rows`` ids for a sample."""

    @cache
    def reference(rows: int) -> db.Checksum:
        return db.checksum(methods.REFERENCE_SCHEMA, max_id=None if rows >= args.rows else rows)

    return reference


def _run_all(
    args: argparse.Namespace, bench: methods.Bench
) -> tuple[list[methods.Result], float, list[float]]:
    """Every method: ``--repeat`` interleaved rounds of the fast ones, then the slow ones once.

    Also returns the seconds spent generating the large file, if it had to be made, and
    the 1-minute load average at the start of each round.
    """
    rounds: list[list[methods.Result]] = []
    loads: list[float] = []
    reference: db.Checksum | None = None
    for number in range(1, args.repeat + 1):
        loads.append(os.getloadavg()[0])
        _say(f"round {number} of {args.repeat} (load average {loads[-1]:.2f})")
        found, reference = _round(args, bench, reference)
        rounds.append(found)
    results = [methods.median_run(runs) for runs in zip(*rounds, strict=True)]
    reference_for = _reference_for(args)
    if not args.skip_dlt:
        _say("(d) dlt default …")
        results.append(_report_step(methods.dlt_merge(bench, "default", reference_for)))
    _say("(e) row by row …")
    results.append(_report_step(methods.rowwise(bench, reference_for)))
    results.sort(key=lambda r: ORDER.index(r.key))
    generating = 0.0
    if not args.skip_large:
        large_rows = args.rows * args.large_factor
        large, _, generating = _files(args.out, large_rows, seed=args.seed, full=False)
        _say(f"(b) ladle initial merge, {large_rows:,} rows …")
        results.append(_report_step(methods.ladle_large(bench, large, reference_for(args.rows))))
    return results, generating, loads


def _notes(results: list[methods.Result]) -> list[str]:
    """Facts a reader needs next to the table (extrapolations, ladle's own memory figure)."""
    notes = []
    for result in results:
        if result.scale_to:
            notes.append(
                f"({result.key}) ran on the first {result.rows:,} records; its time is "
                f"extrapolated linearly to {result.scale_to:,}."
            )
        if result.note:
            notes.append(f"({result.key}) {result.note}.")
        ledger = result.extra.get("ledger")
        if ledger and ledger.get("peak_memory_mb") is not None:
            notes.append(
                f"({result.key}) ladle's ledger records peak_memory_mb = "
                f"{float(ledger['peak_memory_mb']):.0f} for this run."
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any method failed or did not verify."""
    args = _parse(argv)
    started = time.perf_counter()
    db.ensure_database()
    # Before any work, so the load average shows what else the machine was doing.
    machine_info = report.machine(BENCH / ".venv-dlt" / "bin" / "python")
    args.out.mkdir(parents=True, exist_ok=True)
    files, manifest, generating = _files(args.out, args.rows, seed=args.seed, full=True)
    bench = methods.Bench(
        rows=args.rows,
        files=files,
        manifest=dict(manifest),
        out=args.out,
        venv_bin=Path(sys.executable).parent,
        dlt_python=BENCH / ".venv-dlt" / "bin" / "python",
        rowwise_sample=args.rowwise_sample,
        dlt_default_rows=args.dlt_default_rows or args.rows,
    )
    results, generating_large, loads = _run_all(args, bench)
    machine_info = replace(machine_info, round_loads=tuple(loads))
    streamed = _stream(args)
    targets = verdicts.table(verdicts.verdicts(results, streamed))
    elapsed = time.perf_counter() - started
    extra = shlex.join(sys.argv[1:] if argv is None else argv)
    command = f"make bench BENCH_ARGS='{extra}'" if extra else "make bench"
    streaming = (
        report.streaming_section(streamed, command) if streamed else _previous_stream(args.report)
    )
    text = report.document(
        results=results,
        machine_info=machine_info,
        command=command,
        notes=_notes(results),
        targets=targets,
        duration=f"{elapsed:.0f} s, of which {generating + generating_large:.0f} s making "
        "or checking the input files"
        + (f" and {streamed.seconds:.0f} s streaming" if streamed else ""),
        stream=streaming,
    )
    args.report.write_text(text, encoding="utf-8")
    print(report.table(results))
    print(targets)
    if streamed:
        print(report.streaming_summary(streamed))
    _say(f"wrote {args.report}; total {elapsed:.0f} s")
    ok = all(r.verified and not r.error for r in results)
    return 0 if ok and (streamed is None or streamed.ok) else 1


def _stream(args: argparse.Namespace) -> stream.StreamResult | None:
    """The streaming benchmark at the default batch size, one and two workers, with this run's
    rounds (one round of 50,000 messages with --quick)."""
    if args.skip_stream:
        return None
    _say("streaming: ladle worker, Redis stream → PostgreSQL …")
    messages = 50_000 if args.quick else stream.StreamOptions.messages
    options = stream.StreamOptions(
        messages=messages, batch_sizes=(DEFAULT_BATCH_SIZE,), repeat=args.repeat, out=args.out
    )
    return stream.run_benchmark(options, _say)


def _previous_stream(path: Path) -> str | None:
    """The streaming section already in the report, kept when this run leaves it out."""
    return report.find_streaming(path.read_text(encoding="utf-8")) if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
