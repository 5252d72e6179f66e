"""WARC/1.1 records of the archive's record model, with SHA-256 digests computed once.

A builder here turns what the caller holds (an HTTP head and body, a normalized item, an
export entry, a metadata document) into a :class:`WarcRecord` whose block and payload
digests are already computed: every byte is fed once to each digest that covers it, while
the builder holds it (or, for ``archiver.warc_media.spool_response``, while it streams
past into a temporary file). The writer (``archiver.warc``) then only serializes; it never
hashes and never reads a body twice to digest it.

Digests follow the WARC convention ``sha256:<BASE32>``, which is what ``warcio check``
verifies. For records whose block is not an HTTP message the payload *is* the block, so
their payload digest is the block digest, computed once. For ``request``/``response``/
``revisit`` records the payload is what follows the HTTP head, as warcio reads it: the head
ends at the first line that is blank after stripping whitespace.

This module also defines the values the writer and the recovery scanner hand out:
:class:`RecordPointer` and :class:`ClosedWarc`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from archiver.layout import Partition

WARC_VERSION = "WARC/1.1"
#: Record types whose block is an HTTP message when the target URI is http(s) (warcio's rule).
HTTP_RECORD_TYPES = frozenset({"request", "response", "revisit"})
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
#: Longest HTTP head accepted (and that the recovery scanner buffers to find the payload).
MAX_HTTP_HEAD = 1 << 20
HTTP_REQUEST_TYPE = "application/http; msgtype=request"
HTTP_RESPONSE_TYPE = "application/http; msgtype=response"
WARC_FIELDS_TYPE = "application/warc-fields"

_DIGEST = re.compile(r"^sha256:[A-Z2-7]{52}=*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
#: A character a target URI may not hold: whitespace (``str.isspace``), controls, ``<>``.
_BAD_URI_CHAR = re.compile(r"[\s\x00-\x1f<>\x7f]")
_VISIBLE_ASCII = re.compile(rb"[!-~]")
_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32_ALPHABET for b in _B32_ALPHABET]
_B32_SHIFTS = tuple(range(250, -1, -10))
#: Headers the builders and the writer own; ``extra_headers`` may not set them.
_MANAGED = frozenset(
    {
        *("warc-type", "warc-record-id", "warc-date", "warc-target-uri", "warc-filename"),
        *("warc-block-digest", "warc-payload-digest", "warc-warcinfo-id"),
        *("content-type", "content-length"),
    }
)


class Hasher(Protocol):
    """The part of a hashlib object the builders use."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


#: Factory of every record digest; tests replace it to count the bytes each digest sees.
new_sha256: Callable[[], Hasher] = hashlib.sha256


def digest_label(hasher: Hasher) -> str:
    """``sha256:<BASE32>`` for a finished SHA-256 hasher (the WARC digest convention)."""
    digest = hasher.digest()
    if len(digest) != 32:
        return "sha256:" + base64.b32encode(digest).decode("ascii")
    # base64.b32encode, specialised: 256 bits + 4 zero bits are 26 groups of 10 bits, each
    # two base32 letters; twice as fast, and every record carries one or two of these.
    bits = int.from_bytes(digest, "big") << 4
    return "sha256:" + "".join([_B32_PAIRS[(bits >> s) & 1023] for s in _B32_SHIFTS]) + "===="


def label_to_hex(label: str) -> str:
    """The lowercase hex SHA-256 of a ``sha256:<BASE32>`` label (the catalog's media key)."""
    if not _DIGEST.fullmatch(label):
        raise ValueError(f"not a sha256 base32 digest label: {label!r}")
    return base64.b32decode(label.removeprefix("sha256:")).hex()


def new_record_id() -> str:
    """A fresh ``<urn:uuid:…>`` WARC-Record-ID."""
    return f"<urn:uuid:{uuid.uuid4()}>"


