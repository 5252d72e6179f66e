"""The WARC writing layer, held to the real ``warcio`` CLI (check, index) and to warcio's reader."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver import warc_records
from archiver.errors import IntegrityError
from archiver.layout import Partition
from archiver.warc import (
    PayloadTooLargeError,
    WarcInfo,
    WarcWriter,
    WriterClosedError,
    read_sidecar,
    sidecar_path,
)
from archiver.warc_pool import WriterPool
from archiver.warc_records import (
    RecordPointer,
    WarcRecord,
    conversion_record,
    http_head,
    label_to_hex,
    metadata_record,
    request_record,
    resource_record,
    response_record,
    revisit_record,
)
from archiver.warc_recovery import scan_warc

WARCIO = Path(sys.executable).with_name("warcio")
PART = Partition("general", "city-fb", "2024-05")
OTHER = Partition("general", "city-fb", "2023-11")
INFO = WarcInfo("city-archiver 0.1.0", {"warcio": "1.8.1", "httpx": "0.27.0"}, "City Clerk", "n1")
API = "https://graph.example.com/v19.0/123/posts?after=abc"
RESP_HEAD = http_head("HTTP/1.1 200 OK", [("Content-Type", "application/json")])
REQ_HEAD = http_head("GET /v19.0/123/posts?after=abc HTTP/1.1", [("Host", "graph.example.com")])


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def writer(tmp_path: Path, clock: FakeClock) -> WarcWriter:
    return WarcWriter(tmp_path, PART, INFO, clock=clock)


def warcio_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WARCIO), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def b32(data: bytes) -> str:
    return "sha256:" + base64.b32encode(hashlib.sha256(data).digest()).decode()


def split_member(member: bytes) -> tuple[dict[str, str], bytes]:
    """Independently of warcio: one gzip member → (WARC headers, block)."""
    inflate = zlib.decompressobj(wbits=31)
    raw = inflate.decompress(member)
    assert inflate.eof and inflate.unused_data == b"", "not exactly one gzip member"
    head, _, rest = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    length = int(headers["Content-Length"])
    assert rest[length:] == b"\r\n\r\n"
    return headers, rest[:length]


def write_sample(w: WarcWriter, media: bytes) -> dict[str, RecordPointer]:
    """One record of every type in the record model."""
    resp = response_record(API, RESP_HEAD, b'{"data": [{"id": "1"}]}')
    req = request_record(API, REQ_HEAD, concurrent_to=resp.record_id)
    p = {"response": w.append(resp), "request": w.append(req)}
    p["conversion"] = w.append(
        conversion_record(
            "https://www.facebook.com/123/posts/1", b'{"version": 1}', refers_to=resp.record_id
        )
    )
    p["media"] = w.append_response_stream(
        "https://cdn.example.com/a.jpg",
        http_head("HTTP/1.1 200 OK", [("Content-Type", "image/jpeg")]),
        iter([media[:1000], media[1000:]]),
        max_bytes=len(media),
    )
    p["revisit"] = w.append(
        revisit_record(
            "https://cdn.example.com/a-copy.jpg",
            http_head("HTTP/1.1 200 OK", [("Content-Type", "image/jpeg")]),
            payload_digest=p["media"].payload_digest or "",
            refers_to=p["media"].record_id,
            refers_to_target_uri="https://cdn.example.com/a.jpg",
            refers_to_date=p["media"].date,
        )
    )
    p["resource"] = w.append(
        resource_record(
            "urn:archiver:export:facebook-2024/posts/your_posts_1.json",
            b'[{"title": "x"}]',
            content_type="application/json",
        )
    )
    p["metadata"] = w.append(
        metadata_record("https://www.facebook.com/123/posts/1", b'{"event": "deleted"}')
    )
    w.sync()
    return p


@pytest.fixture
def sample(writer: WarcWriter) -> tuple[Path, dict[str, RecordPointer], bytes]:
    media = os.urandom(200_000)  # larger than warcio's and our read chunks
    pointers = write_sample(writer, media)
    closed = writer.close()
    return closed.path, pointers, media


def records_by_id(path: Path) -> dict[str, dict[str, str]]:
    with path.open("rb") as f:
        return {
            r.rec_headers.get_header("WARC-Record-ID"): dict(r.rec_headers.headers)
            for r in ArchiveIterator(f)
        }


def test_warcio_check_passes_every_digest(sample: tuple[Path, dict[str, RecordPointer], bytes]):
    path, pointers, _ = sample
    result = warcio_cli("check", "-v", path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()[1:]
    verdicts = {lines[i].split()[3]: lines[i + 1].strip() for i in range(0, len(lines), 2)}
    assert len(verdicts) == len(pointers) + 1  # with warcinfo
    for record_id, verdict in verdicts.items():
        if record_id == pointers["revisit"].record_id:
            # warcio never checks a revisit (its payload digest names another record);
            # our own scanner checks its block digest (test_scan_agrees_with_pointers).
            assert verdict == "digest present but not checked (revisit)"
        else:
            assert verdict == "digest pass", record_id
    for headers in records_by_id(path).values():
        digests = [v for k, v in headers.items() if k.endswith("-Digest")]
        assert digests and all(d.startswith("sha256:") for d in digests)


def test_index_offsets_and_lengths_equal_pointers(sample):
    path, pointers, _ = sample
    result = warcio_cli("index", "-f", "offset,length,warc-type,warc-record-id", path)
    assert result.returncode == 0, result.stderr
    index = [json.loads(line) for line in result.stdout.splitlines()]
    assert index[0]["warc-type"] == "warcinfo" and index[0]["offset"] == "0"
    expected = sorted(pointers.values(), key=lambda p: p.offset)
    assert [
        (int(e["offset"]), int(e["length"]), e["warc-type"], e["warc-record-id"]) for e in index[1:]
    ] == [(p.offset, p.length, p.warc_type, p.record_id) for p in expected]
    assert int(index[-1]["offset"]) + int(index[-1]["length"]) == path.stat().st_size


def test_record_read_back_by_pointer(sample):
    path, pointers, media = sample
    data = path.read_bytes()
    for ptr in pointers.values():
        member = data[ptr.offset : ptr.offset + ptr.length]
        assert len(list(ArchiveIterator(io.BytesIO(member)))) == 1
        record = next(iter(ArchiveIterator(io.BytesIO(member), check_digests=True)))
        assert record.rec_headers.get_header("WARC-Record-ID") == ptr.record_id
        assert record.rec_headers.get_header("WARC-Block-Digest") == ptr.block_digest
        record.raw_stream.read()
        if ptr.warc_type != "revisit":
            assert record.digest_checker.passed is True
        headers, block = split_member(member)  # and once more without warcio
        assert b32(block) == ptr.block_digest == headers["WARC-Block-Digest"]
        assert headers.get("WARC-Payload-Digest") == ptr.payload_digest
    _, block = split_member(data[pointers["media"].offset :][: pointers["media"].length])
    assert block.endswith(media) and pointers["media"].payload_digest == b32(media)


def test_links_between_records(sample):
    path, p, _ = sample
    recs = records_by_id(path)
    info = next(h for h in recs.values() if h["WARC-Type"] == "warcinfo")
    assert info["WARC-Filename"] == path.name
    assert all(
        h["WARC-Warcinfo-ID"] == info["WARC-Record-ID"] for h in recs.values() if h is not info
    )
    assert recs[p["request"].record_id]["WARC-Concurrent-To"] == p["response"].record_id
    assert recs[p["request"].record_id]["WARC-Target-URI"] == API
    conv = recs[p["conversion"].record_id]
    assert conv["WARC-Target-URI"] == "https://www.facebook.com/123/posts/1"
    assert conv["WARC-Refers-To"] == p["response"].record_id
    rev = recs[p["revisit"].record_id]
    assert rev["WARC-Refers-To"] == p["media"].record_id
    assert rev["WARC-Refers-To-Target-URI"] == "https://cdn.example.com/a.jpg"
    assert rev["WARC-Payload-Digest"] == p["media"].payload_digest
    assert rev["WARC-Profile"].endswith("/warc/1.1/revisit/identical-payload-digest")
    assert {h.get("WARC-Target-URI") for h in recs.values()} >= {
        p["resource"].target_uri,
        p["metadata"].target_uri,
    }


def test_warcinfo_and_sidecar(tmp_path: Path, clock: FakeClock):
    w = WarcWriter(tmp_path, PART, INFO, clock=clock)
    assert w.path.name == f"{w.file_id}.warc.gz.open"
    side = read_sidecar(sidecar_path(tmp_path, w.file_id))
    assert (side.file_id, side.partition, side.created, side.info) == (
        w.file_id,
        PART,
        clock.now,
        INFO,
    )
    closed = w.close()
    assert closed.path == tmp_path / f"{w.file_id}.warc.gz" and not w.path.exists()
    assert closed.record_count == 1 and closed.first_record_at == clock.now
    assert closed.sha256 == hashlib.sha256(closed.path.read_bytes()).hexdigest()
    with closed.path.open("rb") as f:
        record = next(iter(ArchiveIterator(f)))
        fields = record.content_stream().read().decode()
    for line in (
        "software: city-archiver 0.1.0",
        "operator: City Clerk",
        "hostname: n1",
        "isPartOf: general/city-fb/2024-05",
        "series: general",
        "account: city-fb",
        "dependency: httpx==0.27.0",
        "dependency: warcio==1.8.1",
    ):
        assert line in fields.splitlines()
    with pytest.raises(WriterClosedError):
        w.append(metadata_record("urn:x:1", b"{}"))


def test_http_head_is_written_byte_for_byte(writer: WarcWriter):
    head = b"HTTP/1.1 200 OK\r\nX-Odd:    spaced \r\nset-cookie: a=1\r\n\r\n"
    ptr = writer.append(response_record(API, head, b"body"))
    writer.sync()
    data = writer.path.read_bytes()
    _, block = split_member(data[ptr.offset : ptr.offset + ptr.length])
    assert block == head + b"body"
    assert ptr.payload_digest == b32(b"body")


def test_streamed_media_larger_than_a_chunk_verifies(writer: WarcWriter):
    body = os.urandom(3 * (1 << 16) + 17)
    ptr = writer.append_response_stream(
        "https://cdn.example.com/v.mp4", RESP_HEAD, io.BytesIO(body), max_bytes=len(body)
    )
    closed = writer.close()
    assert warcio_cli("check", closed.path).returncode == 0
    with closed.path.open("rb") as f:
        f.seek(ptr.offset)
        record = next(iter(ArchiveIterator(f)))
        assert record.content_stream().read() == body
    assert ptr.payload_digest == b32(body)
    assert label_to_hex(ptr.payload_digest) == hashlib.sha256(body).hexdigest()  # media key


def test_too_large_media_is_refused_without_touching_the_file(writer: WarcWriter):
    first = writer.append(metadata_record("urn:x:1", b"{}"))
    writer.sync()
    before = writer.path.read_bytes()
    with pytest.raises(PayloadTooLargeError, match="larger than the 100000-byte limit"):
        writer.append_response_stream(
            "https://cdn.example.com/big.mp4",
            RESP_HEAD,
            iter([b"x" * 60_000, b"y" * 60_000]),
            max_bytes=100_000,
        )
    assert writer.path.read_bytes() == before and writer.size == len(before)
    second = writer.append(metadata_record("urn:x:2", b"{}"))
    assert second.offset == first.offset + first.length
    closed = writer.close()
    assert closed.record_count == 3
    assert sorted(p.name for p in writer.path.parent.iterdir()) == sorted(
        [closed.path.name, f"{writer.file_id}.json"]
    )


class FailingBody(io.BytesIO):
    """A spooled body whose disk fails while it is copied into the WARC."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= 2_500_000:
            raise OSError(5, "Input/output error")
        return super().read(size)


