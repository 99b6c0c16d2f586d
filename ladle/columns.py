"""Column declarations: a column's type and the constraints ``validate`` enforces.

Kept apart from ``config.py`` because steps, sources and destinations all read it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladle.schema import ColumnType, parse_type


class ColumnSpec(BaseModel):
    """One entry under a resource's ``columns:`` key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: ColumnType | None = None
    """The column's type; not set: inferred from the data. A value that does not parse
    quarantines its record (rule ``type``), and so does a number that does not fit the
    type exactly (rule ``range``)."""
    required: bool = False
    """Reject a record whose value is null or blank text."""
    in_: list[Any] | None = Field(default=None, alias="in")
    """The allowed values; any other value is rejected."""
    min: float | str | None = None
    """The smallest allowed value, for numbers, dates and timestamps."""
    max: float | str | None = None
    """The largest allowed value, for numbers, dates and timestamps."""
    min_length: int | None = Field(default=None, ge=0)
    """The shortest allowed text, in characters."""
    max_length: int | None = Field(default=None, ge=0)
    """The longest allowed text, in characters."""
    regex: str | None = None
    """A regular expression the text must contain a match of (``^...$`` for the whole value)."""
    unique: bool = False
    """Reject a value already seen in this run (memory grows with the distinct values)."""
    formats: list[str] = Field(default_factory=list)
    """Extra strftime formats for dates and timestamps, tried after ISO 8601 and before
    epoch seconds or milliseconds."""
    timezone: str | None = None
    """IANA zone for this column's naive values; not set: the pipeline's ``timezone``."""

    @field_validator("type", mode="before")
    @classmethod
    def _parse_type(cls, value: Any) -> ColumnType | None:
        if value is None or isinstance(value, ColumnType):
            return value
        if not isinstance(value, str):
            raise ValueError(f"type must be a string such as 'bigint', got {value!r}")  # noqa: TRY004 - pydantic wants ValueError
        return parse_type(value)

    @field_validator("regex")
    @classmethod
    def _compile_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value
