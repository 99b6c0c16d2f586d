"""fk: a key must exist in a destination table; a row whose key does not is a reject.

Two ways to write it::

    - fk: {tutor_id: tutors.tutor_id, student_id: students}   # `students`: students.student_id
    - fk: [{columns: [user, day], table: shifts, references: [user_id, date]}]

Semantics worth knowing:

- A key with a null (any column of a composite key) passes, as in SQL; so does a batch
  without the key column.
- Keys are looked up per batch, distinct ones only, in one query
  (:meth:`~ladle.destinations.Destination.existing_keys`), typed like the referenced
  columns; a missing table holds no keys.
- Table and column names are snake_cased, like the tables resources load into. A
  resource runs after the resources of the same file whose tables it references
  (:func:`load_order`), so keys they load in the same run are found.
- Without a destination (a dry run) nothing is checked, and a warning says so.
- When the batches are done, the run summary and the ledger row's ``notes`` tell how
  many rows each check quarantined ("3 records had a tutor_id not in tutors.tutor_id
  (quarantined)").
- A check of the resource's own table (``fk: {parent_id: tickets.id}`` on ``tickets``)
  also finds the keys of this run's rows: those of the same batch, in any order, and
  of earlier batches, as well as the table's rows (unless ``write: replace``, which
  drops them). A row whose parent is rejected is rejected too. A parent that arrives
  in a later batch than its child comes too late: the child is quarantined, and
  ``ladle quarantine replay`` loads it once the parent is in the table. The run's keys
  are held in memory, one entry per distinct key. A row counts as a parent once it
  passes this step, so steps that may reject rows belong before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import polars as pl
import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from ladle.batch import StepResult, as_text, reject_rows, split
from ladle.config import Resource
from ladle.errors import ConfigError
from ladle.ledger import Note
from ladle.schema import normalize_name
from ladle.steps import StepContext
from ladle.steps.columns import resolve

log = structlog.get_logger("ladle")

_CHECKED = "_ladle_fk_checked"
_FOUND = "_ladle_fk_found"


class Reference(BaseModel):
    """One check of the list form: ``columns`` must exist as ``references`` in ``table``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] = Field(min_length=1)
    """The batch's key column, or list of columns."""
    table: str = Field(min_length=1)
    """The destination table that holds the keys (snake_cased, like a resource's table)."""
    references: list[str] | None = None
    """The referenced table's columns, in the order of ``columns`` (default: the same names)."""

    @field_validator("columns", "references", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Reference:
        if self.references is not None and len(self.references) != len(self.columns):
            raise ValueError(
                f"references names {len(self.references)} column(s) but columns names "
                f"{len(self.columns)}; give one referenced column per column"
            )
        for key, names in (("columns", self.columns), ("references", self.referenced)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{key} names {', '.join(map(repr, repeated))} more than once")
        return self

    @property
    def referenced(self) -> list[str]:
        """The referenced columns: ``references``, or the same names as ``columns``."""
        return self.references if self.references is not None else self.columns


def _target(value: str) -> str:
    """``table`` or ``table.column``."""
    parts = value.split(".")
    if len(parts) > 2 or not all(p.strip() for p in parts):  # noqa: PLR2004 - table.column
        raise ValueError(f"write `table` or `table.column` (e.g. tutors.tutor_id), not {value!r}")
    return value


def _some(value: Any) -> Any:
    if not value:
        raise ValueError("fk needs at least one key to check, e.g. {tutor_id: tutors.tutor_id}")
    return value


def _form(value: Any) -> str | None:
    if isinstance(value, dict):
        return "dict[str,str]"
    if isinstance(value, list):
        return "list[Reference]"
    return None


# The tags look like pydantic's own union tags, which error messages leave out of the key.
FkOptions = Annotated[
    Annotated[
        dict[str, Annotated[str, AfterValidator(_target)]],
        AfterValidator(_some),
        Tag("dict[str,str]"),
    ]
    | Annotated[list[Reference], AfterValidator(_some), Tag("list[Reference]")],
    Discriminator(
        _form,
        custom_error_type="fk_options",
        custom_error_message=(
            "fk takes a mapping {column: table.column} or a list of "
            "{columns: [...], table: name, references: [...]}"
        ),
    ),
]
"""``{column: table.column | table}``, or a list of ``{columns, table, references}`` for
composite keys."""


def references(options: dict[str, str] | list[Reference]) -> list[Reference]:
    """Both forms of the options as a list of references."""
    if isinstance(options, list):
        return options
    checks = []
    for column, target in options.items():
        table, _, referenced = target.partition(".")
        checks.append(Reference(columns=[column], table=table, references=[referenced or column]))
    return checks


@dataclass(frozen=True)
class _Check:
    """One reference, names normalized, with the words its reject messages use."""

    columns: tuple[str, ...]
    table: str
    referenced: tuple[str, ...]

    @classmethod
    def of(cls, reference: Reference) -> _Check:
        return cls(
            tuple(reference.columns),
            normalize_name(reference.table),
            tuple(normalize_name(c) for c in reference.referenced),
        )

    @property
    def target(self) -> str:
        """How a message names the referenced columns: ``tutors.tutor_id``, ``shifts (a, b)``."""
        if len(self.referenced) == 1:
            return f"{self.table}.{self.referenced[0]}"
        return f"{self.table} ({', '.join(self.referenced)})"


class ForeignKeys:
    """Reject the rows whose key is not in the referenced destination table.

    Every check asks the destination once per batch, for the batch's distinct non-null
    keys. A row failing several checks gets one reject per check.
    """

    def __init__(self, options: dict[str, str] | list[Reference], context: StepContext) -> None:
        self._checks = [_Check.of(r) for r in references(options)]
        self._destination = context.destination
        own = normalize_name(context.table) if context.table else None
        self._own: dict[_Check, pl.DataFrame] = {
            c: pl.DataFrame() for c in self._checks if c.table == own
        }
        """Per check of the resource's own table: the keys its rows brought so far this run."""
        self._replaces = context.replaces_table
        self._missed = dict.fromkeys(self._checks, 0)
        """Per check: rows of the run rejected because their key was not found."""
        if self._destination is None:
            log.warning(
                "fk checks skipped: no destination to look keys up in (dry run)",
                resource=context.resource,
                tables=sorted({c.table for c in self._checks}),
            )

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Keep the rows whose every key exists (or has a null)."""
        if self._destination is None or frame.height == 0:
            return StepResult(frame=frame)
        rejects = [r for check in self._checks if (r := self._rejects(check, frame)) is not None]
        return split(frame, rejects)

    def _rejects(self, check: _Check, frame: pl.DataFrame) -> pl.DataFrame | None:
        assert self._destination is not None  # noqa: S101 - __call__ returned early otherwise
        names = [resolve(c, frame.columns) for c in check.columns]
        if any(n is None for n in names):
            return None  # an absent column is all nulls: nothing to check
        columns = [n for n in names if n is not None]
        keys = frame.select(
            pl.col(c).alias(r) for c, r in zip(columns, check.referenced, strict=True)
        ).with_columns(pl.all_horizontal(pl.all().is_not_null()).alias(_CHECKED))
        distinct = keys.filter(pl.col(_CHECKED)).drop(_CHECKED).unique()
        if check in self._own:
            failed = self._own_failed(check, frame, keys, distinct)
        elif distinct.height == 0:
            return None
        else:
            found = self._destination.existing_keys(check.table, check.referenced, distinct)
            failed = _failed(keys, found, check)
        if failed is None or not failed.any():
            return None
        self._missed[check] += int(failed.sum())
        return _reject(frame, failed, columns, check)

    def finish(self) -> list[Note]:
        """Per check, how many rows of the run were quarantined for a key not found: a note
        for the run summary and the ledger."""
        notes = []
        for check, count in self._missed.items():
            if count:
                records = "1 record" if count == 1 else f"{count} records"
                label = (
                    check.columns[0] if len(check.columns) == 1 else f"({', '.join(check.columns)})"
                )
                message = f"{records} had a {label} not in {check.target} (quarantined)"
                notes.append(Note("fk", count, message))
        return notes

    def _own_failed(
        self, check: _Check, frame: pl.DataFrame, keys: pl.DataFrame, distinct: pl.DataFrame
    ) -> pl.Series | None:
        """A check of the resource's own table: which rows' keys are in neither the table,
        nor an earlier batch, nor a row of this batch that passes (found by repeating the
        check until no more rows fail: a child of a failed row fails too)."""
        assert self._destination is not None  # noqa: S101 - __call__ returned early otherwise
        known = self._own[check]
        if distinct.height and not self._replaces:
            found = self._destination.existing_keys(check.table, check.referenced, distinct)
            known = _with(found, known)
        names = [resolve(c, frame.columns) for c in check.referenced]
        if any(n is None for n in names):  # the batch brings no keys of its own
            return _failed(keys, known, check) if distinct.height else None
        brought = frame.select(
            pl.col(n).alias(r) for n, r in zip(names, check.referenced, strict=True) if n
        )
        failed = pl.Series(_FOUND, [False] * frame.height)
        while True:
            passing = brought.filter(~failed)
            now = _failed(keys, _with(known, passing), check)
            if now.equals(failed):
                break
            failed = now
        self._own[check] = _with(self._own[check], brought.filter(~failed))
        return failed


def _failed(keys: pl.DataFrame, found: pl.DataFrame, check: _Check) -> pl.Series:
    """Per row of ``keys``: a key without nulls that ``found`` lacks."""
    if found.height == 0:
        return keys.get_column(_CHECKED)
    # Keys of the batch itself may be typed unlike the checked column (an id as text).
    found = found.cast({c: keys.schema[c] for c in check.referenced}, strict=False)
    marked = keys.join(
        found.unique().with_columns(pl.lit(value=True).alias(_FOUND)),
        on=list(check.referenced),
        how="left",
        maintain_order="left",
    )
    return marked.get_column(_CHECKED) & marked.get_column(_FOUND).is_null()


def _with(known: pl.DataFrame, more: pl.DataFrame) -> pl.DataFrame:
    """The distinct keys of both (none null), in one type per column."""
    if more.width == 0:
        return known
    more = more.filter(pl.all_horizontal(pl.all().is_not_null()))
    if known.width == 0:
        return more.unique()
    return pl.concat([known, more], how="vertical_relaxed").unique()


def _reject(
    frame: pl.DataFrame, failed: pl.Series, columns: list[str], check: _Check
) -> pl.DataFrame:
    """Rejects naming the key: ``tutor_id 42 is not in tutors.tutor_id``."""
    rejects = reject_rows(frame, failed, field=columns[0], rule="fk", message="")
    shown = frame.filter(failed).select(_shown(frame, columns).alias("shown")).to_series()
    if len(columns) == 1:
        label = columns[0]
    else:
        label = f"({', '.join(columns)})"
        rejects = rejects.with_columns(shown.alias("value"))
    message = f"{label} " + shown + f" is not in {check.target}"
    return rejects.with_columns(message.alias("message"))


def _shown(frame: pl.DataFrame, columns: list[str]) -> pl.Expr:
    """The key as a message shows it: numbers bare, other values quoted, tuples in brackets."""
    parts = []
    for column in columns:
        dtype = frame.schema[column]
        text = as_text(pl.col(column), dtype)
        if not (dtype.is_numeric() or isinstance(dtype, pl.Boolean)):
            text = pl.lit("'") + text.str.replace_all("'", "''", literal=True) + pl.lit("'")
        parts.append(text)
    if len(parts) == 1:
        return parts[0]
    return pl.concat_str([pl.lit("("), pl.concat_str(parts, separator=", "), pl.lit(")")])


# ---------------------------------------------------------------- load order


def load_order(resources: Sequence[Resource]) -> list[Resource]:
    """``resources`` with each one after those whose tables its fk steps reference.

    Otherwise the given order is kept. A reference to a resource not in ``resources``,
    or to the resource's own table, does not order anything. Raises a ConfigError
    naming the resources when their references form a cycle.
    """
    parents = _parents(resources)
    done: list[Resource] = []
    waiting = list(resources)
    while waiting:
        ready = next((r for r in waiting if parents[r.name] <= {d.name for d in done}), None)
        if ready is None:
            raise _cycle(waiting, parents)
        done.append(ready)
        waiting.remove(ready)
    return done


def referenced_tables(res: Resource) -> Iterable[tuple[int, str]]:
    """(step index, snake_cased table) of every fk check of the resource."""
    for index, step in enumerate(res.steps):
        if step.name == "fk":
            for reference in references(step.options):
                yield index, normalize_name(reference.table)


def _parents(resources: Sequence[Resource]) -> dict[str, set[str]]:
    """For each resource, the other resources (by name) loading a table it references."""
    loaders: dict[str, set[str]] = {}
    for res in resources:
        loaders.setdefault(normalize_name(res.table), set()).add(res.name)
    return {
        res.name: {
            parent
            for _, table in referenced_tables(res)
            for parent in loaders.get(table, set())
            if parent != res.name
        }
        | _read_parent(res, {r.name for r in resources})
        for res in resources
    }


def _read_parent(res: Resource, names: set[str]) -> set[str]:
    """The resource whose records a ``children`` source reads: it loads first."""
    parent = getattr(res.source_options, "of", None) if res.source_type == "children" else None
    return {parent} if parent in names else set()


def _cycle(waiting: list[Resource], parents: dict[str, set[str]]) -> ConfigError:
    """The error for resources that wait on each other: the first cycle among them."""
    order = [r.name for r in waiting]
    path = [order[0]]
    while True:
        # Every waiting resource waits on another waiting one, so this walk must loop.
        step = min((p for p in parents[path[-1]] if p in order), key=order.index)
        if step in path:
            cycle = path[path.index(step) :]
            break
        path.append(step)
    # Start at an fk check: a cycle may also pass through a children source's `of:`.
    checks = [
        name
        for name, following in zip(cycle, [*cycle[1:], cycle[0]], strict=True)
        if normalize_name(waiting[order.index(following)].table)
        in {t for _, t in referenced_tables(waiting[order.index(name)])}
    ]
    first = min(checks, key=order.index)
    cycle = cycle[cycle.index(first) :] + cycle[: cycle.index(first)]
    res = waiting[order.index(first)]
    following = waiting[order.index(cycle[1])]
    index = next(i for i, t in referenced_tables(res) if t == normalize_name(following.table))
    file, _, line = res.steps[index].where.rpartition(":")
    shown = " -> ".join([*cycle, cycle[0]])
    each = "checks keys in the next one's table"
    if len(checks) < len(cycle):
        each += " or reads its records (children)"
    return ConfigError(
        f"fk checks form a cycle: {shown} (each {each}, so "
        "none of them can load first); remove one of these checks",
        file=file,
        line=int(line),
        key=f"resources.{res.name}.steps[{index}].fk",
    )