def test_failed_write_is_cut_back(writer: WarcWriter):
    writer.append(metadata_record("urn:x:1", b"{}"))
    size = writer.size
    body = os.urandom(3_000_000)
    good = response_record(API, RESP_HEAD, body)
    # fails after more than the writer's 1 MiB buffer went to the file, so it must be cut
    with pytest.raises(OSError, match="Input/output"):
        writer.append(replace(good, body=FailingBody(body)))
    assert writer.size == size and writer.path.stat().st_size == size
    short = replace(good, body=body[:-1])
    with pytest.raises(IntegrityError, match="were written, not"):
        writer.append(short)
    assert writer.path.stat().st_size == size
    writer.append(good)
    assert writer.close().record_count == 3


def test_close_detects_damage_and_leaves_the_file(writer: WarcWriter):
    ptr = writer.append(conversion_record("https://x.example/1", b"{}" * 500, refers_to="<u:1>"))
    writer.sync()
    with writer.path.open("r+b") as f:
        f.seek(ptr.offset + ptr.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError, match="failed verification"):
        writer.close()
    assert writer.path.exists() and not writer.path.with_name(f"{writer.file_id}.warc.gz").exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda: response_record(API, b"HTTP/1.1 200 OK\r\n\r\nX: 1\r\n\r\n", b""),
        lambda: response_record(API, b"HTTP/1.1 200 OK\r\n \r\n\r\n", b""),
        lambda: response_record(API, b"HTTP/1.1 200 OK\r\n", b""),
        lambda: response_record("ftp://example.com/x", RESP_HEAD, b""),
        lambda: conversion_record("https://x.example/a b", b"{}", refers_to="<u:1>"),
        lambda: conversion_record("https://x.example/a", b"{}", refers_to="<u:1>\r\nX: y"),
        lambda: metadata_record("urn:x", b"", extra_headers=[("WARC-Block-Digest", "x")]),
        lambda: revisit_record(
            API,
            RESP_HEAD,
            payload_digest="sha1:ABC",
            refers_to="<u:1>",
            refers_to_target_uri=API,
            refers_to_date=datetime.now(UTC),
        ),
    ],
)
def test_bad_records_are_refused(build):
    with pytest.raises(ValueError):
        build()


