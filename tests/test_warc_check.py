"""The streaming record checker, on WARC files our writer wrote and then damaged byte by byte.

Each file holds every kind of record the archive writes: warcinfo, request, response (one
large and incompressible, so it spans many read chunks, and one with a chunked body as
received), revisit, conversion, resource and metadata. The catalog rows it is checked
against are the writer's own pointers, as a capture commits them.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.layout import Partition
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_check import ExpectedRecord, WarcCheck, WarcChecker
from archiver.warc_records import (
    RecordPointer,
    WarcRecord,
    conversion_record,
    digest_label,
    http_head,
    make_record,
    metadata_record,
    request_record,
    resource_record,
    response_record,
    revisit_record,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PART = Partition("general", "mke-bluesky", "2026-03")
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
IMAGE = "https://cdn.example.com/img/feed_fullsize/plain/did:plc:abc/bafkrei.jpeg"
API = "https://public.api.example.com/xrpc/app.bsky.feed.getAuthorFeed?actor=mke"
JPEG = http_head("HTTP/1.1 200 OK", [("Content-Type", "image/jpeg")])


@dataclass
class Warc:
    """A written file's bytes and the pointers the writer returned, by a name for each."""

    data: bytes
    ptrs: dict[str, RecordPointer]

    def rows(self, *leave_out: str) -> list[ExpectedRecord]:
        return [row(p) for name, p in self.ptrs.items() if name not in leave_out]


def row(p: RecordPointer) -> ExpectedRecord:
    return ExpectedRecord(
        p.record_id, p.offset, p.length, p.warc_type, p.block_digest, p.payload_digest
    )


def write(tmp_path: Path, records: dict[str, WarcRecord], *, verified: bool = True) -> Warc:
    """Write the records; ``verified=False`` skips the writer's closing check (for records
    built wrong on purpose, which it would refuse)."""
    writer = WarcWriter(tmp_path, PART, INFO, clock=lambda: T0)
    ptrs = {name: writer.append(record) for name, record in records.items()}
    if not verified:
        writer.abandon()
        return Warc(writer.path.read_bytes(), ptrs)
    return Warc(writer.close().path.read_bytes(), ptrs)


def check(data: bytes, rows: list[ExpectedRecord], chunk: int = 1 << 20) -> WarcCheck:
    checker = WarcChecker(rows)
    for i in range(0, len(data), chunk):
        checker.feed(data[i : i + chunk])
    return checker.finish()


def flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x5A
    return bytes(changed)


