"""cast: give declared columns their declared types; a value that does not fit is a reject.

What a value may look like, per target type:

- numbers (``int``, ``bigint``, ``double``, ``decimal``): numbers, or text such as ``12``,
  `` 12 ``, ``+7``, ``1e3``, ``12.50``, read exactly (never through a binary float, except
  into ``double``). ``int``/``bigint`` take ``12.000`` or ``1.2e3`` but refuse ``1.5``, and
  refuse a value out of range rather than wrap or clamp it. ``double`` takes the nearest
  double; ``NaN``, ``inf`` and ``-inf`` as written; it refuses a finite number beyond a
  double's range and a non-zero one that would become 0. ``decimal(p,s)`` rounds excess
  decimals half away from zero (as PostgreSQL does) and refuses a value with more than
  ``p - s`` digits before the point. A float in a decimal is read by its shortest text
  (``1.005`` is ``1.005``). Text that is no number is refused under rule ``type``; a number
  that does not fit, under rule ``range``; each message says why.
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

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

import polars as pl

from ladle.batch import StepResult, as_text, json_text, reject_rows, split
from ladle.columns import ColumnSpec
from ladle.errors import StepError
from ladle.schema import DEFAULT_DECIMAL, ColumnType, Kind, normalize_name, parse_type
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
    """Cast columns to their types; rows with a value that does not parse or fit are rejected.

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
            values, refusals = _cast(caster, frame.get_column(name), target)
            replaced[name] = values.alias(name)
            if refusals.height:
                rejects.append(_rejects(frame, name, refusals))
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


def _cast(caster: Caster, values: pl.Series, target: ColumnType) -> tuple[pl.Series, pl.DataFrame]:
    """Cast values; say for each refused one why (rule ``type`` unless a NumberCaster knows)."""
    if isinstance(caster, NumberCaster):
        return caster.cast(values)
    cast, failed = caster(values)
    if not failed.any():  # the usual batch: no refusal to spell out
        return cast, pl.DataFrame(schema=REFUSALS)
    rows = failed.fill_null(False).arg_true()
    written = values.gather(rows).to_frame("v").select(as_text(pl.col("v"), values.dtype))
    refusals = pl.DataFrame(
        {
            "index": rows,
            "rule": pl.repeat("type", rows.len(), eager=True),
            "message": written.select(
                pl.format(f"cannot parse '{{}}' as {target}", pl.col("v"))
            ).to_series(),
        }
    )
    return cast, refusals.cast(pl.Schema(REFUSALS))


def _rejects(frame: pl.DataFrame, field: str, refusals: pl.DataFrame) -> pl.DataFrame:
    """The rejects of ``frame`` for the refusals (ordered by row) of one column."""
    failed = pl.repeat(False, frame.height, eager=True).scatter(refusals.get_column("index"), True)
    rejects = reject_rows(frame, failed, field=field, rule="type", message="")
    return rejects.with_columns(refusals.get_column("rule"), refusals.get_column("message"))


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
    if target.kind in _FAST:
        return NumberCaster(target)
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


# -- numbers --------------------------------------------------------------------------------
#
# Three passes, each over what the one before left null. Polars settles the ordinary values
# of a column in one pass over the values as they are (integer text, text with no more
# decimals than the scale, numbers that fit). A second Polars pass reads the few left as
# trimmed number text (decimal text with excess digits is rounded half away from zero there).
# What is still unsettled (exponents, overflow, text that is no number) is read in Python
# with ``decimal.Decimal``, which never goes through a binary float, and is either settled
# exactly or refused with the reason. Those rows are usually none.

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_ZERO_OR_SPECIAL = r"(?i)^(?:[+-]?(?:0+\.?0*|\.0+)(?:e[+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan))$"
_INTEGER_RANGE = {Kind.INT: (-(2**31), 2**31 - 1), Kind.BIGINT: (-(2**63), 2**63 - 1)}
# Reading text into a Decimal is exact whatever the precision; the wide exponent range
# lets ``1e-999999`` be read (and refused or rounded) instead of raising.
_WIDE = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_ROUNDING = Context(prec=40, rounding=ROUND_HALF_UP)
"""Half away from zero, as PostgreSQL rounds numeric; 40 digits hold any decimal(38,s)."""

