"""The runs chart, drawn on the server as SVG: rows loaded (bars) and duration (a line) per run.

No chart library and no JavaScript: the geometry is computed here and the template
writes it out as ``<rect>`` and ``<polyline>`` elements, each with a ``<title>`` that a
browser shows on hover. Runs are spaced evenly, oldest on the left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 860, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 64, 16, 40


@dataclass(frozen=True)
class RunPoint:
    """One run, all its resources together."""

    run_id: str
    started: datetime
    rows: int
    """Rows loaded: inserted + updated."""
    seconds: float | None
    status: str


@dataclass(frozen=True)
class Bar:
    """A run's bar (rows loaded) and its duration point, in SVG coordinates."""

    run_id: str
    x: float
    y: float
    width: float
    height: float
    status: str
    title: str
    dot: tuple[float, float] | None


@dataclass(frozen=True)
class Tick:
    """A label on an axis."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """Everything the template draws."""

    width: int
    height: int
    bars: list[Bar]
    line: str
    """``x,y x,y …`` of the duration line (runs without an end are left out)."""
    left_ticks: list[Tick]
    right_ticks: list[Tick]
    time_ticks: list[Tick]
    plot: tuple[float, float, float, float]
    """x, y, width, height of the plot area."""


def build_chart(points: list[RunPoint]) -> Chart:
    """Lay out ``points`` (any order; drawn oldest first) in a WIDTH x HEIGHT box."""
    points = sorted(points, key=lambda p: p.started)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    top_rows = _top(max((p.rows for p in points), default=0), whole=True)
    top_secs = _top(max((p.seconds or 0.0 for p in points), default=0.0), whole=False)
    slot = plot_w / max(len(points), 1)
    bars = []
    for i, p in enumerate(points):
        x = _LEFT + i * slot
        # A run that loaded nothing still shows (its colour says how it ended).
        height = max(plot_h * p.rows / top_rows, 2.0)
        dot = None
        if p.seconds is not None:
            dot = (round(x + slot / 2, 1), round(_TOP + plot_h * (1 - p.seconds / top_secs), 1))
        seconds = "running" if p.seconds is None else f"{p.seconds:.2f} s"
        title = (
            f"run {p.run_id} ({p.status}), {p.started:%Y-%m-%d %H:%M:%S} UTC: "
            f"{p.rows:,} rows loaded, {seconds}"
        )
        bars.append(
            Bar(
                p.run_id,
                round(x + slot * 0.15, 1),
                round(_TOP + plot_h - height, 1),
                round(slot * 0.7, 1),
                round(height, 1),
                p.status,
                title,
                dot,
            )
        )
    line = " ".join(f"{b.dot[0]},{b.dot[1]}" for b in bars if b.dot is not None)
    return Chart(
        WIDTH,
        HEIGHT,
        bars,
        line,
        _axis(top_rows, _LEFT - 8, plot_h, lambda v: f"{v:,.0f}"),
        _axis(top_secs, WIDTH - _RIGHT + 8, plot_h, lambda v: f"{v:.3g} s"),
        _time_ticks(points, slot),
        (_LEFT, _TOP, plot_w, plot_h),
    )


def _top(value: float, *, whole: bool) -> float:
    """The axis' top: four equal steps of 1, 2, 2.5 or 5 x 10^n reaching ``value``.

    ``whole`` axes (row counts) step by whole numbers, so their labels never repeat.
    """
    needed = value / 4
    if needed <= 0:
        return 4.0 if whole else 1.0
    magnitude = 10.0 ** math.floor(math.log10(needed))
    steps = [f * magnitude for f in (1, 2, 2.5, 5, 10)]
    if whole:
        steps = [s for s in steps if s >= 1 and s == int(s)]
    return 4 * next((s for s in steps if s >= needed), 1.0)


def _axis(top: float, x: float, plot_h: float, label: Callable[[float], str]) -> list[Tick]:
    """Five labels, 0 to ``top``, up the axis at ``x``."""
    return [
        Tick(x, round(_TOP + plot_h * (1 - i / 4) + 4, 1), label(top * i / 4)) for i in range(5)
    ]


def _time_ticks(points: list[RunPoint], slot: float) -> list[Tick]:
    """Start times of the first, middle and last runs under the bars."""
    if not points:
        return []
    chosen = sorted({0, len(points) // 2, len(points) - 1})
    y = HEIGHT - _BOTTOM + 18
    return [
        Tick(round(_LEFT + i * slot + slot / 2, 1), y, f"{points[i].started:%Y-%m-%d %H:%M}")
        for i in chosen
    ]