class CountingHash:
    """A SHA-256 that records how many bytes it is fed."""

    made: ClassVar[list[CountingHash]] = []

    def __init__(self) -> None:
        self.fed = 0
        self._h = hashlib.sha256()
        CountingHash.made.append(self)

    def update(self, data: bytes) -> None:
        self.fed += len(data)
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


class CountingReader:
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self.delivered = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._f.read(size)
        self.delivered += len(chunk)
        return chunk


def test_each_byte_is_hashed_once_per_digest(writer: WarcWriter, monkeypatch):
    from archiver import warc

    reads: list[int] = []
    original_read = warc._BodyReader.read

    def counted_read(self, size=-1):
        chunk = original_read(self, size)
        reads.append(len(chunk))
        return chunk

    monkeypatch.setattr(warc_records, "new_sha256", CountingHash)
    monkeypatch.setattr(warc._BodyReader, "read", counted_read)
    CountingHash.made = []
    body = os.urandom(300_000)
    source = CountingReader(body)
    ptr = writer.append_response_stream(API, RESP_HEAD, source, max_bytes=len(body))
    # The source was read once, each digest saw each byte once, warcio read the spool once.
    assert source.delivered == len(body)
    assert [h.fed for h in CountingHash.made] == [len(RESP_HEAD) + len(body), len(body)]
    assert sum(reads) == len(body)
    assert ptr.payload_digest == b32(body) and ptr.block_digest == b32(RESP_HEAD + body)

    CountingHash.made, reads[:] = [], []
    doc = b'{"version": 1, "text": "hello"}'
    conv = writer.append(conversion_record("https://x.example/1", doc, refers_to="<u:1>"))
    # payload == block for a non-HTTP record: one digest, used for both headers
    assert [h.fed for h in CountingHash.made] == [len(doc)] and sum(reads) == len(doc)
    assert conv.block_digest == conv.payload_digest == b32(doc)
    assert writer.close().record_count == 3


