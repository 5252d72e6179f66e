"""Streaming a (media) response into a record: digested once, spooled, size-capped.

A WARC record's length precedes its block, so a body of unknown length cannot go straight
into the file. :func:`spool_response` streams it into a temporary file on the spool's
filesystem and feeds each chunk, as it passes, once to the block digest and once to the
payload digest (and a CRC-32); the writer later copies the file into the record without
hashing it again, and a stored member's body without reading it at all: file to file in
the kernel (``copy_file_range``), between stored-block headers written around it.
The caller can look at :attr:`SpooledResponse.payload_digest` first and, if the partition
already holds that payload, append a ``revisit`` record instead.

:func:`member_level` decides how hard each record's gzip member is compressed. Images,
video and audio are already compressed: deflate finds nothing to remove in them, yet costs
the same ~15 s per GiB at level 1 as at level 9, so their records are written as *stored*
gzip members (level 0: the bytes framed, CRC-checked, not deflated), which are still valid
``.warc.gz`` records. JSON, HTML and other text keep the writer's default level.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
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

#: The gzip level of records whose content is not known to be compressed already.
DEFAULT_LEVEL = zlib.Z_BEST_COMPRESSION
#: Stored deflate blocks: framing and CRC-32 only (about 1 GB/s instead of 65 MB/s).
STORED_LEVEL = 0
#: Media types whose content is compressed already (deflating them gains ~0.1%).
_COMPRESSED_PREFIXES = ("image/", "video/", "audio/")
#: Exceptions under those prefixes: uncompressed or textual formats, which deflate shrinks.
_UNCOMPRESSED = frozenset(
    {
        "image/svg+xml",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/x-portable-pixmap",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/aiff",
        "audio/x-aiff",
    }
)
_COMPRESSED = frozenset(
    {
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/zstd",
        "application/x-7z-compressed",
        "application/vnd.apple.mpegurl",
        "application/mp4",
        "application/ogg",
    }
)
#: A ``Content-Encoding`` that means the body on the wire is compressed already.
_COMPRESSED_ENCODINGS = frozenset({"gzip", "x-gzip", "br", "zstd", "deflate", "compress"})


def is_compressed_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names content that is compressed already."""
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _UNCOMPRESSED:
        return False
    return kind in _COMPRESSED or kind.startswith(_COMPRESSED_PREFIXES)


def _http_header(head: bytes, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase) in an HTTP head, else None."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("iso-8859-1")
    return None


def member_level(record: WarcRecord) -> int:
    """The zlib level for ``record``'s gzip member: stored for compressed media, else 9.

    A response's content type and encoding are its HTTP head's; a resource's (an export
    archive's media) are the record's own. Requests, metadata, revisits and the rest are
    small and often textual: they keep the default.
    """
    if record.warc_type == "response" and record.block_head:
        encoding = _http_header(record.block_head, b"content-encoding")
        if encoding is not None and encoding.lower() in _COMPRESSED_ENCODINGS:
            return STORED_LEVEL
        kind = _http_header(record.block_head, b"content-type")
    elif record.warc_type == "resource":
        kind = record.content_type
    else:
        return DEFAULT_LEVEL
    return STORED_LEVEL if is_compressed_type(kind) else DEFAULT_LEVEL


class GzipMember:
    """One gzip member at a chosen zlib level, written through to ``out`` (a file-like sink).

    warcio's own wrapper always deflates at level 9; this one is the same stream format
    (RFC 1952, one member per record) at any level.
    """

    def __init__(self, out: BinaryIO, level: int) -> None:
        self._out = out
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data: bytes) -> None:
        self._out.write(self._deflate.compress(data))

    def flush(self) -> None:
        """End the member (deflate's last block, CRC-32 and length) and flush ``out``."""
        self._out.write(self._deflate.flush())
        self._out.flush()


#: The gzip header zlib writes for a level-0 member (no name, no mtime, XFL 4, OS Unix).
STORED_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03"
#: The most bytes one stored deflate block holds (its LEN field is 16 bits).
STORED_BLOCK_MAX = 0xFFFF


def stored_block_header(length: int, *, final: bool = False) -> bytes:
    """The 5 bytes opening a stored deflate block of ``length`` bytes (RFC 1951, 3.2.4).

    Stored blocks are byte-aligned: BFINAL and BTYPE 00 fill the first byte's low bits,
    then LEN and its one's complement NLEN, little-endian.
    """
    if not 0 <= length <= STORED_BLOCK_MAX:
        raise ValueError(f"a stored block holds 0..{STORED_BLOCK_MAX} bytes, not {length}")
    return struct.pack("<BHH", 1 if final else 0, length, length ^ 0xFFFF)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of ``a + b`` from ``crc1`` = crc32(a), ``crc2`` = crc32(b) and len(b).

    zlib has this (``crc32_combine``) but Python does not expose it. Appending n zero
    bytes to a message is a linear map on its CRC register; the map for n is built by
    squaring the one-zero-bit operator (log2 n squarings of a 32x32 GF(2) matrix), so a
    gigabyte costs a few dozen squarings, not a pass over the bytes.
    """
    if length2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # the first pass: one zero byte
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


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
) -> tuple[BinaryIO, int, int]:
    """Copy ``body`` into a temporary file, feeding each chunk once to each hasher.

    Returns the file, its size and its CRC-32 (at 7 GB/s, nearly free while the chunk is
    in cache; the writer frames a stored member around the file with it, unread).
    """
    spool: BinaryIO = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - owned by the result
    size = crc = 0
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
            crc = zlib.crc32(chunk, crc)
            spool.write(chunk)
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return spool, size, crc


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
    spool, size, crc = _spool(body, target_uri, max_bytes, tmp_dir, (block, payload))
    digests = (digest_label(block), digest_label(payload))
    length = len(head) + size
    record = make_record(
        "response", target_uri, HTTP_RESPONSE_TYPE, head, spool, length, digests, links, date,
        record_id, body_crc32=crc,
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
    spool, size, crc = _spool(body, target_uri, max_bytes, tmp_dir, (digest,))
    label = digest_label(digest)
    links = link_headers(refers_to=refers_to)
    record = make_record(
        "resource", target_uri, content_type, b"", spool, size, (label, label), links, date, None,
        body_crc32=crc,
    )  # fmt: skip
    return SpooledResponse(record, spool, size)
