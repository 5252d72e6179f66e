"""Crash recovery of spool WARC files: a tear at any byte leaves exactly the records before it."""

from __future__ import annotations

import gzip
import hashlib
import random
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.errors import IntegrityError
from archiver.layout import Partition
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import (
    RecordPointer,
    conversion_record,
    http_head,
    metadata_record,
    request_record,
    response_record,
)
from archiver.warc_recovery import finalize_warc, repair_warc, scan_warc

WARCIO = Path(sys.executable).with_name("warcio")
PART = Partition("general", "city-fb", "2024-05")
INFO = WarcInfo("city-archiver 0.1.0", {"warcio": "1.8.1"}, "City Clerk", "n1")
API = "https://graph.example.com/v19.0/123/posts"
HEAD = http_head("HTTP/1.1 200 OK", [("Content-Type", "application/json")])


@dataclass(frozen=True)
class Spool:
    """A spool file as a crash leaves it: records appended and synced, never closed."""

    file_id: str
    data: bytes
    pointers: tuple[RecordPointer, ...]  # warcinfo first


def write_spool(directory: Path) -> Spool:
    moments = iter(datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(999))
    w = WarcWriter(directory, PART, INFO, clock=lambda: next(moments))
    rng = random.Random(7)
    appended = []
    for i in range(10):
        body = rng.randbytes(rng.choice([50, 3000, 40_000]))
        resp = response_record(f"{API}?page={i}", HEAD, body)
        appended.append(w.append(resp))
        req = http_head(f"GET /v19.0/123/posts?page={i} HTTP/1.1", [("Host", "x")])
        appended.append(
            w.append(request_record(f"{API}?page={i}", req, concurrent_to=resp.record_id))
        )
        if i == 4:  # one member spanning several of the scanner's 1 MiB reads
            media = rng.randbytes(2_300_000)
            appended.append(w.append_response_stream(API, HEAD, [media], max_bytes=10**7))
        appended.append(
            w.append(
                conversion_record(f"https://x.example/{i}", b"{}" * i, refers_to=resp.record_id)
            )
        )
        w.sync()  # the write order: each page is synced before its catalog commit
    w.abandon()  # then the process dies: the .open file stays
    data = w.path.read_bytes()
    scan = scan_warc(w.path)
    assert scan.complete and scan.records[1:] == tuple(appended)
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    return Spool(w.file_id, data, scan.records)


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Spool:
    return write_spool(tmp_path_factory.mktemp("source"))


def place(directory: Path, spool: Spool, data: bytes) -> Path:
    directory.mkdir(parents=True)
    path = directory / f"{spool.file_id}.warc.gz.open"
    path.write_bytes(data)
    return path


def warcio_check(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WARCIO), "check", "-v", *map(str, paths)], capture_output=True, text=True, timeout=600
    )


