"""Media records are stored gzip members: still valid ``.warc.gz``, checked like any other."""

from __future__ import annotations

import errno
import os
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.errors import IntegrityError
from archiver.layout import Partition
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_check import ExpectedRecord, WarcChecker
from archiver.warc_media import (
    DEFAULT_LEVEL,
    STORED_GZIP_HEADER,
    STORED_LEVEL,
    crc32_combine,
    member_level,
    spool_response,
    stored_block_header,
)
from archiver.warc_records import (
    RecordPointer,
    http_head,
    metadata_record,
    request_record,
    resource_record,
    response_record,
)
from tests.warctools import assert_all_digests_pass

PART = Partition("general", "city-fb", "2024-05")
INFO = WarcInfo("city-archiver 0.1.0", {"warcio": "1.8.1"}, "City Clerk", "n1")
URL = "https://cdn.example.com/v/clip.mp4"
MIB = 1 << 20


def head(content_type: str, *extra: tuple[str, str]) -> bytes:
    return http_head("HTTP/1.1 200 OK", [("Content-Type", content_type), *extra])


def video(size: int) -> bytes:
    return random.Random(8).randbytes(size)  # incompressible, like MP4


def first_block_type(member: bytes) -> int:
    """BTYPE of a member's first deflate block (0 stored, 1 fixed, 2 dynamic Huffman)."""
    assert member[:3] == b"\x1f\x8b\x08" and member[3] == 0  # no optional header fields
    return (member[10] >> 1) & 0b11


def write_mixed(tmp_path: Path) -> tuple[Path, list[RecordPointer], bytes]:
    """A closed file holding a JSON exchange and a 3 MiB video response streamed in."""
    writer = WarcWriter(tmp_path, PART, INFO)
    body = video(3 * MIB + 17)
    json_body = b'{"data": [' + b'{"id": "1", "message": "hello"},' * 400 + b"{}]}"
    ptrs = [
        writer.append(request_record(URL, b"GET /v/clip.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")),
        writer.append(response_record(URL, head("application/json"), json_body)),
        writer.append_response_stream(
            URL,
            head("video/mp4", ("Content-Length", str(len(body)))),
            (body[i : i + 100_000] for i in range(0, len(body), 100_000)),
            max_bytes=len(body),
        ),
    ]
    closed = writer.close()
    return closed.path, ptrs, body


def test_a_video_response_is_a_stored_member_and_json_stays_deflated(tmp_path: Path) -> None:
    path, (_request, api, media), body = write_mixed(tmp_path)
    data = path.read_bytes()

    stored = data[media.offset : media.offset + media.length]
    deflated = data[api.offset : api.offset + api.length]

    assert first_block_type(stored) == 0
    assert media.length < len(body) * 1.001 + 4096  # framing only, not a second copy
    assert first_block_type(deflated) != 0
    assert api.length < 2000  # the JSON is still compressed hard
    assert zlib.decompress(stored, wbits=31).endswith(body + b"\r\n\r\n")


def test_warcio_checks_every_digest_of_a_file_with_stored_and_deflated_members(
    tmp_path: Path,
) -> None:
    path, ptrs, _ = write_mixed(tmp_path)

    assert assert_all_digests_pass([path]) == 1 + len(ptrs)  # and the warcinfo


def test_our_checker_finds_no_odd_gzip_header_in_a_file_mixing_both_kinds(
    tmp_path: Path,
) -> None:
    """zlib marks a stored member XFL=4 and a level-9 one XFL=2; neither is damage."""
    path, ptrs, _ = write_mixed(tmp_path)
    checker = WarcChecker(
        ExpectedRecord(p.record_id, p.offset, p.length, p.warc_type, p.block_digest,
                       p.payload_digest)
        for p in ptrs
    )  # fmt: skip
    checker.feed(path.read_bytes())
    check = checker.finish()

    assert check.ok and check.records == 1 + len(ptrs)
    assert check.orphans == () and check.odd_gzip_headers == ()


def test_a_changed_mtime_in_the_stored_member_is_named_as_its_odd_header(
    tmp_path: Path,
) -> None:
    path, ptrs, _ = write_mixed(tmp_path)
    data = bytearray(path.read_bytes())
    media = ptrs[2]
    data[media.offset + 5] ^= 0x40
    checker = WarcChecker(
        ExpectedRecord(p.record_id, p.offset, p.length, p.warc_type, p.block_digest,
                       p.payload_digest)
        for p in ptrs
    )  # fmt: skip
    checker.feed(bytes(data))
    check = checker.finish()

    assert check.problems == ()
    (odd,) = check.odd_gzip_headers
    assert (odd.offset, odd.record_id) == (media.offset, media.record_id)


@pytest.mark.parametrize(
    ("content_type", "extra", "level"),
    [
        ("video/mp4", (), STORED_LEVEL),
        ("image/jpeg", (), STORED_LEVEL),
        ("image/png; charset=binary", (), STORED_LEVEL),
        ("audio/mpeg", (), STORED_LEVEL),
        ("application/octet-stream", (), STORED_LEVEL),
        ("text/html", (("Content-Encoding", "gzip"),), STORED_LEVEL),
        ("application/json", (), DEFAULT_LEVEL),
        ("text/html; charset=utf-8", (), DEFAULT_LEVEL),
        ("image/svg+xml", (), DEFAULT_LEVEL),
        ("image/bmp", (), DEFAULT_LEVEL),
    ],
)
def test_a_response_is_stored_only_when_its_content_is_compressed_already(
    content_type: str, extra: tuple[tuple[str, str], ...], level: int
) -> None:
    record = response_record(URL, head(content_type, *extra), b"x" * 10)

    assert member_level(record) == level


