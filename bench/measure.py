"""Run one loading process and measure it: wall-clock seconds and its own peak RSS.

Every method runs as a separate process (psql, the ``ladle`` CLI, a dlt script, a
psycopg script), timed from spawn to exit, so each number includes the interpreter's
start and imports, as a user running the command would see them.

Peak RSS comes from GNU ``/usr/bin/time -f %M``, not from ``wait4()`` on our own child:
Linux carries a process's peak RSS across ``fork`` and ``exec`` (the new program starts
with its parent's high-water mark), so a child of this harness would report at least
the harness's own peak. ``time`` is small, and its child starts from ``time``'s mark.
Without it, ``wait4`` is used and the figure is flagged as an upper bound.

CPU seconds: the process's own (user + system, from ``wait4``, which includes what it
started and waited for) and, when ``database`` is given, the PostgreSQL server's work for
it: the backends connected to that database (and their parallel workers), sampled from
``/proc`` every 50 ms while the process runs (see :class:`ServerCpu`). The load average
(1 min) is read when the process starts and when it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

GNU_TIME = Path("/usr/bin/time")
_TICK = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds of the PostgreSQL backends connected to one database, while a load runs.

    A backend's CPU time is readable in ``/proc/<pid>/stat`` only while it lives; once the
    client disconnects it exits, and its time goes to the postmaster's children's total,
    mixed with every other client's. So a thread polls every ``interval`` seconds and keeps
    each backend's latest figure: at most the last ``interval`` of each connection is
    missed. Backends are recognised by their process title (``postgres: … <user>
    <database> <host>``); parallel workers by the backend they work for. Background
    processes (WAL writer, checkpointer, autovacuum) are not counted.
    """

    def __init__(self, database: str, interval: float = 0.05) -> None:
        self._needle = f" {database} "
        self._interval = interval
        self._seen: dict[int, float] = {}
        self._ignored: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerCpu:
        self._poll()  # backends already there (none, normally) count from their start
        self._before = dict(self._seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    @property
    def seconds(self) -> float:
        """CPU seconds the backends spent since the measurement started."""
        return sum(t - self._before.get(pid, 0.0) for pid, t in self._seen.items())

    def _run(self) -> None:
        polls = 0
        while not self._stop.wait(self._interval):
            polls += 1
            if polls % 100 == 0:
                # A pid can be reused (pid_max may be 32768): look at every process again.
                self._ignored.clear()
            self._poll()

    def _poll(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit() or (pid := int(name)) in self._ignored:
                continue
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                if pid not in self._seen and not self._is_ours(pid, stat):
                    continue
            except OSError:  # it exited between listdir and the read
                continue
            fields = stat.rsplit(")", 1)[1].split()
            self._seen[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime

    def _is_ours(self, pid: int, stat: str) -> bool:
        """Whether ``pid`` serves the database; undecided processes are asked again."""
        if not stat.split(" (", 1)[1].startswith("postgres)"):
            self._ignored.add(pid)
            return False
        title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if not title.startswith("postgres: "):
            return False  # the postmaster, or a child that has not named itself yet
        if self._needle in title:
            return True
        worker = title.partition("parallel worker for PID ")[2].split(" ")[0].strip("\x00")
        if worker.isdigit() and int(worker) in self._seen:
            return True
        self._ignored.add(pid)
        return False


@dataclass(frozen=True)
class Measured:
    """What one process did: exit code, seconds, peak RSS, and its output."""

    command: tuple[str, ...]
    returncode: int
    timed_out: bool
    seconds: float
    peak_rss_mb: float
    rss_exact: bool
    """False when the RSS came from ``wait4`` and may include the harness's own peak."""
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0
    """User plus system CPU time of the process and what it waited for (from ``wait4``)."""
    server_cpu_seconds: float | None = None
    """CPU time of the PostgreSQL backends serving it; None when not measured."""
    loads: tuple[float, float] = (0.0, 0.0)
    """The 1-minute load average when the process started and when it ended."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """The end of stderr (or stdout): enough to say why it failed in the report."""
        if self.timed_out:
            return f"killed after {self.seconds:.0f} s (time limit): hung or far too slow"
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " / ".join(text[-3:])[:400] or f"exit code {self.returncode}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and what it started (``time`` and the load below it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _peak_kib(path: Path) -> int | None:
    """The last line GNU time wrote: ``%M``, the child's peak RSS in KiB."""
    try:
        lines = path.read_text(encoding="utf-8").split()
        return int(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
    database: str | None = None,
) -> Measured:
    """Run ``command`` to completion, or kill it after ``timeout`` seconds.

    stdout and stderr go to files, never to a pipe that could fill and block the child.
    With ``database``, the CPU time of the PostgreSQL backends connected to it is measured
    too.
    """
    full_env = {**os.environ, **(env or {})}
    use_time = GNU_TIME.exists()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".rss") as rss,
    ):
        wrapped = list(command)
        if use_time:
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *wrapped]
        server = ServerCpu(database) if database else contextlib.nullcontext()
        load_start = os.getloadavg()[0]
        with server:
            returned = _spawn_and_wait(wrapped, (out, err), env=full_env, cwd=cwd, timeout=timeout)
        proc, _, usage, seconds = returned
        peak = _peak_kib(Path(rss.name)) if use_time else None
        out.seek(0)
        err.seek(0)
        return Measured(
            command=tuple(command),
            returncode=proc.returncode,
            timed_out=seconds >= timeout,
            seconds=seconds,
            peak_rss_mb=(peak if peak is not None else usage.ru_maxrss) / 1024,  # KiB
            rss_exact=peak is not None,
            stdout=out.read().decode("utf-8", errors="replace"),
            stderr=err.read().decode("utf-8", errors="replace"),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            server_cpu_seconds=server.seconds if isinstance(server, ServerCpu) else None,
            loads=(load_start, os.getloadavg()[0]),
        )


def _spawn_and_wait(
    wrapped: list[str],
    files: tuple[IO[bytes], IO[bytes]],
    *,
    env: dict[str, str],
    cwd: Path | None,
    timeout: float,
) -> tuple[subprocess.Popen[bytes], int, Any, float]:
    """Start the process in its own group and wait for it; kill it after ``timeout`` seconds.

    Returns the process, its wait status, its resource usage and its wall seconds.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        wrapped,
        stdin=subprocess.DEVNULL,
        stdout=files[0],
        stderr=files[1],
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group, so a timeout kills it all
    )
    # A hung load must become a failed row of the report, not a benchmark that never ends.
    killer = threading.Timer(timeout, _kill_group, [proc])
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        # Ctrl-C does not reach a child in its own session: take it down with us.
        _kill_group(proc)
        raise
    finally:
        killer.cancel()
    seconds = time.perf_counter() - started
    # Popen did not reap the child itself: tell it, so it never waits again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc, status, usage, seconds
