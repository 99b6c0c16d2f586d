"""The run-history pages: runs and a chart, a run's detail, the quarantine, and replay.

Plain server-rendered HTML (Jinja2, autoescaped) with an SVG chart drawn on the server:
no JavaScript, no build step, nothing fetched from elsewhere. The pages only read, through
:meth:`Destination.read`; the one write is ``POST /runs/{run}/replay``, which calls
:func:`ladle.replay.replay` with the pipeline file as it is *now* (re-read, so a fix made
after the server started is used).

Protection: ``ladle ui`` listens on 127.0.0.1 by default. With a token (``ladle serve``'s
ingest token, or ``LADLE_UI_TOKEN`` for ``ladle ui``) every page asks for it as HTTP Basic
auth (any user name) or a bearer token. The replay form carries a per-process secret, so
another site cannot make a visitor's browser post it.

The destination is opened for each request and closed after it: a DuckDB file takes one
writer at a time, and holding it would stop ``ladle run`` from opening it. While another
process (a run, a worker) holds the file, the pages say so and ask to reload later.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import jinja2
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ladle.destinations import Destination, connect
from ladle.errors import LadleError
from ladle.pipeline import Pipeline
from ladle.redact import mask
from ladle.ui import history
from ladle.ui.chart import build_chart

log = structlog.get_logger("ladle")

PAGE_SIZE = 50
"""Quarantined records per page."""
_HEADERS = {
    # No script runs on these pages; styles are inline; forms post only here.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class _Pages:
    """What the routes share: the pipeline, where its destination is, the templates."""

    def __init__(self, pipeline: Pipeline, destination: str | None) -> None:
        self.pipeline = pipeline
        self.override = destination
        self.url = pipeline.destination_url(destination)
        self.csrf = secrets.token_urlsafe(32)
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("ladle.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates = Jinja2Templates(env=env)

    @contextmanager
    def destination(self) -> Iterator[Destination]:
        """The destination, open for one request."""
        dest = connect(self.url, base_dir=self.pipeline.config.base_dir)
        try:
            yield dest
        finally:
            dest.close()

    def current_pipeline(self) -> Pipeline:
        """The pipeline file as it is now (a fix made since the start counts)."""
        path = self.pipeline.config.path
        if path.is_file():
            return Pipeline.from_yaml(path, destination=self.override)
        return self.pipeline

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        """A page, with the pipeline's name and (masked) destination in its header."""
        base = {"pipeline": self.pipeline.name, "destination": mask(self.url), "csrf": self.csrf}
        return self.templates.TemplateResponse(
            request, name, base | context, status_code=status, headers=_HEADERS
        )

    def failure(self, request: Request, exc: LadleError) -> HTMLResponse:
        """The destination could not be read: say why (a DuckDB file in use, a server down)."""
        message = mask(str(exc))
        log.warning("ui could not read the destination", error=message)
        hint = " Reload the page in a moment." if "another ladle process" in message else ""
        context = {"heading": "Cannot read the destination", "message": message + hint}
        return self.render(request, "message.html", context, status=503)


