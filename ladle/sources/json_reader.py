"""Read JSON Lines (vectorized, per line only when a chunk needs it) and JSON documents.

JSONL is read in chunks of ``batch_size`` physical lines (fewer when a memory budget
says so: see :mod:`ladle.memory`). A chunk goes through
``pl.read_ndjson`` in one call; only when that fails (a malformed line, a line that
is not an object, types Polars cannot reconcile, bytes that are not UTF-8) is the chunk
parsed line by line, so one bad line costs its chunk some speed and nothing else.

Both roads give the same frame, with two known differences in spelling, not value: a
float sharing a field with strings is spelled by Polars (``1`` rather than ``1.0``), and
a fraction inside a list too (``1e-7`` rather than ``1E-7``).

Numbers are exact on every road (rules in :mod:`ladle.sources.flatten`). Polars reads
every fraction as a double; that is only kept when the chunk shows that no number
lost digits on the way (see ``_numbers_survive``); otherwise the chunk goes line by
line, where ``json.loads`` and ijson give exact ``Decimal`` values.

JSON documents are streamed with ijson: a top-level array, the array under a known
key, an explicit ``records:`` path, or a single object.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import IO, Any

import ijson
import polars as pl
from polars.datatypes import DataTypeClass

from ladle.batch import LinePositions, SourceBatch, Unreadable, json_text
from ladle.errors import SourceError
from ladle.memory import BatchBudget
from ladle.schema import exact_in_double
from ladle.sources.decoding import (
    bad_byte_message,
    is_utf8,
    show_undecodable,
    text_stream,
    undecodable,
)
from ladle.sources.flatten import (
    MAX_COLUMNS,
    ColumnClash,
    Leaf,
    TooManyColumns,
    flat_series,
    frame_of,
    leaf_names,
    leaves,
    records_to_frame,
    to_json_text,
)
from ladle.sources.json_scan import (
    DEFAULT_MAX_DEPTH,
    DepthGuard,
    Refused,
    TextPosition,
    line_problem,
    screen_lines,
)
from ladle.sources.json_typed import SchemaMemo
from ladle.sources.offsets import Offset, go_to, line_bytes

_BOM = codecs.BOM_UTF8
_KNOWN_KEYS = ("data", "items", "records", "results")


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in the words a message uses (``an array``, ``null``)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"


def not_an_object(value: Any) -> str:
    """The message for a record that is not a JSON object, shared by every JSON source."""
    return f"a record must be a JSON object, found {json_kind(value)}"


# ---------------------------------------------------------------------------------------
# JSON Lines


@dataclass
class _Chunk:
    """Up to ``batch_size`` physical lines as UTF-8 bytes; undecodable ones found early."""

    first_line: int
    lines: list[bytes]
    undecodable: dict[int, Unreadable] = field(default_factory=dict)
    positions: list[str] | None = None
    """Each line's own position (stream message ids); None: ``name:LINE``."""
    end: int | None = None
    """The byte of the file's content just after the chunk's last line, if known."""

    def position(self, name: str, offset: int) -> str:
        """Where the line at ``offset`` came from."""
        if self.positions is not None:
            return self.positions[offset]
        return f"{name}:{self.first_line + offset}"


def parse_json_texts(
    texts: list[bytes], positions: list[str], shape: SchemaMemo | None = None
) -> SourceBatch:
    """JSON objects, one per position (stream entries): in one Polars call when possible.

    Newlines inside a JSON text can only be whitespace, so each text becomes one line; an
    empty text is read as ``null`` so that it is reported, not skipped.
    """
    lines = [
        (text.replace(b"\n", b" ").replace(b"\r", b" ") if text.strip() else b"null") + b"\n"
        for text in texts
    ]
    chunk = _Chunk(1, lines, positions=positions)
    try:
        return _parse_chunk(chunk, "", JsonOptions(), shape)
    except ColumnClash as exc:
        raise SourceError(str(exc), position=positions[0] if positions else "") from exc


def read_jsonl(
    stream: IO[bytes],
    name: str,
    *,
    batch_size: int,
    encoding: str,
    consumed: Callable[[], int],
    budget: BatchBudget | None = None,
    skip: int = 0,
    options: JsonOptions | None = None,
    start: Offset | None = None,
    compressed: bool = False,
) -> Generator[SourceBatch, None, None]:
    """Yield one batch per chunk of ``batch_size`` lines (or what ``budget`` allows);
    positions are ``name:LINE``.

    A resumed run starts at ``start`` (an earlier checkpoint's offset: the stream seeks
    there, or is decompressed up to it when ``compressed``), else after passing over the
    first ``skip`` lines. Each batch's checkpoint is the number of lines read so far,
    with the byte after the last (:meth:`Offset.checkpoint`) when it can be told.
    """
    budget = budget or BatchBudget(batch_size)
    options = options or JsonOptions()
    line_no, byte = 1, 0
    if start is not None:
        go_to(stream, start.byte, compressed=compressed)
        line_no, byte, skip = start.line + 1, start.byte, 0
    before = consumed()
    at = _At(line_no, byte, skip)
    memo = SchemaMemo()
    for chunk in _chunks(stream, name, budget=budget, encoding=encoding, at=at):
        try:
            batch = _parse_chunk(chunk, name, options, memo)
        except ColumnClash as exc:
            raise SourceError(str(exc), position=f"{name}:{chunk.first_line}") from exc
        now = consumed()
        if batch.fetched:
            read = chunk.first_line - 1 + len(chunk.lines)
            checkpoint = read if chunk.end is None else Offset(chunk.end, read, read).checkpoint()
            yield SourceBatch(
                batch.frame, batch.positions, batch.unreadable, now - before, checkpoint=checkpoint
            )
            before = now


