"""``make bench-stream``: messages per second through ``ladle worker``, Redis stream → PostgreSQL.

One untimed fill puts N ten-field JSON events (a tutoring session's: ids, text, ints, a
float, a bool, an ISO timestamp) on a template stream with pipelined XADD. Each run copies
it to a fresh stream key (Redis ``COPY``, untimed), starts 1 or 2 ``ladle worker`` processes
(``--idle-exit``: they stop once the stream is drained) that merge into a fresh schema, and
times them from their JSON logs, where ``batch loaded`` comes after the commit and the XACK:
spawn → last ``batch loaded`` is end to end; once every worker has loaded a batch → last
``batch loaded``, the steady state; spawn → first ``worker started``, the start-up. Then it
checks that every message is in the table once with the values sent, none is pending, and
the ledger balances; and drops the schema and the key. Configurations are interleaved over
rounds; the report gives medians and ranges. ``bench/run.py`` (``make bench``) runs this
too; on its own it rewrites only the streaming section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import redis
import report
from measure import Measured, run_measured
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REDIS_URL = os.environ.get("LADLE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "LADLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
GROUP = "ladle"
TABLE = "session_events"

PIPELINE = """\
# Written by bench/stream.py; each run sets the three variables (a fresh key and schema).
pipeline: bench_stream
destination: ${LADLE_DESTINATION}
resources:
  session_events:
    source:
      type: redis_stream
      url: ${LADLE_BENCH_REDIS_URL}
      stream: ${LADLE_BENCH_STREAM}
      group: ladle
      block_ms: 200
    primary_key: [event_id]
    write: merge
    columns:
      event_id: {type: bigint, required: true}
      session_id: {type: text, required: true}
      student_id: bigint
      tutor_id: int
      subject: text
      event_type: {type: text, in: [session_started, question_asked, hint_given,
                                    answer_submitted, session_ended]}
      duration_s: {type: int, min: 0}
      score: double
      completed: bool
      occurred_at: timestamptz
"""

_SUBJECTS = ("algebra", "geometry", "calculus", "chemistry", "physics", "biology", "essay writing")
_EVENTS = ("session_started", "question_asked", "hint_given", "answer_submitted", "session_ended")
_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
_COMPLETED = 0.7
"""Share of events whose session step was completed."""


@dataclass(frozen=True)
class StreamOptions:
    """What one streaming benchmark runs: sizes, repetitions, and where Redis and PostgreSQL are."""

    messages: int = 300_000
    batch_sizes: tuple[int, ...] = (1_000, 5_000, 10_000)
    workers: tuple[int, ...] = (1, 2)
    repeat: int = 3
    seed: int = 7
    redis_url: str = REDIS_URL
    postgres_url: str = POSTGRES_URL
    """A libpq URL; each run adds its own ``?schema=``."""
    out: Path = BENCH / "out"
    idle_exit_s: float = 1.0
    """``--idle-exit`` of the workers: how long after the last batch they stop."""
    ladle: tuple[str, ...] = (str(Path(sys.executable).parent / "ladle"),)
    """The command that runs ladle's CLI (another build of ladle, to compare)."""

    def limit(self) -> float:
        """Seconds after which a worker is killed and its run reported as failed."""
        return max(120.0, self.messages / 1_000)


# ---------------------------------------------------------------- the messages


def _event(number: int, rng: random.Random) -> dict[str, Any]:
    """Message ``number``: one event of a tutoring session, ten fields."""
    at = _EPOCH + timedelta(milliseconds=number * 2_500 + rng.randrange(1_000))
    return {
        "event_id": number,
        "session_id": f"{rng.getrandbits(64):016x}",
        "student_id": rng.randrange(1, 200_000),
        "tutor_id": rng.randrange(1, 5_000),
        "subject": rng.choice(_SUBJECTS),
        "event_type": rng.choice(_EVENTS),
        "duration_s": rng.randrange(0, 3_600),
        "score": round(rng.uniform(0, 100), 2),
        "completed": rng.random() < _COMPLETED,
        "occurred_at": at.isoformat(timespec="milliseconds"),
    }


@dataclass
class Tally:
    """Sums over the messages sent, compared with the loaded table's (values, not just rows)."""

    rows: int = 0
    student_ids: int = 0
    durations: int = 0
    completed: int = 0
    hints: int = 0
    last_at: str = ""

    def add(self, event: dict[str, Any]) -> None:
        self.rows += 1
        self.student_ids += event["student_id"]
        self.durations += event["duration_s"]
        self.completed += event["completed"]
        self.hints += event["event_type"] == "hint_given"
        self.last_at = max(self.last_at, event["occurred_at"])


