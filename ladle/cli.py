"""The ``ladle`` command: parse, call the library, render. The only module that prints or exits.

A :class:`~ladle.errors.LadleError` is printed as one red line and exits 1; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
import structlog
from rich import filesize
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ladle import log, terminal, views
from ladle.batch import Counts
from ladle.config import read_outline, read_target
from ladle.destinations import Destination, connect, default_url
from ladle.errors import DestinationError, LadleError, NoLedger
from ladle.ledger import RUNS
from ladle.pipeline import Pipeline, ResourceResult, RunObserver, RunOptions, RunSummary
from ladle.quarantine import QUARANTINE, in_position_order
from ladle.redact import mask
from ladle.sources import Report

F = TypeVar("F", bound=Callable[..., Any])
_DESTINATION_HELP = "Destination URL (default: the pipeline file's)."
_wide_option = click.option(
    "--wide", is_flag=True, help="Every column, however wide (default: what fits the terminal)."
)
# Off a terminal (CI logs, pipes) tables get room rather than the default 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _log_settings() -> log.LogSettings:
    """What the group's options (or LADLE_LOG_FORMAT / LADLE_LOG_LEVEL) chose."""
    context = click.get_current_context(silent=True)
    found = context.find_object(log.LogSettings) if context else None
    return found or log.LogSettings()


def _say(level: str, text: str) -> None:
    """A line for stderr (``error: ...``): a log event when the log was asked to be JSON, so
    that every line there parses; a coloured line otherwise."""
    if _log_settings().format == "json":
        structlog.get_logger("ladle").log(log.LEVELS[level], text)
        return
    color = "red" if level == "error" else "yellow"
    err.print(f"[{color}]{level}:[/{color}] {escape(text)}", highlight=False)


@contextmanager
def _errors() -> Iterator[None]:
    """One red line and exit 1 for errors ladle raised on purpose."""
    try:
        yield
    except LadleError as exc:
        _say("error", mask(str(exc)))
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ladle")
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"], case_sensitive=False),
    envvar="LADLE_LOG_FORMAT",
    help="Log lines on stderr as JSON objects or for people "
    "(default: console on a terminal, JSON otherwise).",
)
@click.option(
    "--log-level",
    type=click.Choice(list(log.LEVELS), case_sensitive=False),
    envvar="LADLE_LOG_LEVEL",
    default="info",
    show_default=True,
    help="The least severe log lines shown.",
)
@click.option("--quiet", "-q", is_flag=True, help="Warnings and errors only, and no progress bars.")
@click.option("--verbose", "-v", is_flag=True, help="Debug lines too.")
@click.pass_context
def main(
    context: click.Context, *, log_format: str | None, log_level: str, quiet: bool, verbose: bool
) -> None:
    """ladle: load files, databases, APIs and streams into PostgreSQL or DuckDB, accounted for."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other: give one")
    level = (
        logging.WARNING if quiet else logging.DEBUG if verbose else log.LEVELS[log_level.lower()]
    )
    fmt: log.Format | None = None
    if log_format:
        fmt = "json" if log_format.lower() == "json" else "console"
    settings = log.LogSettings(fmt, level)
    context.obj = settings
    log.configure(settings)


# ------------------------------------------------------------------ run


class _BytesColumn(ProgressColumn):
    """Bytes read, and of how many when the source knows (``12.3 MB of 45.6 MB``)."""

    def render(self, task: Task) -> Text:
        read = filesize.decimal(int(task.completed))
        if task.total is None:
            return Text(read if task.completed else "")
        return Text(f"{read} of {filesize.decimal(int(task.total))}")


class _EtaColumn(ProgressColumn):
    """Time left at the current speed, when the total is known (``eta 0:01:05``)."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.finished:
            return Text("")
        left = task.time_remaining
        if left is None:
            return Text("eta -:--:--")
        minutes, seconds = divmod(int(left), 60)
        return Text(f"eta {minutes // 60}:{minutes % 60:02d}:{seconds:02d}")