def small_records() -> dict[str, WarcRecord]:
    response = response_record(API, http_head("HTTP/1.1 200 OK", []), b'{"feed": []}')
    chunked = http_head(
        "HTTP/1.1 200 OK",
        [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
    )
    return {
        "request": request_record(API, http_head("GET /xrpc HTTP/1.1", [("Host", "example")])),
        "response": response,
        "chunked": response_record(API, chunked, b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'),
        # An obsolete folded header line starts with a space: not the blank line ending the head.
        "folded": response_record(
            API, http_head("HTTP/1.1 200 OK", [("X-Note", "one\r\n two")]), b"\r\n body"
        ),
        "conversion": conversion_record(
            "https://bsky.app/profile/mke/post/1",
            b'{"version": 1, "text": "Snow emergency declared"}',
            refers_to=response.record_id,
        ),
        "resource": resource_record(
            "urn:export:outbox.json", b'{"orderedItems": []}', content_type="application/json"
        ),
        "metadata": metadata_record("urn:item:1", b'{"state": "hidden"}'),
    }


@pytest.fixture
def small(tmp_path: Path) -> Warc:
    return write(tmp_path, small_records())


@pytest.fixture
def big(tmp_path: Path) -> Warc:
    """A file with a 3 MiB incompressible image between small records, and its revisit."""
    body = random.Random(7).randbytes(3 << 20)
    image = response_record(IMAGE, JPEG, body)
    assert image.payload_digest is not None
    records = {
        "conversion": conversion_record("https://bsky.app/p/1", b'{"version": 1}', refers_to="<x>"),
        "image": image,
        "revisit": revisit_record(
            IMAGE,
            JPEG,
            payload_digest=image.payload_digest,
            refers_to=image.record_id,
            refers_to_target_uri=IMAGE,
            refers_to_date=T0,
        ),
        "metadata": metadata_record("urn:item:1", b'{"state": "present"}'),
    }
    return write(tmp_path, records)


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_every_record_of_an_intact_file_checks_whatever_the_read_chunks(
    small: Warc, chunk: int
) -> None:
    result = check(small.data, small.rows(), chunk)

    assert result.ok, result.problems
    assert result.records == len(small.ptrs) + 1  # and the warcinfo
    assert result.orphans == () and result.odd_gzip_headers == ()


@pytest.mark.parametrize("chunk", [7919, 1 << 20, 1 << 30])
def test_a_large_record_across_many_chunks_checks(big: Warc, chunk: int) -> None:
    result = check(big.data, big.rows(), chunk)
    assert result.ok, result.problems
    assert result.records == 5


def test_a_response_payload_digest_covers_the_body_after_the_head_as_stored(small: Warc) -> None:
    """Not de-chunked: the digest the writer recorded is over the raw chunked bytes."""
    raw = b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
    expected = hashlib.sha256(raw)
    assert small.ptrs["chunked"].payload_digest == digest_label(expected)
    assert check(small.data, small.rows()).ok


def test_a_record_the_catalog_does_not_know_is_an_orphan_not_a_problem(small: Warc) -> None:
    result = check(small.data, small.rows("metadata"))

    assert result.ok
    assert result.orphans == (small.ptrs["metadata"].record_id,)  # never the warcinfo


def test_a_changed_byte_in_a_records_compressed_data_names_it_and_the_rest_are_checked(
    small: Warc,
) -> None:
    hit = small.ptrs["conversion"]

    result = check(flip(small.data, hit.offset + hit.length // 2), small.rows())

    (problem,) = result.problems
    assert (problem.offset, problem.record_id) == (hit.offset, hit.record_id)
    assert result.records == len(small.ptrs)  # every other record, warcinfo included


def test_a_changed_gzip_magic_byte_names_the_record_and_checking_resumes_after_it(
    small: Warc,
) -> None:
    hit = small.ptrs["request"]

    result = check(flip(small.data, hit.offset), small.rows())

    (problem,) = result.problems
    assert (problem.offset, problem.record_id) == (hit.offset, hit.record_id)
    assert "gzip member is damaged" in problem.problem
    assert result.records == len(small.ptrs)


def test_every_damaged_record_is_named_not_only_the_first(small: Warc) -> None:
    hits = [small.ptrs["request"], small.ptrs["conversion"], small.ptrs["metadata"]]
    data = small.data
    for hit in hits:
        data = flip(data, hit.offset + hit.length // 2)

    result = check(data, small.rows())

    assert [(p.offset, p.record_id) for p in result.problems] == [
        (h.offset, h.record_id) for h in hits
    ]
    assert result.records == len(small.ptrs) + 1 - len(hits)


def test_a_changed_byte_zlib_ignores_in_a_gzip_header_shows_as_that_members_odd_header(
    small: Warc,
) -> None:
    """MTIME (bytes 4-7 of a member) alters no record: only the header comparison sees it."""
    hit = small.ptrs["resource"]

    result = check(flip(small.data, hit.offset + 5), small.rows())

    assert result.problems == ()
    (odd,) = result.odd_gzip_headers
    assert (odd.offset, odd.record_id) == (hit.offset, hit.record_id)


def test_a_change_at_any_byte_names_its_record_unless_it_alters_no_record(small: Warc) -> None:
    """The exception: bits of a member's last deflate byte past its end-of-block code are
    padding that inflating ignores; only the whole-file SHA-256 sees a change there."""
    starts = sorted([0, *(p.offset for p in small.ptrs.values())])
    ends = [*starts[1:], len(small.data)]
    unnamed = []
    for start, end in zip(starts, ends, strict=True):
        for at in range(start, end):
            result = check(flip(small.data, at), small.rows())
            named = result.problems or result.odd_gzip_headers
            if not named:
                unnamed.append((start, at))
            else:
                assert [p.offset for p in named] == [start], (start, at, named)
    padding = {(start, end - 9) for start, end in zip(starts, ends, strict=True)}
    assert set(unnamed) <= padding  # the byte before each 8-byte gzip trailer


def test_a_truncated_file_names_the_record_it_ends_in_and_every_record_after_it(
    big: Warc,
) -> None:
    image = big.ptrs["image"]

    result = check(big.data[: image.offset + 100_000], big.rows(), 65536)

    first, *after = result.problems
    assert (first.offset, first.record_id) == (image.offset, image.record_id)
    assert "truncated" in first.problem
    assert [p.record_id for p in after] == [
        big.ptrs["revisit"].record_id,
        big.ptrs["metadata"].record_id,
    ]
    assert all("before this catalogued record" in p.problem for p in after)


def test_a_changed_byte_inside_a_large_record_is_found_across_chunks(big: Warc) -> None:
    image = big.ptrs["image"]

    result = check(flip(big.data, image.offset + 2_000_000), big.rows(), 65536)

    (problem,) = result.problems
    assert problem.record_id == image.record_id


def test_a_record_altered_and_recompressed_is_caught_by_its_digests(small: Warc) -> None:
    """gzip's CRC-32 is recomputed by whoever recompresses: only the SHA-256 digests remain."""
    last = small.ptrs["metadata"]
    member = small.data[last.offset :]
    altered = zlib.decompress(member, wbits=31).replace(b'"hidden"', b'"public"')
    data = small.data[: last.offset] + gzip.compress(altered)

    (problem,) = check(data, small.rows()).problems

    assert problem.record_id == last.record_id
    assert "block digest mismatch" in problem.problem
    assert "payload digest mismatch" in problem.problem


def test_a_payload_digest_that_does_not_match_the_payload_is_caught(tmp_path: Path) -> None:
    good = response_record(API, http_head("HTTP/1.1 200 OK", []), b'{"feed": []}')
    wrong = make_record(
        "response",
        API,
        good.content_type,
        good.block_head,
        good.body,
        good.block_length,
        (good.block_digest, "sha256:" + "A" * 52 + "===="),
        (),
        None,
        None,
    )
    warc = write(tmp_path, {"response": wrong}, verified=False)

    (problem,) = check(warc.data, warc.rows()).problems

    assert "payload digest mismatch" in problem.problem
    assert "block digest" not in problem.problem


def test_a_catalog_row_that_disagrees_with_the_file_is_a_problem(small: Warc) -> None:
    rows = small.rows()
    i = next(n for n, r in enumerate(rows) if r.record_id == small.ptrs["conversion"].record_id)
    rows[i] = replace(rows[i], block_digest=small.ptrs["resource"].block_digest)

    (problem,) = check(small.data, rows).problems

    assert problem.record_id == rows[i].record_id
    assert f"the catalog records block digest {small.ptrs['resource'].block_digest}" in (
        problem.problem
    )


def test_a_catalogued_record_where_no_record_begins_is_a_problem(small: Warc) -> None:
    rows = small.rows("conversion")
    moved = replace(row(small.ptrs["conversion"]), offset=small.ptrs["conversion"].offset + 1)

    result = check(small.data, [*rows, moved])

    (problem,) = result.problems
    assert problem.offset == moved.offset
    assert "no record begins at this offset" in problem.problem
    assert result.orphans == (moved.record_id,)


def test_a_revisits_payload_digest_is_held_to_the_catalog_not_recomputed(big: Warc) -> None:
    """A revisit's payload digest names the original's payload; it has none of its own."""
    assert check(big.data, big.rows()).ok
    rows = [
        replace(r, payload_digest=big.ptrs["metadata"].block_digest)
        if r.warc_type == "revisit"
        else r
        for r in big.rows()
    ]

    (problem,) = check(big.data, rows).problems

    assert problem.record_id == big.ptrs["revisit"].record_id
    assert "the catalog records payload digest" in problem.problem


def test_bytes_after_the_last_record_are_a_problem(small: Warc) -> None:
    result = check(small.data + b"garbage after the last record", small.rows())

    (problem,) = result.problems
    assert problem.offset == len(small.data) and problem.record_id is None
