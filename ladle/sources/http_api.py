"""The ``http`` source: JSON records from a REST API, page after page.

One page is one request and (up to ``batch_size`` records) one batch. Pagination is
explicit (``paginate: {style: ...}``); each batch's checkpoint is what the next request
needs, so a resumed run starts at the first page not committed and never fetches a
committed page again. Transient failures (timeouts, connection errors, 429, 5xx)
retry with exponential backoff and jitter, honouring ``Retry-After``; a run of
consecutive failures across the whole source opens a circuit and stops the run
(:mod:`ladle.sources.http_retry`).

Secrets live in headers (``Authorization: "Bearer ${TOKEN}"``) or query parameters;
neither is logged, and every URL in a message or a position is shown without
userinfo or query string, apart from the pagination parameter itself.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladle.batch import SourceBatch, Unreadable
from ladle.errors import SourceError
from ladle.sources import CursorValue, SourceContext
from ladle.sources.flatten import ColumnClash, records_to_frame, to_json_text
from ladle.sources.http_retry import RetryingClient, body_snippet, shown_url
from ladle.sources.json_reader import json_kind, not_an_object

if TYPE_CHECKING:
    import httpx

State = dict[str, Any]
"""Where pagination stands: the next request's parameters, JSON-serialisable (a checkpoint)."""

# The same keys a JSON file's records are looked for under (ladle.sources.json_reader).
_ARRAY_KEYS = ("data", "items", "records", "results")


# ---------------------------------------------------------------------------------------
# Options


class _Paging(BaseModel):
    """What every pagination style does: a first request, its parameters, the next one."""

    model_config = ConfigDict(extra="forbid")

    max_pages: int | None = Field(default=None, ge=1)
    """Stop after this many pages in one run (a safety net; not set: until the API says so)."""

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """Whether a stored checkpoint has the shape this style writes."""
        raise NotImplementedError

    def first(self) -> State:
        """The first request's state."""
        return {}

    def query(self, state: State) -> dict[str, Any]:
        """The pagination parameters of the request ``state`` describes."""
        return {}

    def label(self, state: State) -> dict[str, Any]:
        """The parameter that tells pages apart, for positions (never a size or a secret)."""
        return self.query(state)

    def follow(self, state: State, page: _Page) -> State | None:
        """The next request's state, or None when ``page`` was the last."""
        return None


class NoPaging(_Paging):
    """One request; its response holds every record."""

    style: Literal["none"] = "none"
    """``none``: a single request."""

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """Any checkpoint of a single page is just a position within it."""
        return set(state) <= {"skip"}


class PagePaging(_Paging):
    """Numbered pages: ``?page=1``, ``?page=2``... until a page comes back empty (or short)."""

    style: Literal["page"]
    """``page``: a page number parameter."""
    param: str = "page"
    """The query parameter that carries the page number."""
    start: int = 1
    """The first page's number."""
    size_param: str | None = None
    """The query parameter that carries the page size, if the API takes one."""
    size: int | None = Field(default=None, ge=1)
    """Records per page: sent as ``size_param``; a shorter page is the last one."""

    @model_validator(mode="after")
    def _size_with_param(self) -> PagePaging:
        if self.size_param is not None and self.size is None:
            raise ValueError("size_param needs a size to send, e.g. `size: 100`")
        return self

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """A checkpoint of this style names the page."""
        return set(state) <= {"page", "skip"} and _is_int(state.get("page"))

    def first(self) -> State:
        """The first page."""
        return {"page": self.start}

    def query(self, state: State) -> dict[str, Any]:
        """The page number, and the page size when the API takes one."""
        query: dict[str, Any] = {self.param: state["page"]}
        if self.size_param is not None:
            query[self.size_param] = self.size
        return query

    def label(self, state: State) -> dict[str, Any]:
        """The page number."""
        return {self.param: state["page"]}

    def follow(self, state: State, page: _Page) -> State | None:
        """The next page, unless this one was empty or shorter than ``size``."""
        if page.count == 0 or (self.size is not None and page.count < self.size):
            return None
        return {"page": state["page"] + 1}