def test_warcio_is_never_asked_to_digest(writer: WarcWriter):
    # A record without a payload digest would make warcio compute one (SHA-1, re-reading
    # the body); the writer forbids that, so it fails loudly instead, and is cut back.
    good = conversion_record("https://x.example/1", b"{}", refers_to="<u:1>")
    bare = replace(good, payload_digest=None)
    size = writer.size
    with pytest.raises(AssertionError, match="must be computed by archiver"):
        writer.append(bare)
    assert writer.path.stat().st_size == size


def test_scan_agrees_with_pointers(sample):
    path, pointers, _ = sample
    scan = scan_warc(path)
    assert scan.complete and scan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert scan.records[1:] == tuple(sorted(pointers.values(), key=lambda p: p.offset))


def small(i: int) -> WarcRecord:
    return resource_record(f"urn:x:{i}", os.urandom(1000), content_type="application/x")


def test_pool_rotates_by_size(tmp_path: Path, clock: FakeClock):
    pool = WriterPool(tmp_path, INFO, max_size=5000, max_idle=3600, clock=clock)
    pointers = [pool.append(PART, small(i)) for i in range(14)]
    pool.append(OTHER, small(99))
    closed = pool.take_closed()
    assert len(closed) >= 2 and {c.partition for c in closed} == {PART}
    for c in closed:
        last = max((p for p in pointers if p.file_id == c.file_id), key=lambda p: p.offset)
        # closed right after the record that crossed max_size
        assert last.offset < 5000 <= last.offset + last.length == c.size
    rest = pool.close_all()
    assert OTHER in {c.partition for c in rest} and pool.partitions == []
    assert all(c.size < 5000 for c in rest)
    everything = [*closed, *rest]
    assert {p.file_id for p in pointers} <= {c.file_id for c in everything}
    assert warcio_cli("check", *(c.path for c in everything)).returncode == 0


