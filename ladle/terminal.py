"""Tables that fit the terminal: columns chosen by priority, ids and numbers never cut.

Rich squeezes a table into the console's width by wrapping every cell, which splits a run
id or ``1,000,000`` over two lines. Here each column says how much it matters; the columns
that do not fit are left out (and named under the table), and ``--wide`` shows them all.
Only free text (an error message) may wrap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

OFF_TERMINAL_WIDTH = 200
"""Off a terminal (CI logs, pipes) with no ``COLUMNS``, tables get room rather than 80."""
_WRAPPED_MIN = 16
"""The narrowest a column of free text is drawn before it is left out instead."""


def width(stream: TextIO | None = None) -> int:
    """Columns to draw in: ``COLUMNS`` if set, else the terminal's, else 200 off a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        pass
    return OFF_TERMINAL_WIDTH


def console(columns: int | None = None, *, stderr: bool = False) -> Console:
    """A console as wide as :func:`width` says (or ``columns``), writing to stdout or stderr."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(highlight=False, stderr=stderr, width=columns or width(stream))


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass(frozen=True)
class Column:
    """One column of a view: which key of a row it shows, and how much it matters.

    ``priority`` 0 is always shown; higher numbers are left out first when the terminal is
    too narrow. ``wrap`` marks free text, the only kind of cell that may be wrapped.
    """

    key: str
    header: str
    priority: int = 0
    numeric: bool = False
    wrap: bool = False
    show: Callable[[Any], str] = _plain
    """The value as the table shows it (the JSON output keeps the value itself)."""
    styles: Mapping[str, str] = field(default_factory=dict)
    """A rich style per shown value (``failed``: ``red``)."""

    def text(self, row: Mapping[str, Any]) -> str:
        """The cell's plain text."""
        return self.show(row.get(self.key))

    def markup(self, text: str) -> str:
        """The cell's text, escaped, in its style."""
        style = self.styles.get(text)
        return f"[{style}]{escape(text)}[/{style}]" if style else escape(text)


_BORDER = 3
"""What each column adds to a table's width: one padding space each side and a border."""


def choose(columns: Sequence[Column], cells: Sequence[Sequence[str]], room: int) -> list[int]:
    """Indexes of the columns to show in ``room`` columns, in their own order: priority 0
    always, then the others, most important first, while they fit whole."""
    needs = [_needs(column, [row[i] for row in cells]) for i, column in enumerate(columns)]
    kept = {i for i, c in enumerate(columns) if c.priority == 0}
    used = 1 + sum(needs[i] + _BORDER for i in kept)
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)):
        if i not in kept and used + needs[i] + _BORDER <= room:
            kept.add(i)
            used += needs[i] + _BORDER
    return sorted(kept)


def _needs(column: Column, texts: Sequence[str]) -> int:
    """The column's width: its widest cell, or (free text) as narrow as it may be drawn."""
    natural = max([cell_len(column.header), *(cell_len(text) for text in texts)])
    return min(natural, max(_WRAPPED_MIN, cell_len(column.header))) if column.wrap else natural


@dataclass(frozen=True)
class Drawn:
    """A table ready to print, and the headers of the columns left out of it."""

    table: Table
    hidden: list[str]
    needs: int
    """The columns the table takes, drawn without wrapping an id or a number."""


def draw(
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    room: int,
    wide: bool = False,
) -> Drawn:
    """The rows as a table that fits ``room`` columns (every column with ``wide``)."""
    cells = [[column.text(row) for column in columns] for row in rows]
    shown = list(range(len(columns))) if wide else choose(columns, cells, room)
    table = Table(title=escape(title) if title else None, title_justify="left")
    needs = 1
    for i in shown:
        column = columns[i]
        need = _needs(column, [row[i] for row in cells])
        needs += need + _BORDER
        table.add_column(
            escape(column.header),
            justify="right" if column.numeric else "left",
            no_wrap=not column.wrap,
            min_width=need,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for row in cells:
        table.add_row(*(columns[i].markup(row[i]) for i in shown))
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    return Drawn(table, hidden, needs)


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    wide: bool = False,
) -> list[str]:
    """Print the rows as a table as wide as the terminal, naming the columns left out; with
    ``wide``, every column, however wide that makes the table. Returns the keys left out."""
    room = width()
    drawn = draw(columns, rows, title=title, room=room, wide=wide)
    # Never narrower than the table: rich would cut the ids and numbers it cannot wrap.
    out = console(max(room, drawn.needs))
    out.print(drawn.table)
    if drawn.hidden:
        out.print(f"[dim]--wide adds: {', '.join(drawn.hidden)}[/dim]")
    return [column.key for column in columns if column.header in drawn.hidden]