class OffsetPaging(_Paging):
    """Offset and limit: ``?offset=0&limit=100``... until a page holds fewer than ``limit``."""

    style: Literal["offset"]
    """``offset``: offset and limit parameters."""
    offset_param: str = "offset"
    """The query parameter that carries the offset of the page's first record."""
    limit_param: str = "limit"
    """The query parameter that carries the page size."""
    limit: int = Field(default=100, ge=1)
    """Records per page; a shorter page is the last one."""

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """A checkpoint of this style names the offset."""
        return set(state) <= {"offset", "skip"} and _is_int(state.get("offset"))

    def first(self) -> State:
        """The first record."""
        return {"offset": 0}

    def query(self, state: State) -> dict[str, Any]:
        """Offset and limit."""
        return {self.offset_param: state["offset"], self.limit_param: self.limit}

    def label(self, state: State) -> dict[str, Any]:
        """The offset."""
        return {self.offset_param: state["offset"]}

    def follow(self, state: State, page: _Page) -> State | None:
        """The records after this page, unless it was short."""
        if page.count < self.limit:
            return None
        return {"offset": state["offset"] + page.count}


class CursorPaging(_Paging):
    """A token in each response body names the next page; no token means the last page."""

    style: Literal["cursor"]
    """``cursor``: a token from the body."""
    param: str = "cursor"
    """The query parameter that sends the token back."""
    next: str
    """Dotted path of the next page's token in the body, e.g. ``meta.next_cursor``."""

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """A checkpoint of this style holds the token (none before the first page)."""
        return set(state) <= {"cursor", "skip"} and isinstance(state.get("cursor", ""), str)

    def query(self, state: State) -> dict[str, Any]:
        """The token, from the second page on."""
        return {self.param: state["cursor"]} if "cursor" in state else {}

    def follow(self, state: State, page: _Page) -> State | None:
        """The token the body names, unless it is null, absent or empty."""
        found, token = _dig(page.body, self.next)
        if not found or token is None or token == "":
            return None
        return {"cursor": token if isinstance(token, str) else to_json_text(token)}


class LinkPaging(_Paging):
    """Follow the ``Link: <...>; rel="next"`` response header until there is none."""

    style: Literal["link"]
    """``link``: the ``Link`` header."""

    def accepts(self, state: Mapping[str, Any]) -> bool:
        """A checkpoint of this style holds the next URL (none before the first page)."""
        return set(state) <= {"url", "skip"} and isinstance(state.get("url", ""), str)

    def follow(self, state: State, page: _Page) -> State | None:
        """The ``rel="next"`` link, resolved against the page's URL."""
        return None if page.next_link is None else {"url": page.next_link}


Paginate = Annotated[
    NoPaging | PagePaging | OffsetPaging | CursorPaging | LinkPaging,
    Field(discriminator="style"),
]


class RetryOptions(BaseModel):
    """How transient failures (timeouts, connection errors, 429, 5xx) are retried."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=5, ge=1)
    """Attempts per request, the first included."""
    initial: float = Field(default=0.5, ge=0)
    """Seconds before the first retry; doubled on each retry, plus up to as much jitter."""
    max: float = Field(default=30, ge=0)
    """The longest wait between attempts, in seconds; caps ``Retry-After`` too."""


class CircuitBreakerOptions(BaseModel):
    """When to stop trying: consecutive failed attempts across the whole source."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=10, ge=1)
    """Consecutive failed attempts (any request) that open the circuit and fail the run."""