def tear_positions(spool: Spool) -> list[int]:
    size = len(spool.data)
    rng = random.Random(20240501)
    positions = {rng.randrange(size) for _ in range(40)}
    for ptr in spool.pointers:
        starts = ptr.offset
        ends = ptr.offset + ptr.length
        positions |= {starts + 1, starts + 5, starts + 10, starts + 11}  # inside the gzip header
        positions |= {ends - 8, ends - 1, ends, ends + 1}  # inside the gzip trailer, at the end
        positions |= {starts + ptr.length // 2}
    positions |= {0, 1, size - 1, size}
    return sorted(p for p in positions if 0 <= p <= size)


def test_a_tear_at_any_byte_keeps_every_record_before_it(spool: Spool, tmp_path: Path):
    intact: list[Path] = []
    expected_records = 0
    for at in tear_positions(spool):
        path = place(tmp_path / f"t{at}", spool, spool.data[:at])
        result = repair_warc(path)
        before = tuple(p for p in spool.pointers if p.offset + p.length <= at)
        kept = before[-1].offset + before[-1].length if before else 0
        assert result.records == before, at  # same ids, offsets, lengths and digests
        assert (result.kept_bytes, result.cut_bytes) == (kept, at - kept), at
        assert path.stat().st_size == kept and path.read_bytes() == spool.data[:kept]
        assert (result.problem is None) == (kept == at), at
        assert result.empty == (not before)
        if before:
            closed = finalize_warc(path, PART, expected_records=len(before))
            assert closed.sha256 == hashlib.sha256(spool.data[:kept]).hexdigest()
            intact.append(closed.path)
            expected_records += len(before)
    assert len(intact) > 50
    check = warcio_check(intact)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert check.stdout.count("digest pass") == expected_records


def test_repair_of_an_intact_file_changes_nothing(spool: Spool, tmp_path: Path):
    path = place(tmp_path / "ok", spool, spool.data)
    result = repair_warc(path)
    assert result.cut_bytes == 0 and result.problem is None
    assert result.records == spool.pointers and path.read_bytes() == spool.data


def _member_with_bad_digest(spool: Spool) -> bytes:
    ptr = spool.pointers[-1]
    raw = bytearray(gzip.decompress(spool.data[ptr.offset : ptr.offset + ptr.length]))
    raw[-5] ^= 0x01  # a byte of the block: the gzip is valid, the WARC digest is not
    return gzip.compress(bytes(raw))


GARBAGE = {
    "zeros": lambda s: b"\0" * 4096,
    "random": lambda s: random.Random(1).randbytes(5000),
    "gzip magic then junk": lambda s: b"\x1f\x8b\x08\x00" + b"junk" * 50,
    "gzip of not a record": lambda s: gzip.compress(b"hello, not a WARC record\r\n\r\n"),
    "valid gzip, bad digest": _member_with_bad_digest,
    "half a copy of a member": lambda s: s.data[s.pointers[3].offset :][
        : s.pointers[3].length // 2
    ],
    "gzip header only": lambda s: gzip.compress(b"WARC/1.1\r\n")[:10],
}


@pytest.mark.parametrize("kind", GARBAGE)
def test_trailing_garbage_is_cut(spool: Spool, tmp_path: Path, kind: str):
    garbage = GARBAGE[kind](spool)
    path = place(tmp_path / "g", spool, spool.data + garbage)
    result = repair_warc(path)
    assert result.records == spool.pointers
    assert result.cut_bytes == len(garbage) and result.problem
    assert path.read_bytes() == spool.data
    assert warcio_check([path]).returncode == 0


def test_damage_followed_by_valid_records_is_not_cut_unless_forced(spool: Spool, tmp_path: Path):
    victim = spool.pointers[5]
    data = bytearray(spool.data)
    data[victim.offset + victim.length // 2] ^= 0xFF  # a bad disk block, not a crash tear
    path = place(tmp_path / "d", spool, bytes(data))
    with pytest.raises(IntegrityError, match="a valid record follows at offset"):
        repair_warc(path)
    assert path.read_bytes() == bytes(data)  # nothing cut
    result = repair_warc(path, force=True)
    assert result.records == spool.pointers[:5] and result.kept_bytes == victim.offset
    assert result.valid_after == spool.pointers[6].offset


def test_a_file_torn_inside_warcinfo_ends_empty(spool: Spool, tmp_path: Path):
    info = spool.pointers[0]
    assert info.warc_type == "warcinfo"
    path = place(tmp_path / "w", spool, spool.data[: info.length - 3])
    result = repair_warc(path)
    assert result.empty and result.kept_bytes == 0 and path.stat().st_size == 0
    assert "incomplete" in (result.problem or "")
    empty = place(tmp_path / "e", spool, b"")
    assert repair_warc(empty).empty and repair_warc(empty).problem is None
    with pytest.raises(IntegrityError, match="holds no records"):
        finalize_warc(empty, PART)


def test_a_file_not_starting_with_warcinfo_is_refused(spool: Spool, tmp_path: Path):
    second = spool.pointers[1]
    path = place(tmp_path / "n", spool, spool.data[second.offset :])
    scan = scan_warc(path)
    assert scan.records == () and "not warcinfo" in (scan.problem or "")


def test_finalize_refuses_a_damaged_file_and_leaves_it(spool: Spool, tmp_path: Path):
    path = place(tmp_path / "f", spool, spool.data + b"\0")
    with pytest.raises(IntegrityError, match="failed verification"):
        finalize_warc(path, PART)
    assert path.exists() and path.read_bytes() == spool.data + b"\0"
    with pytest.raises(IntegrityError, match="were written"):
        finalize_warc(place(tmp_path / "g", spool, spool.data), PART, expected_records=3)


def test_scanner_memory_is_bounded_per_member(tmp_path: Path):
    # A 64 MiB block of zeros compresses to ~64 KiB; the scanner must inflate it in steps.
    w = WarcWriter(tmp_path, PART, INFO)
    ptr = w.append(metadata_record("urn:x:big", bytes(64 << 20), content_type="x/y"))
    w.sync()
    assert ptr.length < 1 << 20
    tracemalloc.start()
    try:
        scan = scan_warc(w.path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.complete and scan.records[-1] == ptr
    assert peak < 8 << 20, peak
    assert w.close().record_count == 2