def ui_router(
    pipeline: Pipeline, *, destination: str | None = None, token: str | None = None
) -> APIRouter:
    """The pages for ``pipeline`` as a router: at ``/`` for ``ladle ui``, under ``/ui`` in
    ``ladle serve``. With ``token``, every page asks for it (HTTP Basic or bearer)."""
    pages = _Pages(pipeline, destination)
    router = APIRouter(dependencies=[Depends(_require(token))] if token else [])
    name = pipeline.name

    @router.get("/", name="ui_runs", response_class=HTMLResponse)
    def runs_page(request: Request, limit: int = 200) -> HTMLResponse:
        """The ledger, newest first, under a chart of rows loaded and duration per run."""
        limit = max(1, min(limit, 10_000))
        try:
            with pages.destination() as dest:
                rows = history.ledger(dest, name, limit=limit)
        except LadleError as exc:
            return pages.failure(request, exc)
        chart = build_chart(history.points(rows))
        context = {"rows": rows, "chart": chart, "counts": history.COUNTS, "limit": limit}
        return pages.render(request, "runs.html", context)

    @router.get("/runs/{run_id}", name="ui_run", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        """One run, resource by resource: counts, the whole error, memory, config hash."""
        try:
            with pages.destination() as dest:
                rows = history.run_rows(dest, name, run_id)
                replays = history.replays_of(dest, name, run_id)
                left: dict[str, int] = {}
                more: dict[str, bool] = {}
                for row in rows:
                    records, more[row.resource] = history.quarantined(
                        dest, run_id, row.resource, page=1, size=PAGE_SIZE
                    )
                    left[row.resource] = len(records)
        except LadleError as exc:
            return pages.failure(request, exc)
        if not rows:
            missing = {"heading": "No such run", "message": f"no run {run_id!r} of {name}"}
            return pages.render(request, "message.html", missing, status=404)
        context: dict[str, Any] = {
            "run_id": run_id,
            "rows": rows,
            "run_status": history.run_status(rows),
            "replay_of": rows[0].replay_of,
            "replays": replays,
            "quarantine_left": left,
            "left_more": more,
        }
        return pages.render(request, "run.html", context)

    @router.get("/quarantine", name="ui_quarantine", response_class=HTMLResponse)
    def quarantine_page(
        request: Request, run: str | None = None, resource: str | None = None, page: int = 1
    ) -> HTMLResponse:
        """Without ``run``: the runs that quarantined records. With it: the records, a page
        at a time (position, every error, the raw record) and the Replay button."""
        return _quarantine(pages, request, run, resource or None, min(max(page, 1), 10_000))

    @router.post("/runs/{run_id}/replay", name="ui_replay", response_model=None)
    async def replay_run(request: Request, run_id: str) -> Response:
        """Replay the run's quarantined records, then show the replay's run."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(given.encode(), pages.csrf.encode()):
            raise HTTPException(403, "the form is stale or came from another site; reload the page")
        resource = (form.get("resource") or [""])[0] or None
        try:
            summary = await run_in_threadpool(_replay, pages, run_id, resource)
        except LadleError as exc:
            error = f"replay of run {run_id} failed: {mask(str(exc))}"
            return _quarantine(pages, request, run_id, resource, 1, error=error, status=409)
        target = request.url_for("ui_run", run_id=summary.run_id)
        return RedirectResponse(str(target), status_code=303)

    return router


def _quarantine(
    pages: _Pages,
    request: Request,
    run_id: str | None,
    resource: str | None,
    page: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    name = pages.pipeline.name
    context: dict[str, Any] = {"run_id": run_id, "resource": resource, "page": page}
    context |= {"error": error, "records": [], "more": False, "runs": [], "replayed_by": {}}
    try:
        with pages.destination() as dest:
            if run_id is None:
                ledger = history.ledger(dest, name, limit=1000)
                replayed: dict[tuple[str, str], list[str]] = {}
                for row in ledger:
                    if row.replay_of:
                        replayed.setdefault((row.replay_of, row.resource), []).append(row.run_id)
                runs = [r for r in ledger if r.quarantined]
                context |= {"runs": runs, "replayed_by": replayed}
            else:
                records, more = history.quarantined(
                    dest, run_id, resource, page=page, size=PAGE_SIZE
                )
                context |= {"records": records, "more": more}
    except LadleError as exc:
        return pages.failure(request, exc)
    return pages.render(request, "quarantine.html", context, status=status)


def _replay(pages: _Pages, run_id: str, resource: str | None) -> Any:
    from ladle.replay import replay

    pipeline = pages.current_pipeline()
    return replay(pipeline, run_id, resource=resource, destination=pages.override)


def _require(token: str) -> Callable[[Request], None]:
    expected = token.encode()

    def check(request: Request) -> None:
        """Let the request through only with the token: Basic auth's password, or a bearer."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = ""
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        # compare_digest takes as long for a wrong token as for a right one.
        if not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                401,
                "the run-history pages need the token: any user name, the token as password",
                {"WWW-Authenticate": 'Basic realm="ladle", charset="UTF-8"'},
            )

    return check


def create_ui_app(
    pipeline: Pipeline, *, destination: str | None = None, token: str | None = None
) -> FastAPI:
    """The pages alone, at ``/``: what ``ladle ui`` serves."""
    app = FastAPI(title=f"ladle: {pipeline.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ui_router(pipeline, destination=destination, token=token))
    return app


def ui_token_from_env(environ: dict[str, str] | None = None) -> str | None:
    """``LADLE_UI_TOKEN`` if set: then ``ladle ui`` asks every visitor for it."""
    token = (os.environ if environ is None else environ).get("LADLE_UI_TOKEN", "")
    return token.strip() or None


def has_display() -> bool:
    """Whether a browser could open here: macOS, Windows, or an X11/Wayland display."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
