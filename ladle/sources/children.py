"""The ``children`` source: a list field of another resource's records, one record per element.

A chat export holds conversations, each with its messages; ``type: children`` turns the
messages into a resource of their own::

    messages:
      source:
        type: children
        of: conversations                     # the resource whose records hold the list
        path: messages                        # the list in each of its records
        carry: {conversation_id: id}          # parent values copied onto every child
        order_by: originalarrivaltime         # each parent's children sorted by this field
        names: {list: participants, key: id, value: displayName, match: from, as: sender_name}
      primary_key: [conversation_id, position]

A list of single values (``"services": ["S1", "S4"]``) gives one record per value:
the carried values, the position, and the value in column ``value`` (set ``value:``
to name it). Whether a resource's elements are objects or values is decided by the
first non-null element it reads; an element unlike it (an object among values, a value
among objects), an array, or a null among objects is quarantined with a message that
says so. A null among values is a record whose value is null.

The parent's source is built again, with its own options, and read a second time on this
resource's behalf (:attr:`~ladle.sources.SourceContext.build_source`): with this
resource's stored state (files already loaded) and resume point, so the parent's
checkpoints are this source's too. Sources flatten a list into compact JSON text
(:mod:`ladle.sources.flatten`), which decodes back to exactly the values read; a source
that hands over a list as it is works as well. Elements are flattened like any record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import polars as pl
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.schema import Kind, normalize_name
from ladle.sources import Source, SourceContext, StatefulSource
from ladle.sources.flatten import SEPARATOR, records_to_frame, to_json_text
from ladle.sources.json_reader import json_kind
from ladle.steps.datetimes import DatetimeParser

log = structlog.get_logger("ladle")

_PARENT = "_ladle_parent"
_WHERE = "_ladle_where"
_INSTANT = "_ladle_instant"
_VALUE = "_ladle_value"


class NameLookup(BaseModel):
    """``names:``: an id in each child mapped to a display name from a list of its parent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list_: str = Field(alias="list", min_length=1)
    """Dotted path of the list in the parent record, e.g. ``participants``."""
    key: str = Field(default="id", min_length=1)
    """The field of that list's items that holds the id."""
    value: str = Field(min_length=1)
    """The field of that list's items that holds the name, e.g. ``displayName``."""
    match: str = Field(min_length=1)
    """The field of the child that holds an id to look up, e.g. ``from``."""
    as_: str = Field(alias="as", min_length=1)
    """The new column, e.g. ``sender_name``."""