_FAST_DEPTH = 8
"""Polars reads deeper nesting slowly and with much memory (lines nested 16 deep: 18 s
and 580 MB for 1.7 MB), so a chunk holding such a line is read line by line."""
_EMPTY_OBJECT = re.compile(rb"\{[ \t\r]*\}")


def _parse_chunk(
    chunk: _Chunk, name: str, options: JsonOptions, memo: SchemaMemo | None = None
) -> SourceBatch:
    """The chunk in one Polars call when it is safe and faithful, else line by line.

    ``memo`` carries the schema of the file's last chunk to this one (a typed read)."""
    structure = screen_lines(chunk.lines, min(_FAST_DEPTH, options.max_depth))
    for offset in structure.suspects:
        _refuse_line(chunk, name, offset, options.max_depth)
    fast = not (structure.suspects or _EMPTY_OBJECT.search(structure.text))
    if fast and (batch := _parse_fast(chunk, name, structure.text, options.whole, memo)):
        return batch
    return _parse_lines(chunk, name, options)


def _refuse_line(chunk: _Chunk, name: str, offset: int, max_depth: int) -> None:
    """Set a line aside as unreadable if it nests deeper than ``max_depth`` or has a byte
    JSON does not take for whitespace, before any parser sees it."""
    line = chunk.lines[offset]
    problem = line_problem(line, max_depth)
    if problem is None:
        return
    _, column = TextPosition().at(line, problem.index)
    raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
    message = f"invalid JSON: {problem.message} (column {column})"
    chunk.undecodable[offset] = Unreadable(chunk.position(name, offset), raw, message)
    chunk.lines[offset] = b""  # keeps the line numbering


@dataclass(frozen=True)
class _At:
    """Where the stream stands when reading starts: the number of its next line and its
    byte in the file's content; and how many lines to pass over from there."""

    line: int
    byte: int
    skip: int


def _chunks(
    stream: IO[bytes], name: str, *, budget: BatchBudget, encoding: str, at: _At
) -> Iterator[_Chunk]:
    if is_utf8(encoding):
        return _utf8_chunks(stream, name, budget, at=at)
    return _decoded_chunks(stream, name, budget=budget, encoding=encoding, at=at)


def _utf8_chunks(stream: IO[bytes], name: str, budget: BatchBudget, *, at: _At) -> Iterator[_Chunk]:
    """Lines as they are in the file (Polars checks they are UTF-8), minus a byte order mark.

    Each chunk ends where the stream stands, which is at a byte of the file's content.
    """
    line_no = _skipped(stream.readline, at.skip) + at.line
    limit = budget.max_record_bytes
    # Two more than the limit: a record of exactly the limit still comes with its CRLF.
    read = partial(stream.readline, -1 if limit is None else limit + 2)
    while True:
        lines: list[bytes] = []
        size = 0
        while not budget.full(len(lines), size) and (line := read()):
            if line_no == 1 and not lines:
                line = line.removeprefix(_BOM)
            if limit is not None and len(line.rstrip(b"\r\n")) > limit:
                position = f"{name}:{line_no + len(lines)}"
                raise budget.too_large(_rest_of_line(stream.readline, line), position)
            lines.append(line)
            size += len(line)
        if not lines:
            return
        yield _Chunk(line_no, lines, end=stream.tell())
        line_no += len(lines)


def _skipped(readline: Callable[[], Any], count: int) -> int:
    """Read ``count`` lines and forget them; return how many there were."""
    for done in range(count):
        if not readline():
            return done
    return count


def _rest_of_line(readline: Callable[[int], Any], start: bytes | str) -> int:
    """How long a line too long to hold is: read on in pieces, each dropped once counted."""
    size, piece = len(start), start
    while piece and piece[-1:] not in (b"\n", "\n"):
        piece = readline(1 << 20)
        size += len(piece)
    return size


def _decoded_chunks(
    stream: IO[bytes], name: str, *, budget: BatchBudget, encoding: str, at: _At
) -> Iterator[_Chunk]:
    """Lines decoded from ``encoding`` and re-encoded as the UTF-8 that Polars reads.

    Each chunk ends at the byte its lines, measured in ``encoding``, reach (none is told
    after lines passed over, or for an encoding whose lines cannot be measured).
    """
    measure = line_bytes(encoding) if at.skip == 0 else None
    byte = at.byte
    with text_stream(stream, encoding, newline="\n") as text:
        line_no = _skipped(text.readline, at.skip) + at.line
        limit = budget.max_record_bytes
        read = partial(text.readline, -1 if limit is None else limit + 2)
        while True:
            texts: list[str] = []
            size = 0
            while not budget.full(len(texts), size) and (line := read()):
                if limit is not None and len(line.rstrip("\r\n")) > limit:
                    position = f"{name}:{line_no + len(texts)}"
                    raise budget.too_large(_rest_of_line(text.readline, line), position)
                texts.append(line)
                size += len(line)
            if not texts:
                return
            chunk = _decoded_chunk(texts, name, line_no=line_no, encoding=encoding)
            if measure is not None:
                byte += sum(map(measure, texts))
                chunk.end = byte
            yield chunk
            line_no += len(texts)