class HttpOptions(BaseModel):
    """A resource's ``source:`` when it reads a REST API that answers JSON."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"]
    url: str
    """The endpoint, ``http://`` or ``https://``; may carry a query string, not a
    ``user:password@`` (send credentials in ``headers:``)."""
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Query parameters sent with every request."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers, e.g. ``Authorization: "Bearer ${TOKEN}"``; never logged."""
    records: str | None = None
    """Dotted path of the array of records in the body; not set: found as for JSON files."""
    paginate: Paginate = Field(default_factory=NoPaging)
    """How to get the next page: ``style:`` none, page, offset, cursor or link."""
    cursor_param: str | None = None
    """Query parameter that receives the incremental bound (``incremental:``), if any."""
    timeout: float = Field(default=30, gt=0)
    """Seconds to wait for a connection or for data before the attempt counts as failed."""
    retry: RetryOptions = Field(default_factory=RetryOptions)
    """Backoff for transient failures."""
    circuit_breaker: CircuitBreakerOptions = Field(default_factory=CircuitBreakerOptions)
    """When repeated failures stop the run."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {shown_url(value)!r}")
        if "@" in parts.netloc:
            # httpx would quietly send a user:password@ as an Authorization header of its own.
            raise ValueError(
                "must not hold a user or password (user:password@); send credentials in "
                '`headers:` from a variable, e.g. `Authorization: "Bearer ${API_TOKEN}"`'
            )
        return value


# ---------------------------------------------------------------------------------------
# The source


@dataclass(frozen=True)
class _Page:
    """One response, parsed: what pagination needs to decide on the next request."""

    where: str
    body: Any
    items: list[Any]
    next_link: str | None

    @property
    def count(self) -> int:
        """How many records (readable or not) the page holds."""
        return len(self.items)


class HttpSource:
    """Yield the records of every page, in order; one batch per page (split at ``batch_size``)."""

    def __init__(self, options: HttpOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self._base_params: dict[str, Any] = dict(options.params)
        bound = context.cursor.after if context.cursor is not None else None
        if options.cursor_param is not None and bound is not None:
            self._base_params[options.cursor_param] = _query_value(bound)

    def batches(self) -> Generator[SourceBatch, None, None]:
        """Request page after page; each batch's checkpoint is the next request (None: done)."""
        paging = self.options.paginate
        state: State | None = self._first_state()
        pages = 0
        unreported = 0  # bytes of pages that held no record, counted on the next batch
        with RetryingClient(self.options) as client:
            while state is not None:
                url = self._request_url(state)
                where = self._where(url, state)
                response = client.get(url, where)
                page = self._page(response, where)
                pages += 1
                following = self._following(state, page)
                if paging.max_pages is not None and pages >= paging.max_pages:
                    following = None
                unreported += len(response.content)
                for batch in _page_batches(page, state, following, self.context, unreported):
                    unreported = 0
                    yield batch
                state = following

    # -- requests ------------------------------------------------------------------------

    def _first_state(self) -> State:
        resume = self.context.resume
        if resume is None:
            return self.options.paginate.first()
        paging = self.options.paginate
        if (
            not isinstance(resume, Mapping)
            or not paging.accepts(resume)
            or not _is_int(resume.get("skip", 0))
        ):
            raise SourceError(
                f"the stored checkpoint {to_json_text(resume)} does not fit "
                f"`paginate: {{style: {paging.style}}}` (was the pagination changed?); "
                "run with --full-refresh to start over",
                position=shown_url(self.options.url),
            )
        return dict(resume)

    def _request_url(self, state: State) -> httpx.URL:
        """The URL of the request ``state`` describes, with every query parameter."""
        import httpx

        url = httpx.URL(state.get("url", self.options.url))
        origin = httpx.URL(self.options.url)
        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
            raise SourceError(
                f"the next page's link points to another site ({shown_url(str(url))}); ladle "
                "follows links only on the site of `url`, so that headers go nowhere else",
                position=shown_url(self.options.url),
            )
        if url.userinfo:
            # httpx would send a link's user:password@ as Basic auth, in place of `headers:`.
            raise SourceError(
                f"the next page's link ({shown_url(str(url))}) holds a user or password; ladle "
                "sends only the credentials in `headers:`, so it stops here",
                position=shown_url(self.options.url),
            )
        present = set(url.params.keys())
        params = {k: v for k, v in self._base_params.items() if k not in present}
        params.update(self.options.paginate.query(state))
        return url.copy_merge_params(params) if params else url

    def _where(self, url: httpx.URL, state: State) -> str:
        """The page's position: path and pagination parameter, never headers or other params."""
        if "url" in state:
            shown = {k: v for k, v in url.params.multi_items() if k not in self._base_params}
        else:
            shown = self.options.paginate.label(state)
        return f"{url.path}?{urlencode(shown)}" if shown else url.path

    def _following(self, state: State, page: _Page) -> State | None:
        """The next request as it may be stored: a link without the configured parameters."""
        following = self.options.paginate.follow(state, page)
        if following is not None and "url" in following:
            import httpx

            link = httpx.URL(following["url"])
            for key in self._base_params:
                link = link.copy_remove_param(key)
            following = {"url": str(link)}
        if following is not None and following == {k: v for k, v in state.items() if k != "skip"}:
            raise SourceError(
                f"the API names the page just read as the next one ({to_json_text(following)}); "
                "reading on would loop forever",
                position=page.where,
            )
        return following

    # -- responses -----------------------------------------------------------------------

    def _page(self, response: httpx.Response, where: str) -> _Page:
        shown = f"GET {shown_url(str(response.request.url))}"
        try:
            body = json.loads(response.content)
        except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are no text
            kind = response.headers.get("content-type", "no content type")
            raise SourceError(
                f"{shown} returned a body that is not JSON ({kind}): {body_snippet(response)}",
                position=where,
            ) from None
        next_link = None
        if isinstance(self.options.paginate, LinkPaging) and "next" in response.links:
            next_link = str(response.url.join(response.links["next"]["url"]))
        return _Page(where, body, self._items(body, where, shown), next_link)

    def _items(self, body: Any, where: str, shown: str) -> list[Any]:
        """The array of records in ``body``: at ``records:``, or found as in a JSON file."""
        path = self.options.records
        if path is not None:
            found, value = _dig(body, path)
            if isinstance(value, list):
                return value
            what = "is not in the response" if not found else f"is {json_kind(value)}, not an array"
            raise SourceError(
                f"{shown}: records: {path!r} {what}; "
                "set `records:` to the dotted path of the array of records",
                position=where,
            )
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            for key in (*_ARRAY_KEYS, self.context.resource):
                value = body.get(key)
                if isinstance(value, list):
                    return value
            if isinstance(self.options.paginate, NoPaging):
                return [body]  # one object: the record, as in a JSON file
            keys = ", ".join((*_ARRAY_KEYS, repr(self.context.resource)))
            raise SourceError(
                f"{shown}: the response has no array of records under {keys}; "
                "set `records:` to the dotted path of the array of records",
                position=where,
            )
        raise SourceError(
            f"{shown}: the response is {json_kind(body)}, not an array or object of records",
            position=where,
        )