def test_pool_rotates_idle_and_old_files(tmp_path: Path, clock: FakeClock):
    pool = WriterPool(tmp_path, INFO, max_size=10**9, max_idle=600, max_age=3600, clock=clock)
    pool.append(PART, small(1))
    clock.advance(500)
    pool.append(OTHER, small(2))
    clock.advance(99)
    assert pool.rotate_due() == []
    clock.advance(1)  # PART idle for 600 s
    assert [c.partition for c in pool.rotate_due()] == [PART]
    for _ in range(20):  # OTHER is written every 300 s: never idle, but it gets old
        clock.advance(300)
        pool.append(OTHER, small(3))
        due = pool.rotate_due()
        if due:
            break
    assert [c.partition for c in due] == [OTHER]
    assert due[0].first_record_at == datetime(2024, 5, 1, 12, 8, 20, tzinfo=UTC)
    assert (clock.now - due[0].first_record_at).total_seconds() >= 3600
    assert pool.partitions == [] and pool.close_all() == []


def test_pool_is_safe_across_threads(tmp_path: Path, clock: FakeClock):
    pool = WriterPool(tmp_path, INFO, max_size=20_000, max_idle=3600, clock=clock)
    out: list[RecordPointer] = []

    def work(part: Partition) -> None:
        for i in range(40):
            out.append(pool.append(part, small(i)))

    threads = [threading.Thread(target=work, args=(p,)) for p in (PART, OTHER, PART, OTHER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    closed = pool.close_all()
    scanned = {p for c in closed for p in scan_warc(c.path).records if p.warc_type != "warcinfo"}
    assert scanned == set(out) and len(out) == 160
    assert sum(c.record_count for c in closed) == 160 + len(closed)


def test_sidecar_is_json_with_partition(tmp_path: Path, clock: FakeClock):
    w = WarcWriter(tmp_path, OTHER, INFO, clock=clock)
    data = json.loads(sidecar_path(tmp_path, w.file_id).read_text())
    assert data["partition"] == "general/city-fb/2023-11" and data["file_id"] == w.file_id
    assert gzip.decompress(w.path.read_bytes()).startswith(b"WARC/1.1\r\nWARC-Type: warcinfo")
    w.abandon()
    assert w.path.exists()
