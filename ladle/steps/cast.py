"""cast: give declared columns their declared types; a value that does not fit is a reject.

What a value may look like, per target type:

- numbers (``int``, ``bigint``, ``double``, ``decimal``): numbers, or text such as ``12``,
  `` 12 ``, ``1e3``, ``12.50``. ``int``/``bigint`` take a fractional number only when it is
  integral, and a value out of range fails rather than wraps. Decimals round half-even
  to their scale; too many digits before the point fail.
- ``bool``: ``true/false yes/no y/n t/f 1/0 on/off`` in any case, and the numbers 0 and 1.
- ``date``, ``timestamp``, ``timestamptz``: see :mod:`ladle.steps.datetimes`.
- ``text``: anything; lists and structs become compact JSON.
- ``json``: lists, structs, numbers and bools become compact JSON; text that is valid JSON
  is kept as it is (so ``12`` or ``[1, 2]`` arriving as text keep their meaning) and any
  other text becomes a JSON string (``abc`` -> ``"abc"``). NaN and infinities fail.

For every type but ``text``, text is trimmed first and blank text is a missing value
(null), not a bad one. Null stays null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from ladle.batch import StepResult, as_text, json_text, reject_rows, split
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.schema import ColumnType, Kind, normalize_name, parse_type
from ladle.steps import StepContext
from ladle.steps.columns import refuse_row_column, resolve_or_new
from ladle.steps.datetimes import TEMPORAL_KINDS, DatetimeParser, present

CastOptions = dict[str, str] | None
"""``{column: type}``; none or empty casts every declared column that has a ``type``."""

Caster = Callable[[pl.Series], tuple[pl.Series, pl.Series]]
"""Values in, (cast values, mask of non-null inputs that failed) out."""

_TRUE = ("true", "yes", "y", "t", "1", "on")
_FALSE = ("false", "no", "n", "f", "0", "off")
_BOOL_WORDS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


class Cast:
    """Cast columns to their types; rows with a value that does not parse are rejected.

    Everything about a column is decided here once: its type, its zone and formats.
    A declared column missing from a batch is added as a typed null column, so every
    batch reaches the destination with the same schema.
    """

    def __init__(self, options: CastOptions, context: StepContext) -> None:
        self._context = context
        if options:
            targets = {name: self._parse(name, text) for name, text in options.items()}
        else:
            targets = {n: s.type for n, s in context.columns.items() if s.type is not None}
        refuse_row_column(targets, context=context, step="cast")
        self._casters = {
            name: (target, self._caster(name, target)) for name, target in targets.items()
        }

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Cast every target column; reject each row once per value that failed."""
        replaced: dict[str, pl.Series] = {}
        rejects = []
        for declared, (target, caster) in self._casters.items():
            name = resolve_or_new(declared, frame.columns)
            if name not in frame.columns:
                replaced[name] = pl.Series(name, [None] * frame.height, dtype=target.polars)
                continue
            values, failed = caster(frame.get_column(name))
            replaced[name] = values.alias(name)
            if failed.any():
                message = pl.format(f"cannot parse '{{}}' as {target}", pl.col("value"))
                rejects.append(reject_rows(frame, failed, field=name, rule="type", message=message))
        cast = frame.with_columns(list(replaced.values()))
        return split(cast, rejects)

    def _parse(self, name: str, text: str) -> ColumnType:
        try:
            return parse_type(text)
        except ValueError as exc:
            raise self._error(f"column {name!r}: {exc}") from None

    def _caster(self, name: str, target: ColumnType) -> Caster:
        if target.kind not in TEMPORAL_KINDS:
            return caster_for(target)
        spec = _spec(self._context.columns, name)
        try:
            return DatetimeParser(
                target.kind,
                timezone=spec.timezone or self._context.timezone,
                formats=spec.formats,
            )
        except ValueError as exc:
            raise self._error(f"column {name!r}: {exc}") from None

    def _error(self, message: str) -> StepError:
        return StepError(message, resource=self._context.resource, step="cast")


def _spec(columns: Mapping[str, ColumnSpec], name: str) -> ColumnSpec:
    """The declaration of ``name``, however the options spelled it."""
    if name in columns:
        return columns[name]
    by_normalized = {normalize_name(key): spec for key, spec in columns.items()}
    return by_normalized.get(normalize_name(name), ColumnSpec())


