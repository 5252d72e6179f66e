"""The archiving HTTP client: every exchange is written before the connector sees it.

:class:`ArchivingHttpClient` implements the connector contract's ``HttpClient``
(``archiver.connector``) over a synchronous ``httpx.Client``:

- **Archive first.** Each exchange becomes a ``request`` and a ``response`` record
  (``WARC-Concurrent-To`` each other), appended to the :class:`ExchangeSink` before
  :meth:`ArchivingHttpClient.get` returns. Failed attempts (429, 5xx) and redirect hops are
  archived too: they are evidence of what the platform said. The response body is stored
  *raw* (read with ``iter_raw``: de-chunked, still content-encoded); see
  :mod:`archiver.http_records` for the exact bytes and what is redacted from them.
- **Credentials never written or logged.** ``auth_headers`` go on every API request and
  their values are registered as secrets when the client is built; secret-named headers and
  query parameters are redacted from records, target URIs and log events (which carry only
  redacted URLs), and registered secrets are scrubbed from archived bodies.
- **Retries under the platform's policy** (:mod:`archiver.ratelimit`): a 429/5xx waits what
  the policy says (``Retry-After``, quota reset), a dropped connection or timeout backs off
  with jitter. At most ``1 + max_retries`` attempts and ``max_wait`` seconds of waiting per
  call (a wait that would cross the budget is not started); then
  :class:`~archiver.errors.RateLimitedError` (the last answer was a 429) or
  :class:`~archiver.errors.PlatformUnavailableError`, naming the URL (redacted), the attempts
  and what was seen. When a response says the quota is used up, the next request to that
  host waits for the reset first (pacing, counted in the same budget).
- **Other statuses** (2xx, 4xx other than 429) are returned for the connector to judge;
  redirects (301/302/303/307/308) are followed, at most :data:`MAX_REDIRECTS`, each hop
  archived, and auth headers are dropped when a redirect leaves the original origin.
- **Media** (:meth:`ArchivingHttpClient.download`) streams to a temporary file while it is
  digested (``archiver.warc_media.spool_response``), under a size cap, and appends nothing:
  the pipeline decides between the response and a ``revisit`` in the item's partition.
  Downloads send ``Accept-Encoding: identity`` (the payload digest is then the media's own
  SHA-256) and no auth headers unless asked, so a token never travels to a CDN.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Protocol

import httpx

from archiver.config import HttpSettings
from archiver.errors import (
    CaptureError,
    MalformedResponseError,
    PlatformUnavailableError,
    RateLimitedError,
)
from archiver.http_records import (
    ArchivedResponse,
    Download,
    archived_response,
    exchange_records,
    register_header_secrets,
    register_query_secrets,
    spooled_exchange,
)
from archiver.logging import get_logger
from archiver.ratelimit import RateLimitPolicy
from archiver.redact import redact_text, redact_url
from archiver.warc_media import PayloadTooLargeError
from archiver.warc_records import RecordPointer, WarcRecord

__all__ = [
    "MAX_REDIRECTS",
    "ArchivingHttpClient",
    "Download",
    "ExchangeSink",
    "PayloadTooLargeError",
]

log = get_logger(__name__)

MAX_REDIRECTS = 5
#: Largest API body :meth:`ArchivingHttpClient.get` holds in memory.
DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: Largest body kept of a failed or redirect answer during a download (``WARC-Truncated``).
_ERROR_BODY_CAP = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
Params = Mapping[str, str | int | bool]


class ExchangeSink(Protocol):
    """Where :meth:`ArchivingHttpClient.get` appends records (the exchange-partition writer)."""

    def append(self, record: WarcRecord) -> RecordPointer: ...


@dataclass
class _Budget:
    """One call's attempts and waiting so far, and what each failed attempt saw."""

    target: httpx.URL
    attempts: int = 0
    waited: float = 0.0
    seen: list[str] = field(default_factory=list)

    @cached_property
    def url(self) -> str:
        """The URL, redacted: only worked out when a message or log event needs it."""
        return redact_url(str(self.target))