def fill(client: redis.Redis, key: str, options: StreamOptions) -> tuple[Tally, str]:
    """Put the messages on ``key`` with pipelined XADD; return their tally and one example."""
    from ladle.sources.redis_stream import encode_record

    client.delete(key)
    rng = random.Random(options.seed)
    tally, example = Tally(), ""
    pipe = client.pipeline(transaction=False)
    for number in range(1, options.messages + 1):
        event = _event(number, rng)
        tally.add(event)
        fields = encode_record(event)
        example = example or str(fields["data"])
        pipe.xadd(key, fields)
        if number % 10_000 == 0:
            pipe.execute()
    pipe.execute()
    return tally, example


def _fresh_stream(client: redis.Redis, template: str, key: str, options: StreamOptions) -> None:
    """``key`` holding the template's messages and no group: COPY, or XADD where it is missing."""
    try:
        copied = client.copy(template, key, replace=True)
    except redis.ResponseError:  # COPY came with Redis 6.2
        copied = False
    if not copied:
        fill(client, key, options)


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    """One run of ``workers`` processes at one batch size: timings from the logs, and checks."""

    workers: int
    batch_size: int
    messages: int
    measured: list[Measured] = field(default_factory=list)
    spawned: float = 0.0
    started: list[float] = field(default_factory=list)
    batches: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, entries, worker) of every ``batch loaded`` line, all workers, in time order."""
    shares: list[int] = field(default_factory=list)
    """Messages each worker loaded."""
    redis_cpu: float = 0.0
    machine_cpu: float = 0.0
    verified: bool = False
    check: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.verified and not self.error and bool(self.batches)

    @property
    def startup(self) -> float:
        """Spawn to the first ``worker started``: interpreter, imports, connections, tables."""
        return min(self.started) - self.spawned

    @property
    def seconds(self) -> float:
        """Spawn to the last acknowledgement."""
        return self.batches[-1][0] - self.spawned

    @property
    def rate(self) -> float:
        """Messages per second end to end, start-up included."""
        return self.messages / self.seconds

    @property
    def steady_rate(self) -> float:
        """Messages per second once every worker has loaded its first batch.

        The window starts at the last of the workers' first acknowledgements (the first
        batch also creates the table) and ends at the last one.
        """
        start = max(min(t for t, _, w in self.batches if w == k) for k in self._loaders)
        after = sum(entries for t, entries, _ in self.batches if t > start)
        window = self.batches[-1][0] - start
        return after / window if window > 0 else 0.0

    @property
    def _loaders(self) -> set[int]:
        return {worker for _, _, worker in self.batches}

    @property
    def worker_cpu(self) -> float:
        return sum(m.cpu_seconds for m in self.measured)

    @property
    def peak_rss_mb(self) -> float:
        return max(m.peak_rss_mb for m in self.measured)


def _with_schema(url: str, schema: str) -> str:
    """``url`` with ``?schema=`` set, the way ladle names the schema it loads into."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _read_logs(run: Run) -> None:
    """The JSON log lines of each worker: start, every batch, and how much each loaded."""
    for worker, measured in enumerate(run.measured):
        loaded = 0
        for line in measured.stderr.splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "worker started":
                run.started.append(_timestamp(event["timestamp"]))
            elif event.get("event") == "batch loaded":
                entries = int(event["entries"])
                run.batches.append((_timestamp(event["timestamp"]), entries, worker))
                loaded += entries
        run.shares.append(loaded)
    run.batches.sort()


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from ``/proc/stat``."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _settle(options: StreamOptions) -> None:
    """Before a timed run: wait for autovacuum workers, then CHECKPOINT (untimed)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(options.postgres_url, autocommit=True) as con:
        while time.monotonic() < deadline:
            row = con.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or row[0] == 0:
                break
            time.sleep(0.5)
        # Not a superuser (nor pg_checkpoint): no checkpoint, the runs are just noisier.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            con.execute("CHECKPOINT")


def run_once(
    client: redis.Redis,
    template: str,
    tally: Tally,
    options: StreamOptions,
    *,
    shape: tuple[int, int],
) -> Run:
    """Drain a fresh copy of the template with ``shape`` (workers, batch size); verify; clean up."""
    workers, batch_size = shape
    run = Run(workers, batch_size, options.messages)
    name = f"ladle_bench_stream_{uuid.uuid4().hex[:10]}"
    pipeline = options.out / "stream_pipeline.yaml"
    pipeline.write_text(PIPELINE, encoding="utf-8")
    env = {
        "LADLE_DESTINATION": _with_schema(options.postgres_url, name),
        "LADLE_BENCH_REDIS_URL": options.redis_url,
        "LADLE_BENCH_STREAM": name,
    }
    try:
        _fresh_stream(client, template, name, options)
        _settle(options)
        flags = ["--batch-size", str(batch_size), "--idle-exit", str(options.idle_exit_s)]
        commands = [
            [*options.ladle, "worker", str(pipeline), "--consumer", f"bench-{number}", *flags]
            for number in range(1, workers + 1)
        ]
        machine, redis_cpu = _machine_cpu(), _redis_cpu(client)
        run.spawned = time.time()
        with ThreadPoolExecutor(workers) as pool:
            jobs = [
                pool.submit(run_measured, c, env=env, cwd=options.out, timeout=options.limit())
                for c in commands
            ]
            run.measured = [job.result() for job in jobs]
        run.machine_cpu = _machine_cpu() - machine
        run.redis_cpu = _redis_cpu(client) - redis_cpu
        _read_logs(run)
        failed = [m.failure() for m in run.measured if not m.ok]
        run.error = failed[0] if failed else ""
        if not run.error:
            _verify(run, client, tally, options, name)
    finally:
        client.delete(name, f"{name}:dlq")
        with psycopg.connect(options.postgres_url, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return run


_TALLY_SQL = (
    "SELECT count(*), sum(student_id), sum(duration_s), count(*) FILTER (WHERE completed), "
    "count(*) FILTER (WHERE event_type = 'hint_given'), max(occurred_at) FROM {}"
)
_LEDGER_SQL = (
    "SELECT status, fetched, inserted, updated, unchanged, deduplicated, quarantined FROM {}"
)


def _verify(run: Run, client: redis.Redis, tally: Tally, options: StreamOptions, name: str) -> None:
    """Every message in the table once with the values sent; nothing pending; ledger balanced."""
    problems = []
    pending = int(client.xpending(name, GROUP)["pending"])
    if pending:
        problems.append(f"{pending:,} entries still pending")
    with psycopg.connect(options.postgres_url) as con:
        got = con.execute(sql.SQL(_TALLY_SQL).format(sql.Identifier(name, TABLE))).fetchone()
        ledger = con.execute(sql.SQL(_LEDGER_SQL).format(sql.Identifier(name, "_ladle_runs")))
        rows = ledger.fetchall()
    assert got is not None  # noqa: S101 - an aggregate always returns one row
    last_at = _timestamp(tally.last_at)
    want = (tally.rows, tally.student_ids, tally.durations, tally.completed, tally.hints, last_at)
    if (*[int(x or 0) for x in got[:5]], got[5] and got[5].timestamp()) != want:
        problems.append(f"table {tuple(got)} differs from the messages sent {want}")
    fetched = sum(r[1] for r in rows)
    inserted = sum(r[2] for r in rows)
    if any(r[0] != "succeeded" or r[1] != sum(r[2:]) for r in rows) or fetched != tally.rows:
        problems.append(f"ledger does not balance: {rows}")
    run.verified = not problems
    run.check = "; ".join(problems) or (
        f"{got[0]:,} rows = sent; 0 pending; ledger: {len(rows)} run(s), "
        f"{fetched:,} fetched = {inserted:,} inserted"
    )


# ---------------------------------------------------------------- all runs


@dataclass
class StreamResult:
    """Every run, the versions and the machine: what the report's section is made of."""

    options: StreamOptions
    runs: list[Run]
    example: str
    environment: list[str]
    fill_seconds: float
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    def shape(self, workers: int, batch_size: int) -> list[Run]:
        return [r for r in self.runs if (r.workers, r.batch_size) == (workers, batch_size)]


