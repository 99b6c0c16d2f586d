"""``ladle status``: per resource, its last successful load, its last load of new data, how
old the one its clock reads is, and whether that is too old.

``freshness: {warn_after: 2h, error_after: 1d}``, on the pipeline or on a resource (a
resource's replaces the pipeline's), says how old a resource's data may grow. Two clocks
tell the age: ``clock: new_data`` (the default) reads the last successful run that
inserted or updated a row, so a feed that stalled while cron keeps running ladle goes
stale; ``clock: success`` reads the last successful run, whatever it loaded. The verdict
is ``ok``, ``warn`` (past ``warn_after``), ``error`` (past ``error_after``) or ``never``
(nothing on the clock yet; as bad as ``error`` when ``error_after`` is set, as ``warn``
when only ``warn_after`` is). Everything comes from the ledger (``_ladle_runs``); a
``quarantine replay`` is not a load of the source, so it does not count as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ladle.incremental import parse_duration
from ladle.ledger import RUNS, SUCCEEDED, display_status

if TYPE_CHECKING:
    from ladle.config import Outline, OutlinedResource
    from ladle.destinations import Destination

OK, WARN, ERROR, NEVER = "ok", "warn", "error", "never"
NEW_DATA, SUCCESS = "new_data", "success"
_MINUTE, _HOUR, _DAY = 60, 3600, 86400

Duration = str | int | float
"""A duration as written: ``30s``, ``5m``, ``2h``, ``1d``, ``1w``, or seconds."""


class FreshnessSpec(BaseModel):
    """``freshness:``: how old a resource's data may be; ``{}`` checks none."""

    model_config = ConfigDict(extra="forbid")

    warn_after: Duration | None = None
    """Older than this: a warning (``ladle status`` still exits 0)."""
    error_after: Duration | None = None
    """Older than this, or never loaded: an error (``ladle status`` exits 1)."""
    clock: Literal["new_data", "success"] = "new_data"
    """What the age is measured from: ``new_data``, the last successful run that inserted or
    updated a row (a run that fetched nothing new does not reset it); ``success``, the last
    successful run, whatever it loaded."""

    @field_validator("warn_after", "error_after")
    @classmethod
    def _readable(cls, value: Duration | None) -> Duration | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _warn_first(self) -> FreshnessSpec:
        if self.warn is not None and self.error is not None and self.warn > self.error:
            raise ValueError(
                f"warn_after ({_shown(self.warn_after)}) is longer than error_after "
                f"({_shown(self.error_after)}): a load would be an error before it is a warning"
            )
        return self

    @property
    def warn(self) -> timedelta | None:
        """``warn_after`` as a timedelta."""
        return None if self.warn_after is None else parse_duration(self.warn_after)

    @property
    def error(self) -> timedelta | None:
        """``error_after`` as a timedelta."""
        return None if self.error_after is None else parse_duration(self.error_after)


@dataclass(frozen=True)
class ResourceStatus:
    """One resource: its last successful load and its last load of new data (None if there
    is none), and its latest run."""

    resource: str
    table: str
    freshness: FreshnessSpec | None
    last_run_id: str | None = None
    last_success_at: datetime | None = None
    rows: int | None = None
    """Rows the last successful load wrote: inserted + updated."""
    fetched: int | None = None
    age: timedelta | None = None
    """How long ago the last successful load finished (the ``success`` clock)."""
    latest_run_id: str | None = None
    latest_status: str | None = None
    """succeeded, failed, died, running or queued; None if the resource never ran."""
    last_data_run_id: str | None = None
    """The last successful run that inserted or updated a row."""
    last_data_at: datetime | None = None
    data_age: timedelta | None = None
    """How long ago that run finished (the ``new_data`` clock)."""

    @property
    def clock(self) -> str:
        """The clock the verdict reads: ``new_data`` or ``success``."""
        return (self.freshness or FreshnessSpec()).clock

    @property
    def clock_age(self) -> timedelta | None:
        """The age on the clock the verdict reads; None when nothing is on it yet."""
        return self.data_age if self.clock == NEW_DATA else self.age

    @property
    def verdict(self) -> str:
        """``ok``, ``warn``, ``error`` (by the age on the clock) or ``never``."""
        age = self.clock_age
        if age is None:
            return NEVER
        spec = self.freshness
        if spec is not None and spec.error is not None and age > spec.error:
            return ERROR
        if spec is not None and spec.warn is not None and age > spec.warn:
            return WARN
        return OK

    @property
    def level(self) -> str:
        """``ok``, ``warn`` or ``error``: ``never`` weighs as a load past every threshold set."""
        if self.verdict != NEVER:
            return self.verdict
        spec = self.freshness or FreshnessSpec()
        return ERROR if spec.error is not None else WARN if spec.warn is not None else OK

    def problem(self) -> str | None:
        """One line saying why the resource is stale (None when it is not)."""
        if self.level == OK:
            return None
        spec = self.freshness or FreshnessSpec()
        key = "error_after" if self.level == ERROR else "warn_after"
        threshold = _shown(getattr(spec, key))
        text = self._stale_text(f"{key} {threshold}")
        if self.latest_status not in (None, SUCCEEDED):
            text += f"; its latest run {self.latest_run_id} {self.latest_status}"
        return text

    def _stale_text(self, threshold: str) -> str:
        """Why the clock's age is too old, and, when later runs succeeded with nothing new,
        the last of those (so an operator sees that ladle runs but the feed has stalled)."""
        if self.age is None:
            return f"{self.resource}: never loaded successfully ({threshold})"
        if self.clock == SUCCESS or self.last_data_run_id == self.last_run_id:
            return (
                f"{self.resource}: last loaded {format_age(self.age)} ago by run "
                f"{self.last_run_id}, past {threshold}"
            )
        nothing_new = (
            f"its last successful run {self.last_run_id} ({format_age(self.age)} ago) "
            "loaded nothing new"
        )
        if self.data_age is None:
            return f"{self.resource}: never loaded new data ({threshold}); {nothing_new}"
        return (
            f"{self.resource}: last loaded new data {format_age(self.data_age)} ago by run "
            f"{self.last_data_run_id}, past {threshold}; {nothing_new}"
        )

    def to_json(self) -> dict[str, Any]:
        """The status as JSON values: timestamps in ISO 8601, the age in seconds."""
        spec = self.freshness or FreshnessSpec()
        data_at = self.last_data_at
        return {
            "resource": self.resource,
            "table": self.table,
            "verdict": self.verdict,
            "level": self.level,
            "last_run_id": self.last_run_id,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "age_seconds": _seconds(self.age),
            "rows": self.rows,
            "fetched": self.fetched,
            "latest_run_id": self.latest_run_id,
            "latest_status": self.latest_status,
            "last_data_run_id": self.last_data_run_id,
            "last_data_at": data_at.isoformat() if data_at else None,
            "data_age_seconds": _seconds(self.data_age),
            "clock": spec.clock,
            "warn_after": _shown(spec.warn_after) if spec.warn_after is not None else None,
            "error_after": _shown(spec.error_after) if spec.error_after is not None else None,
        }


