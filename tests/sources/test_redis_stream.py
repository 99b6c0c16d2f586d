"""The redis_stream source: options, entry encoding and decoding, the consumer group."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from ladle.batch import Unreadable
from ladle.errors import ConfigError, SourceError
from ladle.kinds import SOURCES
from ladle.pipeline import Pipeline
from ladle.sources.redis_stream import (
    RedisStreamOptions,
    decode_entry,
    encode_record,
    ensure_group,
)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis server."""
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def _options(redis_url: str, stream: str, **extra: Any) -> RedisStreamOptions:
    return RedisStreamOptions(type="redis_stream", url=redis_url, stream=stream, **extra)


def _read_new(client: redis.Redis, options: RedisStreamOptions) -> list[Any]:
    """Entries the group has not delivered yet, as consumer ``c1`` reads them."""
    answer: Any = client.xreadgroup(options.group, "c1", {options.stream: ">"}, count=100)
    return [fields for _, entries in answer for _, fields in entries]


# ---------------------------------------------------------------- options


def test_defaults_and_dead_letter_stream() -> None:
    """Only url and stream are needed; the dead letters go to `<stream>:dlq` unless named."""
    options = _options("redis://localhost:6379/0", "tickets")
    assert (options.group, options.start, options.field, options.block_ms) == (
        "ladle",
        "begin",
        "data",
        2000,
    )
    assert (options.max_deliveries, options.claim_idle_ms) == (5, 30_000)
    assert options.dead_letter_stream == "tickets:dlq"
    named = _options("redis://localhost:6379/0", "tickets", dead_letter="failed")
    assert named.dead_letter_stream == "failed"


def test_pipeline_file_names_a_bad_url(write_pipeline: Callable[[str], Path]) -> None:
    """A URL that is not Redis's fails validation with the file, line and key, password masked."""
    path = write_pipeline(
        "pipeline: p\n"
        "resources:\n"
        "  tickets:\n"
        "    source:\n"
        "      type: redis_stream\n"
        "      url: http://user:secret@host/0\n"
        "      stream: tickets\n"
    )
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_yaml(path)
    assert str(caught.value) == (
        f"{path}:6: resources.tickets.source.url: 'http://user:***@host/0' is not a Redis URL; "
        "use redis://host:6379/0, rediss://… or unix:///path.sock, e.g. `url: ${REDIS_URL}`"
    )


def test_ladle_run_refuses_a_stream_resource(
    write_pipeline: Callable[[str], Path], duckdb_url: str
) -> None:
    """`ladle run` fails a redis_stream resource with a message pointing at `ladle worker`."""
    assert "redis_stream" in SOURCES
    path = write_pipeline(
        "pipeline: p\n"
        "resources:\n"
        "  tickets:\n"
        "    source: {type: redis_stream, url: 'redis://127.0.0.1:6379/0', stream: s}\n"
    )
    summary = Pipeline.from_yaml(path, destination=duckdb_url).run()
    (result,) = summary.resources
    assert (result.status, result.error) == (
        "failed",
        "stream s: resource 'tickets' reads a redis_stream, which runs under "
        "`ladle worker FILE`, not `ladle run`; use `ladle run --resource` for the others",
    )


# ---------------------------------------------------------------- entries


def test_decode_json_field() -> None:
    """The record is the JSON object in the configured field, whether keys are bytes or text."""
    fields = {b"data": b'{"id": 1, "tags": ["a"], "who": {"name": "\xc3\xa9"}}'}
    assert decode_entry("1-0", fields, "data") == {"id": 1, "tags": ["a"], "who": {"name": "é"}}
    assert decode_entry("1-1", {"payload": '{"id": 2}', "other": "x"}, "payload") == {"id": 2}


def test_decode_malformed_json_is_unreadable() -> None:
    """Malformed JSON is unreadable at its message id, with the parser's message and raw text."""
    assert decode_entry("7-1", {b"data": b'{"id": 1,'}, "data") == Unreadable(
        "7-1",
        '{"id": 1,',
        "invalid JSON: Expecting property name enclosed in double quotes (line 1, column 10)",
    )


def test_decode_json_that_is_not_an_object_is_unreadable() -> None:
    """A JSON array in the field is not one record, and the message says what it found."""
    assert decode_entry("7-2", {"data": "[1, 2]"}, "data") == Unreadable(
        "7-2", "[1, 2]", "a record must be a JSON object, found an array"
    )