def caster_for(target: ColumnType) -> Caster:
    """The function casting a Series to ``target`` (any type but date and timestamps)."""
    if target.kind in TEMPORAL_KINDS:
        raise ValueError(f"{target} needs a DatetimeParser")
    convert = _CONVERTERS[target.kind]

    def cast(values: pl.Series) -> tuple[pl.Series, pl.Series]:
        if values.dtype == target.polars and target.kind is not Kind.JSON:
            # Already the target type (text stays text, Int64 stays bigint): nothing can fail,
            # and skipping the blank-text scan saves most of the cost on long text columns.
            return values, pl.repeat(False, values.len(), eager=True)
        result = (
            values.to_frame("v")
            .select(convert(pl.col("v"), values.dtype, target).cast(target.polars))
            .to_series()
            .alias(values.name)
        )
        return result, present(values) & result.is_null()

    return cast


def _unparseable(dtype: pl.DataType) -> pl.Expr:
    """A null for every row: no value of the input's type can become the target type."""
    return pl.repeat(None, pl.len(), dtype=dtype)


def _trimmed(column: pl.Expr) -> pl.Expr:
    text = column.str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def _to_integer(column: pl.Expr, dtype: pl.DataType, target: ColumnType) -> pl.Expr:
    """Integers exactly; fractional numbers only when integral; overflow is null."""
    if isinstance(dtype, pl.String):
        text = _trimmed(column)
        exact = text.cast(pl.Int64, strict=False).cast(target.polars, strict=False)
        return pl.coalesce(exact, _integral(text.cast(pl.Float64, strict=False), target))
    if dtype.is_integer() or isinstance(dtype, pl.Boolean | pl.Null):
        return column.cast(target.polars, strict=False)
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return _integral(column, target)
    return _unparseable(target.polars)


def _integral(number: pl.Expr, target: ColumnType) -> pl.Expr:
    whole = number.cast(pl.Float64).is_finite() & (number == number.floor())
    return pl.when(whole).then(number).cast(target.polars, strict=False)


def _to_float(column: pl.Expr, dtype: pl.DataType, target: ColumnType) -> pl.Expr:
    """Numbers and numeric text (``NaN`` and ``inf`` included, as the databases allow)."""
    if isinstance(dtype, pl.String):
        return _trimmed(column).cast(target.polars, strict=False)
    if isinstance(dtype, pl.Boolean):
        return column.cast(pl.Int8).cast(target.polars, strict=False)
    if dtype.is_numeric() or isinstance(dtype, pl.Null):
        return column.cast(target.polars, strict=False)
    return _unparseable(target.polars)


def _to_bool(column: pl.Expr, dtype: pl.DataType, target: ColumnType) -> pl.Expr:
    """Yes/no words, or the numbers 0 and 1."""
    if isinstance(dtype, pl.String):
        word = _trimmed(column).str.to_lowercase()
        return word.replace_strict(_BOOL_WORDS, default=None, return_dtype=pl.Boolean)
    if dtype.is_numeric():
        return pl.when(column == 1).then(True).when(column == 0).then(False)
    if isinstance(dtype, pl.Boolean | pl.Null):
        return column.cast(pl.Boolean)
    return _unparseable(pl.Boolean())


def _to_text(column: pl.Expr, dtype: pl.DataType, target: ColumnType) -> pl.Expr:
    """Anything, as text; text itself is kept exactly (not trimmed)."""
    return as_text(column, dtype)


def _to_json(column: pl.Expr, dtype: pl.DataType, target: ColumnType) -> pl.Expr:
    """Valid JSON text: see the module docstring for how text is treated."""
    if isinstance(dtype, pl.String):
        text = _trimmed(column)
        # serde_json is strict (no NaN, no trailing commas); it reads JSON null as null.
        valid = text.str.json_path_match("$").is_not_null() | (text == "null")
        return pl.when(valid).then(text).when(text.is_not_null()).then(json_text(column))
    if dtype.is_float():
        return pl.when(column.is_finite()).then(column.cast(pl.String))
    if dtype.is_numeric() or isinstance(dtype, pl.Boolean | pl.Null):
        return column.cast(pl.String)
    return json_text(column)


_CONVERTERS: dict[Kind, Callable[[pl.Expr, pl.DataType, ColumnType], pl.Expr]] = {
    Kind.INT: _to_integer,
    Kind.BIGINT: _to_integer,
    Kind.DOUBLE: _to_float,
    Kind.DECIMAL: _to_float,
    Kind.BOOL: _to_bool,
    Kind.TEXT: _to_text,
    Kind.JSON: _to_json,
}