class ChildrenOptions(BaseModel):
    """A resource's ``source:`` when it reads the elements of a list in another resource."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["children"]
    of: str = Field(min_length=1)
    """The parent resource, in the same pipeline file."""
    path: str = Field(min_length=1)
    """Dotted path of the list in each parent record, e.g. ``messages`` or ``thread.messages``."""
    carry: dict[str, str] = Field(min_length=1)
    """New column: dotted path of a parent field, e.g. ``{conversation_id: id}``."""
    position: str = Field(default="position", min_length=1)
    """The column for the element's 0-based index in the list, as written."""
    order_by: str | None = None
    """A field of the elements: each parent's children are yielded sorted by it."""
    sequence: str | None = None
    """The column for the child's 0-based place among its parent's children, after ``order_by``."""
    names: list[NameLookup] = Field(default_factory=list)
    """Ids in each child turned into names from another list of the parent."""
    value: str = Field(default="value", min_length=1)
    """The column for elements that are single values (a list of ids), not objects."""

    @field_validator("carry", mode="before")
    @classmethod
    def _same_names(cls, value: Any) -> Any:
        # `carry: [id, owner.name]` keeps the parent's names: id, owner__name.
        if isinstance(value, list):
            return {SEPARATOR.join(_parts(str(name))): name for name in value}
        return value

    @field_validator("names", mode="before")
    @classmethod
    def _one_lookup(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _distinct_columns(self) -> ChildrenOptions:
        added = self.added_columns()
        repeated = sorted({n for n in added if added.count(n) > 1})
        if repeated:
            raise ValueError(
                f"{', '.join(map(repr, repeated))} is named for more than one added column "
                "(carry, position, sequence, names.as); give each its own name"
            )
        return self

    def added_columns(self) -> list[str]:
        """The columns this source adds to the elements' own fields, normalized."""
        names = [*self.carry, self.position, *([self.sequence] if self.sequence else [])]
        return [normalize_name(n) for n in [*names, *(lookup.as_ for lookup in self.names)]]


class ChildrenSource:
    """Yield one record per element of each parent record's list, parent by parent."""

    def __init__(self, options: ChildrenOptions, context: SourceContext) -> None:
        if context.build_source is None:
            raise SourceError(
                f"a children source reads the records of resource {options.of!r}, so it runs "
                "only as part of its pipeline (ladle run)",
                position=f"children:{options.of}",
            )
        self.options = options
        self.context = context
        self._parent: Source = context.build_source(options.of, context)
        self._path = _parts(options.path)
        self._unreadable_parents = 0
        self.unmatched: dict[str, int] = {lookup.as_: 0 for lookup in options.names}
        """Per ``names`` column: children whose id was not in their parent's list."""
        self._values: bool | None = None
        """Whether the elements are single values, not objects: the first one decides."""

    def batches(self) -> Iterator[SourceBatch]:
        """Per parent batch, its children in batches of at most ``batch_size``.

        The last batch made from a parent batch carries that batch's checkpoint, so a
        resumed run starts with the next parent. A batch always has rows: what parent
        batches without children leave (bytes, unreadable elements) joins the next batch
        that has some, or the last one, whose checkpoint then covers them.
        """
        held: SourceBatch | None = None
        owed = _Owed()
        for parent in self._parent.batches():
            self._unreadable_parents += len(parent.unreadable)
            owed.bytes_read += parent.bytes_read
            owed.checkpoint, owed.parents = parent.checkpoint, owed.parents + 1
            made = False
            for batch in self._made(parent):
                if not batch.frame.height:
                    owed.unreadable += batch.unreadable
                    continue
                if held is not None:
                    yield held
                held, owed, made = owed.paid_into(batch), _Owed(), True
            if made and held is not None:
                held = replace(owed.paid_into(held), checkpoint=parent.checkpoint)
                owed = _Owed()
        if held is not None:
            checkpoint = owed.checkpoint if owed.parents else held.checkpoint
            yield replace(owed.paid_into(held), checkpoint=checkpoint)
        elif owed.unreadable:
            yield owed.paid_into(SourceBatch(pl.DataFrame(), []))
        self._report()

    def final_state(self) -> dict[str, Any]:
        """The parent source's state (the files it read), kept under this resource."""
        return dict(self._parent.final_state()) if isinstance(self._parent, StatefulSource) else {}

    # ------------------------------------------------------------ per parent batch

    def _made(self, parent: SourceBatch) -> Iterator[SourceBatch]:
        """The children of one parent batch, a group of parents at a time."""
        for group in self._groups(parent):
            yield from self._slices(self._batch(parent, group))

    def _groups(self, parent: SourceBatch) -> Iterator[_Group]:
        """Parents' children gathered until about ``batch_size``; a parent is never split."""
        frame = parent.frame
        lists = _column_values(frame, self._path)
        name_lists = [_column_values(frame, _parts(lookup.list_)) for lookup in self.options.names]
        group = _Group(len(self.options.names))
        for row, position in enumerate(parent.positions):
            where = _child_position(position, self.options.path)
            items, found = _as_list(lists[row])
            if found is not None:
                raw = lists[row] if isinstance(lists[row], str) else to_json_text(lists[row])
                message = f"{self.options.path} must be a JSON array, found {found}"
                group.unreadable.append(Unreadable(where, raw, message))
                continue
            names = [
                _names(values[row], lookup)
                for values, lookup in zip(name_lists, self.options.names, strict=True)
            ]
            for index, item in enumerate(items or ()):
                self._add(group, item, row=row, index=index, where=f"{where}[{index}]", names=names)
            if len(group) >= self.context.batch_size:
                yield group
                group = _Group(len(self.options.names))
        if len(group):
            yield group

    def _add(
        self,
        group: _Group,
        item: Any,
        *,
        row: int,
        index: int,
        where: str,
        names: list[dict[str, Any]],
    ) -> None:
        record = self._record(item)
        if record is None:
            group.unreadable.append(Unreadable(where, to_json_text(item), self._refusal(item)))
            return
        group.parents.append(row)
        group.indexes.append(index)
        group.records.append(record)
        group.positions.append(where)
        for column, lookup, mapping in zip(group.names, self.options.names, names, strict=True):
            wanted = _get(item, _parts(lookup.match))
            if wanted is not None and _id(wanted) not in mapping:
                self.unmatched[lookup.as_] += 1
            column.append(None if wanted is None else mapping.get(_id(wanted)))

    def _record(self, item: Any) -> dict[str, Any] | None:
        """The record an element makes: an object's fields, or a single value in the
        ``value`` column; None for an element unlike the first (non-null) one, or an array."""
        if self._values is None and item is not None and not isinstance(item, list):
            self._values = not isinstance(item, dict)
            if self._values and normalize_name(self.options.value) in self.options.added_columns():
                raise SourceError(
                    f"the elements of {self.options.path} are single values, which go in "
                    f"column {self.options.value!r}, and the children source adds a column "
                    "of that name (carry, position, sequence or names.as); set `value:` to "
                    "another name",
                    position=f"children:{self.options.of}.{self.options.path}",
                )
        if self._values:
            return None if isinstance(item, dict | list) else {self.options.value: item}
        return item if isinstance(item, dict) else None

    def _refusal(self, item: Any) -> str:
        path, kind = self.options.path, json_kind(item)
        if self._values:
            return (
                f"an element of {path} must be a single value (a string, number or boolean) "
                f"like the first one, found {kind}"
            )
        return f"an element of {path} must be a JSON object, found {kind}"

    def _batch(self, parent: SourceBatch, group: _Group) -> SourceBatch:
        """The group's children as one frame: carried values, position, fields, names; sorted."""
        if not group.records:
            return SourceBatch(pl.DataFrame(), [], group.unreadable)
        fields = records_to_frame(group.records)
        self._refuse_clashes(fields.columns)
        rows = pl.Series(_PARENT, group.parents, dtype=pl.Int64)
        carried = []
        for column, parent_field in self.options.carry.items():
            found = _resolve(parent_field, parent.frame.columns)
            if found is not None:
                carried.append(parent.frame.get_column(found).gather(rows).alias(column))
        names = [
            records_to_frame([{lookup.as_: v} for v in values]).get_column(lookup.as_)
            for lookup, values in zip(self.options.names, group.names, strict=True)
        ]
        position = pl.Series(self.options.position, group.indexes, dtype=pl.Int64)
        frame = pl.DataFrame([*carried, position, *fields.get_columns(), *names])
        frame = frame.with_columns(rows, pl.Series(_WHERE, group.positions, dtype=pl.String))
        order_by = (
            _resolve(self.options.order_by, fields.columns) if self.options.order_by else None
        )
        frame = self._sorted(frame, order_by)
        positions = frame.get_column(_WHERE).to_list()
        return SourceBatch(frame.drop(_PARENT, _WHERE), positions, group.unreadable)

    def _sorted(self, frame: pl.DataFrame, order_by: str | None) -> pl.DataFrame:
        """Each parent's children by ``order_by`` (stable, nulls last), numbered by ``sequence``."""
        if order_by is not None:
            keys = _sort_keys(frame.get_column(order_by))
            frame = (
                frame.hstack(keys)
                .sort([_PARENT, *(k.name for k in keys)], nulls_last=True, maintain_order=True)
                .drop(*(k.name for k in keys))
            )
        if self.options.sequence:
            place = pl.int_range(pl.len(), dtype=pl.Int64).over(_PARENT)
            at = frame.columns.index(self.options.position) + 1
            numbered = frame.with_columns(place.alias(self.options.sequence))
            order = [*frame.columns[:at], self.options.sequence, *frame.columns[at:]]
            # By Series, never pl.col(name): a name from the data may read as a regex.
            frame = pl.DataFrame([numbered.get_column(name) for name in order])
        return frame

    def _slices(self, batch: SourceBatch) -> Iterator[SourceBatch]:
        """The group in batches of ``batch_size`` (a parent with more children spans several)."""
        size = self.context.batch_size
        if batch.frame.height <= size:
            yield batch
            return
        for start in range(0, batch.frame.height, size):
            yield SourceBatch(
                batch.frame.slice(start, size),
                batch.positions[start : start + size],
                batch.unreadable if start == 0 else [],
            )

    def _refuse_clashes(self, fields: list[str]) -> None:
        taken = set(self.options.added_columns())
        clashes = [f for f in fields if normalize_name(f) in taken]
        if clashes:
            raise SourceError(
                f"the elements of {self.options.path} have a field {clashes[0]!r}, and the "
                "children source adds a column of that name (carry, position, sequence or "
                "names.as); give the added column another name",
                position=f"children:{self.options.of}.{self.options.path}",
            )

    def _report(self) -> None:
        """Say what the children of this run could not include (once, at the end)."""
        resource = self.context.resource
        count = self._unreadable_parents
        if count:
            of, path = self.options.of, self.options.path
            which = "it is" if count == 1 else "they are"
            self.context.notices.append(
                f"{count} of the {of} records could not be read ({which} quarantined under "
                f"{of}), so the {path} in {'it' if count == 1 else 'them'} are not loaded"
            )
        for lookup in self.options.names:
            count = self.unmatched[lookup.as_]
            if count:
                log.warning("names unmatched", resource=resource, column=lookup.as_, count=count)
                records = "1 record" if count == 1 else f"{count} records"
                self.context.notices.append(
                    f"{records} of {resource} had a {lookup.match} not in the {lookup.list_} "
                    f"of their {self.options.of} record ({lookup.as_} set to null)"
                )


@dataclass
class _Owed:
    """What parent batches without children left for the next batch: bytes, unreadable
    elements, and the checkpoint after them."""

    bytes_read: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    checkpoint: Any = None
    parents: int = 0
    """Parent batches since the last batch made: ``checkpoint`` is the last one's."""

    def paid_into(self, batch: SourceBatch) -> SourceBatch:
        """``batch`` with these added."""
        return replace(
            batch,
            bytes_read=batch.bytes_read + self.bytes_read,
            unreadable=[*self.unreadable, *batch.unreadable],
        )


@dataclass
class _Group:
    """Children of consecutive parents of one batch, gathered before they become a frame."""

    lookups: int
    parents: list[int] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    names: list[list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.names = [[] for _ in range(self.lookups)]

    def __len__(self) -> int:
        return len(self.records) + len(self.unreadable)


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))