def _progress(console: Console) -> Progress:
    """Per resource: rows and rows/s; bytes read of the total and an ETA for file sources."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[rate]:>10,.0f} rows/s"),
        BarColumn(bar_width=20),
        _BytesColumn(),
        _EtaColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class _ProgressObserver:
    """Progress bars on a terminal: rows read and rows per second per resource, and bytes
    read of the total with an ETA when the source knows its size."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}

    def resource_started(self, resource: str) -> None:
        self._started[resource] = time.monotonic()
        self._tasks[resource] = self._progress.add_task(resource, total=None, rows=0, rate=0.0)

    def input_sized(self, resource: str, total_bytes: int) -> None:
        self._progress.update(self._tasks[resource], total=total_bytes)

    def batch_loaded(self, resource: str, counts: Counts) -> None:
        elapsed = max(time.monotonic() - self._started[resource], 1e-6)
        self._progress.update(
            self._tasks[resource],
            completed=counts.bytes_read,
            rows=counts.fetched,
            rate=counts.fetched / elapsed,
        )

    def resource_finished(self, result: ResourceResult) -> None:
        task = self._tasks[result.resource]
        self._progress.update(task, rows=result.counts.fetched)
        if result.status == "succeeded":  # a file that held no records counted no bytes
            self._progress.update(task, completed=self._progress.tasks[task].total or 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resource", "resources", multiple=True, help="Only this resource (repeatable).")
@click.option("--destination", help=_DESTINATION_HELP)
@click.option("--full-refresh", is_flag=True, help="Ignore stored state and load everything.")
@click.option("--dry-run", is_flag=True, help="Read, check and transform; write nothing.")
@click.option(
    "--strict",
    is_flag=True,
    help="Fail a resource whose source reports a gap (a missing doc type).",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Let write: replace remove any share of a table's rows (default limit: half).",
)
@_wide_option
def run(
    *,
    file: Path,
    resources: tuple[str, ...],
    destination: str | None,
    full_refresh: bool,
    dry_run: bool,
    strict: bool,
    allow_shrink: bool,
    wide: bool,
) -> None:
    """Run the pipeline FILE: load every resource and print the ledger's counts."""
    with _errors():
        pipeline = Pipeline.from_yaml(file, destination=destination)
        options = RunOptions(
            resources,
            destination,
            full_refresh,
            dry_run,
            strict=strict,
            allow_shrink=allow_shrink,
        )
        if _log_settings().progress:
            with _progress(err) as progress:
                observer: RunObserver = _ProgressObserver(progress)
                summary = pipeline.run(options, observer)
        else:
            summary = pipeline.run(options)
    _print_summary(summary, wide=wide)
    if not summary.ok:
        sys.exit(1)


def _print_summary(summary: RunSummary, *, wide: bool = False) -> None:
    title = f"{summary.pipeline} → {summary.destination}  (run {summary.run_id})"
    if summary.dry_run:
        title += "  [dry run: nothing written]"
    rows = views.summary_rows(summary)
    hidden = terminal.print_table(views.summary_columns(rows), rows, title=title, wide=wide)
    if set(hidden) & set(views.LEDGER_COUNTS):
        # A narrow table leaves counts out: the ledger's sum is still told, one line each.
        narrow = terminal.console(terminal.width())
        for row in rows:
            narrow.print(views.ledger_line(row), highlight=False)
    for r in summary.resources:
        for report in r.reports:
            _print_report(r.resource, report)
    for r in summary.resources:
        for notice in r.notices:
            out.print(f"[yellow]{escape(r.resource)}: {escape(notice)}[/yellow]")
        if r.error:
            out.print(f"[red]{escape(r.resource)}: {escape(r.error)}[/red]")
        if summary.dry_run:
            out.print(f"{r.resource}: {r.ready:,} rows would be loaded")


_REPORT_KEYS = 20
"""Keys shown in a report's cell (entities lacking a doc type) before `… (+N more)`."""


def _print_report(resource: str, report: Report) -> None:
    """A source's findings (documents coverage) as a table; numeric columns to the right."""
    rows = report.rows(limit=_REPORT_KEYS)
    table = Table(title=f"{escape(resource)}: {escape(report.title)}", title_justify="left")
    for index, name in enumerate(report.columns):
        numeric = bool(rows) and all(re.fullmatch(r"[\d,.]+", row[index]) for row in rows)
        table.add_column(escape(name), justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)


# ------------------------------------------------------------------ validate


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def validate(file: Path) -> None:
    """Check the pipeline FILE without running anything."""
    with _errors():
        pipeline = Pipeline.from_yaml(file)
    resources = ", ".join(pipeline.config.resources)
    out.print(f"{file}: ok: pipeline {pipeline.name!r}, resources: {resources}")
    out.print(f"destination: {escape(mask(pipeline.destination_url()))}")
    out.print(f"not looked at: inputs, destination, expressions (`ladle check {file}` does)")


# ------------------------------------------------------------------ check


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--destination", help=_DESTINATION_HELP)
def check(file: Path, destination: str | None) -> None:
    """Check what FILE points at: inputs, destination, and every SQL expression on a sample.

    Nothing is written. Lists every problem with its line in FILE and exits 1 if there is one.
    """
    from ladle.check import check as check_pipeline

    # The report lists the file's warnings itself: the log would say them twice.
    settings = _log_settings()
    if settings.level > logging.DEBUG:
        log.configure(replace(settings, level=max(settings.level, logging.ERROR)))
    with _errors():
        pipeline = Pipeline.from_yaml(file, destination=destination)
        report = check_pipeline(pipeline.config, destination=destination)
    styles = {"ok": "green", "warning": "yellow", "problem": "red"}
    for finding in report.findings:
        style = styles[finding.level]
        out.print(
            f"[{style}]{finding.level}:[/{style}] {escape(mask(finding.text))}", soft_wrap=True
        )
    if report.problems:
        count = len(report.problems)
        err.print(f"[red]{file}: {count} problem{'s' if count > 1 else ''}[/red]")
        sys.exit(1)
    out.print(f"{file}: ok")


# ------------------------------------------------------------------ runs & quarantine


def _destination_options(func: F) -> F:
    func = click.option("--destination", help=_DESTINATION_HELP)(func)
    func = click.option("--pipeline", "pipeline_name", help="Pipeline name (default: FILE's).")(
        func
    )
    return click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))(
        func
    )