def _decoded_chunk(texts: list[str], name: str, *, line_no: int, encoding: str) -> _Chunk:
    chunk = _Chunk(line_no, [])
    for offset, line in enumerate(texts):
        message = undecodable(line, encoding)
        if message is None:
            chunk.lines.append(line.encode("utf-8"))
            continue
        position = f"{name}:{line_no + offset}"
        raw = show_undecodable(line).rstrip("\r\n")
        chunk.undecodable[offset] = Unreadable(position, raw, message, rule="encoding")
        chunk.lines.append(b"")  # keeps the line numbering
    return chunk


def _parse_fast(
    chunk: _Chunk, name: str, data: bytes, whole: frozenset[str], memo: SchemaMemo | None
) -> SourceBatch | None:
    """The whole chunk (``data``: its lines joined) in one Polars call, or None when it needs
    reading line by line."""
    if chunk.undecodable:
        return None
    frame = memo.read(data, len(chunk.lines)) if memo is not None else None
    inferred = frame is None
    if frame is None:
        try:
            frame = _read_ndjson(chunk.lines, data)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
            return None  # a Polars bug on odd input must cost speed, not the run
    rows: range | list[int] = range(len(chunk.lines))
    if frame.height != len(chunk.lines):
        rows = [i for i, line in enumerate(chunk.lines) if line.strip()]
        if frame.height != len(rows):
            return None
    flat = _flatten_faithfully(frame, data, whole)
    if flat is None:
        return None
    if memo is not None and inferred:
        memo.remember(frame)
    positions: Sequence[str]
    if chunk.positions is None:
        first = chunk.first_line
        lines = range(first, first + len(rows)) if isinstance(rows, range) else None
        positions = LinePositions(name, [first + i for i in rows] if lines is None else lines)
    else:
        positions = [chunk.positions[i] for i in rows]
    return SourceBatch(flat, positions)


_PIECE_LINES = 1000
"""Polars reads a chunk this many lines at a time. A frame takes memory in proportion to
columns x rows, so lines whose keys are data (a new key on every line) are refused
(TooManyColumns) after a few thousand lines, not once a frame of them all is built."""


def _read_ndjson(lines: list[bytes], data: bytes) -> pl.DataFrame:
    """The chunk's lines as one Polars frame, read in pieces of :data:`_PIECE_LINES`.

    Pieces of one schema are concatenated; when their schemas differ, the whole chunk is
    read again in one call, which reconciles the types over every line.
    """
    if len(lines) <= _PIECE_LINES:
        return pl.read_ndjson(data, infer_schema_length=None)
    frames: list[pl.DataFrame] = []
    names: set[str] = set()
    for start in range(0, len(lines), _PIECE_LINES):
        piece = pl.read_ndjson(
            b"".join(lines[start : start + _PIECE_LINES]), infer_schema_length=None
        )
        names |= leaf_names(piece.schema)
        if len(names) > MAX_COLUMNS:
            raise TooManyColumns()
        frames.append(piece)
    if all(frame.schema == frames[0].schema for frame in frames):
        return pl.concat(frames, how="vertical")
    return pl.read_ndjson(data, infer_schema_length=None)


def _parse_lines(chunk: _Chunk, name: str, options: JsonOptions) -> SourceBatch:
    """Parse each line on its own: a bad line becomes Unreadable, the others load."""
    records: list[dict[str, Any]] = []
    positions: list[str] = []
    unreadable: list[Unreadable] = []
    for offset, line in enumerate(chunk.lines):
        if offset in chunk.undecodable:
            unreadable.append(chunk.undecodable[offset])
            continue
        if not line.strip():
            continue
        position = chunk.position(name, offset)
        result = _parse_line(line, position)
        if isinstance(result, Unreadable):
            unreadable.append(result)
        elif not _has_fields(result, options.whole):
            raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
            unreadable.append(Unreadable(position, raw, _NO_FIELDS))
        else:
            records.append(result)
            positions.append(position)
    frame = records_to_frame(records, whole=options.whole)
    return SourceBatch(frame, positions, unreadable)


