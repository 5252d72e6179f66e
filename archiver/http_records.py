"""What the archiving HTTP client writes and returns: heads as sent and received, redacted.

:mod:`archiver.http` does the talking (retries, pacing, streaming); this module turns one
exchange into WARC records and into the :class:`ArchivedResponse` a connector sees.

The archived bytes
==================

- **Request record**: the request line and the header fields exactly as httpx sent them
  (``request.headers.raw``, order and case kept), with credentials removed: secret-named
  headers (``Authorization``, ``Cookie``, ``X-Auth-Token``…) get ``[REDACTED]``, secret
  query parameters (``access_token``…) and registered secrets are removed from the request
  target and ``WARC-Target-URI`` (:func:`archiver.redact.redact_url`). The real request still
  carried them.
- **Response record**: the status line and header fields as received, then the body *as
  received*: the bytes httpx's ``iter_raw`` yields, i.e. after HTTP/1.1 de-chunking and before
  any ``Content-Encoding`` is undone. So a gzip answer is archived gzipped, under its
  ``Content-Encoding: gzip``. Two header changes keep head and body honest:

  - ``Transfer-Encoding`` becomes ``X-Archive-Orig-Transfer-Encoding``. The transfer coding
    is a hop-by-hop framing that h11 removed before the body reached us; a head that still
    said ``chunked`` over a de-chunked body would make readers (warcio, replay tools) try to
    de-chunk it again. The ``X-Archive-Orig-`` prefix is the one web archives use for a
    header kept for the record but no longer in force.
  - Secret-named response headers (``Set-Cookie``…) get ``[REDACTED]``; other values lose
    URL credentials and registered secrets (:func:`archiver.redact.redact_text`).

- **Registered secrets in a body.** If a secret registered with
  :func:`archiver.redact.register_secret` (the client registers its own auth header values)
  appears in the body, verbatim, percent-/JSON-escaped or base64-encoded, in the raw bytes or
  in the content-decoded ones, the archived body is the *decoded* content with every such
  form replaced by ``[REDACTED]``. Its head then says so truthfully: ``Content-Encoding`` and
  ``Content-Length`` become ``X-Archive-Orig-…`` and a new ``Content-Length`` is written.

Whatever was changed is named in the record's ``WARC-Archiver-Redacted`` header (for
example ``header:Authorization, query, registered-secret``), so a reader knows the block is
not byte for byte what crossed the wire, and why.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from archiver import redact
from archiver.errors import MalformedResponseError
from archiver.redact import REDACTED, is_secret_name, redact_text, redact_url, register_secret
from archiver.warc_media import SpooledResponse, spool_response
from archiver.warc_records import (
    RecordPointer,
    WarcRecord,
    http_head,
    new_record_id,
    request_record,
    response_record,
)

__all__ = [
    "REDACTED_HEADER",
    "ArchivedResponse",
    "Download",
    "RawHead",
    "archived_response",
    "decode_body",
    "exchange_records",
    "parse_links",
    "redaction_header",
    "register_header_secrets",
    "register_query_secrets",
    "request_head",
    "response_head",
    "scrub_body",
    "secret_forms",
    "spooled_exchange",
    "with_headers",
]

#: WARC header naming what was removed from a record's block.
REDACTED_HEADER = "WARC-Archiver-Redacted"
ORIG_PREFIX = "X-Archive-Orig-"
_REDACTED_BYTES = REDACTED.encode("ascii")


@dataclass(frozen=True, slots=True)
class RawHead:
    """An HTTP head ready for a record, and what was redacted from it."""

    target_uri: str
    head: bytes
    notes: tuple[str, ...] = ()


def _text(value: bytes) -> str:
    return value.decode("iso-8859-1")


#: ``is_secret_name`` per header or parameter name: the same few names come on every
#: exchange, and the rule (a pure function of the name) splits and lowercases each time.
_secret_name = functools.lru_cache(maxsize=1024)(is_secret_name)


def register_header_secrets(headers: Mapping[str, str]) -> None:
    """Register the values of secret-named headers, and their credentials after the scheme.

    ``Authorization: Bearer abc…`` registers both ``Bearer abc…`` and ``abc…``, since a
    platform echoing the token would echo it without the scheme.
    """
    for name, value in headers.items():
        if value and _secret_name(name):
            register_secret(value)
            scheme, sep, credentials = value.strip().partition(" ")
            if sep and scheme.isalpha():
                register_secret(credentials.strip())


def register_query_secrets(url: httpx.URL | Mapping[str, str | int | bool]) -> None:
    """Register the values of secret-named query parameters (``access_token``…).

    ``url`` may also be the parameters themselves, when they are the URL's whole query.
    """
    if isinstance(url, httpx.URL):
        items = url.params.multi_items()
    else:  # the values as httpx writes them into the query
        items = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in url.items()]
    for name, value in items:
        if value and _secret_name(name):
            register_secret(value)


def request_head(request: httpx.Request, http_version: str = "HTTP/1.1") -> RawHead:
    """The request line and headers as sent, credentials removed (module docstring)."""
    real = str(request.url)
    target = redact_url(real)
    notes = ["query"] if target != real else []
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    version = "HTTP/2" if http_version == "HTTP/2" else "HTTP/1.1"
    fields: list[tuple[str, str]] = []
    cache = _header_cleaner()
    for raw_name, raw_value in request.headers.raw:
        name, value = _text(raw_name), _text(raw_value)
        clean = _cleaned_value(cache, name, value)
        if clean != value:
            notes.append(f"header:{name}")
        fields.append((name, clean))
    head = http_head(f"{request.method} {path} {version}", fields)
    return RawHead(target, head, tuple(notes))


def _clean_header(name: str, value: str) -> str:
    if value and _secret_name(name):
        return REDACTED
    return redact_text(value)


#: Cleaned header values for one state of the secret registry: most fields repeat on every
#: exchange (User-Agent, Accept, Content-Type, rate-limit policy), and cleaning one runs the
#: redaction rules' regexes. A new registered secret starts a new cache.
_cleaned: tuple[frozenset[str], dict[tuple[str, str], str]] = (frozenset(), {})
_CLEANED_MAX = 4096


def _header_cleaner() -> dict[tuple[str, str], str]:
    """The cache of cleaned values for the registry as it is now (see ``_cleaned``)."""
    global _cleaned
    secrets, cache = _cleaned
    now = redact.registered_secrets()
    if now != secrets or len(cache) > _CLEANED_MAX:
        _cleaned = (now, {})
    return _cleaned[1]


def _cleaned_value(cache: dict[tuple[str, str], str], name: str, value: str) -> str:
    key = (name, value)
    clean = cache.get(key)
    if clean is None:
        clean = cache[key] = _clean_header(name, value)
    return clean


def response_head(
    response: httpx.Response, target_uri: str, *, body_rewritten_length: int | None = None
) -> RawHead:
    """The status line and headers as received, made true for the archived body.

    ``body_rewritten_length`` is set when the archived body is the decoded, scrubbed content
    (:func:`scrub_body`): ``Content-Encoding``/``Content-Length`` are then kept as
    ``X-Archive-Orig-…`` and a ``Content-Length`` of the archived body is added.
    """
    notes: list[str] = []
    fields: list[tuple[str, str]] = []
    rewritten = body_rewritten_length is not None
    cache = _header_cleaner()
    for raw_name, raw_value in response.headers.raw:
        name, value = _text(raw_name), _text(raw_value)
        lower = name.lower()
        if lower == "transfer-encoding" or (
            rewritten and lower in ("content-encoding", "content-length")
        ):
            fields.append((ORIG_PREFIX + name, value))
            continue
        clean = _cleaned_value(cache, name, value)
        if clean != value:
            notes.append(f"header:{name}")
        fields.append((name, clean))
    if rewritten:
        fields.append(("Content-Length", str(body_rewritten_length)))
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    head = http_head(f"{response.http_version} {response.status_code}{reason}", fields)
    return RawHead(target_uri, head, tuple(notes))


def with_headers(record: WarcRecord, *headers: tuple[str, str]) -> WarcRecord:
    """``record`` with more WARC headers (not covered by the digests, so no re-hashing)."""
    extra = tuple(h for h in headers if h[1])
    return replace(record, headers=record.headers + extra) if extra else record


def redaction_header(notes: Iterable[str]) -> tuple[str, str]:
    """The ``WARC-Archiver-Redacted`` header for ``notes`` (empty value when none)."""
    return (REDACTED_HEADER, ", ".join(dict.fromkeys(notes)))


# --------------------------------------------------------------------------- bodies


def secret_forms() -> list[bytes]:
    """Every byte form of every registered secret a body could carry, longest first.

    The registry already holds each secret verbatim, percent-encoded and JSON-escaped; this
    adds the UTF-8 bytes' standard and URL-safe base64, with and without padding.
    """
    forms: set[bytes] = set()
    for secret in redact.registered_secrets():
        raw = secret.encode("utf-8")
        forms.add(raw)
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            forms.update((encoded, encoded.rstrip(b"=")))
    usable = (f for f in forms if len(f) >= redact.MIN_REGISTERED_SECRET_LENGTH)
    return sorted(usable, key=len, reverse=True)


def decode_body(raw: bytes, headers: httpx.Headers) -> bytes:
    """``raw`` with its ``Content-Encoding`` undone by httpx's own decoders.

    Raises ``httpx.DecodingError`` when the bytes do not match the declared encoding.
    """
    if not headers.get("content-encoding"):
        return raw
    return httpx.Response(
        200, headers={"content-encoding": headers["content-encoding"]}, content=raw
    ).content


def scrub_body(raw: bytes, decoded: bytes | None) -> bytes | None:
    """The body to archive instead of ``raw`` if a registered secret is in it, else None.

    It is ``decoded`` (or ``raw`` when it could not be decoded) with every form of every
    registered secret replaced by ``[REDACTED]``.
    """
    forms = secret_forms()
    if not forms:
        return None
    if not any(f in raw or (decoded is not None and f in decoded) for f in forms):
        return None
    pattern = re.compile(b"|".join(re.escape(f) for f in forms))
    return pattern.sub(_REDACTED_BYTES, decoded if decoded is not None else raw)


def parse_links(headers: httpx.Headers, base_url: str) -> dict[str, str]:
    """RFC 8288 ``Link`` header as ``rel -> absolute URL`` (each of ``rel="next prev"``)."""
    value = headers.get("link")
    if not value:
        return {}
    links: dict[str, str] = {}
    for link in httpx.Response(200, headers={"link": value}).links.values():
        url, rels = link.get("url"), link.get("rel")
        if url and rels:
            for rel in rels.split():
                links.setdefault(rel.lower(), urljoin(base_url, url))
    return links


# --------------------------------------------------------------------------- records


def exchange_records(
    request: httpx.Request,
    response: httpx.Response,
    body: bytes,
    *,
    sent_at: datetime,
    received_at: datetime,
    truncated: bool = False,
) -> tuple[WarcRecord, WarcRecord]:
    """The request and response records of an exchange whose raw body is in memory.

    ``truncated``: ``body`` is only the first part of a longer one (``WARC-Truncated:
    length``); it is archived as it is, without a secret scrub, which needs the whole body.
    """
    try:
        decoded: bytes | None = decode_body(body, response.headers)
    except httpx.DecodingError:
        decoded = None
    scrubbed = None if truncated else scrub_body(body, decoded)
    req = request_head(request, response.http_version)
    rewritten = len(scrubbed) if scrubbed is not None else None
    resp = response_head(response, req.target_uri, body_rewritten_length=rewritten)
    req_id, resp_id = new_record_id(), new_record_id()
    request_rec = request_record(
        req.target_uri, req.head, concurrent_to=resp_id, date=sent_at, record_id=req_id
    )
    response_rec = response_record(
        req.target_uri,
        resp.head,
        scrubbed if scrubbed is not None else body,
        concurrent_to=req_id,
        date=received_at,
        record_id=resp_id,
    )
    notes = [*resp.notes, *(["registered-secret"] if scrubbed is not None else [])]
    truncation = ("WARC-Truncated", "length" if truncated else "")
    return (
        with_headers(request_rec, redaction_header(req.notes)),
        with_headers(response_rec, redaction_header(notes), truncation),
    )


def spooled_exchange(
    request: httpx.Request,
    response: httpx.Response,
    *,
    sent_at: datetime,
    received_at: datetime,
    max_bytes: int,
    tmp_dir: Path,
) -> tuple[WarcRecord, SpooledResponse]:
    """The request record and the response streamed (``iter_raw``) into a spool file.

    The body is not scanned for registered secrets: it is never held whole, and media
    requests carry no credentials unless the caller asks (see ``archiver.http``).
    """
    req = request_head(request, response.http_version)
    resp = response_head(response, req.target_uri)
    req_id, resp_id = new_record_id(), new_record_id()
    spooled = spool_response(
        req.target_uri,
        resp.head,
        response.iter_raw(),
        max_bytes=max_bytes,
        tmp_dir=tmp_dir,
        concurrent_to=req_id,
        date=received_at,
        record_id=resp_id,
    )
    spooled.record = with_headers(spooled.record, redaction_header(resp.notes))
    request_rec = request_record(
        req.target_uri, req.head, concurrent_to=resp_id, date=sent_at, record_id=req_id
    )
    return with_headers(request_rec, redaction_header(req.notes)), spooled


# --------------------------------------------------------------------------- the response


@dataclass(frozen=True, slots=True)
class ArchivedResponse:
    """An HTTP response whose request and response records are already in the sink.

    Implements the connector contract's ``Response``. ``url`` is the real URL (it may carry
    credentials: never log it); ``content`` is decoded per ``Content-Encoding``;
    ``evidence`` is the response record's ``WARC-Record-ID``; ``records`` the pointers the
    sink returned for this exchange (request, response).
    """

    status_code: int
    url: str
    headers: httpx.Headers
    content: bytes
    evidence: str
    links: Mapping[str, str] = field(default_factory=dict)
    records: tuple[RecordPointer, ...] = ()

    @property
    def text(self) -> str:
        """The content as text, in the charset the response declares (UTF-8 otherwise)."""
        content_type = {"content-type": self.headers.get("content-type", "")}
        return httpx.Response(200, headers=content_type, content=self.content).text

    def json(self) -> Any:
        """The content as JSON; :class:`MalformedResponseError` naming the (redacted) URL if not."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = self.headers.get("content-type", "no content type")
            raise MalformedResponseError(
                f"{redact_url(self.url)} answered {self.status_code} with a body that is not "
                f"valid JSON ({kind}, {len(self.content)} bytes): {exc}; it was archived as "
                f"{self.evidence}"
            ) from None