def _open(
    file: Path | None,
    pipeline_name: str | None,
    destination: str | None,
    *,
    read_only: bool = False,
) -> tuple[Destination, str | None]:
    name = pipeline_name
    url = destination
    if file is not None:
        # Only name and destination: looking at the ledger needs no source secrets.
        file_name, file_url = read_target(file)
        name = name or file_name
        url = url or file_url or default_url(file_name)
    if url is None:
        if name is None:
            raise click.UsageError("give a pipeline FILE, --pipeline NAME or --destination URL")
        url = default_url(name)
    return connect(url, read_only=read_only), name


_json_lines_option = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line, for scripts."
)


@main.command()
@_destination_options
@click.option("--last", default=20, show_default=True, help="How many runs to show.")
@_json_lines_option
@_wide_option
def runs(
    *,
    file: Path | None,
    pipeline_name: str | None,
    destination: str | None,
    last: int,
    as_json: bool,
    wide: bool,
) -> None:
    """Show the run ledger of the last runs, newest first: one row per resource per run."""
    with _errors():
        dest, name = _open(file, pipeline_name, destination, read_only=True)
        try:
            rows = views.ledger_rows(dest.recent_runs(name, last))
        finally:
            dest.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    terminal.print_table(views.RUN_COLUMNS, rows, title=f"runs in {dest.url}", wide=wide)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--destination", help=_DESTINATION_HELP)
@click.option(
    "--json/--table",
    "as_json",
    default=None,
    help="JSON, or a table (default: a table on a terminal, JSON otherwise).",
)
@_wide_option
def status(file: Path, destination: str | None, as_json: bool | None, wide: bool) -> None:
    """Per resource: the last successful load, its age and freshness; exit 1 if one is stale.

    Stale means past `error_after`, or never loaded while `error_after` is set; past
    `warn_after` prints a warning and still exits 0. The age is that of the last run that
    loaded new data, or with `clock: success` of the last successful run.
    """
    from ladle.status import ERROR, check_status

    with _errors():
        # Name, destination, tables and freshness only: no source secret is needed.
        outline = read_outline(file)
        url = destination or outline.destination or default_url(outline.name)
        dest = connect(url, read_only=True)
        try:
            report = check_status(outline, dest)
        finally:
            dest.close()
    if as_json if as_json is not None else not sys.stdout.isatty():
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        title = f"{report.pipeline} in {report.destination}"
        rows = views.status_rows(report.to_json())
        terminal.print_table(views.STATUS_COLUMNS, rows, title=title, wide=wide)
    for res in report.resources:
        problem = res.problem()
        if problem is not None:
            _say("error" if res.level == ERROR else "warning", problem)
    if not report.ok:
        sys.exit(1)


