"""The ``http`` source's client: retries with backoff, and a circuit breaker for the source.

A transient failure (a timeout, a lost connection, 429, 5xx) is retried with exponential
backoff and jitter, honouring ``Retry-After``; consecutive failed attempts across the
whole source open the circuit and fail the run; any other error status is reported with
what to check. URLs in messages and logs go through :func:`shown_url`, so that neither
userinfo nor query string (where secrets live) is ever shown.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from ladle.errors import SourceError

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

    from ladle.sources.http_api import HttpOptions

log = structlog.get_logger("ladle")

_SNIPPET = 200


class _Transient(Exception):
    """A failed attempt worth another: a timeout, a lost connection, 429 or 5xx."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class RetryingClient:
    """One httpx client for the source, with the retry policy and the circuit breaker.

    The breaker counts failed attempts since the last success, across every request
    of the source: it trips even when each request alone would still be retried.
    """

    def __init__(self, options: HttpOptions) -> None:
        import httpx
        from tenacity import wait_exponential, wait_random

        # Redirects are not followed: httpx would forward every header but Authorization to
        # another site (an X-Api-Key with it); a redirect is reported with where it points.
        self._http = httpx.Client(headers=options.headers, timeout=options.timeout)
        self._options = options
        self._failures = 0
        retry = options.retry
        # initial, 2 x initial, 4 x initial... plus up to `initial` of jitter, so that
        # clients failing together do not retry together.
        self._backoff = wait_exponential(multiplier=retry.initial, max=retry.max) + wait_random(
            0, retry.initial
        )

    def __enter__(self) -> RetryingClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def get(self, url: httpx.URL, where: str) -> httpx.Response:
        """The response to a GET, after retries; raises SourceError when it cannot be had."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        retry = self._options.retry
        retrying = Retrying(
            stop=stop_after_attempt(retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, url, where)
        except _Transient as exc:
            raise SourceError(
                f"gave up after {retry.attempts} attempts: GET {shown_url(str(url))} "
                f"({exc.detail})",
                position=where,
            ) from exc

    def _attempt(self, url: httpx.URL, where: str) -> httpx.Response:
        import httpx

        try:
            response = self._http.get(url)
        except httpx.TimeoutException as exc:
            raise self._failed(url, where, f"last error: timed out, {type(exc).__name__}") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise self._failed(url, where, f"last error: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SourceError(
                f"GET {shown_url(str(url))} failed: {type(exc).__name__}: {exc}", position=where
            ) from exc
        status = response.status_code
        if status == 429 or status >= 500:  # noqa: PLR2004 - Too Many Requests
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise self._failed(url, where, f"last status {status}", retry_after)
        if not response.is_success:
            raise SourceError(_refusal(response), position=where)
        self._failures = 0
        return response

    def _failed(
        self, url: httpx.URL, where: str, detail: str, retry_after: float | None = None
    ) -> Exception:
        """Count a failed attempt: a retryable error, or the circuit opening."""
        self._failures += 1
        limit = self._options.circuit_breaker.failures
        if self._failures >= limit:
            return SourceError(
                f"circuit open after {limit} consecutive failures: GET {shown_url(str(url))} "
                f"({detail})",
                position=where,
            )
        return _Transient(detail, retry_after)

    def _wait(self, state: RetryCallState) -> float:
        """``Retry-After`` when the server sent one, else exponential backoff with jitter."""
        retry = self._options.retry
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _Transient) and failure.retry_after is not None:
            return min(failure.retry_after, retry.max)
        return min(float(self._backoff(state)), retry.max)

    def _log_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        url, where = state.args
        log.warning(
            "http retry",
            url=shown_url(str(url)),
            page=where,
            attempt=state.attempt_number,
            attempts=self._options.retry.attempts,
            reason=failure.detail if isinstance(failure, _Transient) else repr(failure),
            wait=round(state.next_action.sleep, 3) if state.next_action else None,
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _refusal(response: httpx.Response) -> str:
    """A client error's message: what was asked, the answer, and what to check."""
    status = response.status_code
    message = (
        f"GET {shown_url(str(response.request.url))} returned HTTP {status} "
        f"{response.reason_phrase}: {body_snippet(response)}"
    )
    if status in (401, 403):
        message += "; check the credentials in `headers:` (and the variables they read)"
    elif response.is_redirect:
        target = shown_url(str(response.url.join(response.headers["location"])))
        message += f"; the API moved to {target}: set `url:` to it"
    return message


def shown_url(url: str) -> str:
    """The URL without userinfo, query string or fragment: safe for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


def body_snippet(response: httpx.Response) -> str:
    """The start of a response body on one line, for an error message."""
    text = " ".join(response.content[: _SNIPPET * 4].decode("utf-8", "replace").split())
    if not text:
        return "(empty body)"
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