def format_warc_date(moment: datetime) -> str:
    """WARC/1.1 date with microseconds, UTC (``2024-05-01T12:00:00.000000Z``)."""
    if moment.tzinfo is None:
        raise ValueError("WARC dates need a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class RecordPointer:
    """Where one record lies: the gzip member at ``offset``/``length`` in file ``file_id``.

    ``offset`` and ``length`` are exactly what ``warcio index -f offset,length`` reports, so
    ``file[offset:offset + length]`` is a complete gzip member holding just this record.
    """

    file_id: str
    offset: int
    length: int
    record_id: str
    block_digest: str
    payload_digest: str | None
    warc_type: str
    target_uri: str | None
    date: datetime
    #: The record's ``WARC-Refers-To`` and ``WARC-Concurrent-To`` headers, if it has them.
    refers_to: str | None = None
    concurrent_to: str | None = None


def link_values(headers: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """``refers_to``/``concurrent_to`` of a :class:`RecordPointer` from a record's headers."""
    found: dict[str, str | None] = {"refers_to": None, "concurrent_to": None}
    for name, value in headers:
        field_name = {"warc-refers-to": "refers_to", "warc-concurrent-to": "concurrent_to"}.get(
            name.lower()
        )
        if field_name is not None and found[field_name] is None:
            found[field_name] = value
    return found


@dataclass(frozen=True, slots=True)
class ClosedWarc:
    """A spool WARC that is closed, verified by one full re-read and renamed ``.warc.gz``."""

    path: Path
    file_id: str
    partition: Partition
    sha256: str
    size: int
    record_count: int
    first_record_at: datetime
    last_record_at: datetime


@dataclass(frozen=True, slots=True)
class WarcRecord:
    """One record ready to append: headers plus a block whose digests are already known.

    The block is ``block_head`` (an HTTP head, or empty) followed by ``body``; ``body`` is
    bytes, or a seekable temporary file for a spooled response (see :func:`spool_response`).
    ``date`` None means "when the writer appends it".
    """

    warc_type: str
    record_id: str
    target_uri: str | None
    content_type: str
    block_head: bytes
    body: bytes | BinaryIO
    block_length: int
    block_digest: str
    payload_digest: str | None
    headers: tuple[tuple[str, str], ...] = ()
    date: datetime | None = None
    #: CRC-32 of ``body`` when it was spooled: lets the writer frame a stored gzip member
    #: around the file without reading it back (see :func:`archiver.warc.WarcWriter.append`).
    body_crc32: int | None = None


def check_header_value(value: str, what: str) -> str:
    """Return ``value`` if it can be a WARC header value (no CR, LF or NUL)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} must not contain CR, LF or NUL: {value!r}")
    return value


def check_target_uri(uri: str) -> str:
    """Return ``uri`` if it is usable as WARC-Target-URI (warcio rewrites spaces and <>)."""
    if not uri or _BAD_URI_CHAR.search(uri):
        raise ValueError(f"target URI must be non-empty, without whitespace or <>: {uri!r}")
    return uri


def is_blank_http_line(line: bytes) -> bool:
    """Whether warcio ends an HTTP head at this line (blank once decoded and stripped)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("iso-8859-1")
    return not text.strip()


def http_head(start_line: str | bytes, headers: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """Serialize an HTTP start line and header fields (e.g. httpx's ``headers.raw``)."""

    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("iso-8859-1")

    lines = [raw(start_line)] + [raw(name) + b": " + raw(value) for name, value in headers]
    return check_http_head(b"".join(line + b"\r\n" for line in lines) + b"\r\n")


def check_http_head(head: bytes) -> bytes:
    """Return ``head`` if warcio will split it from the body exactly where it ends.

    It must end with CRLF CRLF and hold no blank line before that, since warcio (and so
    ``warcio check``) starts the payload after the first blank line.
    """
    if len(head) > MAX_HTTP_HEAD:
        raise ValueError(f"HTTP head is {len(head)} bytes, more than {MAX_HTTP_HEAD}")
    if not head.endswith(b"\r\n\r\n"):
        raise ValueError("HTTP head must end with CRLF CRLF")
    lines = head[:-2].split(b"\n")[:-1]
    # A line with a visible ASCII character is not blank in any decoding: only the others
    # need the full test.
    if not lines or any(
        _VISIBLE_ASCII.search(line) is None and is_blank_http_line(line) for line in lines
    ):
        raise ValueError("HTTP head must start with a status line and hold no blank line")
    return head


def _extra(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    out = []
    for name, value in headers:
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _MANAGED:
            raise ValueError(f"header {name!r} cannot be set by the caller")
        out.append((name, check_header_value(value, name)))
    return tuple(out)


def link_headers(**named: str | None) -> list[tuple[str, str]]:
    """Link headers (``WARC-Refers-To`` …) for the given non-empty values, in order."""
    names = {
        "concurrent_to": "WARC-Concurrent-To",
        "refers_to": "WARC-Refers-To",
        "ip_address": "WARC-IP-Address",
    }
    return [(names[k], check_header_value(v, names[k])) for k, v in named.items() if v]


def make_record(
    warc_type: str,
    target_uri: str | None,
    content_type: str,
    head: bytes,
    body: bytes | BinaryIO,
    length: int,
    digests: tuple[str, str | None],
    headers: Sequence[tuple[str, str]],
    date: datetime | None,
    record_id: str | None,
    *,
    body_crc32: int | None = None,
) -> WarcRecord:
    """A :class:`WarcRecord` from digests already computed, with its fields validated."""
    return WarcRecord(
        warc_type=warc_type,
        record_id=check_header_value(record_id or new_record_id(), "record id"),
        target_uri=check_target_uri(target_uri) if target_uri is not None else None,
        content_type=check_header_value(content_type, "content type"),
        block_head=head,
        body=body,
        block_length=length,
        block_digest=digests[0],
        payload_digest=digests[1],
        headers=tuple(headers),
        date=date,
        body_crc32=body_crc32,
    )


def _build(
    warc_type: str,
    target_uri: str | None,
    content_type: str,
    head: bytes,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    date: datetime | None,
    record_id: str | None,
    payload_digest: str | None = None,
) -> WarcRecord:
    """Digest an in-memory block, each byte once per digest, and wrap it as a record."""
    block = new_sha256()
    block.update(head)
    block.update(body)
    block_digest = digest_label(block)
    if warc_type in ("warcinfo", "revisit"):
        pass  # warcinfo has no payload; a revisit's payload digest names the original's
    elif head:
        payload = new_sha256()
        payload.update(body)
        payload_digest = digest_label(payload)
    else:
        payload_digest = block_digest  # payload == block: same bytes, same digest
    length = len(head) + len(body)
    digests = (block_digest, payload_digest)
    return make_record(
        warc_type, target_uri, content_type, head, body, length, digests, headers, date, record_id
    )


def warc_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """An ``application/warc-fields`` block: ``name: value`` lines (names may repeat)."""
    lines = []
    for name, value in fields:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"bad warc-fields name {name!r}")
        lines.append(f"{name}: {check_header_value(value, name)}\r\n")
    return "".join(lines).encode("utf-8")


def warcinfo_record(
    filename: str, fields: Iterable[tuple[str, str]], *, date: datetime | None = None
) -> WarcRecord:
    """The file's first record: who wrote it, with what, for which partition."""
    headers = [("WARC-Filename", check_header_value(filename, "filename"))]
    return _build("warcinfo", None, WARC_FIELDS_TYPE, b"", warc_fields(fields), headers, date, None)


def request_record(
    target_uri: str,
    http_request_head: bytes,
    body: bytes = b"",
    *,
    concurrent_to: str | None = None,
    ip_address: str | None = None,
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """An HTTP request as sent (credentials already removed by the caller)."""
    check_http_uri(target_uri)
    head = check_http_head(http_request_head)
    links = link_headers(concurrent_to=concurrent_to, ip_address=ip_address)
    return _build("request", target_uri, HTTP_REQUEST_TYPE, head, body, links, date, record_id)


def response_record(
    target_uri: str,
    http_response_head: bytes,
    body: bytes,
    *,
    concurrent_to: str | None = None,
    ip_address: str | None = None,
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """An HTTP response with the body as received (not content-decoded)."""
    check_http_uri(target_uri)
    head = check_http_head(http_response_head)
    links = link_headers(concurrent_to=concurrent_to, ip_address=ip_address)
    return _build("response", target_uri, HTTP_RESPONSE_TYPE, head, body, links, date, record_id)


def revisit_record(
    target_uri: str,
    http_response_head: bytes,
    *,
    payload_digest: str,
    refers_to: str,
    refers_to_target_uri: str,
    refers_to_date: datetime,
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """A repeat capture of a payload already stored in this partition (identical digest)."""
    check_http_uri(target_uri)
    if not _DIGEST.fullmatch(payload_digest):
        raise ValueError(f"revisit payload digest must be a sha256 label: {payload_digest!r}")
    headers = [
        ("WARC-Profile", REVISIT_PROFILE),
        *link_headers(refers_to=refers_to),
        ("WARC-Refers-To-Target-URI", check_target_uri(refers_to_target_uri)),
        ("WARC-Refers-To-Date", format_warc_date(refers_to_date)),
    ]
    head = check_http_head(http_response_head)
    return _build(
        "revisit",
        target_uri,
        HTTP_RESPONSE_TYPE,
        head,
        b"",
        headers,
        date,
        record_id,
        payload_digest=payload_digest,
    )


def conversion_record(
    permalink: str,
    document: bytes,
    *,
    refers_to: str,
    content_type: str = "application/json",
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """One normalized item version; ``refers_to`` is the record id of its source response."""
    links = link_headers(refers_to=refers_to)
    return _build("conversion", permalink, content_type, b"", document, links, date, record_id)


def resource_record(
    target_uri: str,
    content: bytes,
    *,
    content_type: str,
    refers_to: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """One entry of an imported platform export archive, byte for byte as found."""
    headers = link_headers(refers_to=refers_to) + list(_extra(extra_headers))
    return _build("resource", target_uri, content_type, b"", content, headers, date, record_id)


def metadata_record(
    target_uri: str,
    content: bytes,
    *,
    content_type: str = "application/json",
    refers_to: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    date: datetime | None = None,
    record_id: str | None = None,
) -> WarcRecord:
    """A state change, moderation note, deletion evidence, hold or reassignment."""
    headers = link_headers(refers_to=refers_to) + list(_extra(extra_headers))
    return _build("metadata", target_uri, content_type, b"", content, headers, date, record_id)


def check_http_uri(uri: str) -> None:
    """Refuse a non-http(s) target URI for an HTTP record."""
    # warcio parses an HTTP head only under http(s) URIs; elsewhere its payload digest
    # would cover the head too and ``warcio check`` would fail our digest.
    if not check_target_uri(uri).startswith(("http:", "https:")):
        raise ValueError(f"HTTP records need an http(s) target URI: {uri!r}")