def test_an_export_archives_media_resource_is_stored_and_other_records_are_deflated() -> None:
    image = resource_record("urn:export:media/1.jpg", b"\xff\xd8xx", content_type="image/jpeg")
    text = resource_record("urn:export:posts.json", b"[]", content_type="application/json")
    note = metadata_record(URL, b"{}")
    request = request_record(URL, b"GET /v/clip.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")

    assert member_level(image) == STORED_LEVEL
    assert [member_level(r) for r in (text, note, request)] == [DEFAULT_LEVEL] * 3


def test_a_spooled_video_is_copied_once_from_its_temporary_file(tmp_path: Path) -> None:
    """The WARC holds the body once and the temporary file is gone after the append."""
    body = video(2 * MIB)
    writer = WarcWriter(tmp_path, PART, INFO)
    with spool_response(
        URL, head("video/mp4"), iter([body]), max_bytes=len(body), tmp_dir=tmp_path
    ) as spooled:
        ptr = writer.append(spooled.record)
    closed = writer.close()

    data = closed.path.read_bytes()
    assert data[ptr.offset : ptr.offset + ptr.length].count(body[:4096]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [closed.path.name, f"{closed.file_id}.json"]
    )


# -- stored members around a spooled body: framed here, the bytes copied file to file ------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine_gives_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_crc32_combine_handles_a_body_larger_than_four_gibibytes_of_zeros() -> None:
    """ISIZE wraps at 2**32; the CRC must not: checked against zlib's own running CRC."""
    zeros = bytes(1 << 20)
    crc = 0
    for _ in range(3):
        crc = zlib.crc32(zeros, crc)
    assert crc32_combine(zlib.crc32(b"head"), crc, 3 << 20) == zlib.crc32(
        zeros * 3, zlib.crc32(b"head")
    )
    assert crc32_combine(0x1234, 0, 0) == 0x1234


def test_stored_block_headers_are_what_zlib_writes_at_level_zero() -> None:
    deflate = zlib.compressobj(0, zlib.DEFLATED, 31)
    member = deflate.compress(b"abc") + deflate.flush()

    assert member.startswith(STORED_GZIP_HEADER + stored_block_header(3, final=True) + b"abc")
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        stored_block_header(70_000)


def spooled_video(tmp_path: Path, body: bytes) -> tuple[Path, RecordPointer]:
    writer = WarcWriter(tmp_path, PART, INFO)
    with spool_response(
        URL, head("video/mp4"), iter([body]), max_bytes=len(body), tmp_dir=tmp_path
    ) as spooled:
        assert spooled.record.body_crc32 == zlib.crc32(body)
        ptr = writer.append(spooled.record)
    return writer.close().path, ptr


def test_a_spooled_video_member_is_stored_blocks_of_at_most_64_kib_and_inflates_to_the_record(
    tmp_path: Path,
) -> None:
    body = video(3 * 65535 + 10)  # three full blocks and a short one
    path, ptr = spooled_video(tmp_path, body)
    member = path.read_bytes()[ptr.offset : ptr.offset + ptr.length]

    record = zlib.decompress(member, wbits=31)  # zlib checks the CRC-32 and ISIZE
    assert record.startswith(b"WARC/1.1\r\n") and record.endswith(body + b"\r\n\r\n")
    assert first_block_type(member) == 0
    assert ptr.length == len(record) + 10 + 8 + 5 * (1 + 4 + 1)  # header, trailer, 6 blocks
    assert assert_all_digests_pass([path]) == 2


def test_without_a_kernel_copy_the_body_is_copied_through_user_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem (or kernel) without copy_file_range: the same member, the same bytes."""
    calls: list[int] = []

    def unsupported(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    body = video(200_000)
    path, ptr = spooled_video(tmp_path, body)

    assert calls == [1]  # tried once, then not again for this file
    member = path.read_bytes()[ptr.offset : ptr.offset + ptr.length]
    assert zlib.decompress(member, wbits=31).endswith(body + b"\r\n\r\n")
    assert assert_all_digests_pass([path]) == 2


def test_a_spooled_body_that_changed_length_is_refused_and_the_file_cut_back(
    tmp_path: Path,
) -> None:
    body = video(100_000)
    writer = WarcWriter(tmp_path, PART, INFO)
    before = writer.size
    with spool_response(
        URL, head("video/mp4"), iter([body]), max_bytes=len(body), tmp_dir=tmp_path
    ) as spooled:
        spooled.record.body.truncate(50_000)  # type: ignore[union-attr]
        with pytest.raises(IntegrityError, match="50000 body bytes were written, not the 100000"):
            writer.append(spooled.record)
    assert writer.size == before
    writer.append(request_record(URL, b"GET /v/clip.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert assert_all_digests_pass([writer.close().path]) == 2
