"""``ladle check``: what would stop ``ladle run``, found before it runs, with nothing written.

``ladle validate`` reads the pipeline file; ``check`` also looks at what the file points
at. Each input exists and reads as what it should be (its first bytes tell the format,
encoding, delimiter and header); the destination answers and ladle may write there;
every SQL expression (``derive``, and ``validate``'s checks) binds against the columns a
sample of the source has at that step. Sources on the network (sql, documents, http,
redis_stream) are only checked for an answer, within a short timeout. Every finding
names the pipeline file's line; a misspelled column gets "did you mean".
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import polars as pl

from ladle.batch import ROW, SourceBatch
from ladle.config import PipelineConfig, Resource
from ladle.destinations import default_url, probe
from ladle.errors import LadleError, StepError
from ladle.kinds import SOURCES
from ladle.memory import BatchBudget
from ladle.pipeline import ColumnNames, build_steps
from ladle.sources import Source, SourceContext
from ladle.sources.files import FileSource
from ladle.steps import StepContext
from ladle.steps.columns import resolve
from ladle.steps.derive import SqlColumn, SqlEngine

SAMPLE_ROWS = 100
"""Records of each resource that are read and put through its steps."""
SAMPLE_BYTES = 1 << 20
"""A sample's batch ends at this much input, however few records it holds."""
TIMEOUT_S = 3.0
"""How long a destination or a network source has to answer."""
MAX_FILES = 1000
"""Files of one glob whose first bytes are looked at."""
_SHOWN_COLUMNS = 12
_HEADERLESS = (
    "the first row looks like data, not column names; if the file has no header, set "
    "`header: false` (columns are then column_1, column_2, ...)"
)
_SHAPING = ("rename", "select", "drop")
_IMPLICIT = ("cast", "validate")
_MISSING = re.compile(r'Referenced column "([^"]+)" not found')
_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}
_LABELS = {"csv": "CSV", "json": "JSON", "jsonl": "JSON Lines", "parquet": "Parquet"}

Level = Literal["ok", "warning", "problem"]
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``file:line: key: message``, and how bad it is."""

    level: Level
    text: str


@dataclass
class CheckReport:
    """Everything ``ladle check`` found about one pipeline file."""

    pipeline: str
    file: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """What would stop or spoil a run."""
        return [f for f in self.findings if f.level == "problem"]

    @property
    def ok(self) -> bool:
        """Whether nothing is in the way of ``ladle run`` (warnings allowed)."""
        return not self.problems


def check(
    config: PipelineConfig, *, destination: str | None = None, timeout: float = TIMEOUT_S
) -> CheckReport:
    """Look at the inputs, the destination and every SQL expression of a validated file."""
    report = CheckReport(config.name, str(config.path))
    report.findings += [Finding("warning", note) for note in config.warnings]
    url = destination or config.spec.destination or default_url(config.name)
    for found in probe(url, timeout=timeout):
        if destination is None:
            report.findings.append(_at(config, ("destination",), found.detail, ok=found.ok))
        else:  # given on the command line: no line of the file to name
            level: Level = "ok" if found.ok else "problem"
            report.findings.append(Finding(level, f"destination: {found.detail}"))
    for res in config.resources.values():
        report.findings += _resource(config, res, timeout)
    return report


def _resource(config: PipelineConfig, res: Resource, timeout: float) -> list[Finding]:
    source_path: KeyPath = ("resources", res.name, "source")
    if res.source_type in ("sql", "documents", "http", "redis_stream"):
        return [_reachable(config, res, timeout)]
    if res.source_type not in ("file", "children"):
        text = f"a {res.source_type!r} source is not read by ladle check"
        return [Finding("warning", _text(config, source_path, text))]
    if res.source_type == "children":
        parent = config.resources[str(getattr(res.source_options, "of", ""))]
        if parent.source_type != "file":
            text = f"reads {parent.name!r}'s records, which ladle check does not sample"
            return [Finding("ok", _text(config, source_path, text))]
    notices: list[str] = []
    try:
        batch, found = _sample(config, res, notices)
    except LadleError as exc:
        return [_at(config, source_path, str(exc), ok=False)]
    return found + _bind(config, res, batch)


# ---------------------------------------------------------------- sources


def _sample(
    config: PipelineConfig, res: Resource, notices: list[str]
) -> tuple[SourceBatch | None, list[Finding]]:
    """The first batch of the resource's source, and what its files turned out to be."""
    context = SourceContext(
        res.name,
        SAMPLE_ROWS,
        config.base_dir,
        notices=notices,
        json_columns=frozenset(k for k, s in res.spec.columns.items() if str(s.type) == "json"),
        budget=BatchBudget(SAMPLE_ROWS, max_bytes=SAMPLE_BYTES),
        build_source=lambda name, inner: _parent(config, name, inner),
    )
    source: Source = SOURCES[res.source_type].build(res.source_options, context)
    if not isinstance(source, FileSource):
        return _first(source.batches()), []
    paths = source.paths()
    path = ("resources", res.name, "source", "path")
    found, failed, warned = [], [], []
    for file in paths[:MAX_FILES]:
        try:
            text, header = _describe(source, file)
        except LadleError as exc:
            failed.append(_at(config, path, str(exc), ok=False))
            continue
        found.append(text)
        if not header:
            warned.append(Finding("warning", _text(config, path, f"{_HEADERLESS} ({text})")))
    if failed:
        return None, failed + warned
    batch = _first(source.read(paths[0]))
    text = found[0] if len(paths) == 1 else f"{len(paths):,} files; the first: {found[0]}"
    if batch is not None:
        rows = batch.frame.height
        text += f"; {batch.frame.width} columns in its first {rows} record{'s' * (rows != 1)}"
    return batch, [Finding("ok", _text(config, path, text)), *warned]


