"""The ``documents`` source: typed documents for a retrieval system, built from SQL queries.

Each doc type is a query whose rows belong to an entity through the ``key`` column. An
entity's row (or, with ``many: true``, all its rows) becomes one document
``{doc_type, entity_key, content, text}``: ``content`` is the row(s) as JSON and ``text``
a Jinja2 template rendered over them (sandboxed, undefined names are errors, no HTML
escaping: the text is for embeddings). The queries run at the same time, on the run's
one shared engine and pool, each streamed in key order so an entity's rows arrive together.

When every query has been read, a :class:`~ladle.sources.coverage.CoverageReport` says
per doc type which entities got a document and which did not; a doc type without any
document is *missing*. Nothing is ever made up to fill a gap.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.sources import SourceContext
from ladle.sources.coverage import CoverageReport, Found
from ladle.sources.sql import SqlOptions, SqlSource

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

COLUMNS = ("doc_type", "entity_key", "content", "text")
"""The columns of every document, in this order."""
_Document = tuple[str, str, str, str, str]
"""(doc_type, entity_key, content, text, position)."""
_POLL = 0.05
"""Seconds between checks for a finished or failed query while no documents arrive."""
_SHOWN = 10
"""Keys a notice lists before it stops."""
log = structlog.get_logger("ladle")


def template_environment() -> SandboxedEnvironment:
    """The Jinja2 environment every document template is compiled in.

    Sandboxed (a template cannot reach Python internals), strict (an undefined name is an
    error, never an empty string) and without autoescaping: the text feeds embeddings,
    not HTML. ``trim_blocks``/``lstrip_blocks`` let ``{% for %}`` sit on lines of its own.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )


