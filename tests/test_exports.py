"""The export-archive reader, held to hostile archives and to ``warcio check``.

Every refusal must come before anything reaches the sink: a refused archive imports nothing.
Hostile archives are built here with ``zipfile`` and, where ``zipfile`` will not write the
lie, by patching header fields of a good archive.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.errors import ExportArchiveError
from archiver.exports import ExportLimits, content_type_for, open_export
from archiver.layout import Partition
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import RecordPointer, WarcRecord

WARCIO = Path(sys.executable).with_name("warcio")
MiB = 1 << 20
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class RecordingSink:
    """A sink that keeps the records it is handed."""

    records: list[WarcRecord] = field(default_factory=list)

    def append(self, record: WarcRecord) -> RecordPointer:
        self.records.append(record)
        return RecordPointer(
            file_id="test",
            offset=len(self.records),
            length=1,
            record_id=record.record_id,
            block_digest=record.block_digest,
            payload_digest=record.payload_digest,
            warc_type=record.warc_type,
            target_uri=record.target_uri,
            date=datetime(2024, 5, 1, tzinfo=UTC),
        )


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def make_zip(
    path: Path,
    entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names; we mean them
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def patch_entry(
    path: Path, name: str, *, central: tuple[int, str, int], local: bool = True
) -> None:
    """Overwrite one field of ``name``'s central header (and the same in its local header).

    ``central`` is (offset in the central header, struct format, value); the local header
    holds the same field 2 bytes earlier for flags, CRC and sizes (offsets 8-27 → 6-25).
    """
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name.encode():
            offset, fmt, value = central
            struct.pack_into(fmt, data, at + offset, value)
            if local and 8 <= offset < 28:
                header = struct.unpack_from("<L", data, at + 42)[0]
                struct.pack_into(fmt, data, header + offset - 2, value)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no central header for {name}")


FLAGS, CRC, PACKED, SIZE, OFFSET = 8, 16, 20, 24, 42


def refused(path: Path, sink: RecordingSink, *, limits: ExportLimits | None = None) -> str:
    """Open ``path``, expect a refusal, check nothing was archived; the message."""
    with pytest.raises(ExportArchiveError) as caught:
        if limits is None:
            open_export(path, sink=sink)
        else:
            open_export(path, sink=sink, limits=limits)
    assert sink.records == [], "a refused archive must import nothing"
    message = str(caught.value)
    assert "imported" in message
    assert caught.value.exit_code == 11
    return message


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("..", "'..'"),
        ("/abs", "absolute path"),
        ("/etc/cron.d/x", "absolute path"),
        ("C:\\x", "backslashes"),
        ("media\\..\\..\\x.png", "backslashes"),
        ("C:/Windows/x.dll", "drive letter"),
        ("c:x", "drive letter"),
        ("a/./b", "not a plain relative path"),
        ("./outbox.json", "not a plain relative path"),
        ("a//b", "not a plain relative path"),
        ("a\nb.json", "control characters"),
        ("../escape/", "'..'"),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, sink: RecordingSink, name: str, why: str) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b"{}"), (name, b"payload")])
    message = refused(path, sink)
    assert why in message
    assert repr(name) in message
    assert "Nothing from it was imported" in message


def test_symlink_entry_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    link = zipfile.ZipInfo("avatar.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b"{}"), (link, b"/etc/shadow")])
    assert "'avatar.png' is a symbolic link" in refused(path, sink)


def test_device_entry_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    fifo = zipfile.ZipInfo("pipe")
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    path = make_zip(tmp_path / "x.zip", [(fifo, b"")])
    assert "named pipe" in refused(path, sink)


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["outbox.json", "outbox.json"], "'outbox.json' appears twice"),
        (["caf\u00e9.json", "cafe\u0301.json"], "is the same name as"),
        (["media", "media/a.png"], "'media' is both a file and a directory"),
    ],
)
def test_duplicate_and_conflicting_names_are_refused(
    tmp_path: Path, sink: RecordingSink, names: list[str], why: str
) -> None:
    path = make_zip(tmp_path / "x.zip", [(n, b"x") for n in names])
    assert why in refused(path, sink)


# -- flags, methods, layout ------------------------------------------------------------------


def test_encrypted_entry_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b"{}"), ("secret.json", b"{}")])
    patch_entry(path, "secret.json", central=(FLAGS, "<H", 0x1))
    assert "'secret.json' is encrypted" in refused(path, sink)


def test_unsupported_compression_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("a.json", b"{}")], zipfile.ZIP_LZMA)
    assert "compression method 14" in refused(path, sink)


def test_overlapping_entries_are_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("a.json", b"a" * 100), ("b.json", b"b" * 100)])
    patch_entry(path, "b.json", central=(OFFSET, "<L", 0), local=False)
    assert "overlaps" in refused(path, sink)


def test_entry_past_the_end_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("a.json", b"a" * 100), ("b.json", b"b" * 100)])
    patch_entry(path, "b.json", central=(PACKED, "<L", 10_000_000), local=False)
    assert "runs past the end" in refused(path, sink)


# -- sizes and bombs --------------------------------------------------------------------------


def test_too_many_entries_are_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [(f"e{i}.json", b"{}") for i in range(6)])
    message = refused(path, sink, limits=ExportLimits(max_entries=5))
    assert "6 entries, more than the limit of 5" in message
    assert ExportLimits().max_entries == 200_000


def test_entry_count_of_a_zip64_archive_is_read_before_parsing(
    tmp_path: Path, sink: RecordingSink
) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(0x10000 + 1):  # past the 16-bit count: a zip64 end record
            zf.writestr(f"{i}", b"")
    message = refused(path, sink, limits=ExportLimits(max_entries=0x10000))
    assert "it declares 65537 entries, more than the limit of 65536" in message


def test_entry_over_the_size_cap_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("small.json", b"{}"), ("big.bin", os.urandom(2000))])
    message = refused(path, sink, limits=ExportLimits(max_entry_bytes=1000))
    assert "'big.bin' declares 2000 bytes, more than the limit of 1000" in message
    assert ExportLimits().max_entry_bytes == 4 << 30


def test_total_over_the_cap_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [(f"m{i}.bin", os.urandom(1500)) for i in range(3)])
    message = refused(path, sink, limits=ExportLimits(max_total_bytes=4000))
    assert "more than 4000 bytes in total" in message
    assert "'m2.bin'" in message
    assert ExportLimits().max_total_bytes == 50 << 30


def write_zeros(path: Path, name: str, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("outbox.json", b"{}")
        with zf.open(name, "w") as out:
            block = bytes(MiB)
            for _ in range(size // MiB):
                out.write(block)
    return path


def test_compression_bomb_is_refused_by_its_declared_ratio(
    tmp_path: Path, sink: RecordingSink
) -> None:
    path = write_zeros(tmp_path / "bomb.zip", "zeros.bin", 100 * MiB)
    assert path.stat().st_size < MiB  # 100 MiB of zeros in ~100 KB
    message = refused(path, sink)
    assert "'zeros.bin' would expand" in message
    assert "decompression bomb" in message


def lying_archive(tmp_path: Path) -> Path:
    """10 MiB of zeros whose headers say 1000 bytes: the ratio check cannot see it."""
    path = write_zeros(tmp_path / "liar.zip", "zeros.bin", 10 * MiB)
    patch_entry(path, "zeros.bin", central=(SIZE, "<L", 1000))
    return path


def test_entry_that_lies_about_its_size_is_refused_while_verifying(
    tmp_path: Path, sink: RecordingSink
) -> None:
    message = refused(lying_archive(tmp_path), sink)
    assert "'zeros.bin' expands beyond the 1000 bytes it declares" in message


def test_entry_that_lies_about_its_size_is_refused_when_read(
    tmp_path: Path, sink: RecordingSink
) -> None:
    with open_export(lying_archive(tmp_path), sink=sink, verify=False) as archive:
        assert archive.read("outbox.json")[0] == b"{}"
        sink.records.clear()
        with pytest.raises(ExportArchiveError, match="expands beyond the 1000 bytes"):
            archive.read("zeros.bin")
        got: list[bytes] = []
        with pytest.raises(ExportArchiveError, match="expands beyond"):
            got.extend(archive.stream("zeros.bin"))
        assert sum(map(len, got)) <= 1000
    assert sink.records == []


def test_entry_shorter_than_declared_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b"x" * 5000)])
    patch_entry(path, "outbox.json", central=(SIZE, "<L", 6000))
    assert "holds 5000 bytes, not the 6000 it declares" in refused(path, sink)


def test_bad_crc_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b'{"orderedItems": []}')])
    patch_entry(path, "outbox.json", central=(CRC, "<L", 0xDEADBEEF))
    assert "CRC-32" in refused(path, sink)


def test_flipped_compressed_byte_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", os.urandom(3000))])
    data = bytearray(path.read_bytes())
    data[30 + len("outbox.json") + 1500] ^= 0xFF  # inside outbox.json's compressed data
    path.write_bytes(bytes(data))
    message = refused(path, sink)
    assert "'outbox.json'" in message
    assert "CRC-32" in message or "damaged" in message


def test_local_header_naming_another_file_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", b"{}"), ("actor.json", b"{}")])
    data = path.read_bytes()
    # The central directory says "actor.json"; its local header now says "../ctor.json".
    at = data.index(b"actor.json")
    path.write_bytes(data[:at] + b"../ctor.json"[:10] + data[at + 10 :])
    assert "local header naming another file" in refused(path, sink)


# -- not a (whole) zip ---------------------------------------------------------------------------


def test_truncated_archive_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    path = make_zip(tmp_path / "x.zip", [("outbox.json", os.urandom(4000))])
    path.write_bytes(path.read_bytes()[:3000])
    assert "not a zip archive or is damaged" in refused(path, sink)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"name,text\n1,hello\n", "not a zip archive"),
        (b"", "it is empty"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 100, "only zip archives"),
    ],
)
def test_not_a_zip_is_refused(
    tmp_path: Path, sink: RecordingSink, content: bytes, why: str
) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(content)
    assert why in refused(path, sink)


def test_missing_file_and_directory_are_refused(tmp_path: Path, sink: RecordingSink) -> None:
    assert "cannot open" in refused(tmp_path / "nope.zip", sink)
    assert "cannot open" in refused(tmp_path, sink)


# -- a good archive ------------------------------------------------------------------------------


def good_archive(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "export.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("outbox.json", b'{"type": "OrderedCollection", "orderedItems": []}')
        zf.writestr("media_attachments/", b"")
        zf.writestr("media_attachments/files/a b#c?.png", PNG)
        zf.writestr("caf\u00e9.json", b"{}")
        zf.writestr(zipfile.ZipInfo("notes.bz2.txt"), b"hello " * 1000, zipfile.ZIP_BZIP2)
        zf.writestr(zipfile.ZipInfo("stored.bin"), b"\x00\x01" * 10, zipfile.ZIP_STORED)
    return tmp_path / "export.zip"


def test_good_archive_lists_regular_files_in_order(tmp_path: Path, sink: RecordingSink) -> None:
    path = good_archive(tmp_path)
    with open_export(path, sink=sink) as archive:
        assert archive.names() == (
            "outbox.json",
            "media_attachments/files/a b#c?.png",
            "caf\u00e9.json",
            "notes.bz2.txt",
            "stored.bin",
        )
        assert archive.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert archive.entry("stored.bin").size == 20
        assert archive.read("notes.bz2.txt")[0] == b"hello " * 1000
        assert archive.read("stored.bin")[0] == b"\x00\x01" * 10
        assert b"".join(archive.stream("media_attachments/files/a b#c?.png")) == PNG
        with pytest.raises(ExportArchiveError, match="has no entry 'media_attachments/'"):
            archive.read("media_attachments/")


def test_each_entry_is_archived_once_as_a_resource(tmp_path: Path, sink: RecordingSink) -> None:
    path = good_archive(tmp_path)
    with open_export(path, sink=sink) as archive:
        assert sink.records == []  # opening and verifying archive nothing
        data, evidence = archive.read("outbox.json")
        again, same = archive.read("outbox.json")
        assert (again, same) == (data, evidence)
        _, media_evidence = archive.read("media_attachments/files/a b#c?.png")
        list(archive.stream("stored.bin"))  # streaming archives nothing
        assert archive.evidence_of("stored.bin") is None
        assert archive.evidence_of("outbox.json") == evidence
    assert [r.record_id for r in sink.records] == [evidence, media_evidence]
    outbox, png = sink.records
    assert outbox.warc_type == "resource"
    assert outbox.content_type == "application/json"
    assert outbox.body == data
    assert outbox.target_uri == f"urn:archiver:export:{archive.sha256}/outbox.json"
    assert png.content_type == "image/png"
    assert png.target_uri == (
        f"urn:archiver:export:{archive.sha256}/media_attachments/files/a%20b%23c%3F.png"
    )
    headers = dict(outbox.headers)
    assert headers["Archiver-Export-Filename"] == "export.zip"
    assert "Archiver-Export-Entry-Modified" in headers


def test_closed_archive_cannot_be_read(tmp_path: Path, sink: RecordingSink) -> None:
    archive = open_export(good_archive(tmp_path), sink=sink)
    archive.close()
    with pytest.raises(ExportArchiveError, match="closed"):
        archive.read("outbox.json")


def test_entry_too_large_to_read_whole_must_be_streamed(
    tmp_path: Path, sink: RecordingSink
) -> None:
    path = make_zip(tmp_path / "x.zip", [("video.mp4", os.urandom(5000))])
    with open_export(path, sink=sink, limits=ExportLimits(max_read_bytes=4096)) as archive:
        with pytest.raises(ExportArchiveError, match="more than the 4096 that may be read"):
            archive.read("video.mp4")
        assert sum(map(len, archive.stream("video.mp4"))) == 5000
    assert sink.records == []


def test_resource_records_pass_warcio_check(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    info = WarcInfo("city-archiver test", {"warcio": "1.7.4"}, "City Clerk", "n1")
    writer = WarcWriter(spool, Partition("social-media", "mke-mastodon", "2024-05"), info)
    path = good_archive(tmp_path)
    with open_export(path, sink=writer) as archive:
        read = {name: archive.read(name) for name in archive.names()}
    closed = writer.close()
    check = subprocess.run(
        [str(WARCIO), "check", "-v", str(closed.path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with closed.path.open("rb") as f:
        found = {
            r.rec_headers.get_header("WARC-Record-ID"): (
                r.rec_headers.get_header("WARC-Target-URI"),
                r.rec_headers.get_header("Content-Type"),
                r.content_stream().read(),
            )
            for r in ArchiveIterator(f)
            if r.rec_type == "resource"
        }
    assert len(found) == len(read)
    for name, (data, evidence) in read.items():
        uri, ctype, block = found[evidence]
        assert uri == archive.entry_uri(name)
        assert ctype == content_type_for(name)
        assert block == data


def test_large_entry_is_streamed_in_bounded_memory(tmp_path: Path, sink: RecordingSink) -> None:
    path = tmp_path / "big.zip"
    expected = hashlib.sha256()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("outbox.json", b"{}")
        with zf.open("media/video.mp4", "w") as out:
            for _ in range(50):
                block = os.urandom(MiB)
                expected.update(block)
                out.write(block)
    tracemalloc.start()
    try:
        with open_export(path, sink=sink) as archive:  # hashes and verifies: two full passes
            got = hashlib.sha256()
            size = 0
            for chunk in archive.stream("media/video.mp4"):
                got.update(chunk)
                size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 50 * MiB
    assert got.hexdigest() == expected.hexdigest()
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        ExportLimits(max_ratio=0)


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("outbox.json", "application/json"),
        ("a/B.PNG", "image/png"),
        ("x.jpeg", "image/jpeg"),
        ("clip.mp4", "video/mp4"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_types(name: str, ctype: str) -> None:
    assert content_type_for(name) == ctype
