"""The one datetime parser behind every ``date``, ``timestamp`` and ``timestamptz`` cast.

Accepted, in this order of precedence for text:

1. ISO 8601: ``2024-01-02``, ``2024-01-02T03:04``, ``2024-01-02 03:04:05.123456789``,
   optionally followed by ``Z``, ``+HH:MM``, ``+HHMM`` or ``+HH``. Fractions beyond
   microseconds are truncated.
2. The column's ``formats`` (strftime codes), tried in order. They come before epoch
   numbers so that a declared ``%Y%m%d`` wins over reading ``20240102`` as seconds.
3. Epoch numbers: seconds, or milliseconds when ``|x| >= 1e11``; ``|x| >= 1e14`` is
   refused rather than guessed (it would be microseconds or a mistake).

Numeric columns are epoch numbers; Date and Datetime columns are taken as they are.
A value with an offset (or an epoch number, or a zoned Datetime) is an *instant*; one
without is a *wall-clock* reading in the column's zone. Then, per target:

- ``timestamptz``: instants as they are; wall-clock readings located in the zone
  (ambiguous ones take the earlier instant; ones that fall in a DST gap do not exist and
  fail), then stored in UTC.
- ``timestamp`` (naive): wall-clock readings as written; instants converted to UTC and the
  zone dropped, so a naive column always means UTC for values that carried an offset.
- ``date``: a wall-clock reading's date; an instant's date in the column's zone.

Everything is vectorized: the common ISO shape goes through one strptime call, and only
the rows it leaves unparsed go through the slower stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import polars as pl

from ladle.schema import Kind

TEMPORAL_KINDS = frozenset({Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ})

_INSTANT = pl.Datetime("us", "UTC")
_LOCAL = pl.Datetime("us")
_SHAPES = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d",
)
_CANONICAL = "%Y-%m-%dT%H:%M:%S%.f"
_ISO = (
    r"^(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[Tt ](?P<h>[0-9]{2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]{1,9}))?)?"
    r" ?(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?)?)?$"
)
_EPOCH_TEXT = r"^[+-]?[0-9]+(?:\.[0-9]+)?$"
_MILLIS_FROM = 10**11
_EPOCH_LIMIT = 10**14
_MAX_OFFSET_HOURS = 23
_MAX_OFFSET_MINUTES = 59

Moments = tuple[pl.Series, pl.Series]
"""(instants in UTC, wall-clock readings): for each row at most one is non-null."""


class DatetimeParser:
    """Parse a column into ``kind``'s dtype; configured once, applied to every batch.

    Raises ``ValueError`` at construction for an unknown zone or a format that cannot
    read back what it writes; bad *values* never raise, they show in the failure mask.
    """

    def __init__(self, kind: Kind, *, timezone: str, formats: Sequence[str] = ()) -> None:
        if kind not in TEMPORAL_KINDS:
            raise ValueError(f"{kind} is not a date or timestamp type")
        check_timezone(timezone)
        for fmt in formats:
            check_format(fmt)
        self.kind = kind
        self.timezone = timezone
        self.formats = tuple(formats)

    def __call__(self, values: pl.Series) -> tuple[pl.Series, pl.Series]:
        """The parsed values and a mask of the non-null inputs that did not parse."""
        instant, local = self._moments(values)
        parsed = _finish(instant, local, self.kind, self.timezone).alias(values.name)
        return parsed, (present(values) & parsed.is_null()).alias(values.name)

    def _moments(self, values: pl.Series) -> Moments:
        dtype = values.dtype
        if isinstance(dtype, pl.Datetime):
            us = values.dt.cast_time_unit("us")
            if dtype.time_zone:
                return us.dt.convert_time_zone("UTC"), _nulls(len(values), _LOCAL)
            return _nulls(len(values), _INSTANT), us
        if isinstance(dtype, pl.Date):
            return _nulls(len(values), _INSTANT), values.cast(_LOCAL)
        if dtype.is_numeric():
            return _epoch(values), _nulls(len(values), _LOCAL)
        if isinstance(dtype, pl.String):
            return self._from_text(values)
        return _nulls(len(values), _INSTANT), _nulls(len(values), _LOCAL)

    def _from_text(self, values: pl.Series) -> Moments:
        text = _stripped(values)
        instant, local = _nulls(len(text), _INSTANT), _nulls(len(text), _LOCAL)
        # A date is read as written: 2024-01-02T00:30+02:00 is on January 2nd.
        iso = _iso_as_written if self.kind is Kind.DATE else _iso
        fast = _sniff(text, self.kind)
        stages = [*([_formatted(fast)] if fast else []), iso]
        stages += [_formatted(fmt) for fmt in self.formats]
        stages.append(_epoch_text)
        for stage in stages:
            todo = (text.is_not_null() & instant.is_null() & local.is_null()).arg_true()
            if todo.len() == 0:
                break
            everything = todo.len() == len(text)
            found_instant, found_local = stage(text if everything else text.gather(todo))
            if everything:
                instant, local = found_instant, found_local
            else:
                instant = instant.scatter(todo, found_instant)
                local = local.scatter(todo, found_local)
        return instant, local


def present(values: pl.Series) -> pl.Series:
    """Non-null, and for text not blank: a blank string is a missing value, not a bad one."""
    if isinstance(values.dtype, pl.String):
        return values.str.strip_chars().str.len_bytes().fill_null(0) > 0
    return values.is_not_null()


def check_timezone(zone: str) -> None:
    """Raise ``ValueError`` unless Polars knows the IANA zone ``zone``."""
    try:
        pl.Series([datetime(2000, 1, 1)]).dt.replace_time_zone(zone)
    except pl.exceptions.PolarsError:
        raise ValueError(
            f"unknown time zone {zone!r}; use an IANA name such as 'Europe/Paris'"
        ) from None


def check_format(fmt: str) -> None:
    """Raise ``ValueError`` unless ``fmt`` parses back a datetime it formatted.

    Polars returns nulls rather than an error for a format it cannot use, which would
    quarantine every row; a round trip at configuration time catches that once.
    """
    sample = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    try:
        text = sample.strftime(fmt)
        back = pl.Series([text]).str.to_datetime(fmt, strict=False, time_unit="us").item()
    except (ValueError, pl.exceptions.PolarsError):
        back = None
    if back is None or back.date() != sample.date():
        raise ValueError(
            f"format {fmt!r} cannot be used to parse dates; use strftime codes with at least a "
            "date, such as '%d/%m/%Y %H:%M'"
        )


def _nulls(length: int, dtype: pl.DataType) -> pl.Series:
    return pl.Series(values=[None] * length, dtype=dtype)


def _stripped(values: pl.Series) -> pl.Series:
    text = values.str.strip_chars()
    return text.set(text.str.len_bytes() == 0, None)


def _sniff(text: pl.Series, kind: Kind) -> str | None:
    """The strict ISO shape of the first value, to parse the common case in one call.

    A batch usually holds one shape; strptime with a fixed format is several times
    faster than the general ISO pattern, which then sees only the rows it left.
    """
    first = text.drop_nulls().head(1)
    for fmt in _SHAPES if kind is not Kind.DATE else _SHAPES[-1:]:
        if first.str.to_datetime(fmt, strict=False, time_unit="us").null_count() == 0:
            return fmt
    return None


def _iso_as_written(text: pl.Series) -> Moments:
    """ISO 8601 with any offset ignored: the wall-clock reading as written."""
    return _iso(text, as_written=True)


def _iso(text: pl.Series, *, as_written: bool = False) -> Moments:
    """ISO 8601 in any of the shapes the fast path did not take."""
    parts = text.str.extract_groups(_ISO).struct.unnest()
    g = pl.col
    naive = pl.concat_str(
        g("y"), pl.lit("-"), g("mo"), pl.lit("-"), g("d"), pl.lit("T"),
        g("h").fill_null("00"), pl.lit(":"), g("mi").fill_null("00"), pl.lit(":"),
        g("s").fill_null("00"), pl.lit("."), g("f").fill_null("0"),
    ).str.to_datetime(_CANONICAL, strict=False, time_unit="us")  # fmt: skip
    hours, minutes = g("oh").cast(pl.Int64), g("om").cast(pl.Int64).fill_null(0)
    sign = pl.when(g("sign") == "-").then(-1).otherwise(1)
    offset = (
        pl.when(g("z").is_not_null())
        .then(0)
        .when((hours <= _MAX_OFFSET_HOURS) & (minutes <= _MAX_OFFSET_MINUTES))
        .then(sign * (hours * 60 + minutes))
    )
    zoned = pl.lit(value=False) if as_written else g("z").is_not_null() | g("sign").is_not_null()
    out = parts.select(
        pl.when(zoned)
        .then((naive - pl.duration(minutes=offset)).dt.replace_time_zone("UTC"))
        .alias("instant"),
        pl.when(~zoned).then(naive).alias("local"),
    )
    return out.get_column("instant"), out.get_column("local")


def _formatted(fmt: str) -> Callable[[pl.Series], Moments]:
    """A stage parsing with one declared strftime format."""

    def stage(text: pl.Series) -> Moments:
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
        dtype = parsed.dtype
        if isinstance(dtype, pl.Datetime) and dtype.time_zone:
            return parsed.dt.convert_time_zone("UTC"), _nulls(len(text), _LOCAL)
        return _nulls(len(text), _INSTANT), parsed

    return stage


def _epoch_text(text: pl.Series) -> Moments:
    """Digit strings as epoch numbers; integers stay exact, decimals go through floats."""
    numeric = text.str.contains(_EPOCH_TEXT)
    whole = _epoch(text.set(~numeric, None).cast(pl.Int64, strict=False))
    fractional = _epoch(text.set(~numeric, None).cast(pl.Float64, strict=False))
    return whole.fill_null(fractional), _nulls(len(text), _LOCAL)


def _epoch(values: pl.Series) -> pl.Series:
    """Epoch seconds or milliseconds as UTC instants; out-of-range and NaN become null."""
    if values.dtype.is_integer():
        number = values.cast(pl.Int64, strict=False)
        scale_s, scale_ms = pl.lit(1_000_000, pl.Int64), pl.lit(1_000, pl.Int64)
    else:
        number = values.cast(pl.Float64, strict=False)
        scale_s, scale_ms = pl.lit(1e6), pl.lit(1e3)
    x = pl.col("x")
    seconds = (x > -_MILLIS_FROM) & (x < _MILLIS_FROM)
    millis = (x > -_EPOCH_LIMIT) & (x < _EPOCH_LIMIT)
    micros = pl.when(seconds).then(x * scale_s).when(millis).then(x * scale_ms)
    return (
        pl.DataFrame({"x": number})
        .select(micros.round(0).cast(pl.Int64).cast(_INSTANT))
        .to_series()
        .alias(values.name)
    )


def _finish(instant: pl.Series, local: pl.Series, kind: Kind, zone: str) -> pl.Series:
    """Combine instants and wall-clock readings into ``kind``'s dtype."""
    i, loc = pl.col("instant"), pl.col("local")
    if kind is Kind.TIMESTAMPTZ:
        located = loc.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        result = pl.coalesce(i, located.dt.convert_time_zone("UTC"))
    elif kind is Kind.TIMESTAMP:
        result = pl.coalesce(i.dt.replace_time_zone(None), loc)
    else:
        result = pl.coalesce(i.dt.convert_time_zone(zone).dt.date(), loc.dt.date())
    return pl.DataFrame({"instant": instant, "local": local}).select(result).to_series()