def _parent(config: PipelineConfig, name: str, context: SourceContext) -> Source:
    """Resource ``name``'s source, read for a ``children`` resource's sample."""
    parent = config.resources[name]
    inner = replace(context, resource=parent.name, cursor=None)
    source: Source = SOURCES[parent.source_type].build(parent.source_options, inner)
    return source


def _first(batches: Iterator[SourceBatch]) -> SourceBatch | None:
    """The first batch; the reader is closed at once (a generator holds its file open)."""
    try:
        return next(iter(batches), None)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _describe(source: Any, path: Path) -> tuple[str, bool]:
    """``data/t.csv: CSV, utf-8, delimiter ';'``: what a file's name and first bytes say; and
    False for a CSV file read with a header whose first row looks like data."""
    import csv

    from ladle.sources.compression import opened
    from ladle.sources.csv_reader import CsvOptions, sniff_dialect
    from ladle.sources.sniff import HEAD

    plan = source.inspect(path)
    name = _shown(path, source.context.base_dir)
    parts = [_LABELS[plan.fmt]]
    if plan.compression is not None:
        parts.append(f"{plan.compression}-compressed")
    if plan.fmt != "parquet":
        parts.append(plan.encoding)
    header = True
    if plan.fmt == "csv":
        with opened(path, plan.compression, name) as (stream, _):
            head = stream.read(HEAD).decode(plan.encoding, "replace")
        options = source.options
        dialect = sniff_dialect(head, CsvOptions(delimiter=options.delimiter))
        parts.append(f"delimiter {dialect.delimiter!r}")
        parts.append("with a header" if options.header else "no header")
        if options.header:
            try:
                header = csv.Sniffer().has_header(head[: head.rfind("\n") + 1] or head)
            except csv.Error:  # too little to tell
                header = True
    return f"{name}: {', '.join(parts)}", header


def _shown(path: Path, base: Path) -> str:
    try:
        return path.relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return str(path)


def _reachable(config: PipelineConfig, res: Resource, timeout: float) -> Finding:
    """A network source answers: a TCP connection to its host opens within ``timeout``."""
    where: KeyPath = ("resources", res.name, "source", "url")
    url = str(getattr(res.source_options, "url", ""))
    endpoint = _endpoint(res.source_type, url)
    if isinstance(endpoint, _Local):
        return Finding(endpoint.level, _text(config, where, endpoint.text))
    host, port = endpoint
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        text = f"{host}:{port} does not answer within {timeout:g} s ({reason})"
        return Finding("problem", _text(config, where, text))
    text = (
        f"{host}:{port} answers (a {res.source_type} source is only checked for an answer: "
        "it is not sampled, so its steps' expressions are not checked)"
    )
    return Finding("ok", _text(config, where, text))


@dataclass(frozen=True)
class _Local:
    """What was found for a source that is not reached over TCP (a file, a socket)."""

    level: Level
    text: str


def _endpoint(kind: str, url: str) -> tuple[str, int] | _Local:
    """Host and port to connect to, or what was found for a file database or a socket."""
    if kind in ("sql", "documents"):
        import sqlalchemy as sa

        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ":memory:"
            if database != ":memory:" and not os.path.isfile(database):
                return _Local("problem", f"SQLite file {database} not found in {os.getcwd()}")
            return _Local("ok", f"SQLite database {database} found (it is not sampled)")
        if parsed.host is None:
            return _Local("warning", "no host in the URL (a local socket?): not checked")
        return parsed.host, parsed.port or _PORTS.get(parsed.get_backend_name(), 5432)
    parts = urlsplit(url)
    if parts.scheme == "unix":
        there = os.path.exists(parts.path)
        return _Local(
            "ok" if there else "problem", f"socket {parts.path} {'found' if there else 'not found'}"
        )
    default = {"https": 443, "http": 80}.get(parts.scheme, 6379)
    return parts.hostname or "localhost", parts.port or default


# ---------------------------------------------------------------- expressions


