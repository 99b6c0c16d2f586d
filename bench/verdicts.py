"""Issue 14's targets, each printed with this run's numbers and a verdict: met or not met.

A ratio between two methods is taken on wall-clock seconds when the 1-minute load average
stayed below :data:`LOAD_LIMIT` at the start and end of every run of both; otherwise on
CPU seconds (the process's plus its PostgreSQL backends'), which other work on the machine
disturbs far less than it does the wall clock. Each verdict says which it used. A method
that failed or loaded wrong data counts as not measured, never as met.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from methods import Result

from ladle.config import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from stream import StreamResult

LOAD_LIMIT = 3.0
"""At or above this 1-minute load average, wall-clock ratios give way to CPU seconds."""
MILLION = 1_000_000
RSS_GROWTH = 1.1
"""Peak RSS at 5x the rows may be at most this multiple of (b)'s."""
DLT_FACTOR = 25
"""dlt's default merge must take at least this many times (b)'s."""


@dataclass(frozen=True)
class Verdict:
    """One target: its wording, this run's numbers, and whether it is met (None: not measured)."""

    target: str
    shown: str = "—"
    met: bool | None = None
    basis: str = ""

    def row(self) -> str:
        verdict = "— (not measured)" if self.met is None else ("✓ met" if self.met else "✗ not met")
        cells = [self.target, self.shown, self.basis or "—", verdict]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _good(results: Sequence[Result], key: str) -> Result | None:
    """The result of method ``key`` if it loaded the right data; ``b x`` is (b)'s large run."""
    for r in results:
        if r.key == key or (key == "b x" and r.key.startswith("b x")):
            ok = r.verified and not r.error and r.seconds is not None
            return r if ok else None
    return None


def ratio(slow: Result, fast: Result) -> tuple[float, str] | None:
    """``slow`` / ``fast``: wall clock on a quiet machine, else CPU seconds; and the basis."""
    loads = [x for r in (slow, fast) if (x := r.max_load) is not None]
    peak = max(loads, default=0.0)
    if peak < LOAD_LIMIT and slow.seconds and fast.seconds:
        return slow.seconds / fast.seconds, f"wall clock (load ≤ {peak:.1f})"
    cpu = slow.total_cpu_seconds, fast.total_cpu_seconds
    if not cpu[0] or not cpu[1]:
        return None
    return cpu[0] / cpu[1], f"CPU s (load reached {peak:.1f})"


def _seconds(result: Result, basis: str) -> str:
    if basis.startswith("wall"):
        return f"{result.seconds:.1f} s"
    return f"{result.total_cpu_seconds:.1f} CPU s"


def _at_most(target: str, slow: Result | None, fast: Result | None, bar: float) -> Verdict:
    """``slow`` takes at most ``bar`` times what ``fast`` takes."""
    found = ratio(slow, fast) if slow and fast else None
    if slow is None or fast is None or found is None:
        return Verdict(target)
    value, basis = found
    shown = f"{_seconds(slow, basis)} vs {_seconds(fast, basis)}: {value:.2f}x"
    return Verdict(target, shown, value <= bar, basis)


def _rss(target: str, results: Sequence[Result], keys: Sequence[str], limit: float) -> Verdict:
    found = [r for k in keys if (r := _good(results, k)) and r.peak_rss_mb is not None]
    if len(found) < len(keys):
        return Verdict(target)
    shown = ", ".join(f"({r.key}) {r.peak_rss_mb:.0f} MB at {r.rows:,} rows" for r in found)
    return Verdict(target, shown, all((r.peak_rss_mb or 0) < limit for r in found), "peak RSS")


def _ladle_cpu(results: Sequence[Result]) -> Verdict:
    target = "(b) ladle's own CPU ≤ 6 s per million rows"
    b = _good(results, "b")
    if b is None or b.cpu_seconds is None:
        return Verdict(target)
    bar = 6.0 * b.rows / MILLION
    shown = f"{b.cpu_seconds:.1f} CPU s for {b.rows:,} rows (bar {bar:.1f} s)"
    return Verdict(target, shown, b.cpu_seconds <= bar, "CPU s of the ladle process")


def _rss_growth(results: Sequence[Result]) -> Verdict:
    b, large = _good(results, "b"), _good(results, "b x")
    factor = f"{large.rows // b.rows}x" if b and large else "5x"
    target = f"(b) peak RSS at {factor} the rows ≤ +10 %"
    if not b or not large or not b.peak_rss_mb or not large.peak_rss_mb:
        return Verdict(target)
    growth = large.peak_rss_mb / b.peak_rss_mb
    shown = (
        f"{large.peak_rss_mb:.0f} MB at {large.rows:,} rows vs {b.peak_rss_mb:.0f} MB: "
        f"{100 * (growth - 1):+.0f} %"
    )
    return Verdict(target, shown, growth <= RSS_GROWTH, "peak RSS")


def _dlt(results: Sequence[Result]) -> Verdict:
    target = "dlt's default merge (d default) ≥ 25x slower than (b)"
    dlt, b = _good(results, "d default"), _good(results, "b")
    found = ratio(dlt, b) if dlt and b else None
    if dlt is None or b is None or found is None:
        return Verdict(target)
    value, basis = found
    shown = f"{_seconds(dlt, basis)} vs {_seconds(b, basis)}: {value:.1f}x"
    return Verdict(target, shown, value >= DLT_FACTOR, basis)


STREAM_TARGET = 50_000
"""Messages per second one worker must sustain end to end, at the default batch size."""


def worker(stream: StreamResult | None) -> Verdict:
    """One ``ladle worker`` at the default batch size, end to end."""
    target = f"one worker ≥ {STREAM_TARGET:,} messages/s at batch size {DEFAULT_BATCH_SIZE:,}"
    runs = stream.shape(1, DEFAULT_BATCH_SIZE) if stream else []
    if not runs or not all(r.ok for r in runs):
        return Verdict(target)
    rate = statistics.median(r.rate for r in runs)
    shown = f"{rate:,.0f} msg/s end to end (median of {len(runs)})"
    return Verdict(target, shown, rate >= STREAM_TARGET, "wall clock (messages / s)")


def verdicts(results: Sequence[Result], stream: StreamResult | None) -> list[Verdict]:
    """Every target of issue 14, in the order the issue lists them."""
    keys = ("a", "b", "c", "c'", "g", "g'", "h", "h'")
    a, b, c, c_hand, g, g_alone, h, h_alone = (_good(results, k) for k in keys)
    return [
        _at_most("(b) ladle merge into PostgreSQL ≤ 1.1x (a) psql `\\copy`", b, a, 1.1),
        _ladle_cpu(results),
        _at_most("(c) ladle change file ≤ 1.1x (c') by hand", c, c_hand, 1.1),
        _at_most("(g) ladle → DuckDB ≤ 1.5x (g') DuckDB alone", g, g_alone, 1.5),
        _at_most("(h) ladle → DuckDB change file ≤ 1.5x (h') `MERGE INTO`", h, h_alone, 1.5),
        _rss("DuckDB: ladle's peak RSS < 400 MB", results, ("g", "h"), 400),
        _rss("PostgreSQL: (b) peak RSS < 300 MB", results, ("b",), 300),
        _rss_growth(results),
        _dlt(results),
        worker(stream),
    ]


def table(found: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table."""
    head = "| target (issue 14) | this run | compared on | verdict |\n|---|---|---|---|\n"
    return head + "\n".join(v.row() for v in found) + "\n"