def _environment(client: redis.Redis, options: StreamOptions) -> list[str]:
    """Where and with what the numbers were measured, one Markdown bullet each."""
    with psycopg.connect(options.postgres_url) as con:
        row = con.execute("SHOW server_version").fetchone()
    postgres = str(row[0]).split()[0] if row else "?"
    parsed = urlsplit(options.postgres_url)
    where = f"{parsed.hostname}:{parsed.port or 5432}{parsed.path}"
    info = client.info("server")
    redis_where = client.connection_pool.connection_kwargs
    parser = "hiredis" if _has_hiredis() else "pure Python"
    versions = ", ".join(
        f"{name} {report.version(package)}"
        for name, package in (
            ("ladle", "ladle"),
            ("redis-py", "redis"),
            ("psycopg", "psycopg"),
            ("polars", "polars"),
        )
    )
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {os.cpu_count()} cores ({report.cpu_model()}), "
        f"{report.memory_gib():.1f} GiB RAM, shared by the workers, Redis and PostgreSQL",
        f"Redis {info['redis_version']} at {redis_where.get('host')}:{redis_where.get('port')}, "
        f"PostgreSQL {postgres} at {where} (default settings), Python {platform.python_version()}",
        f"{versions} (Redis reply parser: {parser})",
        f"load average (1, 5, 15 min) before the run: {_load()}",
    ]


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _has_hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


