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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import IO, Any

import ijson
import polars as pl
from polars.datatypes import DataTypeClass

from ladle.batch import SourceBatch, Unreadable
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
    ColumnClash,
    flat_series,
    frame_of,
    leaves,
    records_to_frame,
    to_json_text,
)

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

    def position(self, name: str, offset: int) -> str:
        """Where the line at ``offset`` came from."""
        if self.positions is not None:
            return self.positions[offset]
        return f"{name}:{self.first_line + offset}"


def parse_json_texts(texts: list[bytes], positions: list[str]) -> SourceBatch:
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
        return _parse_fast(chunk, "") or _parse_lines(chunk, "")
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
) -> Generator[SourceBatch, None, None]:
    """Yield one batch per chunk of ``batch_size`` lines (or what ``budget`` allows);
    positions are ``name:LINE``.

    The first ``skip`` lines are passed over (a resumed run); each batch's checkpoint is
    the number of lines read so far.
    """
    budget = budget or BatchBudget(batch_size)
    before = consumed()
    for chunk in _chunks(stream, name, budget=budget, encoding=encoding, skip=skip):
        try:
            batch = _parse_fast(chunk, name) or _parse_lines(chunk, name)
        except ColumnClash as exc:
            raise SourceError(str(exc), position=f"{name}:{chunk.first_line}") from exc
        now = consumed()
        if batch.fetched:
            read = chunk.first_line - 1 + len(chunk.lines)
            yield SourceBatch(
                batch.frame, batch.positions, batch.unreadable, now - before, checkpoint=read
            )
            before = now


def _chunks(
    stream: IO[bytes], name: str, *, budget: BatchBudget, encoding: str, skip: int
) -> Iterator[_Chunk]:
    if is_utf8(encoding):
        return _utf8_chunks(stream, name, budget, skip=skip)
    return _decoded_chunks(stream, name, budget=budget, encoding=encoding, skip=skip)


def _utf8_chunks(
    stream: IO[bytes], name: str, budget: BatchBudget, *, skip: int
) -> Iterator[_Chunk]:
    """Lines as they are in the file (Polars checks they are UTF-8), minus a byte order mark."""
    line_no = _skipped(stream.readline, skip) + 1
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
        yield _Chunk(line_no, lines)
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
    stream: IO[bytes], name: str, *, budget: BatchBudget, encoding: str, skip: int
) -> Iterator[_Chunk]:
    """Lines decoded from ``encoding`` and re-encoded as the UTF-8 that Polars reads."""
    with text_stream(stream, encoding, newline="\n") as text:
        line_no = _skipped(text.readline, skip) + 1
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
            yield _decoded_chunk(texts, name, line_no=line_no, encoding=encoding)
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


def _parse_fast(chunk: _Chunk, name: str) -> SourceBatch | None:
    """The whole chunk in one Polars call, or None when it needs reading line by line."""
    if chunk.undecodable:
        return None
    data = b"".join(chunk.lines)
    try:
        frame = pl.read_ndjson(data, infer_schema_length=None)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return None  # a Polars bug on odd input must cost speed, not the run
    rows: range | list[int] = range(len(chunk.lines))
    if frame.height != len(chunk.lines):
        rows = [i for i, line in enumerate(chunk.lines) if line.strip()]
        if frame.height != len(rows):
            return None
    flat = _flatten_faithfully(frame, data)
    if flat is None:
        return None
    positions = [chunk.position(name, i) for i in rows]
    return SourceBatch(flat, positions)


def _parse_lines(chunk: _Chunk, name: str) -> SourceBatch:
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
        else:
            records.append(result)
            positions.append(position)
    return SourceBatch(records_to_frame(records), positions, unreadable)


