"""The http source against a real local API: pagination, auth, retries, circuit, resume."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from ladle import Pipeline, RunOptions
from ladle.batch import SourceBatch
from ladle.destinations import connect
from ladle.errors import ConfigError, SourceError
from ladle.kinds import SOURCES
from ladle.sources import CursorBound, SourceContext
from ladle.sources.http_api import (
    CircuitBreakerOptions,
    CursorPaging,
    HttpOptions,
    HttpSource,
    LinkPaging,
    NoPaging,
    OffsetPaging,
    PagePaging,
    RetryOptions,
)
from tests.fake_api import PATH, FakeApi, Reply

RECORDS = [
    {"id": i, "title": f"ticket {i}", "owner": {"name": f"user {i % 3}"}} for i in range(1, 24)
]
FAST_RETRY = {"attempts": 5, "initial": 0.01, "max": 1}
STYLES: dict[str, dict[str, Any]] = {
    "page": {"style": "page"},
    "page with size": {"style": "page", "size_param": "per_page", "size": 10},
    "offset": {"style": "offset", "limit": 10},
    "cursor": {"style": "cursor", "next": "meta.next_cursor"},
    "link": {"style": "link"},
}
SERVER_STYLE = {"page with size": "page"}
TOKEN = "s3cr3t"  # noqa: S105 - the fake API's test token


@pytest.fixture
def api() -> Iterator[FakeApi]:
    """A fake tickets API serving 23 records, 10 per page, numbered pages."""
    with FakeApi(records=list(RECORDS)) as server:
        yield server


def _source(
    url: str,
    *,
    batch_size: int = 100,
    resume: Any = None,
    cursor: CursorBound | None = None,
    **options: Any,
) -> HttpSource:
    options.setdefault("retry", FAST_RETRY)
    context = SourceContext("tickets", batch_size, Path("."), cursor=cursor, resume=resume)
    return HttpSource(HttpOptions(type="http", url=url, **options), context)


def _read(url: str, **options: Any) -> list[SourceBatch]:
    return list(_source(url, **options).batches())


def _error(url: str, **options: Any) -> str:
    with pytest.raises(SourceError) as info:
        _read(url, **options)
    return str(info.value)


def _ids(batches: list[SourceBatch]) -> list[int]:
    return [row for batch in batches for row in batch.frame.get_column("id").to_list()]


def _styled(api: FakeApi, name: str) -> dict[str, Any]:
    api.style = SERVER_STYLE.get(name, name)  # type: ignore[assignment]
    return STYLES[name]


def test_registry_maps_http_to_these_options_and_source() -> None:
    """``type: http`` resolves to HttpOptions and HttpSource."""
    kind = SOURCES["http"]
    assert kind.options is HttpOptions
    assert kind.build is HttpSource


def test_options_reject_unknown_keys_and_bad_values() -> None:
    """A misspelt key, a URL that is not http(s), an unknown style and a lone size_param fail."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        HttpOptions.model_validate({"type": "http", "url": "http://x/a", "header": {}})
    with pytest.raises(
        ValidationError, match="must be an http:// or https:// URL, got 'ftp://x/a'"
    ):
        HttpOptions(type="http", url="ftp://user:secret@x/a?key=1")
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        HttpOptions.model_validate({"type": "http", "url": "http://x", "paginate": {"style": "x"}})
    with pytest.raises(ValidationError, match="size_param needs a size to send"):
        HttpOptions.model_validate(
            {"type": "http", "url": "http://x", "paginate": {"style": "page", "size_param": "n"}}
        )


@pytest.mark.parametrize("name", list(STYLES))
def test_every_style_returns_every_record_once_in_order(api: FakeApi, name: str) -> None:
    """Each pagination style reads all pages: every record exactly once, in the API's order."""
    paginate = _styled(api, name)
    batches = _read(api.url, paginate=paginate)
    assert _ids(batches) == [r["id"] for r in RECORDS]
    assert [b.frame.height for b in batches] == [10, 10, 3]
    # Without a known size only the empty fourth page shows the end; it yields no batch.
    assert batches[-1].checkpoint == ({"page": 4} if name == "page" else None)
    assert all(b.bytes_read > 0 for b in batches)
    assert batches[0].frame.columns == ["id", "title", "owner__name"]