REFUSALS: dict[str, pl.DataType] = {
    "index": pl.UInt32(),
    "rule": pl.String(),
    "message": pl.String(),
}
"""Columns of a refusals frame: the row of each refused value, the rule and the reason."""

Number = int | float | Decimal


@dataclass(frozen=True)
class Refusal:
    """Why a value cannot become a number of the target type: a quarantine rule and message."""

    rule: str
    message: str


class NumberCaster:
    """Cast to ``int``, ``bigint``, ``double`` or ``decimal`` exactly, or refuse the value.

    Called like any :data:`Caster`; :meth:`cast` also says why each refused value was refused.
    """

    def __init__(self, target: ColumnType) -> None:
        self.target = target

    def __call__(self, values: pl.Series) -> tuple[pl.Series, pl.Series]:
        """The cast values and the mask of refused ones."""
        cast, refusals = self.cast(values)
        failed = pl.repeat(False, len(values), eager=True)
        if refusals.height:
            failed = failed.scatter(refusals.get_column("index"), True)
        return cast, failed.alias(values.name)

    def cast(self, values: pl.Series) -> tuple[pl.Series, pl.DataFrame]:
        """The cast values, and a row of :data:`REFUSALS` for each value refused."""
        if values.dtype == self.target.polars:
            return values, pl.DataFrame(schema=REFUSALS)
        cast = _FAST[self.target.kind](values, self.target).alias(values.name)
        rows = (cast.is_null() & values.is_not_null()).arg_true()
        if not rows.len():
            return cast, pl.DataFrame(schema=REFUSALS)
        # Second pass, still in Polars, over the values left: their number text (trimmed
        # text, a float's shortest text) read by the type's text rules, which for a decimal
        # round excess digits half away from zero. Trimming only here saves a third of the
        # first pass. Blank text is a missing value, dropped here rather than in Python.
        text = _select(values.gather(rows), _number_text(pl.col("v"), values.dtype))
        read = _TEXT[self.target.kind](text, self.target)
        cast = cast.scatter(rows, read)
        left = read.is_null() & (text.str.len_bytes() > 0)
        return self._settle(values, cast, rows.filter(left), text.filter(left))

    def _settle(
        self, values: pl.Series, cast: pl.Series, rows: pl.Series, texts: pl.Series
    ) -> tuple[pl.Series, pl.DataFrame]:
        """Read the values Polars could not settle exactly, one by one (usually none)."""
        refused: list[tuple[int, str, str]] = []
        settled: dict[int, Number] = {}
        written = _select(values.gather(rows), as_text(pl.col("v"), values.dtype))
        readings = zip(rows.to_list(), texts.to_list(), written.to_list(), strict=True)
        for row, text, shown in readings:
            result = exact_number(text, self.target, written=shown)
            if isinstance(result, Refusal):
                refused.append((row, result.rule, result.message))
            else:
                settled[row] = result
        if settled:
            exact = pl.Series(list(settled.values()), dtype=self.target.polars)
            cast = cast.scatter(list(settled), exact)
        return cast, pl.DataFrame(refused, schema=REFUSALS, orient="row")


def exact_number(text: str, target: ColumnType, *, written: str | None = None) -> Number | Refusal:
    """The value ``text`` spells as a ``target`` number, read exactly, or why it is refused.

    ``written`` is the value as the source held it, for the message (``text`` by default).
    """
    written = text if written is None else written
    if target.kind is Kind.DOUBLE and _SPECIAL.fullmatch(text):
        return float(text)  # NaN and infinities as written: both databases store them
    if not _NUMBER.fullmatch(text):
        return Refusal("type", f"cannot parse '{written}' as {target}")
    try:
        number = Decimal(text, context=_WIDE)
    except InvalidOperation:  # an exponent beyond even the widest Decimal
        number = Decimal("-Infinity" if text.startswith("-") else "Infinity")
    return _EXACT[target.kind](number, target, written)


def _exact_integer(number: Decimal, target: ColumnType, written: str) -> Number | Refusal:
    low, high = _INTEGER_RANGE[target.kind]
    if not low <= number <= high:
        return Refusal("range", f"'{written}' is out of range for {target}")
    if not _is_whole(number):
        return Refusal("range", f"'{written}' is not a whole number ({target})")
    return int(number)


def _is_whole(number: Decimal) -> bool:
    """Whether a finite Decimal has no fractional part (by its digits: no context involved)."""
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):
        return False  # NaN or an infinity
    return exponent >= 0 or not any(digits[exponent:])