def _parse_line(line: bytes, position: str) -> dict[str, Any] | Unreadable:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
        message = bad_byte_message(line[exc.start], "utf-8")
        return Unreadable(position, raw, message, rule="encoding")
    raw = text.rstrip("\r\n")
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return Unreadable(position, raw, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except _NotJson as exc:
        return Unreadable(position, raw, f"invalid JSON: {exc}")
    if not isinstance(value, dict):
        return Unreadable(position, raw, not_an_object(value))
    return value


class _NotJson(ValueError):
    """A token Python's json module accepts but JSON does not (NaN, Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value (JSON numbers are finite)")


# Polars reconciles some mixed types silently: it renders an object that shares a field
# with strings as text in its own spelling (not always valid JSON), turns [1, "x"] into
# ["1", "x"], widens [1, 2.5] to floats, and fills the keys missing from some objects of a
# list with nulls. A chunk holding values that may be such inventions goes down the slow
# road, which keeps them as written.
_LOOKS_CODED = r"^(?:-?[0-9]|true$|false$|[\[{])"


def _flatten_faithfully(frame: pl.DataFrame, data: bytes) -> pl.DataFrame | None:
    """Flatten a frame Polars read from ``data``, or None if it may hold values Polars
    made up (a reconciled type, or a number rounded to a double)."""
    try:
        found = leaves(frame)
    except ColumnClash:
        return None  # the slow road reports it, with a position
    if not found:
        return pl.DataFrame(height=frame.height)
    if not _numbers_survive(data, [leaf.values for leaf in found]):
        return None
    checked = {f"c{i}": leaf for i, leaf in enumerate(found)}
    doubts = [
        _doubt(pl.col(name), leaf.values.dtype, in_list=False) for name, leaf in checked.items()
    ]
    checks = [doubt.any() for doubt in doubts if doubt is not None]
    if checks:
        values = pl.DataFrame({name: leaf.values for name, leaf in checked.items()})
        if values.select(pl.any_horizontal(checks)).item():
            return None
    return frame_of([flat_series(leaf) for leaf in found])


# A number that may not survive a double has 16 or more digits (a point counted as one,
# so some 15-digit fractions are doubted too), or an exponent below -99 (a subnormal or
# an underflow to zero). With fewer digits a double always holds the value (DBL_DIG is
# 15); a number too large for a double fails Polars' read, which sends the chunk down
# the exact road.
_DIGIT_RUNS = bytes(ord("d") if c in b"0123456789." else ord("x") for c in range(256))
_LONG_RUN = b"d" * 16
_TINY_EXPONENT = r"[eE]-0*[1-9][0-9]{2}"
_NUMBER = r"[-+.0-9]{16,}(?:[eE][-+]?[0-9]+)?|[-+.0-9]*[eE][-+]?[0-9]{3,}"
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
    tokens = text.str.extract_all(_NUMBER).explode().drop_nulls()
    if not any(f is None or bool((f.abs() >= 2.0**53).any()) for f in floats):
        tokens = tokens.filter(tokens.str.contains("[.eE]"))
    return all(_survives(token) for token in tokens.unique().to_list())


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
    """The file as UTF-8 bytes from its first character, whatever its encoding; rewindable."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self._stream = stream
        self._encoding = codecs.lookup(encoding).name
        self._decoder: codecs.IncrementalDecoder | None = None
        self.rewind()

    def rewind(self) -> None:
        """Go back to the start, past a UTF-8 byte order mark."""
        self._stream.seek(0)
        if self._encoding == "utf-8":
            if self._stream.read(len(_BOM)) != _BOM:
                self._stream.seek(0)
        else:
            self._decoder = codecs.getincrementaldecoder(self._encoding)()

    def read(self, size: int = -1) -> bytes:
        """UTF-8 bytes; empty only at the end of the file."""
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


class _Undecodable(Exception):
    """A byte the declared encoding cannot decode, somewhere in a JSON document."""


@dataclass(frozen=True)
class _Target:
    """Where the records are: an ijson prefix and how positions name them."""

    prefix: str
    label: str | None  # None: the document is the one record

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
) -> Generator[SourceBatch, None, None]:
    """Stream the records of a JSON document; positions are ``name#KEY[INDEX]``.

    Batches hold ``batch_size`` records (or what ``budget`` allows); the first ``skip``
    records are passed over (a resumed run), and each batch's checkpoint is the number of
    records read so far.
    """
    document = _Document(stream, encoding)
    budget = budget or BatchBudget(batch_size)
    try:
        target = _find_target(document, name, records=records, resource=resource)
        document.rewind()
        count = yield from _stream_items(
            document, name, target, budget=budget, consumed=consumed, skip=skip
        )
        if count == 0 and records is not None:
            document.rewind()
            _check_records_path(document, name, records)
    except _Undecodable as exc:
        raise SourceError(str(exc), position=name) from exc
    except ColumnClash as exc:
        raise SourceError(str(exc), position=name) from exc