def _parse_line(line: bytes, position: str) -> dict[str, Any] | Unreadable:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
        message = bad_byte_message(line[exc.start], "utf-8")
        return Unreadable(position, raw, message, rule="encoding")
    raw = text.rstrip("\r\n")
    try:
        value = json.loads(
            raw,
            parse_float=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_first_value_wins,
        )
    except json.JSONDecodeError as exc:
        return Unreadable(position, raw, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except _NotJson as exc:
        return Unreadable(position, raw, f"invalid JSON: {exc} (column {_constant_column(raw)})")
    if not isinstance(value, dict):
        return Unreadable(position, raw, not_an_object(value))
    return value


class _NotJson(ValueError):
    """A token Python's json module accepts but JSON does not (NaN, Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value (JSON numbers are finite)")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?')
_CONSTANT = re.compile(rb"-?(?:NaN|Infinity)")


def _constant_column(raw: str) -> int:
    """The 1-based column of the first NaN/Infinity outside a string in ``raw``."""
    data = raw.encode("utf-8")
    blanked = _STRING.sub(lambda m: b"_" * len(m.group()), data)
    found = _CONSTANT.search(blanked)
    return len(data[: found.start()].decode("utf-8", "replace")) + 1 if found else 1


def _first_value_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose key repeats keeps its first value, as Polars' fast road does, so a
    JSON Lines file reads the same whichever road a chunk takes."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        record.setdefault(key, value)
    return record


# Polars reconciles some mixed types silently: it renders an object that shares a field
# with strings as text in its own spelling (not always valid JSON), turns [1, "x"] into
# ["1", "x"], widens [1, 2.5] to floats, and fills the keys missing from some objects of a
# list with nulls. A chunk holding values that may be such inventions goes down the slow
# road, which keeps them as written.
_LOOKS_CODED = r"^(?:-?[0-9]|true$|false$|[\[{])"


def _flatten_faithfully(
    frame: pl.DataFrame, data: bytes, whole: frozenset[str] = frozenset()
) -> pl.DataFrame | None:
    """Flatten a frame Polars read from ``data``, or None if it may hold values Polars
    made up (a reconciled type, or a number rounded to a double).

    Top-level fields in ``whole`` become JSON text, last, as on the line-by-line road;
    only when Polars holds them as written (text, booleans, integers, lists of those).
    """
    split = _leaves_and_wholes(frame, whole)
    if split is None:
        return None
    found, wholes = split
    if not found and not wholes:
        return pl.DataFrame(height=frame.height)
    if not _numbers_survive(data, [leaf.values for leaf in found]):
        return None
    if not _text_kept_its_spelling(data, found):
        return None
    found += wholes
    checked = {f"c{i}": leaf for i, leaf in enumerate(found)}
    # A declared json field's text must not be a number or keyword Polars turned into text.
    doubts = [
        _doubt(pl.col(name), leaf.values.dtype, in_list=leaf in wholes)
        for name, leaf in checked.items()
    ]
    checks = [doubt.any() for doubt in doubts if doubt is not None]
    if checks:
        values = pl.DataFrame({name: leaf.values for name, leaf in checked.items()})
        if values.select(pl.any_horizontal(checks)).item():
            return None
    flat = [flat_series(leaf) for leaf in found[: len(found) - len(wholes)]]
    return frame_of(flat + [_whole_series(leaf) for leaf in wholes])


def _leaves_and_wholes(
    frame: pl.DataFrame, whole: frozenset[str]
) -> tuple[list[Leaf], list[Leaf]] | None:
    """The leaves to flatten and the fields to keep whole; None: the slow road decides (a
    name clash, or a whole field Polars may not hold as written)."""
    kept = [column for column in frame.columns if column in whole]
    if not all(_json_as_written(frame.schema[column]) for column in kept):
        return None
    try:
        found = leaves(frame.drop(kept))
    except ColumnClash:
        return None  # the slow road reports it, with a position
    if set(kept) & {leaf.name for leaf in found}:
        return None
    return found, [Leaf((column,), frame.get_column(column)) for column in kept]


def _json_as_written(dtype: pl.DataType | DataTypeClass) -> bool:
    """Whether Polars' JSON of a value of ``dtype`` is the JSON the line held (a float may be
    respelled, and an object may have keys filled in from other lines)."""
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.List):
        return _json_as_written(dtype.inner)
    return isinstance(dtype, pl.String | pl.Boolean | pl.Int64 | pl.Null)


def _whole_series(leaf: Leaf) -> pl.Series:
    """A field declared ``type: json`` as one compact JSON text per row; null stays null."""
    text = leaf.values.to_frame("v").select(json_text(pl.col("v")).cast(pl.String))
    return text.to_series().alias(leaf.name)


# A number that may not survive a double has 16 or more digits (a point counted as one,
# so some 15-digit fractions are doubted too), or an exponent below -99 (a subnormal or
# an underflow to zero). With fewer digits a double always holds the value (DBL_DIG is
# 15); a number too large for a double fails Polars' read, which sends the chunk down
# the exact road.
_DIGIT_RUNS = bytes(ord("d") if c in b"0123456789." else ord("x") for c in range(256))
_LONG_RUN = b"d" * 16
_TINY_EXPONENT = r"[eE]-0*[1-9][0-9]{2}"
_NUMBER = r"[-+.0-9]{16,}(?:[eE][-+]?[0-9]+)?|[-+.0-9]*[eE][-+]?[0-9]{3,}"
_NUMBER_VALUE = rf"[:\[,][ \t\r\n]*(?:{_NUMBER})"
"""A doubtful number where a JSON value starts (after a colon, a bracket or a comma): a
hex id inside a string (``"4e12345678901234"``) is not one, which kept whole chunks of
stream entries off the fast road."""
_SMALLEST_NORMAL = 2.2250738585072014e-308


def _numbers_survive(data: bytes, columns: list[pl.Series]) -> bool:
    """Whether every number Polars read as a double kept its value (see module doc).

    A byte translation finds the chunks with a long number (a regex would cost a third
    of the read); only those, and those with a zero or subnormal double beside a tiny
    exponent, have their doubtful numbers checked one by one. A number inside a string
    may be doubted too, which costs speed, never a value. A long integer only matters
    when it landed in a float column (one reaching 2**53).
    """
    floats = [_float_values(column) for column in columns if _holds_floats(column.dtype)]
    if not floats:
        return True
    long = _has_long_run(data)
    tiny = any(f is None or bool((f.abs() < _SMALLEST_NORMAL).any()) for f in floats)
    if not long and not tiny:
        return True
    text = pl.Series([data]).cast(pl.String)
    if not long and not text.str.contains(_TINY_EXPONENT).item():
        return True
    found = text.str.extract_all(_NUMBER_VALUE).explode().drop_nulls()
    tokens = found.str.strip_chars_start(":[, \t\r\n")
    if not any(f is None or bool((f.abs() >= 2.0**53).any()) for f in floats):
        tokens = tokens.filter(tokens.str.contains("[.eE]"))
    return all(_survives(token) for token in tokens.unique().to_list())


_NUMBER_SPELLED = r"^-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"
"""A text value Polars may have made from a JSON number, when a column mixes both."""


def _text_kept_its_spelling(data: bytes, found: list[Leaf]) -> bool:
    """Whether no number in a text column was respelled by Polars.

    Polars reads a column of strings and numbers as text, writing each number as its
    double prints (``1.10`` as ``1.1``, ``1E2`` as ``100``, a long one rounded). Only text
    columns holding number-like values are looked at, and only their keys' unquoted
    values in ``data``, in one scan: integers within int64 keep their spelling, anything
    else sends the chunk line by line, where numbers are read from their text.
    """
    keys = []
    for leaf in found:
        if leaf.values.dtype != pl.String:
            continue
        if not leaf.values.str.contains(_NUMBER_SPELLED).any():
            continue
        key = json.dumps(leaf.path[-1])
        if "\\" in key:  # spelled otherwise in data, maybe (an escape): doubt it
            return False
        keys.append(re.escape(key))
    if not keys:
        return True
    unquoted = rf"(?:{'|'.join(dict.fromkeys(keys))})\s*:\s*-?[0-9][-+.0-9eE]*"
    tokens = pl.Series([data]).cast(pl.String).str.extract_all(unquoted).explode()
    values = tokens.drop_nulls().str.extract(r":\s*(.*)$", 1).drop_nulls()
    return bool(values.str.contains(r"^-?[0-9]{1,18}$").all())


def _has_long_run(data: bytes) -> bool:
    """Whether 16 digits or points follow each other somewhere in ``data``.

    Any 16 bytes in a row hold 4 bytes at positions divisible by 4, next to each other in
    ``data[::4]``: that quarter of the bytes rules most chunks out at half the cost.
    """
    if _LONG_RUN[:4] not in data[::4].translate(_DIGIT_RUNS):
        return False
    return _LONG_RUN in data.translate(_DIGIT_RUNS)


def _holds_floats(dtype: pl.DataType | DataTypeClass) -> bool:
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_floats(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_floats(fld.dtype) for fld in dtype.fields)
    return dtype.is_float()


def _float_values(column: pl.Series) -> pl.Series | None:
    """The floats of a column, out of any lists; None for floats in structs in lists."""
    while isinstance(column.dtype, pl.List | pl.Array):
        column = column.explode() if isinstance(column.dtype, pl.List) else column.arr.explode()
    return column if column.dtype.is_float() else None


def _survives(token: str) -> bool:
    """Whether the number ``token`` is exact in a double; text that is no number is fine."""
    try:
        number = Decimal(token)
    except InvalidOperation:
        return True
    if not number.is_finite():
        return True
    if "." in token or "e" in token or "E" in token:
        return exact_in_double(number)
    return exact_in_double(int(number))


def _doubt(expr: pl.Expr, dtype: pl.DataType | DataTypeClass, *, in_list: bool) -> pl.Expr | None:
    """True where a value may be Polars' reconciliation rather than the data; None: never."""
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.String):
        if in_list:
            return expr.str.contains(_LOOKS_CODED)
        return expr.str.starts_with("{") | expr.str.starts_with("[")
    if in_list and dtype.is_float():
        return expr == expr.floor()  # maybe an integer Polars widened to a float
    if isinstance(dtype, pl.List | pl.Array):
        inner = _doubt(pl.element(), dtype.inner, in_list=True)
        return None if inner is None else expr.list.eval(inner).list.any()
    if isinstance(dtype, pl.Struct) and in_list:
        parts = []
        # Field names come from the data: address fields by position, under safe names.
        safe = expr.struct.rename_fields([f"f{i}" for i in range(len(dtype.fields))])
        for i, fld in enumerate(dtype.fields):
            value = safe.struct.field(f"f{i}")
            parts.append(value.is_null())
            deeper = _doubt(value, fld.dtype, in_list=True)
            if deeper is not None:
                parts.append(deeper)
        return pl.any_horizontal(parts) if parts else None
    return None


# ---------------------------------------------------------------------------------------
# JSON documents


class _Document:
    """The file as UTF-8 bytes from its first character, whatever its encoding; rewindable.

    Every piece read is scanned first (:class:`~ladle.sources.json_scan.DepthGuard`), so
    no parser sees nesting deeper than ``max_depth``; the document keeps the line and
    column of what it has handed out, to name where a parser stopped.
    """

    def __init__(self, stream: IO[bytes], encoding: str, *, max_depth: int) -> None:
        self._stream = stream
        self._encoding = codecs.lookup(encoding).name
        self._decoder: codecs.IncrementalDecoder | None = None
        self._max_depth = max_depth
        self.rewind()

    def rewind(self) -> None:
        """Go back to the start, past a UTF-8 byte order mark."""
        self._stream.seek(0)
        if self._encoding == "utf-8":
            if self._stream.read(len(_BOM)) != _BOM:
                self._stream.seek(0)
        else:
            self._decoder = codecs.getincrementaldecoder(self._encoding)()
        self._guard = DepthGuard(self._max_depth)
        self._position = TextPosition()
        self._handed = 0
        self._starts = (0, 0)
        """Where the last two pieces handed out started: a parser fails in one of them."""
        self._last = (TextPosition(), b"")
        self._trickle_from: int | None = None

    def read(self, size: int = -1) -> bytes:
        """UTF-8 bytes, checked by the guard; empty only at the end of the file."""
        if size == 0:
            return b""  # ijson's first read: is it bytes or text?
        if self._trickle_from is not None:
            # Locating an error: read as before up to its piece, then byte by byte.
            rest = self._trickle_from - self._handed
            size = 1 if rest <= 0 else rest if size < 0 else min(size, rest)
        data = self._read(size)
        try:
            self._guard.feed(data)
        except Refused as exc:
            where = self._position.describe(data, exc.index)
            raise _Malformed(f"{where}: {exc.message}") from None
        self._last = (replace(self._position), data)
        self._position.advance(data)
        self._starts = (self._starts[1], self._handed)
        self._handed += len(data)
        return data

    def _read(self, size: int) -> bytes:
        while True:
            data = self._stream.read(size)
            if self._decoder is None:
                return data
            try:
                text = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise _Undecodable(bad_byte_message(exc.object[exc.start], self._encoding)) from exc
            if text or not data:
                return text.encode("utf-8")

    def first_byte(self) -> bytes:
        """The first non-whitespace byte (empty if none); rewinds afterwards."""
        while data := self.read(4096):
            stripped = data.lstrip(b" \t\r\n")
            if stripped:
                self.rewind()
                return stripped[:1]
        self.rewind()
        return b""

    def locate_error(self) -> str:
        """Where the parser that just failed on this document stopped: ``line L, column C``.

        The document is parsed again, the pieces before the failing one as they were and
        then a byte at a time, so the parser stops right after the byte it refuses.
        """
        self._trickle_from = self._starts[0]
        self._rewind_keeping_trickle()
        try:
            for _ in ijson.basic_parse(self):
                pass
        except (ijson.JSONError, InvalidOperation):
            before, data = self._last
            if data:
                return before.describe(data, len(data) - 1)
            return f"the end of the file ({self._position.describe(b'', 0)})"
        finally:
            self._trickle_from = None
        return "an unknown place"  # the parser accepted it the second time: cannot happen

    def _rewind_keeping_trickle(self) -> None:
        trickle = self._trickle_from
        self.rewind()
        self._trickle_from = trickle


class _Undecodable(Exception):
    """A byte the declared encoding cannot decode, somewhere in a JSON document."""


class _Malformed(Exception):
    """The document breaks a rule of the scan (too deep, odd whitespace), at line and column."""


@dataclass(frozen=True)
class _Target:
    """Where the records are: an ijson prefix and how positions name them."""

    prefix: str
    label: str | None  # None: the document is the one record
    indexes: tuple[tuple[str, int | None], ...] = ()
    """For a ``records:`` path through arrays: each array's item prefix and the index
    taken from it (None: every item); empty when no index is given."""

    def position(self, name: str, index: int) -> str:
        return f"{name}#" if self.label is None else f"{name}#{self.label}[{index}]"


def read_json(
    stream: IO[bytes],
    name: str,
    *,
    batch_size: int,
    encoding: str,
    records: str | None,
    resource: str,
    consumed: Callable[[], int],
    budget: BatchBudget | None = None,
    skip: int = 0,
    options: JsonOptions | None = None,
) -> Generator[SourceBatch, None, None]:
    """Stream the records of a JSON document; positions are ``name#KEY[INDEX]``.

    Batches hold ``batch_size`` records (or what ``budget`` allows); the first ``skip``
    records are passed over (a resumed run), and each batch's checkpoint is the number of
    records read so far.
    """
    options = options or JsonOptions()
    document = _Document(stream, encoding, max_depth=options.max_depth)
    budget = budget or BatchBudget(batch_size)
    try:
        target = _find_target(document, name, records=records, resource=resource)
        document.rewind()
        read = _Items(document, name, target, options)
        yield from _stream_items(document, read, budget=budget, consumed=consumed, skip=skip)
        if read.count == 0 and records is not None:
            document.rewind()
            _check_records_path(document, name, records)
        read.tell(options.notices, records=records)
    except _Undecodable as exc:
        raise SourceError(str(exc), position=name) from exc
    except _Malformed as exc:
        raise SourceError(f"invalid JSON at {exc}", position=name) from exc
    except ColumnClash as exc:
        raise SourceError(str(exc), position=name) from exc


@dataclass(frozen=True)
class JsonOptions:
    """What a JSON reader needs beyond the stream: limits, declared columns, where to tell."""

    max_depth: int = DEFAULT_MAX_DEPTH
    """Arrays and objects nested deeper are refused before any parser sees them."""
    whole: frozenset[str] = frozenset()
    """Top-level fields declared ``type: json``: kept as one JSON value, not flattened."""
    notices: list[str] = field(default_factory=list)
    """Where to report what the user should hear (a document that looks mis-aimed)."""


def _end_of(document: _Document) -> tuple[int, int]:
    """Line and column just past the last byte of a document (rewinds before and after)."""
    document.rewind()
    line, column = 1, 1
    while data := document.read(1 << 16):
        newlines = data.count(b"\n")
        line += newlines
        tail = data.rsplit(b"\n", 1)[-1] if newlines else data
        column = (1 if newlines else column) + len(tail)
    document.rewind()
    return line, column


def _find_target(document: _Document, name: str, *, records: str | None, resource: str) -> _Target:
    first = document.first_byte()
    if not first:
        line, column = _end_of(document)
        raise SourceError(
            f"the file holds no JSON value (end of file at line {line}, column {column}); "
            "a JSON document needs at least [] or {}",
            position=name,
        )
    if records is not None:
        return _path_target(records, name)
    if first == b"[":
        return _Target("item", "")
    if first == b"{":
        key = _find_array_key(document, name, (*_KNOWN_KEYS, resource))
        return _Target("", None) if key is None else _Target(f"{key}.item", key)
    return _Target("", None)  # a scalar: null holds no record, anything else a bad one


_PATH = re.compile(r"(?:\[(?:\d+|\*)\]|[^.\[\]]+)(?:\.[^.\[\]]+|\[(?:\d+|\*)\])*")
_SEGMENT = re.compile(r"\[(\d+|\*)\]|([^.\[\]]+)")


def _path_target(path: str, name: str) -> _Target:
    """The target of a ``records:`` path: keys joined by dots, ``[N]`` or ``[*]`` for the
    items of an array (``data.items``, ``[0].records``, ``[*].rows``)."""
    if _PATH.fullmatch(path) is None:
        raise SourceError(
            f"records: {path!r} is not a path; write keys joined by dots, and [N] or [*] for "
            "the items of an array, e.g. data.items or [0].records",
            position=f"{name}#{path}",
        )
    parts: list[str] = []
    indexes: list[tuple[str, int | None]] = []
    for match in _SEGMENT.finditer(path):
        index, key = match.groups()
        parts.append("item" if key is None else key)
        if key is None:
            indexes.append((".".join(parts), None if index == "*" else int(index)))
    wanted = tuple(indexes) if any(i is not None for _, i in indexes) else ()
    return _Target(".".join([*parts, "item"]), path, wanted)


def _ijson_prefix(path: str) -> str:
    """The ijson prefix of a ``records:`` path (every array index becomes ``item``)."""
    return ".".join(
        "item" if key is None else key for _, key in (m.groups() for m in _SEGMENT.finditer(path))
    )


_Event = tuple[str, str, Any]


def _selected(document: _Document, indexes: tuple[tuple[str, int | None], ...]) -> Iterator[_Event]:
    """The parse events of the document, less those inside array items the path does not take.

    An item of a path's array starts with a value event at that array's item prefix; each
    array counts its items, and starts counting again when an outer item starts.
    """
    counts = [-1] * len(indexes)
    for event in ijson.parse(document, use_float=False):
        prefix, kind, _ = event
        for level, (item_prefix, _) in enumerate(indexes):
            if prefix == item_prefix and kind in _VALUE_EVENTS:
                counts[level] += 1
                counts[level + 1 :] = [-1] * (len(indexes) - level - 1)
        if all(i is None or c == i for c, (_, i) in zip(counts, indexes, strict=True)):
            yield event


def _find_array_key(document: _Document, name: str, candidates: tuple[str, ...]) -> str | None:
    """The first candidate top-level key whose value is an array, in priority order."""
    arrays: set[str] = set()
    try:
        for prefix, event, _ in ijson.parse(document):
            if event == "start_array" and prefix in candidates:
                arrays.add(prefix)
                if prefix == candidates[0]:
                    break
    except (ijson.JSONError, InvalidOperation) as exc:
        raise _invalid(document, name, exc, "") from exc
    return next((key for key in candidates if key in arrays), None)


def _invalid(document: _Document, position: str, exc: Exception, after: str) -> SourceError:
    """The error for a document the parser refused, with the line and column it stopped at."""
    where = document.locate_error()
    if isinstance(exc, InvalidOperation):
        message = "a number whose exponent is too large to hold exactly"
    else:
        message = _ijson_message(exc)
    if "trailing garbage" in message:
        message += "; for one JSON value per line, use `format: jsonl`"
    return SourceError(f"invalid JSON at {where}{after}: {message}", position=position)


_BIG_ARRAY = 100
"""A lone record holding an array of this many objects probably holds the records."""
_BIG_ARRAY_DEPTH = 3
"""How deep into the lone record to look for such an array."""


