"""The ``redis_stream`` source: records arriving on a Redis stream, read by a consumer group.

An entry carries one record, as a JSON object in one field (``data`` by default) or,
when that field is missing, as flat fields. ``ladle serve`` appends entries with
:func:`encode_record`; ``ladle worker`` reads them with the consumer group that
:func:`ensure_group` creates and turns each entry back into a record with
:func:`decode_entry`. A stream has no end, so ``ladle run`` refuses such a resource.
Redis errors are translated here into :class:`~ladle.errors.SourceError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.redact import mask
from ladle.sources import SourceContext
from ladle.sources.flatten import records_to_frame, to_json_text
from ladle.sources.json_reader import not_an_object, parse_json_texts
from ladle.sources.json_typed import SchemaMemo

if TYPE_CHECKING:
    import redis
    from redis.typing import EncodableT, FieldT

_SCHEMES = ("redis://", "rediss://", "unix://")

EntryFields = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
"""An entry's fields as redis-py returns them: bytes, or text with ``decode_responses``."""


class RedisStreamOptions(BaseModel):
    """A resource's ``source:`` when it reads a Redis stream; validated with the pipeline file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["redis_stream"]
    url: str
    """Redis URL (``redis://``, ``rediss://``, ``unix://``); write it as ``${REDIS_URL}``."""
    stream: str = Field(min_length=1)
    """The stream's key."""
    group: str = Field(default="ladle", min_length=1)
    """Consumer group that workers share; created on first use."""
    start: Literal["begin", "now"] = "begin"
    """Where a newly created group starts: the stream's first entry, or entries added from now."""
    block_ms: int = Field(default=2000, ge=0)
    """How long one read waits for new entries, in milliseconds."""
    field: str = Field(default="data", min_length=1)
    """The entry field holding the record as JSON; an entry without it is read as flat fields."""
    max_deliveries: int = Field(default=5, ge=1)
    """An entry delivered this many times without being acknowledged goes to the dead letters."""
    claim_idle_ms: int = Field(default=30_000, ge=0)
    """Entries pending this long with a consumer are claimed by another (XAUTOCLAIM)."""
    dead_letter: str | None = None
    """Stream that receives entries which cannot be loaded; default ``<stream>:dlq``."""
    retry_max_ms: int = Field(default=30_000, ge=1)
    """While the destination is down, a worker retries its batch with waits that double from
    0.5 s up to this many milliseconds; it never gives up."""

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(_SCHEMES):
            raise ValueError(
                f"{mask(value)!r} is not a Redis URL; use redis://host:6379/0, rediss://… or "
                "unix:///path.sock, e.g. `url: ${REDIS_URL}`"
            )
        return value

    @property
    def dead_letter_stream(self) -> str:
        """The dead-letter stream's key: ``dead_letter`` or ``<stream>:dlq``."""
        return self.dead_letter or f"{self.stream}:dlq"

    @property
    def attempts_key(self) -> str:
        """A hash of the entries that a worker is loading on their own because Redis delivered
        them more than ``max_deliveries`` times: entry id -> attempts, in ladle's terms."""
        return f"{self.stream}:{self.group}:attempts"


class RedisStreamSource:
    """Registered so that pipeline files validate; the records are read by ``ladle worker``."""

    def __init__(self, options: RedisStreamOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context

    def batches(self) -> Iterator[SourceBatch]:
        """Refuse: a stream never ends, so it is consumed by a long-running worker."""
        raise SourceError(
            f"resource {self.context.resource!r} reads a redis_stream, which runs under "
            "`ladle worker FILE`, not `ladle run`; use `ladle run --resource` for the others",
            position=f"stream {self.options.stream}",
        )


def open_client(url: str) -> redis.Redis:
    """A Redis client for ``url``; connections open lazily, on the first command."""
    import redis

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=5)
    except ValueError as exc:
        raise SourceError(str(exc), position=mask(url)) from exc


def ensure_group(client: redis.Redis, options: RedisStreamOptions) -> None:
    """Create the consumer group (and the stream) unless it exists; safe to call every start.

    A new group starts at the stream's first entry (``start: begin``) or after its last
    one (``start: now``); an existing group keeps its position.
    """
    import redis

    start = "0" if options.start == "begin" else "$"
    try:
        client.xgroup_create(options.stream, options.group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise _translated(exc, options, "creating the consumer group") from exc
    except redis.RedisError as exc:
        raise _translated(exc, options, "creating the consumer group") from exc


def _translated(exc: Exception, options: RedisStreamOptions, doing: str) -> SourceError:
    return SourceError(
        f"{doing} {options.group!r} failed: {exc}",
        position=f"stream {options.stream} at {mask(options.url)}",
    )


def encode_record(record: Mapping[str, Any], field: str = "data") -> dict[FieldT, EncodableT]:
    """The entry fields for one record: the record as compact JSON text under ``field``.

    Typed as redis-py's ``xadd`` takes it; the keys and values are ``str``.
    """
    return {field: to_json_text(record)}


def decode_entry(message_id: str, fields: EntryFields, field: str) -> dict[str, Any] | Unreadable:
    """One entry back into a record, or an Unreadable whose position is the message id.

    With ``field`` present its value must be a JSON object; otherwise every field is
    taken as a text column. Bytes that are not UTF-8 are unreadable, never guessed.
    """
    text = {_text(key): value for key, value in fields.items()}
    if field in text:
        return _from_json(message_id, text[field])
    try:
        return {key: _decoded(value) for key, value in text.items()}
    except UnicodeDecodeError as exc:
        raw = to_json_text({key: _text(value) for key, value in text.items()})
        return Unreadable(message_id, raw, _bad_bytes(exc), rule="encoding")


def decode_entries(
    entries: Sequence[tuple[str, Mapping[bytes, bytes]]],
    field: str,
    shape: SchemaMemo | None = None,
) -> SourceBatch:
    """Entries (id, fields) to a batch whose positions are the entry ids, with the bytes
    they hold; when every entry has ``field``, its JSON is parsed in one Polars call
    (with the types of the last batch when ``shape`` holds them: see json_typed)."""
    key = field.encode()
    ids = [i for i, _ in entries]
    size = sum(len(k) + len(v) for _, fields in entries for k, v in fields.items())
    if all(key in fields for _, fields in entries):
        parsed = parse_json_texts([fields[key] for _, fields in entries], ids, shape)
        # The JSON reader's advice for bad bytes is about files: say it for a stream.
        unreadable = [
            _again(u, entries[ids.index(u.position)][1], field) if u.rule == "encoding" else u
            for u in parsed.unreadable
        ]
        return SourceBatch(parsed.frame, parsed.positions, unreadable, size)
    records: list[dict[str, Any]] = []
    positions: list[str] = []
    unreadables: list[Unreadable] = []
    for message_id, fields in entries:
        decoded = decode_entry(message_id, fields, field)
        if isinstance(decoded, Unreadable):
            unreadables.append(decoded)
        else:
            records.append(decoded)
            positions.append(message_id)
    return SourceBatch(records_to_frame(records), positions, unreadables, size)


def _again(unreadable: Unreadable, fields: Mapping[bytes, bytes], field: str) -> Unreadable:
    decoded = decode_entry(unreadable.position, fields, field)
    return decoded if isinstance(decoded, Unreadable) else unreadable


def _from_json(message_id: str, value: bytes | str) -> dict[str, Any] | Unreadable:
    try:
        raw = _decoded(value)
    except UnicodeDecodeError as exc:
        return Unreadable(message_id, _text(value), _bad_bytes(exc), rule="encoding")
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        return Unreadable(message_id, raw, message)
    if not isinstance(record, dict):
        return Unreadable(message_id, raw, not_an_object(record))
    return record


def _decoded(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _text(value: bytes | str) -> str:
    """Text for display: undecodable bytes spelled ``\\xff``."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _bad_bytes(exc: UnicodeDecodeError) -> str:
    return bad_bytes_message(exc.object[exc.start])


def bad_bytes_message(byte: int) -> str:
    """What to say about an entry that is not UTF-8: the producer must send UTF-8."""
    return (
        f"cannot decode byte 0x{byte:02x} as UTF-8; a stream entry must be UTF-8: fix its producer"
    )