def test_page_style_without_size_stops_on_an_empty_page(api: FakeApi) -> None:
    """Without a known size the source asks until a page is empty; with one, a short page ends."""
    _read(api.url, paginate={"style": "page"})
    assert api.seen("page") == ["1", "2", "3", "4"]
    api.requests.clear()
    _read(api.url, paginate=STYLES["page with size"])
    assert api.seen("page") == ["1", "2", "3"]
    assert api.seen("per_page") == ["10", "10", "10"]


def test_positions_name_path_pagination_parameter_and_index(api: FakeApi) -> None:
    """Positions are path?param=value#index, the first cursor or link page without a query."""
    page = _read(api.url, paginate={"style": "page"}, params={"api_key": "secret"})
    assert page[1].positions[:2] == [f"{PATH}?page=2#0", f"{PATH}?page=2#1"]
    api.style = "offset"
    offset = _read(api.url, paginate=STYLES["offset"])
    assert offset[2].positions[-1] == f"{PATH}?offset=20#2"
    api.style = "cursor"
    cursor = _read(api.url, paginate=STYLES["cursor"])
    assert [cursor[0].positions[0], cursor[1].positions[0]] == [f"{PATH}#0", f"{PATH}?cursor=c10#0"]
    api.style = "link"
    link = _read(api.url, paginate={"style": "link"}, params={"api_key": "secret"})
    assert [link[0].positions[0], link[2].positions[2]] == [f"{PATH}#0", f"{PATH}?page=3#2"]


def test_checkpoints_are_the_next_request(api: FakeApi) -> None:
    """Each page's checkpoint is what the next request needs; a link is stored without params."""
    page = _read(api.url, paginate={"style": "page", "size": 10})
    assert [b.checkpoint for b in page] == [{"page": 2}, {"page": 3}, None]
    api.style = "offset"
    offset = _read(api.url, paginate=STYLES["offset"])
    assert [b.checkpoint for b in offset] == [{"offset": 10}, {"offset": 20}, None]
    api.style = "cursor"
    cursor = _read(api.url, paginate=STYLES["cursor"])
    assert [b.checkpoint for b in cursor] == [{"cursor": "c10"}, {"cursor": "c20"}, None]
    api.style = "link"
    api.requests.clear()
    link = _read(api.url, paginate={"style": "link"}, params={"api_key": "secret"})
    assert [b.checkpoint for b in link] == [
        {"url": f"{api.url}?page=2"},
        {"url": f"{api.url}?page=3"},
        None,
    ]
    assert api.seen("api_key") == ["secret", "secret", "secret"]


def test_max_pages_stops_early(api: FakeApi) -> None:
    """max_pages caps the pages one run fetches."""
    batches = _read(api.url, paginate={"style": "page", "max_pages": 2})
    assert _ids(batches) == list(range(1, 21))
    assert len(api.requests) == 2
    assert batches[-1].checkpoint is None


def test_records_are_found_as_in_json_files(api: FakeApi) -> None:
    """A bare array, the array under the resource's name, or an explicit dotted path."""
    api.style, api.page_size = "none", 100
    api.envelope = None
    assert _ids(_read(api.url)) == list(range(1, 24))
    api.envelope = "tickets"
    assert _ids(_read(api.url)) == list(range(1, 24))
    api.envelope = "payload"
    single = _read(api.url)
    assert single[0].frame.height == 1  # an object with no known array is the one record
    message = _error(api.url, records="payload.rows")
    assert message == (
        f"{PATH}: GET {api.url}: records: 'payload.rows' is not in the response; "
        "set `records:` to the dotted path of the array of records"
    )
    message = _error(api.url, records="payload.0", paginate={"style": "page"})
    assert "records: 'payload.0' is not in the response" in message


def test_records_path_that_is_not_a_list_fails_naming_url_and_page(api: FakeApi) -> None:
    """An object where the array should be stops the run with the URL and the page."""
    api.style = "cursor"
    message = _error(api.url, records="meta", paginate={"style": "page", "param": "p"})
    assert message == (
        f"{PATH}?p=1: GET {api.url}: records: 'meta' is an object, not an array; "
        "set `records:` to the dotted path of the array of records"
    )


