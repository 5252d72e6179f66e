"""Streaming a (media) response into a record: digested once, spooled, size-capped.

A WARC record's length precedes its block, so a body of unknown length cannot go straight
into the file. :func:`spool_response` streams it into a temporary file on the spool's
filesystem and feeds each chunk, as it passes, once to the block digest and once to the
payload digest; the writer later copies the file into the record without hashing it again.
The caller can look at :attr:`SpooledResponse.payload_digest` first and, if the partition
already holds that payload, append a ``revisit`` record instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from archiver import warc_records
from archiver.errors import ArchiverError
from archiver.warc_records import (
    HTTP_RESPONSE_TYPE,
    WarcRecord,
    check_http_head,
    check_http_uri,
    digest_label,
    link_headers,
    make_record,
)

_CHUNK = 1 << 16


class PayloadTooLargeError(ArchiverError):
    """A streamed body exceeded its size cap; nothing was written to any WARC."""


class SpooledResponse:
    """A response whose body was streamed into a temporary file while it was digested.

    Use it as a context manager: append :attr:`record` (or, when the partition already
    holds :attr:`payload_digest`, a :func:`revisit_record` instead); leaving the block
    deletes the temporary file.
    """

    def __init__(self, record: WarcRecord, spool: BinaryIO, payload_size: int) -> None:
        self.record = record
        self.payload_size = payload_size
        self._spool = spool

    @property
    def payload_digest(self) -> str:
        """``sha256:<BASE32>`` of the body."""
        assert self.record.payload_digest is not None
        return self.record.payload_digest

    def close(self) -> None:
        """Delete the temporary file."""
        self._spool.close()

    def __enter__(self) -> SpooledResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(body: BinaryIO | Iterable[bytes], size: int) -> Iterable[bytes]:
    if hasattr(body, "read"):
        while chunk := body.read(size):
            yield chunk
    else:
        yield from body


def _spool(
    body: BinaryIO | Iterable[bytes],
    target_uri: str,
    max_bytes: int,
    tmp_dir: Path | None,
    hashers: tuple[warc_records.Hasher, ...],
) -> tuple[BinaryIO, int]:
    """Copy ``body`` into a temporary file, feeding each chunk once to each hasher."""
    spool: BinaryIO = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - owned by the result
    size = 0
    try:
        for chunk in _chunks(body, _CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(
                    f"the body of {target_uri} is larger than the {max_bytes}-byte limit; "
                    "it was not archived (raise the limit in the configuration to keep it)"
                )
            for hasher in hashers:
                hasher.update(chunk)
            spool.write(chunk)
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return spool, size


def spool_response(
    target_uri: str,
    http_response_head: bytes,
    body: BinaryIO | Iterable[bytes],
    *,
    max_bytes: int,
    tmp_dir: Path | None = None,
    concurrent_to: str | None = None,
    ip_address: str | None = None,
    date: datetime | None = None,
    record_id: str | None = None,
) -> SpooledResponse:
    """Stream ``body`` (a binary file or an iterable of chunks) into a temporary file.

    Each chunk is fed once to the block and once to the payload digest as it passes, so a
    body of any size is never held in memory nor read back to digest it; the WARC needs
    the length before the body, which is why the bytes wait in ``tmp_dir`` (put it on the
    spool's filesystem). More than ``max_bytes`` of body raises
    :class:`PayloadTooLargeError` as soon as the cap is crossed.
    """
    check_http_uri(target_uri)
    head = check_http_head(http_response_head)
    links = link_headers(concurrent_to=concurrent_to, ip_address=ip_address)
    # Looked up at call time, so that tests can count what each digest is fed.
    block, payload = warc_records.new_sha256(), warc_records.new_sha256()
    block.update(head)
    spool, size = _spool(body, target_uri, max_bytes, tmp_dir, (block, payload))
    digests = (digest_label(block), digest_label(payload))
    length = len(head) + size
    record = make_record(
        "response", target_uri, HTTP_RESPONSE_TYPE, head, spool, length, digests, links, date,
        record_id,
    )  # fmt: skip
    return SpooledResponse(record, spool, size)


def spool_resource(
    target_uri: str,
    content_type: str,
    body: BinaryIO | Iterable[bytes],
    *,
    max_bytes: int,
    tmp_dir: Path | None = None,
    refers_to: str | None = None,
    date: datetime | None = None,
) -> SpooledResponse:
    """Like :func:`spool_response`, for a ``resource`` record (an export archive's media).

    A resource has no HTTP head, so its block is its payload: one digest serves both.
    """
    digest = warc_records.new_sha256()
    spool, size = _spool(body, target_uri, max_bytes, tmp_dir, (digest,))
    label = digest_label(digest)
    links = link_headers(refers_to=refers_to)
    record = make_record(
        "resource", target_uri, content_type, b"", spool, size, (label, label), links, date, None
    )
    return SpooledResponse(record, spool, size)
