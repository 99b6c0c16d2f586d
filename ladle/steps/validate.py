"""validate: enforce the declared constraints and SQL checks; failing rows become rejects.

Semantics worth knowing:

- Only ``required`` looks at missing values: null, blank text, or a column absent from
  the batch fail ``required`` and pass every other rule.
- A check fails when its expression is false; null passes. (With SQL's three-valued
  logic, failing on null would quarantine every row with a null operand; write
  ``x IS NOT NULL AND ...`` to demand a value.)
- ``regex`` is a search (Polars ``str.contains``, Rust regex syntax): anchor it with
  ``^...$`` to match the whole value.
- ``min``/``max`` compare numbers with numbers, dates and timestamps with the bound read
  by the datetime parser (naive bounds in the column's zone), and text with text.
- ``unique`` holds for the whole run: the first occurrence that passes every other rule
  is kept and later ones, in this batch or a later one, are rejected.
- A row gets one reject per rule it fails.
- A record ``cast`` refused is checked too (see :meth:`Validate.check_refused`), so its
  quarantine row lists a bad date and a missing required field together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from ladle.batch import ROW, StepResult, as_text, empty_rejects, reject_rows, without_rejected
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.schema import Kind, normalize_name
from ladle.steps import StepContext
from ladle.steps.columns import resolve
from ladle.steps.datetimes import DatetimeParser
from ladle.steps.derive import SqlColumn, SqlEngine


class Check(BaseModel):
    """A row-level SQL condition, evaluated by DuckDB; a row where it is false is rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expr: str
    """A DuckDB SQL condition over the row's columns; false rejects the row, null passes."""
    name: str | None = None
    """The rule the quarantine records; not set: ``check``."""
    message: str | None = None
    """The quarantine's message; not set: ``check failed: <expr>``."""
    field: str | None = None
    """The column the quarantine names as the failing field; not set: none."""


_POSITION = "_ladle_position"
_ELIGIBLE = "_ladle_eligible"

ValidateOptions = list[Check] | None
"""SQL checks to run in addition to the declared column constraints."""


class Validate:
    """Reject the rows that break a declared constraint or a check.

    Rules are compiled here once. ``unique`` remembers the values it has let through,
    so one instance serves one run of one resource.
    """

    def __init__(self, options: ValidateOptions, context: StepContext) -> None:
        self._context = context
        self._checks = list(options or [])
        self._columns: list[_Constraints] = []
        self._unique: list[_Unique] = []
        for name, spec in context.columns.items():
            zone = spec.timezone or context.timezone
            if spec.regex is not None:
                self._check_regex(name, spec.regex)
            self._columns.append(_Constraints(name, spec, zone))
            if spec.unique:
                self._unique.append(_Unique(name))
        self._engine = SqlEngine(context=context, step="validate") if self._checks else None

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Evaluate every rule and check; keep the rows that pass all of them."""
        try:
            rejects = [r for column in self._columns for r in column.rejects(frame)]
        except ValueError as exc:
            raise self._error(str(exc)) from None
        rejects += self._check_rejects(frame)
        if self._unique:
            eligible = without_rejected(frame, pl.concat([empty_rejects(), *rejects]))
            rejects += [unique.rejects(frame, eligible.get_column(ROW)) for unique in self._unique]
        combined = pl.concat([empty_rejects(), *rejects])
        kept = without_rejected(frame, combined)
        for unique in self._unique:
            unique.remember(kept)
        return StepResult(frame=kept, rejects=combined)

    def check_refused(self, frame: pl.DataFrame, refused: pl.DataFrame) -> pl.DataFrame:
        """Rejects for records ``cast`` refused, so that their quarantine row lists every error.

        ``frame`` holds those records as cast left them, each refused value null;
        ``refused`` names them (:data:`ROW`, ``field``). Every rule that can be evaluated
        runs: a refused value counts as present for ``required`` (it was there, only
        bad) and passes every other rule; a check whose expression names a refused field
        is not run for that record; ``unique`` is not run (the record is not kept, so it
        neither repeats a value nor is remembered). Nothing here changes what is kept.
        """
        try:
            rejects = [r for column in self._columns for r in column.rejects(frame)]
        except ValueError as exc:
            raise self._error(str(exc)) from None
        bad = refused.select(ROW, "field").unique()
        present = bad.with_columns(pl.lit("required").alias("rule"))
        combined = pl.concat([empty_rejects(), *rejects])
        kept = combined.join(present, on=[ROW, "field", "rule"], how="anti")
        checks = self._check_rejects(frame) if frame.height else []
        for check, found in zip(self._checks, checks, strict=True):
            named = [f for f in bad.get_column("field").unique() if _names(check.expr, f)]
            blind = bad.filter(pl.col("field").is_in(named)).select(ROW).unique()
            kept = pl.concat([kept, found.join(blind, on=ROW, how="anti")])
        return kept.sort(ROW, maintain_order=True)

    def _check_rejects(self, frame: pl.DataFrame) -> list[pl.DataFrame]:
        if self._engine is None:
            return []
        columns = [
            SqlColumn(name=f"_ladle_check_{i}", sql=c.expr, label=f"check {c.name or c.expr!r}")
            for i, c in enumerate(self._checks)
        ]
        results = self._engine.evaluate(frame, columns)
        rejects = []
        for check, column in zip(self._checks, columns, strict=True):
            result = results.get_column(column.name)
            if not isinstance(result.dtype, pl.Boolean | pl.Null):
                raise self._error(
                    f"check {check.name or check.expr!r} must be a condition, but "
                    f"{check.expr!r} gives {result.dtype} values"
                )
            failed = result.eq(other=False).fill_null(value=False)
            target = None
            if check.field is not None:
                target = resolve(check.field, frame.columns) or normalize_name(check.field)
            message = check.message or f"check failed: {check.expr}"
            rule = check.name or "check"
            rejects.append(reject_rows(frame, failed, field=target, rule=rule, message=message))
        return rejects

    def _check_regex(self, name: str, pattern: str) -> None:
        try:
            pl.Series([""]).str.contains(pattern)
        except pl.exceptions.PolarsError as exc:
            detail = " ".join(str(exc).split("\n\n")[0].split())
            message = f"column {name!r}: regex {pattern!r} is not supported: {detail}"
            raise self._error(message) from None

    def _error(self, message: str) -> StepError:
        return StepError(message, resource=self._context.resource, step="validate")


@dataclass(frozen=True)
class _Constraints:
    """The declared constraints of one column, except ``unique``."""

    declared: str
    spec: ColumnSpec
    timezone: str

    def rejects(self, frame: pl.DataFrame) -> list[pl.DataFrame]:
        """One rejects frame per rule that some row fails."""
        name = resolve(self.declared, frame.columns)
        if name is None:
            if not self.spec.required:
                return []
            everyone = pl.Series([True] * frame.height, dtype=pl.Boolean)
            return [self._reject(frame, everyone, normalize_name(self.declared), "required")]
        values = frame.get_column(name)
        failures = {
            "required": self._required(values),
            "in": self._allowed(values),
            "min": self._bound(values, "min"),
            "max": self._bound(values, "max"),
            "min_length": self._length(values, "min_length"),
            "max_length": self._length(values, "max_length"),
            "regex": self._regex(values),
        }
        return [
            self._reject(frame, failed, name, rule)
            for rule, failed in failures.items()
            if failed is not None and failed.any()
        ]

    def _reject(self, frame: pl.DataFrame, failed: pl.Series, name: str, rule: str) -> pl.DataFrame:
        return reject_rows(frame, failed, field=name, rule=rule, message=self._message(rule))

    def _message(self, rule: str) -> pl.Expr | str:
        """What failed, naming the value (as ``{}``) and the limit it broke."""
        spec = self.spec
        templates = {
            "in": f"'{{}}' is not one of {spec.in_!r}",
            "min": f"{{}} is less than min {_show(spec.min)}",
            "max": f"{{}} is greater than max {_show(spec.max)}",
            "min_length": f"'{{}}' is shorter than min_length {spec.min_length}",
            "max_length": f"'{{}}' is longer than max_length {spec.max_length}",
            "regex": f"'{{}}' does not match regex {spec.regex!r}",
        }
        if rule == "required":
            return "value is required"
        return pl.format(templates[rule], pl.col("value"))

    def _required(self, values: pl.Series) -> pl.Series | None:
        if not self.spec.required:
            return None
        if isinstance(values.dtype, pl.String):
            return values.str.strip_chars().str.len_bytes().fill_null(0) == 0
        return values.is_null()

    def _allowed(self, values: pl.Series) -> pl.Series | None:
        """Numbers and moments compare in the column's type; anything else by its spelling."""
        allowed = self.spec.in_
        if allowed is None or isinstance(values.dtype, pl.Null):
            return None
        dtype = values.dtype
        if dtype.is_numeric() or isinstance(dtype, pl.Date | pl.Datetime):
            typed = [_typed(v, dtype) for v in allowed]
            options = pl.Series([v for v in typed if v is not None], dtype=dtype)
            return ~values.is_in(options.implode()) & values.is_not_null()
        spellings = pl.Series([_text(v) for v in allowed], dtype=pl.String)
        return ~_as_text(values).is_in(spellings.implode()) & values.is_not_null()

    def _bound(self, values: pl.Series, which: str) -> pl.Series | None:
        bound = self.spec.min if which == "min" else self.spec.max
        if bound is None or isinstance(values.dtype, pl.Null):
            return None
        subject, limit = self._comparable(values, bound, which)
        failed: pl.Series = subject < limit if which == "min" else subject > limit
        return failed.fill_null(value=False)

    def _comparable(
        self, values: pl.Series, bound: float | str, which: str
    ) -> tuple[pl.Series, Any]:
        """The column and the bound in a form in which they compare."""
        dtype = values.dtype
        if dtype.is_numeric():
            return values, _number(bound, which, self.declared)
        if isinstance(dtype, pl.Date | pl.Datetime):
            return values, self._moment(bound, dtype, which)
        if isinstance(dtype, pl.String):
            if isinstance(bound, str):
                return values, bound
            return values.str.strip_chars().cast(pl.Float64, strict=False), bound
        raise ValueError(
            f"column {self.declared!r}: {which} applies to numbers, dates, timestamps and "
            f"text, but the column holds {dtype}; cast it first"
        )

    def _moment(self, bound: float | str, dtype: pl.DataType, which: str) -> Any:
        if isinstance(dtype, pl.Date):
            kind = Kind.DATE
        else:
            kind = Kind.TIMESTAMPTZ if getattr(dtype, "time_zone", None) else Kind.TIMESTAMP
        parsed, failed = DatetimeParser(kind, timezone=self.timezone)(pl.Series([bound]))
        if failed.any() or parsed.null_count():
            raise ValueError(f"column {self.declared!r}: {which} {bound!r} is not a {kind}")
        zone = getattr(dtype, "time_zone", None)
        return (parsed.dt.convert_time_zone(zone) if zone else parsed).item()

    def _length(self, values: pl.Series, which: str) -> pl.Series | None:
        limit = self.spec.min_length if which == "min_length" else self.spec.max_length
        if limit is None:
            return None
        if isinstance(values.dtype, pl.List):
            length = values.list.len()
        else:
            length = _as_text(values).str.len_chars()
        failed = length < limit if which == "min_length" else length > limit
        return failed.fill_null(value=False)

    def _regex(self, values: pl.Series) -> pl.Series | None:
        if self.spec.regex is None:
            return None
        return (~_as_text(values).str.contains(self.spec.regex)).fill_null(value=False)