def test_a_page_without_an_array_fails_when_paginating(api: FakeApi) -> None:
    """When paginating, a body with no array of records is an error, not one record."""
    api.envelope = "payload"
    message = _error(api.url, paginate={"style": "page"})
    assert message == (
        f"{PATH}?page=1: GET {api.url}: the response has no array of records under data, "
        "items, records, results, 'tickets'; set `records:` to the dotted path of the array "
        "of records"
    )


def test_a_body_that_is_not_json_fails_naming_url_and_page(api: FakeApi) -> None:
    """An HTML answer stops the run with the URL, the page and the start of the body."""
    api.fail(Reply(200, body=b"<html><body>Maintenance</body></html>", content_type="text/html"))
    message = _error(api.url, paginate={"style": "page"}, params={"api_key": "secret"})
    assert message == (
        f"{PATH}?page=1: GET {api.url} returned a body that is not JSON (text/html): "
        "<html><body>Maintenance</body></html>"
    )


def test_records_that_are_not_objects_are_unreadable_with_their_position(api: FakeApi) -> None:
    """A number or a list among the records goes to quarantine; the objects load."""
    api.records = [{"id": 1}, 42, ["a"], {"id": 4}]
    (batch,) = _read(api.url, paginate={"style": "page", "size": 10})
    assert batch.frame.get_column("id").to_list() == [1, 4]
    assert batch.positions == [f"{PATH}?page=1#0", f"{PATH}?page=1#3"]
    assert [(u.position, u.raw, u.message) for u in batch.unreadable] == [
        (f"{PATH}?page=1#1", "42", "a record must be a JSON object, found a number"),
        (f"{PATH}?page=1#2", '["a"]', "a record must be a JSON object, found an array"),
    ]
    assert batch.fetched == 4


def test_bearer_token_reaches_the_server(api: FakeApi) -> None:
    """Configured headers go with every request, on every page."""
    api.token = TOKEN
    batches = _read(
        api.url, paginate={"style": "page"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert len(_ids(batches)) == 23
    assert {r.headers["authorization"] for r in api.requests} == {f"Bearer {TOKEN}"}


def test_a_wrong_token_fails_at_once_without_showing_it(api: FakeApi) -> None:
    """401 is not retried; the message has the status, the body and a hint, never the token."""
    api.token = TOKEN
    message = _error(
        f"{api.url}?key=hidden", paginate={"style": "page"}, headers={"Authorization": "Bearer no"}
    )
    assert message == (
        f'{PATH}?page=1: GET {api.url} returned HTTP 401 Unauthorized: {{"error": "missing or '
        'wrong bearer token"}; check the credentials in `headers:` (and the variables they read)'
    )
    assert len(api.requests) == 1


def test_not_found_fails_at_once_with_one_request(api: FakeApi) -> None:
    """A 404 is terminal: one request, a message naming the URL, status and body."""
    message = _error(api.base + "/api/tikets", paginate={"style": "page"})
    assert message == (
        f"/api/tikets?page=1: GET {api.base}/api/tikets returned HTTP 404 Not Found: "
        '{"error": "no such endpoint: /api/tikets"}'
    )
    assert len(api.requests) == 1


def test_cursor_param_sends_the_incremental_bound_in_iso_8601(api: FakeApi) -> None:
    """The bound goes out as ISO 8601 UTC with Z on every page; no bound, no parameter."""
    after = datetime(2024, 5, 1, 14, 30, tzinfo=UTC) + timedelta(microseconds=0)
    bound = CursorBound("updated_at", after)
    _read(api.url, paginate={"style": "page"}, cursor_param="updated_after", cursor=bound)
    assert api.seen("updated_after") == ["2024-05-01T14:30:00Z"] * 4
    api.requests.clear()
    unbounded = CursorBound("updated_at", None)
    _read(api.url, paginate={"style": "page"}, cursor_param="updated_after", cursor=unbounded)
    assert api.seen("updated_after") == [None] * 4


def test_retries_recover_from_503s(api: FakeApi) -> None:
    """Two 503s, then the page: the server sees three requests for page 1, all records load."""
    api.fail(Reply(503), Reply(503))
    with capture_logs() as logs:
        batches = _read(
            api.url, paginate={"style": "page"}, headers={"Authorization": "Bearer t0k"}
        )
    assert _ids(batches) == list(range(1, 24))
    assert api.seen("page") == ["1", "1", "1", "2", "3", "4"]
    retries = [event for event in logs if event["event"] == "http retry"]
    assert [(e["attempt"], e["reason"], e["url"]) for e in retries] == [
        (1, "last status 503", api.url),
        (2, "last status 503", api.url),
    ]
    assert "t0k" not in repr(logs)


def test_retry_after_is_honoured(api: FakeApi) -> None:
    """A 503 and a 429 with Retry-After: 0.2 each make the source wait at least 0.2 s."""
    api.fail(Reply(503, retry_after="0.2"), Reply(429, retry_after="0.2"))
    _read(api.url, paginate={"style": "page", "size": 10})
    times = [r.at for r in api.requests]
    assert len(times) == 5
    assert times[1] - times[0] >= 0.2
    assert times[2] - times[1] >= 0.2


def test_retry_after_as_an_http_date_and_capped_by_max(api: FakeApi) -> None:
    """A date in the past means now; a wait longer than retry.max is cut to it."""
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    api.fail(Reply(429, retry_after=past), Reply(503, retry_after="3600"))
    started = time.monotonic()
    batches = _read(api.url, retry={"attempts": 3, "initial": 0.01, "max": 0.05})
    assert len(_ids(batches)) == 10
    assert time.monotonic() - started < 60  # not the hour the server asked for


def test_a_read_timeout_is_retried(api: FakeApi) -> None:
    """A response slower than the timeout counts as a failed attempt, then the retry succeeds."""
    api.fail(Reply(stall=2))
    batches = _read(api.url, paginate={"style": "page", "size": 10}, timeout=0.2)
    assert len(_ids(batches)) == 23
    assert api.seen("page") == ["1", "1", "2", "3"]


def test_circuit_opens_after_consecutive_failures(api: FakeApi) -> None:
    """A 500 storm opens the circuit after `failures` attempts; no secret reaches the message."""
    api.fail(*[Reply(500)] * 20)
    message = _error(
        api.url,
        paginate={"style": "page"},
        params={"api_key": "hush"},
        headers={"Authorization": "Bearer t0k"},
        retry={"attempts": 10, "initial": 0.01, "max": 0.05},
        circuit_breaker={"failures": 4},
    )
    assert message == (
        f"{PATH}?page=1: circuit open after 4 consecutive failures: GET {api.url} (last status 500)"
    )
    assert len(api.requests) == 4
    assert not any(secret in message for secret in ("hush", "t0k", "api_key"))


def test_the_circuit_counts_failures_across_requests(api: FakeApi) -> None:
    """Failures of different pages add up while no attempt succeeds in between."""
    api.fail(Reply(503), Reply(503))
    api.style = "page"
    source = _source(
        api.url,
        paginate={"style": "page"},
        retry={"attempts": 3, "initial": 0.01, "max": 0.05},
        circuit_breaker={"failures": 3},
    )
    batches = source.batches()
    first = next(batches)
    assert first.frame.height == 10
    api.fail(Reply(503), Reply(503))
    assert next(batches).frame.height == 10  # a success in between resets the count
    api.fail(*[Reply(503)] * 3)
    with pytest.raises(SourceError, match="circuit open after 3 consecutive failures"):
        next(batches)


def test_giving_up_after_the_last_attempt(api: FakeApi) -> None:
    """When attempts run out before the circuit opens, the message says so."""
    api.fail(*[Reply(503)] * 5)
    message = _error(api.url, retry={"attempts": 2, "initial": 0.01, "max": 0.05})
    assert message == f"{PATH}: gave up after 2 attempts: GET {api.url} (last status 503)"
    assert len(api.requests) == 2


@pytest.mark.parametrize("name", list(STYLES))
def test_resume_at_each_checkpoint_fetches_only_later_pages(api: FakeApi, name: str) -> None:
    """Resumed at page k's checkpoint: pages <= k plus what follows is everything, no refetch."""
    paginate = _styled(api, name)
    full = _read(api.url, paginate=paginate)
    full_requests = [r.query for r in api.requests]
    for k, batch in enumerate(full[:-1]):
        api.requests.clear()
        rest = _read(api.url, paginate=paginate, resume=batch.checkpoint)
        done = [i for page in full[: k + 1] for i in page.frame.get_column("id").to_list()]
        assert done + _ids(rest) == _ids(full)
        asked = [r.query for r in api.requests]
        assert asked == full_requests[k + 1 :]


def test_a_page_larger_than_the_batch_size_is_split_and_resumable(api: FakeApi) -> None:
    """Batches inside a page checkpoint the page and how far into it they got."""
    batches = _read(api.url, paginate={"style": "page", "size": 10}, batch_size=4)
    assert [b.frame.height for b in batches] == [4, 4, 2, 4, 4, 2, 3]
    assert [b.checkpoint for b in batches[:3]] == [
        {"page": 1, "skip": 4},
        {"page": 1, "skip": 8},
        {"page": 2},
    ]
    assert batches[1].positions[0] == f"{PATH}?page=1#4"
    assert [b.bytes_read > 0 for b in batches[:3]] == [True, False, False]
    rest = _read(api.url, paginate={"style": "page", "size": 10}, resume={"page": 1, "skip": 8})
    assert _ids(rest) == list(range(9, 24))


def test_a_checkpoint_of_another_style_is_refused(api: FakeApi) -> None:
    """Resuming offset pagination from a page-number checkpoint is an error, not a guess."""
    message = _error(api.url, paginate=STYLES["offset"], resume={"page": 3})
    assert message == (
        f'{api.url}: the stored checkpoint {{"page":3}} does not fit `paginate: {{style: '
        "offset}` (was the pagination changed?); run with --full-refresh to start over"
    )
    assert api.requests == []


def test_a_link_to_another_site_is_not_followed(api: FakeApi) -> None:
    """A next link on another origin would receive the headers: the source stops instead."""
    with FakeApi(records=list(RECORDS), style="link") as other:
        message = _error(other.url, paginate={"style": "link"}, resume={"url": api.url + "?x=1"})
    assert message.startswith(f"{other.url}: the next page's link points to another site")
    assert api.requests == []


def test_a_link_with_a_password_is_not_followed(api: FakeApi) -> None:
    """httpx would send a link's user:password@ as Basic auth: the source stops instead."""
    link = api.url.replace("://", "://u:pw@") + "?x=1"
    message = _error(api.url, paginate={"style": "link"}, resume={"url": link})
    assert message == (
        f"{api.url}: the next page's link ({api.url}) holds a user or password; ladle sends "
        "only the credentials in `headers:`, so it stops here"
    )
    assert api.requests == []


def test_the_client_is_closed_when_the_reader_stops_early(api: FakeApi) -> None:
    """Closing the batch generator after one page closes the connection to the server."""
    batches = _source(api.url, paginate={"style": "page"}).batches()
    next(batches)
    assert api.open_connections == 1
    batches.close()
    _wait_until(lambda: api.open_connections == 0)


def test_the_client_is_closed_when_a_request_fails(api: FakeApi) -> None:
    """A terminal error on page 2 still closes the connection."""
    batches = _source(api.url, paginate={"style": "page"}).batches()
    next(batches)
    api.fail(Reply(400, body=b"bad"))
    with pytest.raises(SourceError, match="returned HTTP 400 Bad Request: bad"):
        next(batches)
    _wait_until(lambda: api.open_connections == 0)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "the server still holds a connection"
        time.sleep(0.01)


def test_pipeline_end_to_end_into_duckdb(
    api: FakeApi,
    duckdb_url: str,
    write_pipeline: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A YAML pipeline reads every page with the token from the environment and balances."""
    api.token = TOKEN
    api.records = [*RECORDS[:5], "not a record", *RECORDS[5:]]
    monkeypatch.setenv("TICKETS_TOKEN", TOKEN)
    pipeline = write_pipeline(
        f"""\
pipeline: helpdesk
destination: {duckdb_url}
resources:
  tickets:
    source:
      type: http
      url: {api.url}
      headers: {{Authorization: "Bearer ${{TICKETS_TOKEN}}"}}
      paginate: {{style: page, size_param: per_page, size: 10}}
      retry: {{initial: 0.01}}
    primary_key: [id]
    write: merge
"""
    )
    api.fail(Reply(503))
    summary = Pipeline.from_yaml(pipeline).run()
    (result,) = summary.resources
    assert summary.ok, result.error
    counts = result.counts
    assert (counts.fetched, counts.inserted, counts.quarantined) == (24, 23, 1)
    assert counts.fetched == (
        counts.inserted
        + counts.updated
        + counts.unchanged
        + counts.deduplicated
        + counts.quarantined
    )
    dest = connect(duckdb_url)
    rows = dest.read("tickets", {}, order_by=["id"]).to_dicts()
    dest.close()
    assert [r["id"] for r in rows] == list(range(1, 24))
    assert rows[0]["owner__name"] == "user 1"
    again = Pipeline.from_yaml(pipeline).run(RunOptions())
    assert again.resources[0].counts.unchanged == 23


def test_a_url_with_user_and_password_is_refused(
    api: FakeApi, write_pipeline: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:password@ in the URL fails validation: httpx would send it as Basic auth unasked."""
    monkeypatch.setenv("LADLE_T_API_URL", api.url.replace("://", "://app:hunter2@"))
    pipeline = write_pipeline(
        """\
pipeline: helpdesk
resources:
  tickets:
    source:
      type: http
      url: ${LADLE_T_API_URL}
"""
    )
    with pytest.raises(ConfigError) as info:
        Pipeline.from_yaml(pipeline)
    assert str(info.value) == (
        f"{pipeline}:6: resources.tickets.source.url: must not hold a user or password "
        "(user:password@); send credentials in `headers:` from a variable, e.g. "
        '`Authorization: "Bearer ${API_TOKEN}"`'
    )
    assert api.requests == []


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def test_every_option_key_is_documented() -> None:
    """Each key of ``type: http`` and of its nested options has a row in the reference."""
    reference = (Path(__file__).parents[2] / "docs" / "reference.md").read_text(encoding="utf-8")
    models: list[type[BaseModel]] = [HttpOptions, RetryOptions, CircuitBreakerOptions]
    models += [NoPaging, PagePaging, OffsetPaging, CursorPaging, LinkPaging]
    missing = [key for model in models for key in _keys(model) if f"| `{key}` |" not in reference]
    assert missing == []


def test_frames_flatten_nested_objects(api: FakeApi) -> None:
    """Nested objects become parent__child columns, as for JSON files."""
    api.records = [{"id": 1, "owner": {"name": "a", "team": {"id": 7}}}]
    (batch,) = _read(api.url)
    assert batch.frame.to_dicts() == [{"id": 1, "owner__name": "a", "owner__team__id": 7}]
    assert batch.frame.schema["owner__team__id"] == pl.Int64


def test_a_cursor_that_does_not_move_stops_the_run(api: FakeApi) -> None:
    """An API that hands back the cursor it was given would be read forever: the source stops."""
    api.style = "cursor"
    stuck = b'{"data": [{"id": 1}], "meta": {"next_cursor": "c0"}}'
    api.fail(Reply(200, body=stuck), Reply(200, body=stuck))
    message = _error(api.url, paginate=STYLES["cursor"])
    assert message == (
        f'{PATH}?cursor=c0: the API names the page just read as the next one ({{"cursor":"c0"}}); '
        "reading on would loop forever"
    )
    assert len(api.requests) == 2


def test_connection_errors_are_retried_then_reported() -> None:
    """Nobody listening: each attempt fails to connect, and the message says how it ended."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}{PATH}"
    with capture_logs() as logs:
        message = _error(url, retry={"attempts": 2, "initial": 0.01, "max": 0.05})
    assert message.startswith(
        f"{PATH}: gave up after 2 attempts: GET {url} (last error: ConnectError: "
    )
    assert [event["event"] for event in logs] == ["http retry"]


def test_a_redirect_is_reported_not_followed(api: FakeApi) -> None:
    """Headers must not follow a redirect to who knows where: the message says where it points."""
    api.fail(Reply(301, body=b"", headers={"Location": "https://elsewhere.example/v2?k=1"}))
    message = _error(api.url, headers={"X-Api-Key": "hush"})
    assert message == (
        f"{PATH}: GET {api.url} returned HTTP 301 Moved Permanently: (empty body); "
        "the API moved to https://elsewhere.example/v2: set `url:` to it"
    )
    assert len(api.requests) == 1
