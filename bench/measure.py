"""Run one loading process and measure it: wall-clock seconds and its own peak RSS.

Every method runs as a separate process (psql, the ``ladle`` CLI, a dlt script, a
psycopg script), timed from spawn to exit, so each number includes the interpreter's
start and imports, as a user running the command would see them.

Peak RSS comes from GNU ``/usr/bin/time -f %M``, not from ``wait4()`` on our own child:
Linux carries a process's peak RSS across ``fork`` and ``exec`` (the new program starts
with its parent's high-water mark), so a child of this harness would report at least
the harness's own peak. ``time`` is small, and its child starts from ``time``'s mark.
Without it, ``wait4`` is used and the figure is flagged as an upper bound.
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

GNU_TIME = Path("/usr/bin/time")


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
) -> Measured:
    """Run ``command`` to completion, or kill it after ``timeout`` seconds.

    stdout and stderr go to files, never to a pipe that could fill and block the child.
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
        started = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=full_env,
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
        )