def archived_response(
    request: httpx.Request,
    response: httpx.Response,
    raw: bytes,
    records: tuple[RecordPointer, ...],
) -> ArchivedResponse:
    """What the connector gets for an archived exchange (``records``: request, response)."""
    url = str(request.url)
    evidence = records[-1].record_id
    try:
        content = decode_body(raw, response.headers)
    except httpx.DecodingError as exc:
        raise MalformedResponseError(
            f"GET {redact_url(url)}: the body does not match its Content-Encoding "
            f"{response.headers.get('content-encoding')!r} ({exc}); archived as {evidence}"
        ) from None
    links = parse_links(response.headers, url)
    return ArchivedResponse(
        response.status_code, url, response.headers, content, evidence, links, records
    )


@dataclass
class Download:
    """A media download, spooled and digested, not yet appended anywhere.

    Append :attr:`request` and then :attr:`response`'s record (or a revisit when the
    partition already holds ``response.payload_digest``); :attr:`history` holds the records
    of earlier exchanges of this download (failed attempts, redirect hops), in order, for
    the same partition. ``status_code`` may be a 4xx (a removed media file): the body is
    then the platform's error page, for the pipeline to judge. ``close()`` (or ``with``)
    deletes the temporary file.
    """

    request: WarcRecord
    response: SpooledResponse
    status_code: int
    headers: httpx.Headers
    url: str  # the real URL of the final hop: may carry credentials, never log it
    history: tuple[WarcRecord, ...] = ()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