def run_benchmark(options: StreamOptions, say: Callable[[str], None]) -> StreamResult:
    """Fill the template once, then ``repeat`` interleaved rounds of every (workers, batch size)."""
    started = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(options.redis_url)
    template = f"ladle_bench_stream_template_{uuid.uuid4().hex[:10]}"
    try:
        environment = _environment(client, options)
        say(f"filling {template} with {options.messages:,} messages …")
        filling = time.perf_counter()
        tally, example = fill(client, template, options)
        fill_seconds = time.perf_counter() - filling
        say(f"  {fill_seconds:.1f} s ({options.messages / fill_seconds:,.0f} XADD/s pipelined)")
        runs: list[Run] = []
        for number in range(1, options.repeat + 1):
            for batch_size in options.batch_sizes:
                for workers in options.workers:
                    say(f"round {number}/{options.repeat}: {workers} worker(s), {batch_size:,}")
                    run = run_once(client, template, tally, options, shape=(workers, batch_size))
                    say("  " + _one_line(run))
                    runs.append(run)
        environment.append(f"load average (1, 5, 15 min) after the run: {_load()}")
    finally:
        client.delete(template)
        client.close()
    seconds = time.perf_counter() - started
    return StreamResult(options, runs, example, environment, fill_seconds, seconds)


def _one_line(run: Run) -> str:
    if not run.ok:
        return f"FAILED: {run.error or run.check or 'no batch was loaded'}"
    return (
        f"{run.rate:,.0f} msg/s end to end, {run.steady_rate:,.0f} steady, start-up "
        f"{run.startup:.1f} s, CPU s workers {run.worker_cpu:.1f} / Redis {run.redis_cpu:.1f} "
        f"/ machine {run.machine_cpu:.1f}; {run.check}"
    )


# ---------------------------------------------------------------- command line


def parse_options(argv: list[str] | None) -> tuple[StreamOptions, argparse.Namespace]:
    """``bench/stream.py``'s options (``make bench-stream STREAM_ARGS='…'``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=StreamOptions.messages)
    parser.add_argument(
        "--batch-sizes",
        default=",".join(map(str, StreamOptions.batch_sizes)),
        help="e.g. 1000,5000",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=StreamOptions.repeat)
    parser.add_argument("--quick", action="store_true", help="50,000 messages, one round")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--ladle", help="command running ladle's CLI (default: this venv's)")
    parser.add_argument("--report", type=Path, help="default: BENCHMARKS.md, or out/ if --quick")
    args = parser.parse_args(argv)
    options = StreamOptions(
        messages=50_000 if args.quick else args.messages,
        batch_sizes=tuple(int(x) for x in args.batch_sizes.split(",")),
        workers=tuple(int(x) for x in args.workers.split(",")),
        repeat=1 if args.quick else args.repeat,
        out=args.out,
        **({"ladle": tuple(shlex.split(args.ladle))} if args.ladle else {}),
    )
    return options, args


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the streaming benchmark and rewrite its section of the report; 1 if any run failed."""
    options, args = parse_options(argv)
    result = run_benchmark(options, _say)
    extra = shlex.join(sys.argv[1:] if argv is None else argv)
    command = f"make bench-stream STREAM_ARGS='{extra}'" if extra else "make bench-stream"
    text = report.streaming_section(result, command)
    quick = args.out / "BENCHMARKS.quick.md"
    path = args.report or (quick if args.quick else ROOT / "BENCHMARKS.md")
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    path.write_text(report.splice_streaming(old, text), encoding="utf-8")
    print(report.streaming_summary(result))
    _say(f"wrote the streaming section of {path}; total {result.seconds:.0f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