@dataclass
class _Unique:
    """A column whose values must not repeat within the run."""

    declared: str
    seen: pl.Series | None = field(default=None)

    def rejects(self, frame: pl.DataFrame, eligible: pl.Series) -> pl.DataFrame:
        """Rows repeating a value seen in an earlier batch or in an earlier eligible row.

        ``eligible`` are the rows (by row column) that pass every other rule: a value's
        first occurrence among them is the one kept.
        """
        name = resolve(self.declared, frame.columns)
        if name is None:
            return empty_rejects()
        # Position and eligibility are materialized before the window: inside it, the
        # position would restart per group and the membership test run once per group.
        indexed = frame.with_row_index(_POSITION).with_columns(
            pl.col(ROW).is_in(eligible.implode()).alias(_ELIGIBLE)
        )
        position, values = pl.col(_POSITION), pl.col(name)
        first_kept = pl.when(pl.col(_ELIGIBLE)).then(position).min().over(name)
        repeated = first_kept.is_not_null() & (position > first_kept)
        if self.seen is not None:
            repeated = repeated | self._in_seen(values, frame.schema[name])
        failed = indexed.select((repeated & values.is_not_null()).fill_null(value=False))
        message = pl.format("'{}' is not unique: it appeared earlier in this run", pl.col("value"))
        return reject_rows(frame, failed.to_series(), field=name, rule="unique", message=message)

    def remember(self, kept: pl.DataFrame) -> None:
        """Add the values that went on to the ones later rows must not repeat."""
        name = resolve(self.declared, kept.columns)
        if name is None:
            return
        new = kept.get_column(name).drop_nulls().unique()
        if self.seen is None:
            self.seen = new
        elif self.seen.dtype == new.dtype:
            self.seen = pl.concat([self.seen, new], rechunk=False)
        else:
            self.seen = pl.concat([_as_text(self.seen), _as_text(new)], rechunk=False)

    def _in_seen(self, values: pl.Expr, dtype: pl.DataType) -> pl.Expr:
        assert self.seen is not None  # noqa: S101 - only called once a batch was remembered
        if self.seen.dtype == dtype:
            return values.is_in(self.seen.implode())
        return as_text(values, dtype).is_in(_as_text(self.seen).implode())


def _names(expr: str, column: str) -> bool:
    """Whether a SQL expression mentions ``column`` (bare, any case, or double-quoted)."""
    bare = rf"(?<![\w\"]){re.escape(column)}(?![\w\"])"
    return bool(re.search(bare, expr, re.IGNORECASE)) or f'"{column}"' in expr


def _as_text(values: pl.Series) -> pl.Series:
    return values.to_frame("v").select(as_text(pl.col("v"), values.dtype)).to_series()


def _typed(value: Any, dtype: pl.DataType) -> Any:
    """An allowed value in the column's type, or None when it cannot be one."""
    try:
        return pl.Series([value], strict=False).cast(dtype, strict=False).item()
    except pl.exceptions.PolarsError:
        return None


def _text(value: Any) -> str:
    """How an allowed value reads in text data: ``True`` is ``true``, ``1.0`` is ``1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(bound: float | str, which: str, column: str) -> float:
    try:
        return float(bound)
    except ValueError:
        raise ValueError(
            f"column {column!r}: {which} {bound!r} is not a number, but the column holds numbers"
        ) from None


def _show(bound: float | str | None) -> str:
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)
