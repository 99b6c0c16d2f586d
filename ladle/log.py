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

from ladle.destinations import mask


def mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask passwords in every string value of the event."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask(value)
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
