"""A full disk: a clear error, and nothing that was committed or spooled is lost.

These tests mount a real, tiny tmpfs (root only: CI runs as root); elsewhere they are
skipped with that reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.catalog import Catalog
from archiver.errors import ArchiverError, StoreError
from archiver.layout import Partition
from archiver.spool import Spool
from archiver.store import LocalStore
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import resource_record

PARTITION = Partition("general", "mke-bluesky", "2026-11")
INFO = WarcInfo("city-archiver/test", {}, "City of Milwaukee", "node-1")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _spooled_warc(spool_dir: Path, megabytes: int) -> tuple[WarcWriter, Path]:
    writer = WarcWriter(spool_dir, PARTITION, INFO)
    for n in range(megabytes):
        writer.append(
            resource_record(
                f"urn:test:{n}", os.urandom(1 << 20), content_type="application/octet-stream"
            )
        )
    return writer, writer.path


def test_a_full_store_refuses_the_put_and_the_spool_keeps_the_file(
    small_disk: Path, tmp_path: Path, catalog: Catalog
) -> None:
    spool = Spool(tmp_path / "spool", LocalStore(small_disk / "store"), catalog, max_bytes=10**9)
    spool.prepare()
    writer, _ = _spooled_warc(spool.directory, 3)  # 3 MiB of incompressible data
    closed = writer.close()

    with pytest.raises(StoreError, match=r"No space left on device"):
        spool.store_closed(closed)

    assert closed.path.exists()  # nothing lost: it waits in the spool for the next try
    store_files = [
        p for p in (small_disk / "store").rglob("*") if p.is_file() and ".lock" not in p.name
    ]
    assert not [p for p in store_files if p.suffix == ".gz"]  # no partial object
    assert not list((small_disk / "store" / ".tmp").glob("*"))  # and no temp left behind


def test_a_full_spool_refuses_the_record_and_keeps_every_record_before_it(small_disk: Path) -> None:
    writer = WarcWriter(small_disk, PARTITION, INFO)
    kept = []
    with pytest.raises((OSError, ArchiverError)):
        for n in range(8):
            kept.append(
                writer.append(
                    resource_record(
                        f"urn:test:{n}",
                        os.urandom(512 << 10),
                        content_type="application/octet-stream",
                    )
                )
            )
            writer.sync()
    assert kept  # some records fitted
    writer.abandon()
    from archiver.warc_recovery import scan_warc

    scan = scan_warc(writer.path)
    # Every record the writer returned a pointer for is intact; the failed one is not there.
    assert [p.record_id for p in scan.records[1:]] == [p.record_id for p in kept]
    assert scan.complete


def test_a_video_copied_onto_a_full_spool_is_refused_and_the_file_cut_back(
    small_disk: Path,
) -> None:
    """The body fits in its temporary file; the kernel copy into the WARC does not."""
    from archiver.warc_media import spool_response
    from archiver.warc_records import http_head, request_record
    from archiver.warc_recovery import scan_warc

    url = "https://video.example.com/council.mp4"
    writer = WarcWriter(small_disk, PARTITION, INFO)
    before = writer.append(request_record(url, b"GET /council.mp4 HTTP/1.1\r\nHost: v\r\n\r\n"))
    writer.sync()
    size_before = writer.size
    body = os.urandom(1200 << 10)
    head = http_head("HTTP/1.1 200 OK", [("Content-Type", "video/mp4")])
    with (
        spool_response(url, head, iter([body]), max_bytes=len(body), tmp_dir=small_disk) as video,
        pytest.raises(OSError) as caught,
    ):
        writer.append(video.record)
    assert caught.value.errno == errno.ENOSPC
    assert writer.size == size_before == os.path.getsize(writer.path)  # nothing half-written

    # With the temporary file gone there is room again, and the file goes on.
    after = writer.append(request_record(url, b"GET /council.mp4 HTTP/1.1\r\nHost: v\r\n\r\n"))
    writer.abandon()
    scan = scan_warc(writer.path)
    assert scan.complete
    assert [p.record_id for p in scan.records[1:]] == [before.record_id, after.record_id]