@main.group()
def quarantine() -> None:
    """Look at records that failed, with their positions and errors."""


@quarantine.command("list")
@_destination_options
@click.option("--run", "run_id", help="Only this run.")
@_json_lines_option
@_wide_option
def quarantine_list(
    *,
    file: Path | None,
    pipeline_name: str | None,
    destination: str | None,
    run_id: str | None,
    as_json: bool,
    wide: bool,
) -> None:
    """Count quarantined records per run and resource: the first position, errors by rule."""
    with _errors():
        dest, name = _open(file, pipeline_name, destination, read_only=True)
        try:
            groups = dest.quarantine_summary(pipeline=name, run_id=run_id)
        finally:
            dest.close()
    if as_json:
        for group in groups:
            click.echo(json.dumps(group))
        return
    terminal.print_table(views.QUARANTINE_COLUMNS, groups, title="quarantine", wide=wide)


@quarantine.command("show")
@click.argument("run_id")
@_destination_options
@click.option("--resource", help="Only this resource.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def quarantine_show(
    *,
    run_id: str,
    file: Path | None,
    pipeline_name: str | None,
    destination: str | None,
    resource: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the quarantined records of RUN_ID by resource, then file and line: position,
    errors and raw record."""
    with _errors():
        dest, _ = _open(file, pipeline_name, destination, read_only=True)
        try:
            if dest.read(RUNS.name, {"run_id": run_id}, limit=1).height == 0:
                raise LadleError(f"no run {run_id!r} in {dest.url}; `ladle runs` lists the runs")
            where = {"run_id": run_id, **({"resource": resource} if resource else {})}
            # Every row, then ordered here: the database would put `:12514` before `:2`.
            rows = in_position_order(dest.read(QUARANTINE.name, where))
        finally:
            dest.close()
    shown = rows.head(limit)
    if as_json:
        for row in shown.iter_rows(named=True):
            record = {k: row[k] for k in ("run_id", "resource", "position")}
            record |= {"errors": json.loads(row["errors"]), "raw": json.loads(row["raw"])}
            click.echo(json.dumps(record))
        return
    if rows.height == 0:
        out.print(f"no quarantined records for run {run_id}")
        return
    for row in shown.iter_rows(named=True):
        out.print(f"[bold]{escape(row['resource'])}[/bold] {escape(row['position'])}")
        for error in json.loads(row["errors"]):
            field = f"{error['field']}: " if error.get("field") else ""
            value = f" (value {error['value']!r})" if error.get("value") is not None else ""
            out.print(escape(f"  {field}[{error['rule']}] {error['message']}{value}"))
        out.print(escape(f"  raw: {row['raw']}"))
    if rows.height > shown.height:
        out.print(f"showing {shown.height:,} of {rows.height:,} records; --limit N shows more")


@quarantine.command("replay")
@click.argument("run_id")
@click.argument("file", default="pipeline.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resource", help="Only this resource's records.")
@click.option("--destination", help=_DESTINATION_HELP)
@_wide_option
def quarantine_replay(
    *, run_id: str, file: Path, resource: str | None, destination: str | None, wide: bool
) -> None:
    """Re-run RUN_ID's quarantined records through FILE's current steps; load those that pass."""
    from ladle.replay import replay

    with _errors():
        pipeline = Pipeline.from_yaml(file, destination=destination)
        summary = replay(pipeline, run_id, resource=resource, destination=destination)
    _print_summary(summary, wide=wide)
    if not summary.ok:
        sys.exit(1)


# ------------------------------------------------------------------ init


@main.command()
@click.argument("name")
def init(name: str) -> None:
    """Scaffold NAME/ with a pipeline file and sample data that run as they are."""
    from ladle.scaffold import scaffold

    with _errors():
        created = scaffold(Path(name))
    for path in created:
        out.print(f"created {path}")
    out.print(f"next: cd {name} && ladle run pipeline.yaml")


# ------------------------------------------------------------------ serve


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
def serve(file: Path, host: str, port: int) -> None:
    """Serve FILE's ingest endpoint, /health, /metrics and /ui (token: LADLE_INGEST_TOKEN)."""
    import uvicorn

    from ladle.metrics import Metrics
    from ladle.serve import create_app, ingest_token_from_env

    with _errors():
        token = ingest_token_from_env()
        app = create_app(Pipeline.from_yaml(file), token=token, metrics=Metrics())
        _require_free_port(host, port)
    # The app logs each request itself, without the query string (it may hold a token).
    uvicorn.run(app, host=host, port=port, access_log=False)


def _require_free_port(host: str, port: int) -> None:
    """Fail in one line, before uvicorn logs its traceback, if another process has the port."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: a port left in TIME_WAIT is free, one being listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LadleError(f"port {port} is in use; choose another with --port") from exc
            raise


# ------------------------------------------------------------------ ui


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8050, show_default=True, help="Port to listen on.")
@click.option("--destination", help=_DESTINATION_HELP)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
def ui(file: Path, host: str, port: int, destination: str | None, open_browser: bool) -> None:
    """Serve the run-history page of FILE: runs, a chart, run details, quarantine, replay."""
    import uvicorn

    from ladle.ui import create_ui_app, has_display, ui_token_from_env

    with _errors():
        pipeline = Pipeline.from_yaml(file, destination=destination)
        # The pages only look until someone replays: nothing to look at is said here, once.
        # A destination that does not answer is the pages' to tell (they retry each time).
        try:
            connect(pipeline.destination_url(destination), read_only=True).close()
        except DestinationError as exc:
            if isinstance(exc, NoLedger):
                raise
        app = create_ui_app(pipeline, destination=destination, token=ui_token_from_env())
        _require_free_port(host, port)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"  # noqa: S104
    err.print(f"ladle ui: {url}")
    if open_browser:
        if has_display():
            import threading
            import webbrowser

            threading.Timer(1.0, webbrowser.open, [url]).start()
        else:
            err.print("no display to open a browser on: open the address above yourself")
    uvicorn.run(app, host=host, port=port, log_level="warning")


# ------------------------------------------------------------------ worker


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resource", "resource", help="The redis_stream resource (if the file has several).")
@click.option("--consumer", help="This worker's name in the group (default host-pid).")
@click.option("--destination", help=_DESTINATION_HELP)
@click.option("--batch-size", type=int, help="Entries per read (default the resource's).")
@click.option("--metrics-port", type=int, help="Serve /metrics and /health on this port.")
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for /metrics and /health (0.0.0.0 for a scraper or probe on another host).",
)
@click.option(
    "--idle-exit",
    type=float,
    help="Stop after the stream has been empty this many seconds (default: run until stopped).",
)
def worker(
    file: Path,
    *,
    resource: str | None,
    consumer: str | None,
    destination: str | None,
    batch_size: int | None,
    metrics_port: int | None,
    metrics_host: str,
    idle_exit: float | None,
) -> None:
    """Consume FILE's stream resource: steps, load, then acknowledge; SIGTERM stops cleanly."""
    from ladle.metrics import Metrics
    from ladle.worker import Worker, WorkerOptions

    with _errors():
        options = WorkerOptions(resource, consumer, destination, batch_size, idle_exit)
        metrics = Metrics()
        consumer_ = Worker(
            Pipeline.from_yaml(file, destination=destination), options, metrics=metrics
        )
        if metrics_port is not None:
            from ladle.serve import serve_in_background, worker_app

            serve_in_background(worker_app(consumer_), port=metrics_port, host=metrics_host)
        with consumer_.signals():
            entry = consumer_.run()
    c = entry.counts
    out.print(
        f"{escape(entry.resource)}: fetched {c.fetched:,}, inserted {c.inserted:,}, updated "
        f"{c.updated:,}, unchanged {c.unchanged:,}, deduplicated {c.deduplicated:,}, "
        f"quarantined {c.quarantined:,}"
    )


# ------------------------------------------------------------------ doctor


@main.command()
@_destination_options
def doctor(file: Path | None, pipeline_name: str | None, destination: str | None) -> None:
    """Check the destination: does it answer, which version, may ladle create tables."""
    with _errors():
        dest, _ = _open(file, pipeline_name, destination)
        try:
            checks = dest.diagnose()
        finally:
            dest.close()
    for check in checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {escape(check.name)}: {escape(check.detail)}")
    if not all(check.ok for check in checks):
        sys.exit(1)