class _Items:
    """The items of one document as they are sorted: records, unreadable ones, the count."""

    def __init__(self, document: _Document, name: str, target: _Target, options: JsonOptions):
        self.document = document
        self.name = name
        self.target = target
        self.options = options
        self.count = 0
        self.first: Any = None
        self.records: list[dict[str, Any]] = []
        self.positions: list[str] = []
        self.unreadable: list[Unreadable] = []

    def take(self, item: Any, position: str) -> None:
        """Sort one item: a record with fields, or an unreadable one with the reason."""
        if self.count == 1:
            self.first = item
        if isinstance(item, dict) and _has_fields(item, self.options.whole):
            self.records.append(item)
            self.positions.append(position)
        elif isinstance(item, dict):
            self.unreadable.append(Unreadable(position, to_json_text(item), _NO_FIELDS))
        elif item is not None or self.target.label is not None:
            self.unreadable.append(Unreadable(position, to_json_text(item), not_an_object(item)))

    def batch(self, size: int) -> SourceBatch:
        """What was taken since the last batch, as one; starts the next."""
        frame = records_to_frame(self.records, whole=self.options.whole)
        batch = SourceBatch(frame, self.positions, self.unreadable, size, checkpoint=self.count)
        self.records, self.positions, self.unreadable = [], [], []
        return batch

    def tell(self, notices: list[str], *, records: str | None) -> None:
        """A document of one record holding a big array of objects: say how to read those."""
        if self.count != 1 or not isinstance(self.first, dict):
            return
        found = _big_array(self.first, ())
        if found is None:
            return
        keys, size = found
        head = "[0]." if self.target.label == "" else ""
        if records is not None:
            head = f"{records}[0]."
        path = head + ".".join(keys)
        notices.append(
            f"{self.name} holds one record whose {'.'.join(keys)!r} is an array of {size} "
            f"objects; if those are the records, set `records: {path!r}`"
        )


_NO_FIELDS = "the record has no fields"


def _has_fields(record: dict[str, Any], whole: frozenset[str] = frozenset()) -> bool:
    """Whether a record flattens to at least one column (an empty object gives none)."""
    return any(
        key in whole or not isinstance(value, dict) or _has_fields(value)
        for key, value in record.items()
    )


def _big_array(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[tuple[str, ...], int] | None:
    """The first array of at least ``_BIG_ARRAY`` objects in a record, and its length."""
    for key, value in record.items():
        if isinstance(value, list) and len(value) >= _BIG_ARRAY and isinstance(value[0], dict):
            return (*keys, key), len(value)
        if isinstance(value, dict) and len(keys) < _BIG_ARRAY_DEPTH:
            found = _big_array(value, (*keys, key))
            if found is not None:
                return found
    return None


def _stream_items(
    document: _Document | Iterator[_Event],
    items: _Items,
    *,
    budget: BatchBudget,
    consumed: Callable[[], int],
    skip: int,
) -> Generator[SourceBatch, None, None]:
    """Yield the target's items in batches, counting them in ``items``.

    Input is read ahead in pieces, so the bytes read while parsing an item only hint at
    its size; an item they say may be too large is measured exactly.
    """
    name, target = items.name, items.target
    if target.indexes:
        document = _selected(items.document, target.indexes)
    before = last = consumed()
    index = 0
    try:
        for item in ijson.items(document, target.prefix, use_float=False):
            position = target.position(name, index)
            index += 1
            items.count = index
            now = consumed()
            if budget.max_record_bytes is not None and now - last > budget.max_record_bytes:
                # The input read says it may be too large; the item itself says exactly.
                budget.check_record(len(to_json_text(item).encode()), position)
            last = now
            if index <= skip:
                before = now
                continue
            items.take(item, position)
            if budget.full(len(items.records) + len(items.unreadable), now - before):
                yield items.batch(now - before)
                before = now
    except (ijson.JSONError, InvalidOperation) as exc:
        after = f", after {index} records" if target.label is not None else ""
        raise _invalid(items.document, target.position(name, index), exc, after) from exc
    if items.records or items.unreadable:
        yield items.batch(consumed() - before)


def _ijson_message(exc: Exception) -> str:
    """The parser's own words, first line only (yajl appends a picture of the input)."""
    detail = exc.args[0] if exc.args else exc
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    message = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "UTF8" in message:
        message += "; set `encoding:` to the file's encoding"
    return message


_VALUE_EVENTS = ("start_array", "start_map", "string", "number", "boolean", "null")


def _check_records_path(document: _Document, name: str, path: str) -> None:
    """Explain why ``records:`` gave nothing: fine for an empty array, an error otherwise."""
    found = None
    wanted = _ijson_prefix(path)
    for prefix, event, _ in ijson.parse(document):
        if prefix == wanted and event in _VALUE_EVENTS:
            found = event
            break
    if found == "start_array":
        return
    what = {
        None: "is not in the document",
        "start_map": "is an object, not an array",
        "string": "is a string, not an array",
        "number": "is a number, not an array",
        "boolean": "is a boolean, not an array",
        "null": "is null, not an array",
    }[found]
    raise SourceError(
        f"records: {path!r} {what}; set `records:` to the path of the array of records "
        "(keys joined by dots, [N] or [*] for the items of an array)",
        position=f"{name}#{path}",
    )
