"""Run many one-file resources in a child process, under a memory limit and a timeout.

A conformance suite is hundreds of small hostile files. Each becomes a resource of one
pipeline, and a child process runs them one after the other against one destination
connection, writing each outcome as it ends. A resource that raises anything but a
``LadleError``, exhausts the memory limit, or runs past the timeout is recorded as
``crashed`` or ``hung``; the child is then restarted on the resources left, so one bad
case never hides the verdict on the others. The tests then read the tables back with
the database drivers themselves, not through ladle.

Run as ``python -m tests.conformance.harness SPEC.json`` by :func:`run_resources` only.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

MEMORY_LIMIT_MB = 3072
"""The child's address-space limit: a runaway parse fails there, not on a shared machine."""

TIMEOUT_S = 30.0
"""How long one resource may run before it counts as hung."""

_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    """How one resource's run ended: ``succeeded``, ``failed``, ``crashed`` or ``hung``."""

    status: str
    error: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    detail: str = ""
    """A crash's traceback or exit status; a hang's timeout."""

    @property
    def balanced(self) -> bool:
        """The ledger's invariant over this run's counts."""
        c = self.counts
        placed = ("inserted", "updated", "unchanged", "deduplicated", "quarantined")
        return bool(c) and c["fetched"] == sum(c[k] for k in placed)

    @property
    def loaded(self) -> int:
        """Rows this run wrote to its table."""
        return sum(self.counts.get(k, 0) for k in ("inserted", "updated", "unchanged"))


def run_resources(
    config: Mapping[str, Any], base_dir: Path, url: str, *, timeout: float = TIMEOUT_S
) -> dict[str, Outcome]:
    """Run every resource of ``config`` into ``url``, each on its own; outcome by name."""
    names = list(config["resources"])
    outcomes: dict[str, Outcome] = {}
    attempt = 0
    while remaining := [name for name in names if name not in outcomes]:
        attempt += 1
        spec = base_dir / f".harness-{attempt}.json"
        results = base_dir / f".harness-{attempt}.results"
        log = base_dir / f".harness-{attempt}.log"
        spec.write_text(
            json.dumps(
                {
                    "config": config,
                    "base_dir": str(base_dir),
                    "url": url,
                    "names": remaining,
                    "results": str(results),
                }
            )
        )
        before = len(outcomes)
        _supervise(spec, results, log, outcomes, timeout=timeout)
        if len(outcomes) == before:  # the child died before its first resource
            detail = log.read_text(errors="replace")[-3000:]
            for name in remaining:
                outcomes[name] = Outcome("crashed", detail=f"the runner did not start: {detail}")
    return outcomes


def _supervise(
    spec: Path, results: Path, log: Path, outcomes: dict[str, Outcome], *, timeout: float
) -> None:
    """Run one child until it ends, dies, or spends ``timeout`` on one resource."""
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.conformance.harness", str(spec)],
            cwd=_REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(_REPO), os.environ.get("PYTHONPATH", "")]),
            },
        )
    current: str | None = None
    since = time.monotonic()
    offset = 0
    while True:
        done = child.poll() is not None
        if results.exists():
            with results.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                event = json.loads(line)
                current = event.get("start")
                if current is None:
                    name = event.pop("name")
                    outcomes[name] = Outcome(**event)
                since = time.monotonic()
        if done:
            break
        if current is not None and time.monotonic() - since > timeout:
            child.kill()
            child.wait()
            outcomes[current] = Outcome("hung", detail=f"still running after {timeout:.0f} s")
            return
        time.sleep(0.02)
    if current is not None:
        tail = log.read_text(errors="replace")[-2000:]
        outcomes[current] = Outcome(
            "crashed", detail=f"the process died (exit status {child.returncode}): {tail}"
        )


# ---------------------------------------------------------------- reading tables back


def table_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` (none if it does not exist), as the driver returns them.

    JSON columns come back as their text, so that numbers inside stay as written.
    """
    return read_tables(url, [table])[table]


def read_tables(url: str, tables: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each table (none for a table that does not exist), over one connection."""
    found: dict[str, list[dict[str, Any]]] = {}
    with _cursor(url) as (cursor, schema):
        for table in tables:
            if not _exists(cursor, schema, table):
                found[table] = []
                continue
            cursor.execute(f"SELECT * FROM {_qualified(schema, table)}")
            names = [column[0] for column in cursor.description]
            found[table] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return found


def quarantine_by_resource(url: str) -> dict[str, list[dict[str, Any]]]:
    """``_ladle_quarantine`` rows by resource, with ``errors`` decoded."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in table_rows(url, "_ladle_quarantine"):
        row["errors"] = json.loads(row["errors"])
        found.setdefault(row["resource"], []).append(row)
    return found


@contextmanager
def _cursor(url: str) -> Iterator[tuple[Any, str | None]]:
    if url.startswith("duckdb:///"):
        import duckdb

        with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as con:
            yield con, None
        return
    import psycopg
    from psycopg.types.string import TextLoader

    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    server = urlunsplit(parts._replace(query=""))
    with psycopg.connect(server) as conn:
        for kind in ("json", "jsonb"):
            conn.adapters.register_loader(kind, TextLoader)
        with conn.cursor() as cursor:
            yield cursor, schema


def _exists(cursor: Any, schema: str | None, table: str) -> bool:
    if schema is None:  # DuckDB's parameters are ?, psycopg's %s
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        )
    else:
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name = %s AND table_schema = %s",
            [table, schema],
        )
    return bool(cursor.fetchone()[0])


def _qualified(schema: str | None, table: str) -> str:
    quoted = '"' + table.replace('"', '""') + '"'
    return quoted if schema is None else '"' + schema.replace('"', '""') + '".' + quoted


# ---------------------------------------------------------------- the child


def _child(spec_path: str) -> None:
    """Run the spec's resources one by one, appending a start and an outcome line for each."""
    limit = MEMORY_LIMIT_MB << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from ladle import LadleError, Pipeline, RunOptions
    from ladle.destinations import connect

    spec = json.loads(Path(spec_path).read_text())
    pipeline = Pipeline.from_dict(spec["config"], base_dir=spec["base_dir"])
    destination = connect(spec["url"])
    with open(spec["results"], "a", encoding="utf-8") as out:
        for name in spec["names"]:
            out.write(json.dumps({"start": name}) + "\n")
            out.flush()
            options = RunOptions(resources=(name,), destination=spec["url"])
            event: dict[str, Any]
            try:
                result = pipeline.run(options, destination=destination).resources[0]
            except LadleError as exc:  # outside a resource's load: still a refusal, not a bug
                event = {"status": "failed", "error": str(exc)}
            except Exception:
                event = {"status": "crashed", "detail": traceback.format_exc()}
            else:
                counts = {k: getattr(result.counts, k) for k in _COUNTS}
                event = {"status": result.status, "error": result.error, "counts": counts}
            out.write(json.dumps({"name": name, **event}) + "\n")
            out.flush()
    destination.close()


_COUNTS = ("fetched", "inserted", "updated", "unchanged", "deduplicated", "quarantined")

if __name__ == "__main__":
    _child(sys.argv[1])