@dataclass(frozen=True)
class StatusReport:
    """Every resource of a pipeline file, in file order, as seen at ``checked_at``."""

    pipeline: str
    destination: str
    checked_at: datetime
    resources: list[ResourceStatus]

    @property
    def ok(self) -> bool:
        """No resource is at the ``error`` level."""
        return all(r.level != ERROR for r in self.resources)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values."""
        return {
            "pipeline": self.pipeline,
            "destination": self.destination,
            "checked_at": self.checked_at.isoformat(),
            "ok": self.ok,
            "resources": [r.to_json() for r in self.resources],
        }


def check_status(
    outline: Outline, destination: Destination, *, now: datetime | None = None
) -> StatusReport:
    """Read the ledger for each resource of ``outline``: its last successful load and its
    latest run, judged against its freshness at ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    resources = [
        _resource_status(destination, outline.name, name, res, now=now)
        for name, res in outline.resources.items()
    ]
    return StatusReport(outline.name, destination.url, now, resources)


def _resource_status(
    destination: Destination, pipeline: str, name: str, res: OutlinedResource, *, now: datetime
) -> ResourceStatus:
    table, freshness = res.table, res.freshness
    where = {"pipeline": pipeline, "resource": name}
    latest = destination.read(RUNS.name, where, order_by=["-started_at"], limit=1)
    if latest.height == 0:
        return ResourceStatus(name, table, freshness)
    last = latest.row(0, named=True)
    status = display_status(last["status"], last["host"], last["pid"])
    loads = destination.read(RUNS.name, {**where, "status": SUCCEEDED}, order_by=["-finished_at"])
    # A replay loads quarantined records again; it says nothing about the source's freshness.
    loads = loads.filter(pl.col("replay_of").is_null()) if loads.height else loads
    if loads.height == 0:
        return ResourceStatus(
            name, table, freshness, latest_run_id=last["run_id"], latest_status=status
        )
    row = loads.row(0, named=True)
    finished = _utc(row["finished_at"])
    new_data = loads.filter((pl.col("inserted") + pl.col("updated")) > 0)
    data = new_data.row(0, named=True) if new_data.height else None
    data_at = _utc(data["finished_at"]) if data else None
    return ResourceStatus(
        name,
        table,
        freshness,
        last_run_id=row["run_id"],
        last_success_at=finished,
        rows=int(row["inserted"]) + int(row["updated"]),
        fetched=int(row["fetched"]),
        age=max(now - finished, timedelta(0)),
        latest_run_id=last["run_id"],
        latest_status=status,
        last_data_run_id=data["run_id"] if data else None,
        last_data_at=data_at,
        data_age=max(now - data_at, timedelta(0)) if data_at else None,
    )


def _seconds(age: timedelta | None) -> int | None:
    return round(age.total_seconds()) if age is not None else None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_age(age: timedelta) -> str:
    """An age as people say it: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    seconds = int(age.total_seconds())
    if seconds < _MINUTE:
        return f"{seconds}s"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE}m"
    if seconds < _DAY:
        return f"{seconds // _HOUR}h {seconds % _HOUR // _MINUTE}m"
    return f"{seconds // _DAY}d {seconds % _DAY // _HOUR}h"


def _shown(value: Duration | timedelta | None) -> str:
    """A threshold as the file wrote it (``2h``); a number of seconds as an age."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, timedelta):
        return format_age(value)
    return format_age(timedelta(seconds=value or 0))