def _resolve(dotted: str, columns: list[str]) -> str | None:
    """The flat column a dotted path names: as written, else the one that normalizes alike."""
    name = SEPARATOR.join(_parts(dotted))
    if name in columns:
        return name
    wanted = normalize_name(name)
    return next((c for c in columns if normalize_name(c) == wanted), None)


def _column_values(frame: pl.DataFrame, path: tuple[str, ...]) -> list[Any]:
    """Each record's value at ``path``. An object there was flattened into ``path__*``
    columns: it comes back as a dict, to be reported as not a list."""
    column = _resolve(".".join(path), frame.columns)
    if column is not None:
        return frame.get_column(column).to_list()
    prefix = SEPARATOR.join(path) + SEPARATOR
    nested = [c for c in frame.columns if c.startswith(prefix)]
    if not nested:
        return [None] * frame.height
    values = zip(*(frame.get_column(c).to_list() for c in nested), strict=True)
    return [
        {c.removeprefix(prefix): v for c, v in zip(nested, row, strict=True) if v is not None}
        or None
        for row in values
    ]


def _as_list(value: Any) -> tuple[list[Any] | None, str | None]:
    """(the items, None); (None, None) when absent; (None, what it is) when not a list."""
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, "a string"
        if not isinstance(value, list | dict):
            return None, "a string"
    if isinstance(value, list):
        return value, None
    return None, json_kind(value)