class _StatelessClient(httpx.Client):
    """An ``httpx.Client`` that keeps no cookies.

    Every request is the one the connector asked for, with its token, and nothing a
    platform set earlier: a replayed session cookie would make the archived requests
    depend on history (and extracting cookies cost more than the rest of ``send``).
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, _cookies: object) -> None:
        pass


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, *args: object, **kwargs: object) -> None:
        pass


_NO_COOKIES = _NoCookies()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ArchivingHttpClient:
    """``HttpClient`` that archives every exchange; see the module docstring."""

    def __init__(
        self,
        sink: ExchangeSink,
        *,
        policy: RateLimitPolicy,
        settings: HttpSettings | None = None,
        auth_headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utc_now,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        settings = settings if settings is not None else HttpSettings()
        self._sink = sink
        self._policy = policy
        self._auth = dict(auth_headers or {})
        register_header_secrets(self._auth)
        self._sleep = sleep
        self._clock = clock
        self._max_retries = settings.max_retries
        self._max_wait = settings.max_wait.total_seconds()
        self._max_body = max_body_bytes
        self._not_before: dict[str, datetime] = {}  # host -> when its quota resets (pacing)
        self._client = _StatelessClient(
            transport=transport,
            timeout=settings.timeout.total_seconds(),
            headers={"User-Agent": settings.user_agent},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ArchivingHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API requests

    def get(
        self,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ArchivedResponse:
        """GET ``url`` (``params`` merged into its query), archived before it is returned."""
        request = self._build(url, params, headers, auth=True, media=False)
        budget = _Budget(request.url)
        for _hop in range(MAX_REDIRECTS + 1):
            with self._attempts(request, budget) as (response, sent_at):
                records, raw, pointers = self._archive_in_memory(
                    request, response, sent_at, self._max_body
                )
                if len(raw) > self._max_body:
                    raise MalformedResponseError(
                        f"GET {budget.url}: the body is larger than {self._max_body} bytes; "
                        f"its first part was archived as {records[1].record_id}"
                    )
            next_request = self._redirect(request, response)
            if next_request is None:
                return archived_response(request, response, raw, pointers)
            request = next_request
        raise CaptureError(f"GET {budget.url}: more than {MAX_REDIRECTS} redirects")

    def _archive_in_memory(
        self, request: httpx.Request, response: httpx.Response, sent_at: datetime, cap: int
    ) -> tuple[tuple[WarcRecord, WarcRecord], bytes, tuple[RecordPointer, ...]]:
        """Read the body (up to ``cap`` + 1 bytes), build both records, append them."""
        records, raw = self._records(request, response, sent_at, cap)
        pointers = tuple(self._sink.append(record) for record in records)
        return records, raw, pointers

    def _records(
        self, request: httpx.Request, response: httpx.Response, sent_at: datetime, cap: int
    ) -> tuple[tuple[WarcRecord, WarcRecord], bytes]:
        """Read the body (up to ``cap`` + 1 bytes) and build both records of the exchange."""
        received_at = self._clock()
        raw = bytearray()
        for chunk in response.iter_raw():
            raw += chunk
            if len(raw) > cap:
                break
        truncated = len(raw) > cap
        body = bytes(raw[:cap]) if truncated else bytes(raw)
        records = exchange_records(
            request, response, body, sent_at=sent_at, received_at=received_at, truncated=truncated
        )
        return records, bytes(raw)

    # ------------------------------------------------------------------ media

    def download(
        self,
        url: str,
        *,
        max_bytes: int,
        tmp_dir: Path,
        authenticated: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Download:
        """Stream ``url`` into a temporary file in ``tmp_dir``, digesting it on the way.

        Nothing is appended: see :class:`Download`. A body over ``max_bytes`` raises
        :class:`PayloadTooLargeError` as soon as the cap is crossed.
        """
        request = self._build(url, None, headers, auth=authenticated, media=True)
        budget = _Budget(request.url)
        history: list[WarcRecord] = []
        for _hop in range(MAX_REDIRECTS + 1):
            with self._attempts(request, budget, history) as (response, sent_at):
                next_request = self._redirect(request, response)
                if next_request is None:
                    request_rec, spooled = spooled_exchange(
                        request,
                        response,
                        sent_at=sent_at,
                        received_at=self._clock(),
                        max_bytes=max_bytes,
                        tmp_dir=tmp_dir,
                    )
                    log.debug("http.download", url=budget.url, bytes=spooled.payload_size)
                    return Download(
                        request_rec,
                        spooled,
                        response.status_code,
                        response.headers,
                        str(request.url),
                        tuple(history),
                    )
                records, _ = self._records(request, response, sent_at, _ERROR_BODY_CAP)
                history.extend(records)
            request = next_request
        raise CaptureError(f"GET {budget.url}: more than {MAX_REDIRECTS} redirects")

    # ------------------------------------------------------------------ the retry loop

    @contextmanager
    def _attempts(
        self,
        request: httpx.Request,
        budget: _Budget,
        history: list[WarcRecord] | None = None,
    ) -> Iterator[tuple[httpx.Response, datetime]]:
        """Yield the first open response not to be retried (and when it was sent).

        Every retried answer is archived: to ``history`` (downloads) or to the sink.
        """
        while True:
            self._pace(request, budget)
            budget.attempts += 1
            sent_at = self._clock()
            try:
                response = self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                what = f"{type(exc).__name__} ({redact_text(str(exc)) or 'no detail'})"
                self._wait_or_give_up(budget, what, self._policy.backoff(budget.attempts), None)
                continue
            try:
                delay = self._policy.retry_delay(
                    response.status_code, response.headers, budget.attempts, self._clock()
                )
                if delay is None:
                    self._note_quota(request, response)
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("http.exchange", url=budget.url, status=response.status_code)
                    yield response, sent_at
                    return
                try:
                    if history is None:
                        self._archive_in_memory(request, response, sent_at, self._max_body)
                    else:
                        records, _ = self._records(request, response, sent_at, _ERROR_BODY_CAP)
                        history.extend(records)
                except httpx.TransportError as exc:
                    delay = self._policy.backoff(budget.attempts)
                    what = f"{response.status_code} then {type(exc).__name__}"
                else:
                    what = str(response.status_code)
            finally:
                response.close()
            self._wait_or_give_up(budget, what, delay, response.status_code)

    def _wait_or_give_up(
        self, budget: _Budget, what: str, delay: float, status: int | None
    ) -> None:
        budget.seen.append(what)
        if budget.attempts > self._max_retries or budget.waited + delay > self._max_wait:
            raise self._give_up(budget, delay, status)
        log.warning("http.retry", url=budget.url, saw=what, wait_seconds=round(delay, 3))
        self._sleep(delay)
        budget.waited += delay

    def _give_up(self, budget: _Budget, delay: float, status: int | None) -> CaptureError:
        why = (
            f"the retry limit ({self._max_retries} retries) was reached"
            if budget.attempts > self._max_retries
            else f"waiting {delay:.1f} s more would pass the max_wait budget of "
            f"{self._max_wait:.0f} s"
        )
        message = (
            f"GET {budget.url}: gave up after {budget.attempts} attempt(s) and "
            f"{budget.waited:.1f} s of waiting; saw {', '.join(budget.seen)}; {why}"
        )
        if status == 429:
            return RateLimitedError(message + "; the platform's rate limit", retry_after=delay)
        return PlatformUnavailableError(message)

    def _pace(self, request: httpx.Request, budget: _Budget) -> None:
        not_before = self._not_before.get(request.url.host)
        if not_before is None:
            return
        wait = (not_before - self._clock()).total_seconds()
        if wait <= 0:
            del self._not_before[request.url.host]
            return
        if budget.waited + wait > self._max_wait:
            raise RateLimitedError(
                f"GET {budget.url}: the quota of {request.url.host} is used up for another "
                f"{wait:.1f} s, more than the max_wait budget of {self._max_wait:.0f} s "
                f"allows (already waited {budget.waited:.1f} s)",
                retry_after=wait,
            )
        log.info("http.pace", host=request.url.host, wait_seconds=round(wait, 3))
        self._sleep(wait)
        budget.waited += wait

    def _note_quota(self, request: httpx.Request, response: httpx.Response) -> None:
        now = self._clock()
        wait = self._policy.pace(response.headers, now)
        if wait > 0:
            self._not_before[request.url.host] = now + timedelta(seconds=wait)

    # ------------------------------------------------------------------ requests

    def _build(
        self,
        url: str,
        params: Params | None,
        headers: Mapping[str, str] | None,
        *,
        auth: bool,
        media: bool,
    ) -> httpx.Request:
        try:
            if params and "?" not in url:
                # One parse and nothing to merge: the params are the URL's whole query.
                target = httpx.URL(url, params=params)
                query: httpx.URL | Params = params
            else:
                target = query = httpx.URL(url)
                if params:
                    # httpx's own ``params=`` replaces the URL's query; merge instead.
                    target = query = target.copy_merge_params(dict(params))
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise CaptureError(f"cannot GET {redact_text(url)}: {redact_text(str(exc))}") from None
        if target.scheme not in ("http", "https"):
            raise CaptureError(f"cannot GET {redact_text(url)}: not an http(s) URL")
        merged = httpx.Headers(self._auth if auth else None)
        merged.update(headers or {})
        if media and "accept-encoding" not in merged:
            merged["Accept-Encoding"] = "identity"  # the payload digest is the media's own
        register_header_secrets(headers or {})  # the auth headers were registered at start
        register_query_secrets(query)
        return self._client.build_request("GET", target, headers=merged)

    def _redirect(self, request: httpx.Request, response: httpx.Response) -> httpx.Request | None:
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return None
        target = request.url.join(location)
        headers = httpx.Headers(request.headers)
        if (target.scheme, target.host, target.port) != (
            request.url.scheme,
            request.url.host,
            request.url.port,
        ):
            for name in list(self._auth):
                headers.pop(name, None)
        headers.pop("Host", None)
        register_query_secrets(target)
        return self._client.build_request("GET", target, headers=headers)
