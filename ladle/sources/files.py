"""The ``file`` source: a path or glob of JSON, JSON Lines, CSV or Parquet files, maybe compressed.

This module finds the files, looks at what each holds (compression, kind, encoding:
:mod:`ladle.sources.compression`, :mod:`ladle.sources.sniff`), opens it, picks the
reader, and keeps the byte count honest; the readers turn bytes into batches.
A file that cannot be read at all stops the run with a :class:`~ladle.errors.SourceError`
naming it; a record that cannot be read goes to quarantine with its position.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import polars as pl
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladle.batch import SourceBatch
from ladle.errors import SourceError
from ladle.memory import BatchBudget
from ladle.schema import normalize_name
from ladle.sources import SourceContext
from ladle.sources.compression import Compression, CorruptData, by_content, opened, split_name
from ladle.sources.content_hash import ContentHash
from ladle.sources.csv_records import MAX_FIELD_CHARS, Ragged
from ladle.sources.json_scan import DEFAULT_MAX_DEPTH
from ladle.sources.null_values import NullValues, NullValuesSpec
from ladle.sources.offsets import Offset, records_read
from ladle.sources.sniff import HEAD, SAMPLE, detect_encoding, refusal
from ladle.state import FILES

Format = Literal["json", "jsonl", "ndjson", "csv", "parquet"]

_EXTENSIONS: dict[str, Format] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GLOB = frozenset("*?[")
_SEEKS: frozenset[Format] = frozenset({"jsonl", "ndjson", "csv"})
"""Formats a resumed read goes into at a byte offset; the others are read again from the
start up to their checkpoint (a JSON document's records, a Parquet file's row groups)."""

log = structlog.get_logger("ladle")


class FileOptions(BaseModel):
    """A resource's ``source:`` when it reads files; validated with the pipeline file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["file"]
    path: str
    """A path or glob, relative to the pipeline file's directory; matches are read sorted."""
    format: Format | None = None
    """Not set: from the extension, after stripping a compression extension (``.gz``,
    ``.bz2``, ``.xz``, ``.zst``). Compression itself is told from the content."""
    records: str | None = None
    """JSON documents: the path of the array of records: keys joined by dots, ``[N]`` for
    the Nth item of an array or ``[*]`` for each, e.g. ``payload.facilities``,
    ``[0].records``, ``[*].rows``."""
    max_depth: int = Field(default=DEFAULT_MAX_DEPTH, ge=1, le=500)
    """JSON and JSON Lines: how deep arrays and objects may nest. Deeper input is refused
    (a document fails, a line is quarantined) before any parser reads it, so that no file
    can exhaust memory."""
    encoding: str = "utf-8"
    """Text encoding; UTF-8 also strips a byte order mark. ``auto``: detected for each file
    from its first 64 KiB (a byte order mark, else UTF-8 if it is valid, else the closest
    single-byte encoding, cp1252 among equals) and named in the run summary. CSV text read
    as latin-1 that holds C1 control characters (U+0080-U+009F) is reported: the file is
    likely cp1252."""
    delimiter: str | None = None
    """CSV: the field separator; not set: sniffed from the start of the file, else ``,``."""
    quotechar: str | None = None
    """CSV: the quote character; not set: sniffed from the start of the file, else ``"``."""
    header: bool = True
    """CSV: whether the first row names the columns (else ``column_1``, ``column_2``...)."""
    quote: Literal["none"] | None = None
    """CSV: ``none`` turns quoting off, for files whose quote characters are data: every
    line is a record. Not set: a field may be quoted with ``quotechar``; a quoted value
    in which three lines in a row read as whole records is taken for a stray quote: its
    line is quarantined, naming where the quote opened, and the lines after it are read."""
    ragged: Ragged = "quarantine"
    """CSV: a row with more or fewer fields than the header is quarantined;
    ``ignore_empty_extra`` loads a row whose extra fields are all empty without them
    (and counts such rows in the run summary)."""
    max_field_chars: int = Field(default=MAX_FIELD_CHARS, ge=1)
    """CSV: the longest field; a record with a longer one is quarantined whole (its first
    1,048,576 characters kept), with its span of lines, and reading goes on after it."""
    file_column: str | None = None
    """A column to add to every record (e.g. ``source_file``), holding the file's path below
    the glob's fixed part (``path: exports/*/orders-*.csv`` gives ``north/orders-2024-05.csv``;
    a plain path gives the file's name), for ``derive`` to take a date or region from."""
    null_values: NullValuesSpec | None = None
    """CSV and JSON: text values that mean null, e.g. ``[NA, "?", N/A]``; or lists by
    column, ``{price: ["-"], "*": [NA]}``, where a column's own list replaces ``*``'s
    (``*``: every other column). Values are compared whole; an empty CSV field is null
    anyway."""

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path must name a file or a glob such as data/*.jsonl")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r}; try utf-8, latin-1, cp1252 or auto"
            ) from None
        return value

    @field_validator("file_column")
    @classmethod
    def _column_named(cls, value: str | None) -> str | None:
        # Source columns are stored snake_cased; a name that changes would not be found by
        # the steps (derive) that use it under the name written here.
        if value is not None and normalize_name(value) != value:
            stored = normalize_name(value)
            raise ValueError(
                f"{value!r} would be stored as {stored!r} (column names are snake_cased); "
                f"write `file_column: {stored}`, or a name such as source_file"
            )
        return value

    @field_validator("null_values", mode="before")
    @classmethod
    def _null_values_are_text(cls, value: Any) -> Any:
        lists = value.values() if isinstance(value, dict) else [value]
        if any(isinstance(item, list) and None in item for item in lists):
            raise ValueError(
                "a null value is empty: YAML reads an unquoted NULL, Null, null or ~ as no "
                'value; quote it ("NULL")'
            )
        return value

    @model_validator(mode="after")
    def _quoting_off_or_quotechar(self) -> FileOptions:
        if self.quote == "none" and self.quotechar is not None:
            raise ValueError("`quote: none` turns quoting off; drop `quotechar`")
        return self

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be a single character, got {value!r}")
        return value


class FileSource:
    """Yield the records of every matching file, file after file, in sorted path order."""

    reads_ahead: ClassVar[bool] = True
    """Its next batch may be read on another thread (:mod:`ladle.read_ahead`): reading
    touches only the files and this object, and each checkpoint is a value of its own."""

    def __init__(self, options: FileOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self._base = Path(os.path.abspath(context.base_dir))
        self._budget = context.budget or BatchBudget(context.batch_size)
        stored = context.state.get(FILES)
        self._loaded: dict[str, FileMeta] = dict(stored) if isinstance(stored, dict) else {}
        self._null_values = NullValues(options.null_values)
        self._root = _glob_root(self._base, options.path)

    def paths(self) -> list[Path]:
        """The files to read, sorted; raises SourceError when there are none."""
        if not _GLOB.intersection(self.options.path):
            single = os.path.normpath(os.path.join(self._base, self.options.path))
            if not os.path.isfile(single):
                raise SourceError(
                    f"file not found (looked in {self._base})", position=self.options.path
                )
            return [Path(single)]
        # root_dir keeps glob characters in the base directory's own name literal.
        matches = glob.glob(self.options.path, root_dir=self._base, recursive=True)
        found = sorted(
            os.path.normpath(os.path.join(self._base, match))
            for match in matches
            if os.path.isfile(os.path.join(self._base, match))
        )
        if not found:
            raise SourceError(
                f"no file matches {self.options.path!r} (looked in {self._base})",
                position=self.options.path,
            )
        return [Path(p) for p in found]

    def batches(self) -> Iterator[SourceBatch]:
        """Yield the batches of every file not loaded before (or changed since), in order.

        Each batch's checkpoint names the files finished so far and how far into the
        current file it reaches (lines, rows or records, as its reader counts them, and for
        JSON Lines and CSV the line and byte its last record ends at), so a resumed run
        starts right after it, whatever size its batches have. It also holds the hash of the
        file's bytes read so far, by which a resumed run knows the file is the same one.
        """
        resume = self.context.resume if isinstance(self.context.resume, dict) else {}
        done: dict[str, FileMeta] = dict(resume.get("done") or {})
        self._loaded.update(done)
        paths = self.paths()
        metas = {path: _meta(path) for path in paths}
        # What will be read, for progress: a file whose size and mtime are as loaded is
        # skipped; one with a new mtime is hashed below and leaves the total if unchanged.
        total = sum(
            meta["size"]
            for path, meta in metas.items()
            if not _same_stat(self._loaded.get(self._display(path)), meta)
        )
        unchanged = 0
        failed: list[SourceError] = []
        for path in paths:
            name = self._display(path)
            meta = _meta(path)
            previous = self._loaded.get(name)
            if previous is not None and _same_content(previous, meta, path):
                if not _same_stat(previous, metas[path]):
                    total -= metas[path]["size"]
                self._loaded[name] = {**meta, "sha256": previous["sha256"]}
                unchanged += 1
                continue
            if previous is not None and name not in done:
                self.context.notices.append(f"{name} changed since it was loaded; reading it again")
            content = ContentHash(path)
            skip, offset = self._read_before(resume, name, meta, content)
            number = 0
            try:
                read = self._read(path, skip, offset=offset, content=content)
                for number, batch in enumerate(read, start=1):
                    if failed:
                        continue  # only looking for more bad files
                    position = _checkpoint(batch, done, name, meta, content)
                    checkpoint = {**position, "batches": number}
                    yield replace(batch, checkpoint=checkpoint, bytes_total=total)
                meta = {**meta, "sha256": content.hexdigest()}
            except SourceError as exc:
                failed.append(exc)
                continue
            if number == 0 and skip == 0:
                self.context.notices.append(f"{name} holds no records")
            done = {**done, name: meta}
            self._loaded[name] = meta
        unused = self._null_values.unused()
        if unused:
            self.context.notices.append(
                f"null_values names columns that no file has: {', '.join(unused)}"
            )
        if unchanged:
            self.context.notices.append(
                f"{unchanged} of {len(paths)} files were loaded before and have not changed; "
                "--full-refresh reads them again"
            )
        _raise_for(failed, self.options.path)

    def final_state(self) -> dict[str, Any]:
        """Every file loaded so far, by path: size, mtime and content hash."""
        return {FILES: self._loaded}

    def inspect(self, path: Path) -> _Plan:
        """What one file is (format, compression, encoding), told from its name and its first
        bytes; SourceError if it cannot be read, or is not what it should be."""
        return self._inspect(path, self._display(path))

    def read(self, path: Path) -> Iterator[SourceBatch]:
        """One file's batches from its start, without a run's bookkeeping (no state, no
        content hash): what ``ladle check`` samples."""
        return self._read(path, 0)

    def _read_before(
        self, resume: dict[str, Any], name: str, meta: FileMeta, content: ContentHash
    ) -> tuple[int, Offset | None]:
        """How far into this file an interrupted run committed: records, and the byte
        offset to start at when its reader told one. (0, None) if the file changed since.

        The file is the same if its size, mtime and the hash of its bytes up to where that
        run had read are; hashing them leaves ``content`` ready to go on from there.
        """
        if resume.get("file") != name:
            return 0, None
        read = resume.get("read")
        if "hashed" in resume:
            same = resume.get("meta") == meta and content.resume(resume["hashed"])
        else:  # a checkpoint written before byte offsets: it holds the whole file's hash
            same = resume.get("meta") == {**meta, "sha256": _sha256(content.path)}
        if not same or not isinstance(read, int):
            self.context.notices.append(
                f"{name} changed since the interrupted run; reading it again from the start"
            )
            return 0, None
        return read, Offset.from_checkpoint({"read": read, **(resume.get("at") or {})})

    def _read(
        self,
        path: Path,
        skip: int,
        *,
        offset: Offset | None = None,
        content: ContentHash | None = None,
    ) -> Iterator[SourceBatch]:
        """One file's batches: after ``skip`` records, or from ``offset``; hashed into
        ``content`` as they are read (a format read otherwise is hashed whole first)."""
        name = self._display(path)
        plan = self._inspect(path, name)
        if plan.fmt not in _SEEKS:
            offset = None
            if content is not None and content.hashed == 0:
                content.hexdigest()
        if offset is not None:
            self._resumed_at(name, offset, compressed=plan.compression is not None)
        try:
            size = path.stat().st_size
            with (
                opened(
                    path,
                    plan.compression,
                    name,
                    seek=plan.fmt == "parquet",
                    wrap=None if content is None else content.reader,
                ) as (stream, consumed),
                # Close the reader before its file, also when the consumer stops early.
                closing(
                    self._reader(
                        plan,
                        stream,
                        name,
                        path=path,
                        consumed=consumed,
                        skip=skip,
                        offset=offset,
                    )
                ) as batches,
            ):
                # A plain file sought into is read from there; a compressed one whole.
                seeked = offset.byte if offset is not None and plan.compression is None else 0
                counted = _all_bytes_counted(batches, size - seeked)
                read = counted if plan.fmt == "parquet" else map(self._null_values, counted)
                yield from self._with_file_column(read, path, name)
        except CorruptData as exc:
            raise SourceError(str(exc), position=name) from exc
        except OSError as exc:
            raise SourceError(
                f"cannot read the file: {exc.strerror or exc}", position=name
            ) from exc
        except UnicodeError as exc:
            raise SourceError(
                f"cannot decode the file as {plan.encoding} ({exc}); "
                "set `encoding:` to the file's encoding",
                position=name,
            ) from exc

    def _resumed_at(self, name: str, offset: Offset, *, compressed: bool) -> None:
        """Say where a resumed read starts, and how it gets there."""
        how = "decompressing up to it (a compressed file cannot seek)" if compressed else "seeking"
        self.context.notices.append(
            f"{name}: resuming at byte {offset.byte:,} (line {offset.line + 1:,}) by {how}"
        )
        log.info(
            "resumed at byte",
            file=name,
            byte=offset.byte,
            line=offset.line + 1,
            seek=not compressed,
        )

    def _inspect(self, path: Path, name: str) -> _Plan:
        """Format, compression and encoding of one file, from its name and its first bytes.

        Raises SourceError for a file that is not what it should be (an HTML page, an
        archive, binary data, a ``.gz`` that is not compressed) before a record is read.
        """
        stem, named = split_name(path.name)
        fmt = _format_of(stem, self.options.format, name)
        encoding = self.options.encoding
        want = SAMPLE if encoding == "auto" else HEAD
        try:
            with open(path, "rb") as file:
                sample = file.read(want)
            kind = by_content(sample)
            if named is not None and kind is None and sample:
                raise SourceError(
                    f"not {named}-compressed (it starts with {sample[:8]!r}); if it is not "
                    f"compressed, drop the {os.path.splitext(path.name)[1]} extension",
                    position=name,
                )
            if kind is not None:  # the sample is of the content, not of the file
                with opened(path, kind, name) as (stream, _):
                    sample = stream.read(want)
        except CorruptData as exc:
            raise SourceError(str(exc), position=name) from exc
        except OSError as exc:
            raise SourceError(
                f"cannot read the file: {exc.strerror or exc}", position=name
            ) from exc
        if kind is not None and kind != named:
            also = "" if named is None else f", not {named} as its name says"
            self.context.notices.append(f"{name} is {kind}-compressed{also}; read as {kind}")
        problem = refusal(sample[:HEAD], fmt, encoding=encoding)
        if problem is not None:
            raise SourceError(problem, position=name)
        if encoding == "auto" and fmt != "parquet":
            encoding = self._detected(sample, name, whole=len(sample) < want)
        return _Plan(fmt, kind, encoding)

    def _detected(self, sample: bytes, name: str, *, whole: bool) -> str:
        """The encoding ``encoding: auto`` finds for a file, named in the run summary."""
        detected = detect_encoding(sample, whole=whole)
        if detected is None:
            raise SourceError(
                f"cannot detect the encoding from the first {len(sample):,} bytes; "
                "set `encoding:` to the file's encoding",
                position=name,
            )
        self.context.notices.append(f"{name}: encoding detected as {detected}")
        return detected

    def _with_file_column(
        self, batches: Iterator[SourceBatch], path: Path, name: str
    ) -> Iterator[SourceBatch]:
        """Add ``file_column`` (the path below the glob's root) to every batch, if asked."""
        column = self.options.file_column
        if column is None:
            yield from batches
            return
        value = Path(os.path.relpath(path, self._root)).as_posix()
        for batch in batches:
            if column in map(normalize_name, batch.frame.columns):
                raise SourceError(
                    f"`file_column: {column}` names a column the file already has; "
                    "choose another name",
                    position=name,
                )
            values = pl.Series(column, [value] * batch.frame.height, dtype=pl.String)
            yield replace(batch, frame=batch.frame.with_columns(values))

    def _reader(
        self,
        plan: _Plan,
        stream: IO[bytes],
        name: str,
        *,
        path: Path,
        consumed: Callable[[], int],
        skip: int,
        offset: Offset | None,
    ) -> Generator[SourceBatch, None, None]:
        # Readers are imported here so that validating a pipeline file does not load them.
        options, batch_size = self.options, self.context.batch_size
        budget, fmt, encoding = self._budget, plan.fmt, plan.encoding
        if fmt == "parquet":
            from ladle.sources.parquet_reader import read_parquet

            # Parquet seeks; Arrow reads a plain file by path, faster than through Python.
            source = stream if plan.compression is not None else str(path)
            size = path.stat().st_size
            return read_parquet(
                source, name, batch_size=batch_size, size=size, budget=budget, skip=skip
            )
        if fmt == "csv":
            from ladle.sources.csv_reader import CsvOptions, read_csv

            csv_options = CsvOptions(
                encoding=encoding,
                delimiter=options.delimiter,
                quotechar=options.quotechar,
                quoting=options.quote != "none",
                header=options.header,
                ragged=options.ragged,
                max_field_chars=options.max_field_chars,
            )
            return read_csv(
                stream,
                name,
                csv_options,
                batch_size=batch_size,
                consumed=consumed,
                budget=budget,
                skip=skip,
                notices=self.context.notices,
                start=offset,
                compressed=plan.compression is not None,
            )
        from ladle.sources.json_reader import JsonOptions, read_json, read_jsonl

        json_options = JsonOptions(
            max_depth=options.max_depth,
            whole=self.context.json_columns,
            notices=self.context.notices,
        )
        if fmt == "json":
            return read_json(
                stream,
                name,
                batch_size=batch_size,
                encoding=encoding,
                records=options.records,
                resource=self.context.resource,
                consumed=consumed,
                budget=budget,
                skip=skip,
                options=json_options,
            )
        return read_jsonl(
            stream,
            name,
            batch_size=batch_size,
            encoding=encoding,
            consumed=consumed,
            budget=budget,
            skip=skip,
            options=json_options,
            start=offset,
            compressed=plan.compression is not None,
        )

    def _display(self, path: Path) -> str:
        """The path as the user would recognise it: relative to the pipeline file when under it."""
        try:
            return path.relative_to(self._base).as_posix()
        except ValueError:
            return str(path)


def _raise_for(failed: list[SourceError], path: str) -> None:
    """Fail the resource for every file that could not be read, naming each."""
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise SourceError(
            f"{len(failed)} files cannot be read, so nothing of them was loaded: "
            + "; ".join(str(exc) for exc in failed),
            position=path,
        )


FileMeta = dict[str, Any]
"""What identifies a loaded file's content: ``size``, ``mtime_ns`` and ``sha256``."""


def _checkpoint(
    batch: SourceBatch, done: dict[str, FileMeta], name: str, meta: FileMeta, content: ContentHash
) -> dict[str, Any]:
    """Where a run stands after ``batch``: files done; in this one, the records read (what
    resuming uses), the line and byte they end at when the reader told them, the hash of
    the bytes read so far; and "batches" (of this run, in this file), which informs."""
    position: dict[str, Any] = {"done": done, "file": name, "meta": meta}
    position["read"] = records_read(batch.checkpoint)
    offset = Offset.from_checkpoint(batch.checkpoint)
    if offset is not None:
        position["at"] = {"byte": offset.byte, "line": offset.line}
    position["hashed"] = content.prefix()
    return position


def _meta(path: Path) -> FileMeta:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _same_stat(previous: FileMeta | None, meta: FileMeta) -> bool:
    """Same size and mtime as when loaded: unchanged, without reading the file."""
    return previous is not None and all(previous.get(k) == meta[k] for k in ("size", "mtime_ns"))


def _same_content(previous: FileMeta, meta: FileMeta, path: Path) -> bool:
    """Same size and mtime: unchanged. Same size, new mtime: compare the content's hash."""
    if previous.get("size") != meta["size"]:
        return False
    if previous.get("mtime_ns") == meta["mtime_ns"]:
        return True
    return bool(previous.get("sha256") == _sha256(path))


def _sha256(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise SourceError(
            f"cannot read the file: {exc.strerror or exc}", position=str(path)
        ) from exc


def _format_of(stem: str, declared: Format | None, name: str) -> Format:
    """The declared format, else the one the file name's extension (compression stripped) says."""
    if declared is not None:
        return "jsonl" if declared == "ndjson" else declared
    extension = os.path.splitext(stem.lower())[1]
    if extension not in _EXTENSIONS:
        shown = f"extension {extension!r}" if extension else "no extension"
        raise SourceError(
            f"cannot tell the format from {shown}; set `format:` to one of "
            "json, jsonl, ndjson, csv, parquet",
            position=name,
        )
    return _EXTENSIONS[extension]


def _glob_root(base: Path, pattern: str) -> Path:
    """The directory that a pattern's fixed leading part names (a plain path: its directory)."""
    parts = pattern.replace(os.sep, "/").split("/")[:-1]
    fixed: list[str] = []
    for part in parts:
        if _GLOB.intersection(part):
            break
        fixed.append(part)
    return Path(os.path.normpath(os.path.join(base, "/".join(fixed))))


@dataclass(frozen=True)
class _Plan:
    """How to read one file: what its name and first bytes showed."""

    fmt: Format
    compression: Compression | None
    encoding: str


def _all_bytes_counted(batches: Iterator[SourceBatch], size: int) -> Iterator[SourceBatch]:
    """Pass batches on one behind, so the last can carry the bytes no batch counted.

    Readers count the bytes consumed up to each batch; what follows the last record
    (trailing blank lines, a gzip trailer) would otherwise go uncounted.
    """
    held: SourceBatch | None = None
    counted = 0
    for batch in batches:
        if held is not None:
            yield held
        held = batch
        counted += batch.bytes_read
    if held is not None:
        yield replace(held, bytes_read=max(held.bytes_read + size - counted, 0))
