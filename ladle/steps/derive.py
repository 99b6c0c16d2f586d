"""derive: new columns from SQL expressions, evaluated by DuckDB over the batch.

Only the derived columns travel back from DuckDB; every existing column stays the
Polars column it was (zoned datetimes, decimals and lists keep their exact types).
DuckDB's session zone is the resource's, so ``dayofweek(created_at)`` is local time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ladle.batch import StepResult
from ladle.errors import StepError
from ladle.schema import normalize_name, quote
from ladle.steps import StepContext
from ladle.steps.columns import refuse_row_column, resolve

if TYPE_CHECKING:
    import duckdb

DeriveOptions = dict[str, str]
"""``{column: SQL expression}``, evaluated in order: later ones see earlier ones."""

_POSITION = "_ladle_position"
_VIEW = "_ladle_batch"


@dataclass(frozen=True)
class SqlColumn:
    """One expression to evaluate: the column it becomes and how errors name it."""

    name: str
    sql: str
    label: str


class SqlEngine:
    """Evaluate SQL expressions over batches, in one DuckDB connection held for the run.

    Each expression sees the batch plus the columns computed before it (an existing
    column of the same name is replaced). The result has one row per batch row, in the
    batch's order. A failing expression raises :class:`StepError` naming its label.
    """

    def __init__(self, *, context: StepContext, step: str) -> None:
        # Imported here: a run with no SQL expression never loads DuckDB (21 MB resident).
        import duckdb

        self._context = context
        self._step = step
        self._failed: type[Exception] = duckdb.Error
        self._connection: duckdb.DuckDBPyConnection = duckdb.connect()
        zone = context.timezone.replace("'", "''")
        try:
            self._connection.execute(f"SET TimeZone = '{zone}'")
        except duckdb.Error as exc:
            message = f"cannot use time zone {context.timezone!r}: {_first_line(exc)}"
            raise self._error(message) from None

    def evaluate(self, frame: pl.DataFrame, columns: Sequence[SqlColumn]) -> pl.DataFrame:
        """The computed columns, one row per row of ``frame`` and in its order."""
        view = self._with_declared(frame).with_row_index(_POSITION)
        self._connection.register(_VIEW, view)
        try:
            result = self._run(view.columns, columns)
        except self._failed:
            self._raise_first_failure(view.columns, columns)
            raise  # pragma: no cover - a prefix always reproduces the failure
        finally:
            self._connection.unregister(_VIEW)
        if result.height != frame.height:
            raise self._error(
                f"the expressions returned {result.height} rows for {frame.height}; use scalar "
                "expressions (no unnest or set-returning functions)"
            )
        return result.drop(_POSITION)

    def _with_declared(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The batch plus a null column for each declared column it lacks.

        A batch in which no record had a field has no column for it; an expression over
        a declared column must not fail on such a batch. An undeclared name stays an
        error, so a misspelled column is reported rather than read as null.
        """
        absent = [
            pl.lit(None, spec.type.polars if spec.type else pl.Null()).alias(normalize_name(name))
            for name, spec in self._context.columns.items()
            if resolve(name, frame.columns) is None
        ]
        return frame.with_columns(absent) if absent else frame

    def _run(self, existing: list[str], columns: Sequence[SqlColumn]) -> pl.DataFrame:
        names = {n.lower() for n in existing}  # DuckDB names ignore case
        steps = [f"s0 AS (SELECT * FROM {_VIEW})"]
        for i, column in enumerate(columns, start=1):
            replaced = f" EXCLUDE ({quote(column.name)})" if column.name.lower() in names else ""
            steps.append(
                f"s{i} AS (SELECT *{replaced}, ({column.sql}) AS {quote(column.name)} "
                f"FROM s{i - 1})"
            )
            names.add(column.name.lower())
        wanted = ", ".join(quote(c) for c in [_POSITION, *(c.name for c in columns)])
        query = f"WITH {', '.join(steps)} SELECT {wanted} FROM s{len(columns)} ORDER BY 1"
        return _utc(self._connection.sql(query).pl())

    def _raise_first_failure(self, existing: list[str], columns: Sequence[SqlColumn]) -> None:
        """Re-run growing prefixes of the expressions to name the one that fails."""
        for end in range(1, len(columns) + 1):
            try:
                self._run(existing, columns[:end])
            except self._failed as exc:
                column = columns[end - 1]
                raise self._error(
                    f"{column.label}: cannot evaluate {column.sql!r}: {_first_line(exc)}"
                ) from exc

    def _error(self, message: str) -> StepError:
        return StepError(message, resource=self._context.resource, step=self._step)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """DuckDB returns zoned timestamps in its session zone; ladle keeps them in UTC."""
    zoned = [
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC")
    ]
    return frame.with_columns(zoned) if zoned else frame


class Derive:
    """Add (or replace) columns computed by SQL expressions over the batch."""

    def __init__(self, options: DeriveOptions, context: StepContext) -> None:
        refuse_row_column(options, context=context, step="derive")
        self._expressions = dict(options)
        self._engine = SqlEngine(context=context, step="derive")

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Evaluate the expressions and attach the results to the batch, in row order."""
        if not self._expressions:
            return StepResult(frame=frame)
        columns = [
            SqlColumn(name=resolve(name, frame.columns) or name, sql=sql, label=f"column {name!r}")
            for name, sql in self._expressions.items()
        ]
        computed = self._engine.evaluate(frame, columns)
        return StepResult(frame=frame.with_columns(computed.get_columns()))