def _page_batches(
    page: _Page, state: State, following: State | None, context: SourceContext, size: int
) -> Iterator[SourceBatch]:
    """The page's records from ``skip`` on, in batches; a batch inside the page says so.

    The checkpoint of a batch that ends inside the page is the page's own request and
    how many of its records were read (``skip``); the page's last batch points past it.
    """
    step = context.batch_size
    here = {k: v for k, v in state.items() if k != "skip"}
    for first in range(state.get("skip", 0), page.count, step):
        end = min(first + step, page.count)
        checkpoint = following if end == page.count else {**here, "skip": end}
        yield _batch(page.items, first, end, where=page.where, size=size, checkpoint=checkpoint)
        size = 0


def _batch(
    items: list[Any], first: int, end: int, *, where: str, size: int, checkpoint: State | None
) -> SourceBatch:
    records: list[dict[str, Any]] = []
    positions: list[str] = []
    unreadable: list[Unreadable] = []
    for index in range(first, end):
        item, position = items[index], f"{where}#{index}"
        if isinstance(item, dict):
            records.append(item)
            positions.append(position)
        else:
            unreadable.append(Unreadable(position, to_json_text(item), not_an_object(item)))
    try:
        frame = records_to_frame(records)
    except ColumnClash as exc:
        raise SourceError(str(exc), position=where) from exc
    return SourceBatch(frame, positions, unreadable, bytes_read=size, checkpoint=checkpoint)


# ---------------------------------------------------------------------------------------
# Small pieces


def _dig(body: Any, path: str) -> tuple[bool, Any]:
    """The value at a dotted path in ``body``, and whether it is there at all."""
    value = body
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _query_value(value: CursorValue) -> str | int | float:
    """A cursor bound as a query parameter: datetimes in ISO 8601 UTC with ``Z``."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return value