def _bind(config: PipelineConfig, res: Resource, batch: SourceBatch | None) -> list[Finding]:
    """Put the sample through the resource's steps; report every expression that fails."""
    if not res.steps:
        return []
    steps_path: KeyPath = ("resources", res.name, "steps")
    if batch is None or batch.frame.width == 0:
        if not any(s.name in ("derive", "validate") for s in res.steps):
            return []
        text = "the source gave no records to sample: the steps' expressions are not checked"
        return [Finding("warning", _text(config, steps_path, text))]
    try:
        steps = build_steps(config, res)
    except LadleError as exc:
        named = [i for i, s in enumerate(res.steps) if s.name == getattr(exc, "step", None)]
        where = (*steps_path, named[0], res.steps[named[0]].name) if named else steps_path
        return [_at(config, where, str(exc), ok=False)]
    indices = _configured(res)
    context = StepContext(
        resource=res.name,
        columns=res.spec.columns,
        timezone=config.spec.timezone,
        base_dir=config.base_dir,
        table=res.table,
    )
    frame = batch.frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    frame = frame.rename(ColumnNames()(batch.frame.columns))
    findings: list[Finding] = []
    for (name, step), at in zip(steps, indices, strict=True):
        path: KeyPath = (*steps_path, at, name) if at is not None else steps_path
        options = res.steps[at].options if at is not None else None
        found: list[Finding] = []
        if name == "derive" and options:
            frame, found = _derive(config, context, frame, options, path)
            findings += found
            continue
        if name == "validate" and options:
            found = _checks(config, context, frame, options, path)
            findings += found
        if found:
            continue
        try:
            frame = step(frame).frame
        except LadleError as exc:
            findings.append(_at(config, path, str(exc), ok=False))
            break
    return findings


def _configured(res: Resource) -> list[int | None]:
    """For each step ``build_steps`` returns, its index under ``steps:`` (None: put in)."""
    names = [s.name for s in res.steps]
    lead = 0
    while lead < len(names) and names[lead] in _SHAPING:
        lead += 1
    implicit = [n for n in _IMPLICIT if n not in names]
    return [*range(lead), *(None for _ in implicit), *range(lead, len(names))]


def _derive(
    config: PipelineConfig,
    context: StepContext,
    frame: pl.DataFrame,
    options: dict[str, str],
    path: KeyPath,
) -> tuple[pl.DataFrame, list[Finding]]:
    """Evaluate a derive's expressions one by one, as the step does; one that fails becomes
    a null column, so that the expressions after it are still checked."""
    try:
        engine = SqlEngine(context=context, step="derive")
    except StepError as exc:
        return frame, [_at(config, path, str(exc), ok=False)]
    findings = []
    for column, sql in options.items():
        target = resolve(column, frame.columns) or column
        try:
            computed = engine.evaluate(frame, [SqlColumn(target, sql, f"column {column!r}")])
        except StepError as exc:
            findings.append(_at(config, (*path, column), _why(exc, sql, frame), ok=False))
            frame = frame.with_columns(pl.lit(None).alias(target))
        else:
            frame = frame.with_columns(computed.get_columns())
    return frame, findings


def _checks(
    config: PipelineConfig,
    context: StepContext,
    frame: pl.DataFrame,
    options: Sequence[Any],
    path: KeyPath,
) -> list[Finding]:
    """Evaluate each of a validate step's checks over the sample; report those that fail."""
    engine = SqlEngine(context=context, step="validate")
    findings = []
    for index, item in enumerate(options):
        try:
            engine.evaluate(frame, [SqlColumn("_ladle_check", item.expr, "check")])
        except StepError as exc:
            findings.append(
                _at(config, (*path, index, "expr"), _why(exc, item.expr, frame), ok=False)
            )
    return findings


def _why(error: StepError, sql: str, frame: pl.DataFrame) -> str:
    """DuckDB's complaint about ``sql``; a missing column gets the closest one there is."""
    cause = error.__cause__ or error
    text = str(cause).strip().splitlines()[0]
    missing = _MISSING.search(text)
    if missing is None:
        return f"cannot evaluate {sql!r}: {text}"
    name = missing.group(1)
    columns = [c for c in frame.columns if not c.startswith("_ladle_")]
    lowered = {c.lower(): c for c in columns}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
    shown = ", ".join(columns[:_SHOWN_COLUMNS])
    if len(columns) > _SHOWN_COLUMNS:
        shown += f", … (+{len(columns) - _SHOWN_COLUMNS} more)"
    return f"{sql!r}: no column {name!r} at this step{hint}; the columns here: {shown}"


# ---------------------------------------------------------------- findings


def _at(config: PipelineConfig, path: KeyPath, message: str, *, ok: bool) -> Finding:
    return Finding("ok" if ok else "problem", _text(config, path, message))


def _text(config: PipelineConfig, path: KeyPath, message: str) -> str:
    """``pipeline.yaml:12: resources.tickets.source: message``."""
    line = config.line_of(*path)
    where = f"{config.path}:{line}" if line is not None else str(config.path)
    return f"{where}: {_dotted(path)}: {message}"


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