class DocTypeOptions(BaseModel):
    """One entry under ``doc_types:``: the query and the template of one doc type."""

    model_config = ConfigDict(extra="forbid")

    query: str
    """A SELECT whose rows carry the source's ``key`` column."""
    template: str
    """Jinja2 rendered into the document's ``text``: over the row's columns, or ``rows``."""
    many: bool = False
    """Several rows per entity make one document: ``content`` is a list, the template
    sees ``rows``. Without it an entity has one row; more is an error in the data."""
    order_by: list[str] = Field(default_factory=list)
    """With ``many``: the columns that order an entity's rows (default: their values)."""

    @field_validator("template")
    @classmethod
    def _compiles(cls, value: str) -> str:
        from jinja2 import TemplateSyntaxError

        try:
            template_environment().from_string(value)
        except TemplateSyntaxError as exc:
            raise ValueError(
                f"template syntax error at line {exc.lineno} of the template: {exc.message}"
            ) from None
        return value

    @field_validator("order_by", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _order_needs_many(self) -> DocTypeOptions:
        if self.order_by and not self.many:
            raise ValueError(
                "`order_by:` orders the rows of a `many: true` document; "
                "a doc type without `many` has one row per entity"
            )
        return self


class DocumentsOptions(BaseModel):
    """A resource's ``source:`` when it builds documents from SQL queries."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["documents"]
    url: str
    """SQLAlchemy URL of the database every query runs on (``${VAR}``: it holds a password)."""
    entities: str
    """A SELECT whose first column lists the entities coverage is measured over."""
    key: str
    """The column of each doc type's query that says which entity a row belongs to."""
    doc_types: dict[str, DocTypeOptions] = Field(min_length=1)
    """The doc types by name, as ``doc_type`` stores it."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Values bound to ``:name`` placeholders in any of the queries."""
    workers: int = Field(default=4, ge=1, le=32)
    """Queries that run at the same time (each holds one connection while it runs)."""

    @model_validator(mode="after")
    def _sql_options(self) -> DocumentsOptions:
        # The url and params are checked as the sql source checks them, before anything runs.
        try:
            SqlOptions(type="sql", url=self.url, query=self.entities, params=self.params)
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
        if "" in self.doc_types:
            raise ValueError("a doc type needs a name")
        return self


@dataclass(frozen=True)
class _DocType:
    name: str
    options: DocTypeOptions
    template: Template


@dataclass
class _Chunk:
    """What one doc type's reader hands over after a batch of rows."""

    documents: list[_Document] = field(default_factory=list)
    rejects: list[Unreadable] = field(default_factory=list)


class _Stopped(Exception):
    """Raised in a reader thread when the run no longer wants its documents."""


class DocumentsSource:
    """Yield documents of every doc type in batches; leave a coverage report at the end."""

    def __init__(self, options: DocumentsOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        env = template_environment()
        self._types = [
            _DocType(name, spec, env.from_string(spec.template))
            for name, spec in options.doc_types.items()
        ]

    def batches(self) -> Generator[SourceBatch, None, None]:
        """Run the queries concurrently and yield their documents; see :class:`Source`.

        Documents arrive in no fixed order across doc types (batches carry no checkpoint:
        a run that stops is read again from the start). Every connection goes back to
        the pool when a query ends, fails, or is abandoned because the run stopped.
        """
        # Created here, in one thread: the readers then share it instead of racing to.
        self._sql("entities", self.options.entities).engine()
        chunks: queue.Queue[_Chunk] = queue.Queue(maxsize=2 * self.options.workers)
        stop = threading.Event()
        entities = _Task(partial(self._entities, stop))
        readers = {doc.name: _Task(partial(self._read, doc, chunks, stop)) for doc in self._types}
        threads = _start([entities, *readers.values()], self.options.workers, stop)
        try:
            yield from self._batches(chunks, [entities, *readers.values()])
            found = {name: reader.result() for name, reader in readers.items()}
            report = CoverageReport.build(entities.result(), found)
        finally:
            stop.set()
            while not chunks.empty():  # free readers waiting to hand over a chunk
                chunks.get_nowait()
            for thread in threads:
                if not sys.is_finalizing():  # at exit, daemon threads no longer run
                    thread.join()
        self._report(report)

    def _batches(
        self, chunks: queue.Queue[_Chunk], tasks: list[_Task]
    ) -> Generator[SourceBatch, None, None]:
        """Gather the readers' chunks into batches of ``batch_size`` documents."""
        size = self.context.batch_size
        pending = set(tasks)
        documents: list[_Document] = []
        rejects: list[Unreadable] = []
        while pending or not chunks.empty():
            try:
                chunk = chunks.get(timeout=_POLL)
            except queue.Empty:
                finished = {task for task in pending if task.done()}
                for task in finished:
                    task.result()  # a query that failed fails the run here
                pending -= finished
                continue
            documents += chunk.documents
            rejects += chunk.rejects
            while len(documents) >= size or len(rejects) >= size:
                yield _batch(documents[:size], rejects)
                documents, rejects = documents[size:], []
        if documents or rejects:
            yield _batch(documents, rejects)

    def _sql(self, part: str, query: str, order_by: tuple[str, ...] = ()) -> SqlSource:
        """The sql source that streams one query, on the run's shared engine for the URL."""
        options = SqlOptions(
            type="sql", url=self.options.url, query=query, params=self.options.params
        )
        context = SourceContext(
            f"{self.context.resource}.{part}",
            self.context.batch_size,
            self.context.base_dir,
            order_by=order_by,
            shared=self.context.shared,
        )
        return SqlSource(options, context)

    def _entities(self, stop: threading.Event) -> set[str]:
        """The keys of every entity (the first column of the ``entities`` query)."""
        sql = self._sql("entities", self.options.entities)
        keys: set[str] = set()
        with closing(sql.batches()) as batches:
            for batch in batches:
                if stop.is_set():
                    raise _Stopped
                if batch.unreadable:
                    bad = batch.unreadable[0]
                    raise SourceError(
                        f"cannot read an entity: {bad.message}", position=bad.position
                    )
                keys.update(key_text(v) for v in batch.frame.to_series(0) if v is not None)
        return keys

    def _read(self, doc: _DocType, chunks: queue.Queue[_Chunk], stop: threading.Event) -> Found:
        """Stream one doc type's query, in key order, into chunks of documents."""
        sql = self._sql(doc.name, doc.options.query, (self.options.key, *doc.options.order_by))
        grouper = _Grouper(doc, self.options.key)
        with closing(sql.batches()) as batches:
            for batch in batches:
                _put(chunks, grouper.feed(batch), stop)
        _put(chunks, grouper.finish(), stop)
        return grouper.found

    def _report(self, report: CoverageReport) -> None:
        """Leave the report for the run summary, and say what is missing."""
        self.context.reports.append(report)
        resource = self.context.resource
        if not report.entities:
            self.context.notices.append("the entities query returned no rows")
        for item in report.doc_types:
            log.info(
                "documents coverage",
                resource=resource,
                doc_type=item.doc_type,
                documents=item.documents,
                entities=report.entities,
                without=len(item.without),
            )
            if item.missing:
                log.warning("doc type missing", resource=resource, doc_type=item.doc_type)
            if item.outside:
                more = ", …" if len(item.outside) > _SHOWN else ""
                shown = ", ".join(item.outside[:_SHOWN]) + more
                self.context.notices.append(
                    f"doc type {item.doc_type!r}: {len(item.outside)} documents for keys the "
                    f"entities query does not return: {shown}"
                )


class _Task:
    """One query for a reader thread: what it returned, or how it failed, once it is done."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._done = threading.Event()
        self._value: Any = None
        self._error: Exception | None = None

    def run(self) -> None:
        try:
            self._value = self._work()
        except Exception as exc:  # handed to the consumer by result()
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        """Whether the query has finished, one way or the other."""
        return self._done.is_set()

    def result(self) -> Any:
        """What the query returned; its error, raised again, if it failed."""
        if self._error is not None:
            raise self._error
        return self._value


def _start(tasks: list[_Task], workers: int, stop: threading.Event) -> list[threading.Thread]:
    """Run the tasks on at most ``workers`` threads, each taking the next task when free.

    Daemon threads, not an executor's: a reader waiting for a consumer that will never
    come back (a run that crashed and kept its traceback) must not hold the process at exit.
    """
    pending = deque(tasks)

    def work() -> None:
        while not stop.is_set():
            try:
                task = pending.popleft()
            except IndexError:
                return
            task.run()

    threads = [
        threading.Thread(target=work, name=f"ladle-documents-{i}", daemon=True)
        for i in range(min(workers, len(tasks)))
    ]
    for thread in threads:
        thread.start()
    return threads


def _put(chunks: queue.Queue[_Chunk], chunk: _Chunk, stop: threading.Event) -> None:
    """Hand a chunk over, waiting while the consumer is busy, unless the run has stopped."""
    while not stop.is_set():
        try:
            chunks.put(chunk, timeout=_POLL)
        except queue.Full:
            continue
        return
    raise _Stopped


def _batch(documents: list[_Document], rejects: list[Unreadable]) -> SourceBatch:
    columns = list(zip(*documents, strict=True)) if documents else [() for _ in range(5)]
    frame = pl.DataFrame(
        {name: list(values) for name, values in zip(COLUMNS, columns, strict=False)},
        schema=dict.fromkeys(COLUMNS, pl.String()),
    )
    return SourceBatch(frame, list(columns[4]), rejects)


# ---------------------------------------------------------------- grouping and rendering


class _Grouper:
    """Turns one doc type's rows, in key order, into documents: one per entity."""

    def __init__(self, doc: _DocType, key: str) -> None:
        self.doc = doc
        self.key = key
        self.found = Found()
        self._column: str | None = None
        self._current: str | None = None
        self._rows: list[dict[str, Any]] = []
        self._closed: set[str] = set()
        self._broken: set[str] = set()
        """Entities with a row the database gave in a form ladle cannot read."""

    def feed(self, batch: SourceBatch) -> _Chunk:
        """The documents of the entities this batch completes (the last may go on)."""
        chunk = _Chunk()
        self.found.rows += batch.fetched
        column = self._column or self._key_column(batch.frame.columns)
        for bad in batch.unreadable:
            self._broken.add(_key_of_raw(bad.raw, column))
            chunk.rejects.append(bad)
        for position, row in zip(batch.positions, batch.frame.iter_rows(named=True), strict=True):
            value = row[column]
            if value is None:
                message = f"{column} is null: the row belongs to no entity"
                chunk.rejects.append(Unreadable(position, _json(row), message, rule="documents"))
                continue
            key = key_text(value)
            if key != self._current:
                self._close(chunk)
                if key in self._closed:
                    raise SourceError(
                        f"the rows of entity {key} do not come together in the order of "
                        f"{column} (a case-insensitive collation?); give the key a type or "
                        "collation that compares values exactly",
                        position=f"{self.doc.name}#{key}",
                    )
                self._current = key
            self._rows.append(row)
        return chunk

    def finish(self) -> _Chunk:
        """The last entity's document."""
        chunk = _Chunk()
        self._close(chunk)
        return chunk

    def _key_column(self, columns: list[str]) -> str:
        folded = {name.lower(): name for name in columns}
        found = self.key if self.key in columns else folded.get(self.key.lower())
        if found is None:
            raise SourceError(
                f"the query returns no column {self.key!r} (the source's `key:`) to join its "
                f"rows to entities; its columns: {', '.join(columns)}",
                position=self.doc.name,
            )
        self._column = found
        return found

    def _close(self, chunk: _Chunk) -> None:
        """Make the current entity's document, or quarantine it with the reason."""
        key, rows = self._current, self._rows
        if key is None:
            return
        self._current, self._rows = None, []
        self._closed.add(key)
        name, position = self.doc.name, f"{self.doc.name}#{key}"
        if key in self._broken:
            reason = f"a row of entity {key} could not be read, so its {name} document is not made"
            chunk.rejects.append(Unreadable(position, _json(rows), reason, rule="documents"))
        elif len(rows) > 1 and not self.doc.options.many:
            reason = (
                f"{len(rows)} rows for entity {key}, but doc type {name!r} takes one row per "
                "entity; set `many: true` to make one document of all of them"
            )
            chunk.rejects.append(Unreadable(position, _json(rows), reason, rule="documents"))
        else:
            self._render(key, rows, position, chunk)

    def _render(self, key: str, rows: list[dict[str, Any]], position: str, chunk: _Chunk) -> None:
        from jinja2 import TemplateError, UndefinedError
        from jinja2.exceptions import SecurityError

        many = self.doc.options.many
        if many and not self.doc.options.order_by:
            rows = sorted(rows, key=_json)  # the same content on every run
        content = _json(rows if many else rows[0])
        names: dict[str, Any] = {"doc_type": self.doc.name, "entity_key": key}
        names |= {"rows": rows} if many else rows[0]
        try:
            text = self.doc.template.render(names)
        except (UndefinedError, SecurityError) as exc:
            # A name the template expects but the query does not give: the template is wrong.
            raise SourceError(
                f"doc type {self.doc.name!r}: template error: {exc.message} "
                f"(the template sees: {', '.join(sorted(names))})",
                position=position,
            ) from None
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            # Data the template cannot handle (None + 1): this document only.
            reason = f"template error: {type(exc).__name__}: {exc}"
            chunk.rejects.append(Unreadable(position, content, reason, rule="template"))
            return
        chunk.documents.append((self.doc.name, key, content, text, position))
        self.found.documents += 1
        self.found.keys.add(key)


def key_text(value: Any) -> str:
    """An entity key as text, the same whichever numeric type it came in: 7, 7.0 -> '7'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _key_of_raw(raw: str, column: str) -> str:
    try:
        value = json.loads(raw).get(column)
    except (ValueError, AttributeError):
        return ""
    return "" if value is None else key_text(value)


def _json(value: Any) -> str:
    """Rows as JSON text: dates and times in ISO 8601, decimals as numbers when exact."""
    return json.dumps(value, default=_plain, ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        number = float(value)
        return number if Decimal(repr(number)) == value else str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)