def _find_target(document: _Document, name: str, *, records: str | None, resource: str) -> _Target:
    first = document.first_byte()
    if not first:
        raise SourceError(
            "the file is empty; a JSON document needs at least [] or {}", position=name
        )
    if records is not None:
        return _Target(f"{records}.item", records)
    if first == b"[":
        return _Target("item", "")
    if first == b"{":
        key = _find_array_key(document, name, (*_KNOWN_KEYS, resource))
        return _Target("", None) if key is None else _Target(f"{key}.item", key)
    raise SourceError(
        f"a JSON document must start with [ or {{, found {first.decode('utf-8', 'replace')!r}; "
        "for one JSON object per line, use `format: jsonl`",
        position=name,
    )


def _find_array_key(document: _Document, name: str, candidates: tuple[str, ...]) -> str | None:
    """The first candidate top-level key whose value is an array, in priority order."""
    arrays: set[str] = set()
    try:
        for prefix, event, _ in ijson.parse(document):
            if event == "start_array" and prefix in candidates:
                arrays.add(prefix)
                if prefix == candidates[0]:
                    break
    except ijson.JSONError as exc:
        raise SourceError(f"invalid JSON: {_ijson_message(exc)}", position=name) from exc
    return next((key for key in candidates if key in arrays), None)


def _stream_items(
    document: _Document,
    name: str,
    target: _Target,
    *,
    budget: BatchBudget,
    consumed: Callable[[], int],
    skip: int,
) -> Generator[SourceBatch, None, int]:
    """Yield the target's items in batches; return how many items there were.

    Input is read ahead in pieces, so the bytes read while parsing an item only hint at
    its size; an item they say may be too large is measured exactly.
    """
    before = last = consumed()
    index = 0
    records: list[dict[str, Any]] = []
    positions: list[str] = []
    unreadable: list[Unreadable] = []
    try:
        for item in ijson.items(document, target.prefix, use_float=False):
            position = target.position(name, index)
            index += 1
            now = consumed()
            if budget.max_record_bytes is not None and now - last > budget.max_record_bytes:
                # The input read says it may be too large; the item itself says exactly.
                budget.check_record(len(to_json_text(item).encode()), position)
            last = now
            if index <= skip:
                before = now
                continue
            if isinstance(item, dict):
                records.append(item)
                positions.append(position)
            else:
                unreadable.append(Unreadable(position, to_json_text(item), not_an_object(item)))
            if budget.full(len(records) + len(unreadable), now - before):
                frame = records_to_frame(records)
                yield SourceBatch(frame, positions, unreadable, now - before, checkpoint=index)
                before, records, positions, unreadable = now, [], [], []
    except ijson.JSONError as exc:
        raise SourceError(
            f"invalid JSON after {index} records: {_ijson_message(exc)}",
            position=target.position(name, index),
        ) from exc
    if records or unreadable:
        frame = records_to_frame(records)
        yield SourceBatch(frame, positions, unreadable, consumed() - before, checkpoint=index)
    return index


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
    for prefix, event, _ in ijson.parse(document):
        if prefix == path and event in _VALUE_EVENTS:
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
        f"records: {path!r} {what}; set `records:` to the dotted path of the array of records",
        position=f"{name}#{path}",
    )
