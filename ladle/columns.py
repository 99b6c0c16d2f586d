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
    required: bool = False
    in_: list[Any] | None = Field(default=None, alias="in")
    min: float | str | None = None
    max: float | str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    regex: str | None = None
    unique: bool = False
    formats: list[str] = Field(default_factory=list)
    timezone: str | None = None

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
