"""Errors ladle raises when a run cannot go on.

Bad *records* are never exceptions: they become quarantine rows. These are for
conditions that stop a run (or stop it before it starts)::

    LadleError             base class; the CLI prints it in one line, without a traceback
    ├── ConfigError        file, line, key, suggestion: raised before anything runs
    ├── SourceError        source and position (file:line, message id, page)
    ├── SchemaConflict     table, column, existing and new type: raised before any write
    ├── StepError          a step's configuration cannot be applied to the data
    └── DestinationError   wraps the driver error (``raise ... from exc``)
        └── NoLedger       a command that only reads found no database file to read

Each class says whether retrying could help through ``transient``.
"""

from __future__ import annotations


class LadleError(Exception):
    """Base of every error ladle raises on purpose."""

    transient: bool = False


class ConfigError(LadleError):
    """The pipeline file is invalid; names the file, the line and the key."""

    def __init__(self, message: str, *, file: str, line: int | None = None, key: str = "") -> None:
        where = f"{file}:{line}" if line is not None else file
        prefix = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(prefix + message)
        self.file = file
        self.line = line
        self.key = key


class SourceError(LadleError):
    """A source cannot be read at all; names the source and the position."""

    def __init__(self, message: str, *, position: str) -> None:
        super().__init__(f"{position}: {message}")
        self.position = position


class SchemaConflict(LadleError):
    """A column's type in the data does not fit the existing table's."""

    def __init__(self, *, table: str, column: str, existing: str, new: str) -> None:
        super().__init__(
            f"table {table!r}: column {column!r} is {existing} in the destination but {new} in "
            f"this run; declare `type: {existing.lower()}` for it, or migrate the table first"
        )
        self.table = table
        self.column = column
        self.existing = existing
        self.new = new


class StepError(LadleError):
    """A step cannot run over this batch (for example an expression that does not compile)."""

    def __init__(self, message: str, *, resource: str, step: str) -> None:
        super().__init__(f"resource {resource!r}, step {step!r}: {message}")
        self.resource = resource
        self.step = step


class DestinationError(LadleError):
    """The destination refused an operation; the driver's error is the cause."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ShrinkRefused(DestinationError):
    """A replace refused before its swap; its message already says nothing was changed."""


class NoLedger(DestinationError):
    """A read-only command (``runs``, ``status``, ``quarantine``, ``ui``) found no DuckDB
    file: nothing has run there yet, and looking must not create the file."""