def test_decode_flat_entry() -> None:
    """Without the JSON field every field becomes a text column."""
    fields = {b"id": b"3", b"status": b"open"}
    assert decode_entry("8-0", fields, "data") == {"id": "3", "status": "open"}


def test_decode_bytes_that_are_not_utf8() -> None:
    """Undecodable bytes make the entry unreadable with rule `encoding`, the byte spelled out."""
    assert decode_entry("9-0", {b"data": b'{"a": "\xff"}'}, "data") == Unreadable(
        "9-0",
        '{"a": "\\xff"}',
        "cannot decode byte 0xff as UTF-8; a stream entry must be UTF-8: fix its producer",
        rule="encoding",
    )
    flat = decode_entry("9-1", {b"name": b"\xfe"}, "data")
    assert flat == Unreadable(
        "9-1",
        '{"name":"\\\\xfe"}',
        "cannot decode byte 0xfe as UTF-8; a stream entry must be UTF-8: fix its producer",
        rule="encoding",
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), _JSON, max_size=5))
def test_encode_then_decode_gives_the_record_back(record: dict[str, Any]) -> None:
    """Any JSON object survives encode_record and decode_entry unchanged."""
    fields = {str(k).encode(): str(v).encode() for k, v in encode_record(record).items()}
    assert decode_entry("1-0", fields, "data") == record


def test_encode_record_is_compact_json_in_the_field() -> None:
    """The entry has one field holding compact JSON, non-ASCII kept as is."""
    assert encode_record({"a": 1, "b": "é"}, "payload") == {"payload": '{"a":1,"b":"é"}'}


# ---------------------------------------------------------------- consumer group


def test_ensure_group_is_idempotent(
    client: redis.Redis, redis_url: str, redis_stream_key: str
) -> None:
    """Creating the group twice is fine, and the second call keeps the group's position."""
    options = _options(redis_url, redis_stream_key)
    ensure_group(client, options)
    client.xadd(redis_stream_key, encode_record({"n": 1}))
    assert len(_read_new(client, options)) == 1
    ensure_group(client, options)
    assert _read_new(client, options) == []
    groups = client.xinfo_groups(redis_stream_key)
    assert [g["name"] for g in groups] == [b"ladle"]


def test_start_begin_reads_entries_already_there(
    client: redis.Redis, redis_url: str, redis_stream_key: str
) -> None:
    """A new group with `start: begin` delivers the entries added before it existed."""
    client.xadd(redis_stream_key, encode_record({"n": 1}))
    options = _options(redis_url, redis_stream_key, start="begin")
    ensure_group(client, options)
    assert [json.loads(f[b"data"]) for f in _read_new(client, options)] == [{"n": 1}]


def test_start_now_skips_entries_already_there(
    client: redis.Redis, redis_url: str, redis_stream_key: str
) -> None:
    """A new group with `start: now` delivers only entries added after it was created."""
    client.xadd(redis_stream_key, encode_record({"n": 1}))
    options = _options(redis_url, redis_stream_key, start="now", group="late")
    ensure_group(client, options)
    client.xadd(redis_stream_key, encode_record({"n": 2}))
    assert [json.loads(f[b"data"]) for f in _read_new(client, options)] == [{"n": 2}]


def test_ensure_group_creates_the_stream(
    client: redis.Redis, redis_url: str, redis_stream_key: str
) -> None:
    """The stream need not exist yet: the group is created with an empty stream."""
    ensure_group(client, _options(redis_url, redis_stream_key))
    assert client.exists(redis_stream_key) == 1
    assert client.xlen(redis_stream_key) == 0


def test_ensure_group_on_a_key_that_is_not_a_stream(
    client: redis.Redis, redis_url: str, redis_stream_key: str
) -> None:
    """Redis refusing the group is a SourceError naming the stream, the group and the reason."""
    client.set(redis_stream_key, "not a stream")
    with pytest.raises(SourceError) as caught:
        ensure_group(client, _options(redis_url, redis_stream_key))
    assert str(caught.value) == (
        f"stream {redis_stream_key} at {redis_url}: creating the consumer group 'ladle' failed: "
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )
