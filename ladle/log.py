"""Logging: JSON lines when nobody is watching, readable lines on a terminal.

Configured once by the CLI (``configure``); library code only calls
``structlog.get_logger``. Every message passes through :func:`mask_secrets`, so a
DSN password that slipped into an event never reaches the output.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ladle.redact import HIDDEN, is_secret_key, mask


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


def configure(*, json: bool, level: int = logging.INFO) -> None:
    """Send log events to stderr, as JSON lines or as console lines."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
