"""The check every batch passes last, whatever its steps: no text a destination cannot store.

PostgreSQL cannot hold the character U+0000 (NUL) in ``text``, nor the ``\\u0000`` escape
in ``jsonb``; one such value would fail the whole COPY, while DuckDB would store it. So a
record with one goes to quarantine (rule ``nul``) on every destination, and the rest of the
batch loads: both destinations give the same result.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from ladle.batch import ROW, StepResult, json_text, reject_rows, split

RULE = "nul"
TEXT_MESSAGE = "text contains a NUL byte (\\u0000), which PostgreSQL cannot store"
JSON_MESSAGE = "JSON contains the escape \\u0000 (a NUL character), which PostgreSQL cannot store"
# A \u0000 escape, not an escaped backslash followed by "u0000": an even run of
# backslashes before it is text, an odd one is the escape.
_ESCAPED_NUL = r"(?:^|[^\\])(?:\\\\)*\\u0000"


class NulCheck:
    """Quarantine records with a NUL in a text column, or a ``\\u0000`` escape in a JSON one.

    JSON columns are the declared ``json`` ones (``json_columns``) and nested values
    (lists, structs), which are stored as JSON. One vectorized select finds them all.
    """

    def __init__(self, json_columns: Iterable[str] = ()) -> None:
        self._json = frozenset(json_columns)

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """The rows without NUL, and a reject per column that has one."""
        checks: dict[str, tuple[str, pl.Expr]] = {}
        for column, dtype in frame.schema.items():
            if column == ROW:
                continue
            if isinstance(dtype, pl.String):
                checks[f"t{len(checks)}"] = (
                    column,
                    pl.col(column).str.contains("\x00", literal=True),
                )
                if column in self._json:
                    escaped = pl.col(column).str.contains(_ESCAPED_NUL)
                    checks[f"j{len(checks)}"] = (column, escaped)
            elif isinstance(dtype, pl.List | pl.Array | pl.Struct):
                escaped = json_text(pl.col(column)).str.contains(_ESCAPED_NUL)
                checks[f"j{len(checks)}"] = (column, escaped)
        if not checks or frame.height == 0:
            return StepResult(frame)
        found = frame.select(expr.fill_null(False).alias(key) for key, (_, expr) in checks.items())
        rejects = [
            reject_rows(
                frame,
                found.get_column(key),
                field=column,
                rule=RULE,
                message=TEXT_MESSAGE if key.startswith("t") else JSON_MESSAGE,
            )
            for key, (column, _) in checks.items()
            if found.get_column(key).any()
        ]
        return split(frame, rejects)