def _exact_double(number: Decimal, target: ColumnType, written: str) -> Number | Refusal:
    value = float(number)  # the nearest double: Decimal.__float__ rounds correctly
    if math.isinf(value):
        return Refusal("range", f"'{written}' is out of range for double")
    if value == 0 and not number.is_zero():
        return Refusal("range", f"'{written}' is too close to zero for double (it would be 0)")
    return value


def _exact_decimal(number: Decimal, target: ColumnType, written: str) -> Number | Refusal:
    scale = target.scale or 0
    whole_digits = (target.precision or DEFAULT_DECIMAL[0]) - scale
    quantum = Decimal(1).scaleb(-scale)
    if number.is_zero():
        return Decimal(0).quantize(quantum, context=_ROUNDING)
    if number.is_finite() and number.adjusted() < whole_digits:
        rounded = number.quantize(quantum, context=_ROUNDING)
        if rounded.is_zero() or rounded.adjusted() < whole_digits:
            return rounded
    return Refusal(
        "range",
        f"'{written}' does not fit {target} (at most {whole_digits} digits before the point)",
    )


_EXACT: dict[Kind, Callable[[Decimal, ColumnType, str], Number | Refusal]] = {
    Kind.INT: _exact_integer,
    Kind.BIGINT: _exact_integer,
    Kind.DOUBLE: _exact_double,
    Kind.DECIMAL: _exact_decimal,
}


def _number_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A present value as number text: trimmed text, a float's shortest text, 1/0 for bools."""
    if isinstance(dtype, pl.String):
        return column.str.strip_chars()
    if isinstance(dtype, pl.Boolean):
        return column.cast(pl.Int8).cast(pl.String)
    # A value with no text (bytes that are not UTF-8) must still be refused, not dropped.
    return as_text(column, dtype).fill_null("?")


def _select(values: pl.Series, expr: pl.Expr) -> pl.Series:
    """Evaluate ``expr`` over ``values`` (named ``v``)."""
    return values.to_frame("v").select(expr).to_series()


def _fast_integer(values: pl.Series, target: ColumnType) -> pl.Series:
    """Integer text and whole numbers that fit; the rest is left null for Python."""
    dtype, v = values.dtype, pl.col("v")
    if isinstance(dtype, pl.String):
        number: pl.Expr = v.cast(pl.Int64, strict=False)
    elif dtype.is_float():
        number = pl.when(v == v.floor()).then(v)
    elif isinstance(dtype, pl.Decimal):
        bounded = _bounded(v, dtype)
        number = pl.when(bounded == bounded.floor()).then(bounded)
    elif dtype.is_integer() or isinstance(dtype, pl.Boolean | pl.Null):
        number = v
    else:
        number = _unparseable(pl.Int64())
    return _select(values, number.cast(target.polars, strict=False))


def _fast_double(values: pl.Series, target: ColumnType) -> pl.Series:
    """The nearest double; a zero or an infinity only where the text says so."""
    dtype, v = values.dtype, pl.col("v")
    if isinstance(dtype, pl.String):
        return _double_from_text(values, target)
    if isinstance(dtype, pl.Decimal):
        number = v.cast(pl.String).cast(pl.Float64)  # text to double rounds correctly
    elif isinstance(dtype, pl.Boolean):
        number = v.cast(pl.Int8)
    elif dtype.is_numeric() or isinstance(dtype, pl.Null):
        number = v
    else:
        number = _unparseable(pl.Float64())
    return _select(values, number.cast(pl.Float64))


def _integer_from_text(text: pl.Series, target: ColumnType) -> pl.Series:
    """Integer text that fits; text with a point or an exponent is left to Python."""
    return _select(text, pl.col("v").cast(pl.Int64, strict=False).cast(target.polars, strict=False))


def _double_from_text(text: pl.Series, target: ColumnType) -> pl.Series:
    """The nearest double; a zero or an infinity only where the text says so."""
    # Polars reads 1e309 as inf and 1e-400 as 0: keep a zero or non-finite reading only
    # where the text spells zero, NaN or an infinity, and leave the others to Python.
    number = text.cast(pl.Float64, strict=False)
    doubtful = (number == 0) | ~number.is_finite()
    rows = doubtful.fill_null(False).arg_true()
    if rows.len():
        wrong = rows.filter(~text.gather(rows).str.contains(_ZERO_OR_SPECIAL))
        number = number.scatter(wrong, None)
    return number


