"""Typed reads of JSON Lines: the schema of one chunk offered to the next.

``pl.read_ndjson`` infers the types of a chunk by parsing it twice; given a schema it
parses once, about four times faster (10,000 ticket lines: 61 ms inferring, 16 ms
typed). A file's chunks nearly always share one shape, so the schema Polars inferred for
a chunk is offered to the next. A typed read may not change what a record says, so it is
taken only when it provably holds everything the lines hold:

- only flat schemas are offered (scalars, and lists of scalars): a typed read drops the
  keys its schema does not name, and keys inside objects cannot be counted apart;
- no key was dropped: every key in the chunk's bytes (an unescaped quote before a
  colon) is one of the schema's names (counted in quotes after ``{`` or ``,``);
- a value that does not fit its column fails the read (a text in an integer column);
  a text column holding what may have been a number or a boolean, or a float column of
  whole numbers only, sends the chunk the inferring way, so a typed read gives the types
  an inferring read would (what a later batch is loaded as depends on them);
- a column the chunk never names, which a typed read fills with nulls, is dropped, so
  a chunk's columns are those an inferring read would give.

Anything else (a read that fails, a count that differs) costs the inferring read, never
a value.
"""

from __future__ import annotations

import json

import polars as pl
from polars.datatypes import DataTypeClass

_SCALARS = (pl.Int64, pl.Float64, pl.String, pl.Boolean)
_CODED = r"^(?:-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false)$"
"""Text a typed read may have made of a JSON number or boolean."""
_KEY_END = r'(?:^|[^\\])(?:\\\\)*"\s*:'
"""A quote that is not escaped (an even run of backslashes before it), then a colon: the
end of a key, or (rarely) the start of a text value that starts with a colon."""


class SchemaMemo:
    """The last flat schema Polars inferred for a chunk of one file (or stream)."""

    def __init__(self) -> None:
        self.schema: pl.Schema | None = None
        self._known = ""

    def remember(self, frame: pl.DataFrame) -> None:
        """Offer ``frame``'s schema to the next chunk, when it is one a typed read may use."""
        flat = all(map(_flat, frame.schema.values())) and frame.width > 0
        self.schema = frame.schema if flat else None
        names = "|".join(_literal(json.dumps(name)) for name in frame.columns)
        self._known = rf"[{{,]\s*(?:{names})\s*:"

    def read(self, data: bytes, lines: int) -> pl.DataFrame | None:
        """``data`` (``lines`` JSON objects) read with the remembered schema, or None when
        that would not give what an inferring read gives (see the module doc)."""
        if self.schema is None:
            return None
        try:
            frame = pl.read_ndjson(data, schema=self.schema)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
            return None
        if frame.height != lines or not _types_as_inferred(frame):
            return None
        if not self._only_known_keys(data):
            return None
        # A column of nulls only: inferring gives it no type, and drops it if no line names it.
        empty = [c for c in frame.get_columns() if c.null_count() == frame.height]
        unnamed = [c.name for c in empty if json.dumps(c.name).encode() + b":" not in data]
        untyped = [pl.Series(c.name, [None] * frame.height) for c in empty if c.name not in unnamed]
        return frame.drop(unnamed).with_columns(untyped) if empty else frame

    def _only_known_keys(self, data: bytes) -> bool:
        """Whether every key in ``data`` is one the schema names (none would be dropped).

        Inside a JSON string a quote is always escaped: an unescaped quote before a colon
        ends a key (or starts a text value that starts with a colon, which only adds to
        the count), and a known name in quotes after ``{`` or ``,`` and before a colon
        is a key. When the two counts agree, every key is known.
        """
        text = pl.lit(pl.Series([data]).cast(pl.String))
        keys, known = pl.select(
            keys=text.str.count_matches(_KEY_END), known=text.str.count_matches(self._known)
        ).row(0)
        return bool(keys == known)


def _types_as_inferred(frame: pl.DataFrame) -> bool:
    """Whether inferring this chunk's types could not have given others than the schema.

    A typed read takes a number or ``true`` as text in a text column, and an integer as
    a float in a float column, where inferring would have kept the number or the integer
    type: a column whose values could be such a reading sends the chunk the inferring
    way (text that merely looks like a number, a zip code, costs that speed).
    """
    for column in frame.get_columns():
        if column.dtype == pl.String and column.str.contains(_CODED).any():
            return False
        floats = column.drop_nulls() if column.dtype == pl.Float64 else None
        if floats is not None and floats.len() and (floats == floats.floor()).all():
            return False
    return True


def _literal(text: str) -> str:
    """``text`` as a regex (Rust's syntax) that matches it literally."""
    return "".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):X}}}" for c in text)


def _flat(dtype: pl.DataType | DataTypeClass) -> bool:
    if isinstance(dtype, pl.List):
        return isinstance(dtype.inner, _SCALARS)
    return isinstance(dtype, _SCALARS)
