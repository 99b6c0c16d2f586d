"""lookup: add columns from reference data, joined on a key that is unique in the reference.

The reference (a file, a table of the destination, or a SQL query) is read once, when
the step is built, and held as a Polars frame: it is meant for reference data (wards,
regions, currencies), not for a second large input. Semantics worth knowing:

- The key must be unique in the reference (after normalization, when it is on): a
  duplicate stops the run with the duplicated values, never "the last one wins".
  Reference rows with a null in the key can match nothing and are left out.
- Key values compare in their type when the batch and the reference agree on it, else
  as text; with ``normalize``, as text trimmed, with inner whitespace collapsed and
  lowercased. Normalization is for matching only: stored values stay as they came.
- A row with a null (or blank) key value matches nothing: its added columns are null,
  it is never quarantined (declare the column ``required`` for that) and it is not
  counted as a miss (it is a null, not a miss).
- Rows whose key the reference lacks either keep null added columns, or are rejected
  with rule ``lookup``. Either way they are counted, and the count is told once the
  resource's batches are done (:meth:`Lookup.finish`): in the log, the run summary and
  the ledger row's ``notes`` ("633 records had no match in wards.csv for county/ward
  (set to null)").
- A destination table is read when the step is built. A dry run opens no destination:
  the lookup is skipped with a warning and its added columns stay null.
- An added column replaces a batch column of the same name (a declared column is in
  the batch as nulls after the implicit cast). When it is declared with a ``type``,
  the reference column is cast to it once, at load; a value that does not fit is an
  error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ladle.batch import (
    SourceBatch,
    StepResult,
    as_text,
    empty_rejects,
    reject_rows,
    without_rejected,
)
from ladle.columns import ColumnSpec
from ladle.errors import SourceError, StepError
from ladle.ledger import Note
from ladle.schema import normalize_name
from ladle.sources import SharedResources, SourceContext
from ladle.sources.files import FileOptions, FileSource, Format
from ladle.sources.sql import SqlOptions, SqlSource
from ladle.steps import StepContext
from ladle.steps.cast import caster_for
from ladle.steps.columns import refuse_row_column, resolve
from ladle.steps.datetimes import TEMPORAL_KINDS, DatetimeParser

log = structlog.get_logger("ladle")

_KEY = "_ladle_lookup_key_{}"
_MATCHED = "_ladle_lookup_matched"
_MISSING = "_ladle_lookup_missing"
_SHOWN = 10
"""Duplicated keys named in the error; the rest are counted."""
_READ_BATCH = 50_000


class Reference(BaseModel):
    """Where the reference comes from: exactly one of ``file``, ``table`` or ``sql``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    """CSV, JSON, JSON Lines or Parquet (maybe gzipped), relative to the pipeline file."""
    format: Format | None = None
    """With ``file``: its format, as for the file source; not set: from the extension."""
    records: str | None = None
    """With ``file``: the dotted path of the array of records in a JSON document."""
    encoding: str = "utf-8"
    """With ``file``: its text encoding."""
    table: str | None = None
    """A table of the run's destination, read when the step is built."""
    sql: str | None = None
    """A SELECT run through SQLAlchemy on ``url``; values for ``:name`` go in ``params``."""
    url: str | None = None
    """With ``sql``: the SQLAlchemy URL the query runs on; keep it in the environment."""
    params: dict[str, Any] = Field(default_factory=dict)
    """With ``sql``: values bound to the query's ``:name`` placeholders."""

    @model_validator(mode="after")
    def _one_kind(self) -> Reference:
        kinds = [k for k in ("file", "table", "sql") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of `file:` (a CSV or JSON file), `table:` (a table of the "
                "destination) or `sql:` (a SELECT, with `url:`)"
            )
        if (self.sql is None) != (self.url is None):
            raise ValueError("`sql:` and `url:` go together: the query and the database it runs on")
        fields = self.model_fields_set
        if self.file is None and fields & {"format", "records", "encoding"}:
            raise ValueError("`format:`, `records:` and `encoding:` go with `file:`")
        if self.sql is None and "params" in fields:
            raise ValueError("`params:` goes with `sql:`")
        try:
            self.source_options()
        except ValidationError as exc:
            raise ValueError("; ".join(e["msg"] for e in exc.errors())) from None
        return self

    def source_options(self) -> FileOptions | SqlOptions | None:
        """The file or sql source options that read this reference; None for a table."""
        if self.file is not None:
            return FileOptions(
                type="file",
                path=self.file,
                format=self.format,
                records=self.records,
                encoding=self.encoding,
            )
        if self.sql is not None and self.url is not None:
            return SqlOptions(type="sql", url=self.url, query=self.sql, params=self.params)
        return None

    @property
    def label(self) -> str:
        """How messages name the reference: its path, ``table wards`` or ``the lookup query``."""
        if self.file is not None:
            return self.file
        if self.table is not None:
            return f"table {self.table}"
        return "the lookup query"


class LookupOptions(BaseModel):
    """``{from, on, add, unmatched, normalize}``; a list in ``on``/``add`` means same names."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Reference = Field(alias="from")
    """The reference data: ``{file: path}``, ``{table: name}`` or ``{sql: SELECT..., url: ...}``."""
    on: dict[str, str] | list[str]
    """Batch column -> reference column; together they are the key."""
    add: dict[str, str] | list[str]
    """New batch column -> reference column."""
    unmatched: Literal["null", "quarantine"] = "null"
    """A row whose key the reference lacks: ``null`` leaves the added columns null (the
    count is told in the run summary), ``quarantine`` rejects the row (rule ``lookup``)."""
    normalize: bool = False
    """Match keys ignoring case and runs of whitespace; stored values stay as they came."""

    @field_validator("unmatched", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        """``unmatched: null`` reads as YAML's null: it means the option's value ``null``."""
        return "null" if value is None else value

    @field_validator("on", "add")
    @classmethod
    def _not_empty(cls, value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        if not value:
            raise ValueError("name at least one column")
        return value

    @property
    def keys(self) -> dict[str, str]:
        """``on`` as batch column -> reference column."""
        return _pairs(self.on)

    @property
    def columns(self) -> dict[str, str]:
        """``add`` as new column -> reference column."""
        return _pairs(self.add)


def _pairs(value: dict[str, str] | list[str]) -> dict[str, str]:
    return dict(value) if isinstance(value, dict) else {name: name for name in value}


class Lookup:
    """Add reference columns to every batch with one left join on a unique key.

    The reference is read, checked and keyed here, once; ``unmatched`` counts the rows
    that kept null added columns, so one instance serves one run of one resource.
    """

    def __init__(self, options: LookupOptions, context: StepContext) -> None:
        self._context = context
        self._reference = options.from_
        self._on = options.keys
        self._add = {normalize_name(new): ref for new, ref in options.columns.items()}
        refuse_row_column(self._add, context=context, step="lookup")
        self._normalize = options.normalize
        self._quarantine = options.unmatched == "quarantine"
        self._keyed: dict[tuple[str, ...], pl.DataFrame] = {}
        self.unmatched = 0
        """Rows so far whose key the reference lacks (a null or blank key is no miss)."""
        self._skipped = self._reference.table is not None and context.destination is None
        if self._skipped:
            log.warning(
                "lookup skipped",
                resource=context.resource,
                lookup=self._reference.label,
                reason="a dry run opens no destination to read the table from; "
                "the added columns stay null",
            )
            self._table = pl.DataFrame()
        else:
            self._table = self._prepared(self._read())

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Join the batch to the reference; keep or reject the rows that found no match."""
        if self._skipped:
            absent = [pl.lit(None).alias(c) for c in self._add if c not in frame.columns]
            return StepResult(frame=frame.with_columns(absent))
        names = [resolve(column, frame.columns) for column in self._on]
        dtypes = [frame.schema[n] if n is not None else pl.Null() for n in names]
        keys = [pl.col(n) if n is not None else pl.lit(None) for n in names]
        modes = tuple(self._mode(dtype, i) for i, dtype in enumerate(dtypes))
        aliases = [_KEY.format(i) for i in range(len(keys))]
        left = frame.with_columns(
            _compared(key, dtype, mode).alias(alias)
            for key, dtype, mode, alias in zip(keys, dtypes, modes, aliases, strict=True)
        ).drop([c for c in self._add if c in frame.columns])
        joined = left.join(
            self._keyed_by(modes), on=aliases, how="left", maintain_order="left"
        ).select(*frame.columns, *(c for c in self._add if c not in frame.columns), _MATCHED)
        unmatched = joined.get_column(_MATCHED).is_null()
        joined = joined.drop(_MATCHED)
        missing = pl.any_horizontal(_missing(k, d) for k, d in zip(keys, dtypes, strict=True))
        failed = unmatched & ~frame.with_columns(missing.alias(_MISSING)).get_column(_MISSING)
        self.unmatched += int(failed.sum())
        if not self._quarantine:
            return StepResult(frame=joined)
        rejects = self._rejects(frame, failed, names)
        return StepResult(frame=without_rejected(joined, rejects), rejects=rejects)

    def finish(self) -> list[Note]:
        """How many rows of the run had a key the reference lacks: logged, and a note for
        the run summary and the ledger (once, when its batches are done)."""
        if not self.unmatched:
            return []
        log.warning(
            "lookup unmatched",
            resource=self._context.resource,
            lookup=self._reference.label,
            count=self.unmatched,
        )
        records = "1 record" if self.unmatched == 1 else f"{self.unmatched} records"
        done = "quarantined" if self._quarantine else "set to null"
        message = (
            f"{records} had no match in {self._reference.label} for {'/'.join(self._on)} ({done})"
        )
        return [Note("lookup", self.unmatched, message)]

    # ------------------------------------------------------------ per batch

    def _mode(self, dtype: pl.DataType, index: int) -> str:
        """How key part ``index`` compares: ``same`` type, as ``text``, or ``normalized``."""
        if self._normalize:
            return "normalized"
        return "same" if dtype == self._table.schema[_KEY.format(index)] else "text"

    def _keyed_by(self, modes: tuple[str, ...]) -> pl.DataFrame:
        """The reference with its key in the form ``modes`` compare, built once per form."""
        if modes not in self._keyed:
            table = self._table
            aliases = [_KEY.format(i) for i in range(len(modes))]
            self._keyed[modes] = table.select(
                *(
                    _compared(pl.col(alias), table.schema[alias], mode).alias(alias)
                    for alias, mode in zip(aliases, modes, strict=True)
                ),
                *self._add,
                pl.lit(value=True).alias(_MATCHED),
            )
        return self._keyed[modes]

    def _rejects(
        self, frame: pl.DataFrame, failed: pl.Series, names: list[str | None]
    ) -> pl.DataFrame:
        """``county 'Nairobbi' / ward 'Kilimani' not found in ref/wards.csv``, per failed row."""
        if not failed.any():
            return empty_rejects()
        parts: list[pl.Expr] = []
        for i, (declared, name) in enumerate(zip(self._on, names, strict=True)):
            value = as_text(pl.col(name), frame.schema[name]) if name else pl.lit("")
            parts += [pl.lit(f"{' / ' if i else ''}{declared} '"), value, pl.lit("'")]
        parts.append(pl.lit(f" not found in {self._reference.label}"))
        messages = frame.filter(failed.fill_null(value=False)).select(pl.concat_str(parts))
        first = names[0] or normalize_name(next(iter(self._on)))
        rejects = reject_rows(frame, failed, field=first, rule="lookup", message="")
        return rejects.with_columns(messages.to_series().alias("message"))

    # ------------------------------------------------------------ at build time

    def _read(self) -> pl.DataFrame:
        """The whole reference, from a file, the destination or a query."""
        reference = self._reference
        if reference.table is not None:
            return self._read_table(reference.table)
        options = reference.source_options()
        assert options is not None  # noqa: S101 - a Reference is a file, a table or a query
        shared = SharedResources()
        context = SourceContext(
            self._context.resource,
            _READ_BATCH,
            self._context.base_dir or Path(os.getcwd()),
            shared=shared,
        )
        try:
            source = (
                FileSource(options, context)
                if isinstance(options, FileOptions)
                else SqlSource(options, context)
            )
            return self._concat(source.batches())
        except SourceError as exc:
            raise self._error(f"cannot read the reference: {exc}") from exc
        finally:
            shared.close()

    def _read_table(self, table: str) -> pl.DataFrame:
        destination = self._context.destination
        assert destination is not None  # noqa: S101 - without one, the lookup is skipped
        frame = destination.read(table, {})
        if not frame.columns:
            raise self._error(
                f"the reference table {table!r} does not exist in the destination; load it "
                "first (resources load in the order of the file, so a resource listed "
                "earlier can load it)"
            )
        return frame

    def _concat(self, batches: Iterator[SourceBatch]) -> pl.DataFrame:
        frames = []
        for batch in batches:
            if batch.unreadable:
                bad = batch.unreadable[0]
                raise self._error(
                    f"cannot read the reference: {bad.position}: {bad.message} "
                    f"({len(batch.unreadable)} unreadable records in this batch)"
                )
            frames.append(batch.frame)
        if not frames:
            raise self._error(f"the reference {self._reference.label} has no records")
        return pl.concat(frames, how="diagonal_relaxed")

    def _prepared(self, reference: pl.DataFrame) -> pl.DataFrame:
        """The key (as ``_ladle_lookup_key_N``) and the added columns, typed and checked."""
        found = self._columns_of(reference)
        keys = [pl.col(found[ref]).alias(_KEY.format(i)) for i, ref in enumerate(self._on.values())]
        added = [self._typed(reference, new, found[ref]) for new, ref in self._add.items()]
        table = reference.select(*keys, *added)
        aliases = [_KEY.format(i) for i in range(len(keys))]
        table = table.filter(pl.all_horizontal(pl.col(a).is_not_null() for a in aliases))
        self._check_unique(table, aliases)
        return table

    def _columns_of(self, reference: pl.DataFrame) -> dict[str, str]:
        """Each reference column that ``on`` and ``add`` name, as the reference spells it."""
        found: dict[str, str] = {}
        missing: list[str] = []
        named = [(ref, "on") for ref in self._on.values()]
        named += [(ref, "add") for ref in self._add.values()]
        for ref, option in named:
            column = _find(ref, reference.columns)
            if column is None:
                missing.append(f"{ref!r} (in `{option}`)")
            else:
                found[ref] = column
        if missing:
            have = ", ".join(reference.columns)
            raise self._error(
                f"the reference {self._reference.label} has no column {', '.join(missing)}; "
                f"its columns are: {have}"
            )
        return found

    def _typed(self, reference: pl.DataFrame, new: str, column: str) -> pl.Series:
        """The reference column for added column ``new``, cast to its declared type if any."""
        values = reference.get_column(column).alias(new)
        spec = _declared(self._context.columns, new)
        if spec.type is None:
            return values
        caster: Callable[[pl.Series], tuple[pl.Series, pl.Series]]
        if spec.type.kind in TEMPORAL_KINDS:
            zone = spec.timezone or self._context.timezone
            caster = DatetimeParser(spec.type.kind, timezone=zone, formats=spec.formats)
        else:
            caster = caster_for(spec.type)
        typed, failed = caster(values)
        if failed.any():
            bad = values.filter(failed).unique(maintain_order=True)
            shown = ", ".join(repr(v) for v in bad.head(_SHOWN).to_list())
            raise self._error(
                f"column {new!r} is declared {spec.type}, but the reference "
                f"{self._reference.label} has values in {column!r} that are not: {shown}"
            )
        return typed.alias(new)

    def _check_unique(self, table: pl.DataFrame, aliases: list[str]) -> None:
        """Raise naming the duplicated key values (at most ten, and how many in all)."""
        modes = ["normalized" if self._normalize else "same"] * len(aliases)
        compared = [
            _compared(pl.col(a), table.schema[a], m).alias(f"{a}_c")
            for a, m in zip(aliases, modes, strict=True)
        ]
        groups = (
            table.with_columns(compared)
            .group_by([f"{a}_c" for a in aliases], maintain_order=True)
            .agg(pl.len().alias("n"), *(pl.col(a).first() for a in aliases))
            .filter(pl.col("n") > 1)
        )
        if groups.height == 0:
            return
        shown = []
        for row in groups.head(_SHOWN).iter_rows(named=True):
            values = [repr(row[a]) for a in aliases]
            key = values[0] if len(values) == 1 else f"({', '.join(values)})"
            shown.append(f"{key} {row['n']} times")
        more = f", and {groups.height - _SHOWN} more" if groups.height > _SHOWN else ""
        columns = ", ".join(self._on.values())
        how = " (compared ignoring case and extra spaces)" if self._normalize else ""
        raise self._error(
            f"the key ({columns}) must be unique in the reference {self._reference.label}, "
            f"but {groups.height} values appear more than once{how}: {'; '.join(shown)}{more}"
        )

    def _error(self, message: str) -> StepError:
        return StepError(message, resource=self._context.resource, step="lookup")


def _compared(key: pl.Expr, dtype: pl.DataType, mode: str) -> pl.Expr:
    """A key part as it is compared: itself, its text, or its normalized text."""
    if mode == "same":
        return key
    text = as_text(key, dtype).cast(pl.String)
    if mode == "text":
        return text
    return text.str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()


def _missing(key: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Null, or blank text: a key value that cannot be looked up."""
    if isinstance(dtype, pl.String):
        return key.is_null() | (key.str.strip_chars() == "")
    return key.is_null()


def _find(name: str, columns: list[str]) -> str | None:
    """The column ``name`` refers to: itself, else the one whose normalized name it shares."""
    if name in columns:
        return name
    wanted = normalize_name(name)
    return next((c for c in columns if normalize_name(c) == wanted), None)


def _declared(columns: Mapping[str, ColumnSpec], name: str) -> ColumnSpec:
    if name in columns:
        return columns[name]
    return next((s for n, s in columns.items() if normalize_name(n) == name), ColumnSpec())