def _names(value: Any, lookup: NameLookup) -> dict[str, Any]:
    """A parent's ids -> names from its list (the first entry of an id wins); {} if none."""
    items, _ = _as_list(value)
    mapping: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, dict):
            key = _get(item, _parts(lookup.key))
            if key is not None:
                name = _get(item, _parts(lookup.value))
                # A name that is an object stays one column: as JSON text, like a list.
                mapping.setdefault(_id(key), to_json_text(name) if isinstance(name, dict) else name)
    return mapping


def _get(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _id(value: Any) -> str:
    """Ids compare as text, so that ``42`` finds ``"42"``."""
    return value if isinstance(value, str) else to_json_text(value)


def _child_position(parent: str, path: str) -> str:
    """``export.json#conversations[3]`` -> ``export.json#conversations[3].messages``."""
    return f"{parent}{path}" if parent.endswith("#") else f"{parent}.{path}"


def _sort_keys(values: pl.Series) -> list[pl.Series]:
    """Sort keys for ``order_by``: numbers as numbers; text that reads as a timestamp by its
    instant (naive ones as UTC), before the other text, in text order."""
    if not isinstance(values.dtype, pl.String):
        return [values.alias(_VALUE)]
    parsed, _ = DatetimeParser(Kind.TIMESTAMPTZ, timezone="UTC")(values)
    # Equal instants tie (list order decides), however they are spelled.
    text = values.to_frame(_VALUE).select(pl.when(parsed.is_null()).then(pl.col(_VALUE)))
    return [parsed.alias(_INSTANT), text.to_series().alias(_VALUE)]