def _fast_decimal(values: pl.Series, target: ColumnType) -> pl.Series:
    """Plain text and numbers that fit, rounded half away from zero; the rest left null."""
    dtype, v = values.dtype, pl.col("v")
    scale = target.scale or 0
    if isinstance(dtype, pl.String | pl.Float32 | pl.Float64):
        # Polars rounds text half to even: let it read only text with no digits to round
        # (a float by its shortest text, as it prints).
        text = as_text(v, dtype)
        plain = text.str.contains(_plain_decimal(scale))
        number: pl.Expr = pl.when(plain).then(text)
    elif isinstance(dtype, pl.Decimal) and (dtype.scale or 0) > scale:
        number = _bounded(v, dtype).round(scale, mode="half_away_from_zero")
    elif isinstance(dtype, pl.Boolean):
        number = v.cast(pl.Int8)
    elif dtype.is_integer() or isinstance(dtype, pl.Decimal | pl.Null):
        number = v
    else:
        number = _unparseable(pl.String())
    return _select(values, number.cast(target.polars, strict=False))


def _decimal_from_text(text: pl.Series, target: ColumnType) -> pl.Series:
    """Decimal text read exactly at a wider scale, then rounded half away from zero."""
    scale = target.scale or 0
    # Decimal(38, wide) holds every digit the type allows before the point, plus one for
    # a carry when rounding; text with more decimals than that is left to Python.
    wide = 37 - ((target.precision or DEFAULT_DECIMAL[0]) - scale)
    if wide <= scale:
        return _fast_decimal(text, target)
    # At most p - s digits before the point, so the carry of rounding fits Decimal(38, wide)
    # (Polars raises on that overflow); longer text is left to Python.
    whole = (target.precision or DEFAULT_DECIMAL[0]) - scale
    digits = rf"[0-9]{{1,{whole}}}(?:\.[0-9]{{0,{wide}}})?|" if whole else ""
    plain = rf"^[+-]?(?:{digits}\.[0-9]{{1,{wide}}})$"
    v = pl.col("v")
    exact = pl.when(v.str.contains(plain)).then(v).cast(pl.Decimal(38, wide), strict=False)
    rounded = exact.round(scale, mode="half_away_from_zero")
    return _select(text, rounded.cast(target.polars, strict=False))


def _bounded(number: pl.Expr, dtype: pl.Decimal) -> pl.Expr:
    """The decimals that rounding cannot carry past their dtype's precision; others null.

    Polars raises on such an overflow; the few values near the limit go to Python instead.
    """
    precision, scale = dtype.precision or 38, dtype.scale or 0
    room = 0.99 * 10.0 ** (precision - scale - 1)  # below 10^(digits-1): room for a carry
    return pl.when(number.cast(pl.Float64).abs() < room).then(number)


def _plain_decimal(scale: int) -> str:
    """A regex for decimal text with at most ``scale`` digits after the point, no exponent."""
    if not scale:
        return r"^[+-]?[0-9]+\.?$"
    return rf"^[+-]?(?:[0-9]+(?:\.[0-9]{{0,{scale}}})?|\.[0-9]{{1,{scale}}})$"


_FAST: dict[Kind, Callable[[pl.Series, ColumnType], pl.Series]] = {
    Kind.INT: _fast_integer,
    Kind.BIGINT: _fast_integer,
    Kind.DOUBLE: _fast_double,
    Kind.DECIMAL: _fast_decimal,
}
_TEXT: dict[Kind, Callable[[pl.Series, ColumnType], pl.Series]] = {
    Kind.INT: _integer_from_text,
    Kind.BIGINT: _integer_from_text,
    Kind.DOUBLE: _double_from_text,
    Kind.DECIMAL: _decimal_from_text,
}


def _unparseable(dtype: pl.DataType) -> pl.Expr:
    """A null for every row: no value of the input's type can become the target type."""
    return pl.repeat(None, pl.len(), dtype=dtype)


def _trimmed(column: pl.Expr) -> pl.Expr:
    text = column.str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


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
    Kind.BOOL: _to_bool,
    Kind.TEXT: _to_text,
    Kind.JSON: _to_json,
}
