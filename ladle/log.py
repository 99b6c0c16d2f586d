"""Logging: JSON lines when nobody is watching, readable lines on a terminal.

Configured once by the CLI (``configure``); library code only calls
``structlog.get_logger``. Every message passes through :func:`mask_secrets`, so a
DSN password that slipped into an event never reaches the output. Python warnings
(``warnings.warn``) and other libraries' warnings (stdlib ``logging``) are sent through
the same logger, so every warning reads like every other line.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog

from ladle.redact import HIDDEN, is_secret_key, mask

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
Format = Literal["json", "console"]


@dataclass(frozen=True)
class LogSettings:
    """How the log reads: ``json`` or ``console`` lines (None: console on a terminal, JSON
    otherwise), and the lowest level shown."""

    format: Format | None = None
    level: int = logging.INFO

    @property
    def json(self) -> bool:
        """Whether lines are JSON objects."""
        return self.format == "json" if self.format else not sys.stderr.isatty()

    @property
    def progress(self) -> bool:
        """Whether progress bars may be drawn: on a terminal, console lines, info shown."""
        return sys.stderr.isatty() and not self.json and self.level <= logging.INFO


def mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every string value, hide secret-named keys."""
    for key, value in event.items():
        if is_secret_key(key) and value is not None:
            event[key] = HIDDEN
        elif isinstance(value, str):
            event[key] = mask(value)
        elif isinstance(value, BaseException) and key != "exc_info":
            event[key] = mask(f"{type(value).__name__}: {value}")
    return event


def configure(settings: LogSettings | None = None) -> None:
    """Send log events to stderr, one line each, as JSON objects or console lines."""
    settings = settings or LogSettings()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(settings.level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    warnings.showwarning = _show_warning
    root = logging.getLogger()
    if not any(isinstance(handler, _Forward) for handler in root.handlers):
        root.addHandler(_Forward())
    # Other libraries' info and debug lines (every HTTP request, every query) would drown
    # ladle's own; their warnings and errors are wanted.
    root.setLevel(max(settings.level, logging.WARNING))


def _show_warning(  # noqa: PLR0917 - the signature warnings.showwarning calls
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning``: a Python warning becomes a log line, not a traceback-ish
    ``file:line: UserWarning`` text."""
    structlog.get_logger("ladle").warning(str(message), category=category.__name__)


class _Forward(logging.Handler):
    """A stdlib ``logging`` record becomes a structlog event with the logger's name."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(
            record.levelno, record.getMessage(), logger=record.name
        )
