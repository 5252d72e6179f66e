"""Fixity: stored files re-read through the store in one pass, every check recorded.

The archive is a real capture of the fake Bluesky (API exchanges, media, item versions,
the Parquet roll), in a real local store, catalogued on SQLite and on PostgreSQL. Damage is
done to the stored objects on disk, as a failing disk or a careless hand would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver import fixity
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import FixityEvent, StoredFile, WarcRecord
from archiver.config import Config, load_config
from archiver.errors import ArchiverError, StoreError
from archiver.housekeeping import Housekeeping
from archiver.layout import Partition
from archiver.spool import Spool
from archiver.store import LocalStore
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import metadata_record
from tests.connectors.fake_bluesky import FakeBluesky
from tests.corpus import capture_corpus

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")


class UnreachableStore(LocalStore):
    """A local store whose reads fail as a network store's do when it cannot be reached."""

    def open(self, key: str) -> Iterator[bytes]:
        raise StoreError("the store did not answer within 30 s")


@dataclass
class Archive:
    """A captured account: its configuration, store and stored files (WARC and Parquet)."""

    config: Config
    store: LocalStore
    files: list[StoredFile]

    def path(self, file: StoredFile) -> Path:
        return self.store.root / file.key

    def warcs(self) -> list[StoredFile]:
        """The WARC files, the one with most records first."""
        warcs = [f for f in self.files if f.kind == "warc"]
        return sorted(warcs, key=lambda f: -f.records)

    def damage(self, file: StoredFile, at: int) -> None:
        """Change one byte of a stored object (stored objects are read-only: 0444)."""
        path = self.path(file)
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[at] ^= 0x5A
        path.write_bytes(bytes(data))

    def truncate(self, file: StoredFile, size: int) -> None:
        path = self.path(file)
        os.chmod(path, 0o644)
        os.truncate(path, size)


def records_of(catalog: Catalog, file: StoredFile) -> list[WarcRecord]:
    with catalog.reader() as s:
        return list(
            s.scalars(
                select(WarcRecord).where(WarcRecord.file_id == file.id).order_by(WarcRecord.offset)
            )
        )


@pytest.fixture
def archive(tmp_path: Path, httpserver: HTTPServer, catalog: Catalog) -> Archive:
    fake = FakeBluesky(httpserver)
    fake.now = datetime.now(UTC) - timedelta(days=3)
    root = fake.post("Snow emergency declared", images=[("Map of snow routes", "image/png")])
    fake.reply(root, "Thanks for the update")
    fake.post("Leaf pickup schedule", links=["https://city.example.gov/leaves"])
    (tmp_path / "config.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[parquet]
min_rows = 1

[daemon]
fixity_sample = 100

[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
"""
    )
    config = load_config(tmp_path / "config.toml")
    store = LocalStore(tmp_path / "var" / "store")
    runner = CaptureRunner(config, catalog, store, INFO)
    assert runner.capture("mke-bluesky").status == "complete"
    assert runner.roll_parquet()
    with catalog.reader() as s:
        files = list(s.scalars(select(StoredFile).order_by(StoredFile.key)))
        s.expunge_all()
    assert {f.kind for f in files} == {"warc", "parquet"}
    return Archive(config, store, files)


def _events(catalog: Catalog) -> list[FixityEvent]:
    with catalog.session() as s:
        return list(s.scalars(select(FixityEvent).order_by(FixityEvent.id)))


def test_every_file_of_a_capture_passes_with_one_sha256_event_per_file_naming_the_agent(
    catalog: Catalog, archive: Archive
) -> None:
    ids = [f.id for f in archive.files]

    results = list(
        fixity.verify_files(catalog, archive.store, ids, actor="alice", clock=lambda: T0, workers=2)
    )

    assert sorted(r.file_id for r in results) == sorted(ids)
    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    for file in archive.files:
        (result,) = [r for r in results if r.file_id == file.id]
        assert (result.key, result.kind, result.size, result.sha256) == (
            file.key,
            file.kind,
            file.size,
            file.sha256,
        )
        if file.kind == "warc":  # every catalogued record, and the file's warcinfo
            assert result.records == len(records_of(catalog, file)) + 1
            assert result.orphans == ()
        else:
            assert result.records == 0
    events = _events(catalog)
    assert sorted(e.file_id for e in events) == sorted(ids)
    for event in events:
        assert (event.outcome, event.algorithm, event.actor) == ("pass", "sha256", "alice")
        assert event.checked_at.astimezone(UTC) == T0
        file = next(f for f in archive.files if f.id == event.file_id)
        assert event.detail is not None and event.detail.startswith(f"{file.key}: sha256 ")


def test_every_file_of_the_shared_corpus_passes_both_platforms_edits_hides_and_deletions(
    catalog: Catalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "corpus-store")
    capture_corpus(catalog, store, tmp_path / "corpus")
    with catalog.reader() as s:
        ids = list(s.scalars(select(StoredFile.id)))
        catalogued = len(s.scalars(select(WarcRecord.record_id)).all())

    results = list(fixity.verify_files(catalog, store, ids, workers=2))

    assert results and all(r.ok for r in results), [r.detail for r in results if not r.ok]
    warcs = [r for r in results if r.kind == "warc"]
    assert sum(r.records for r in warcs) == catalogued + len(warcs)  # and each warcinfo
    assert all(r.orphans == () for r in results)


def test_a_truncated_warc_fails_naming_the_file_and_the_record_it_ends_in(
    catalog: Catalog, archive: Archive
) -> None:
    warc = archive.warcs()[0]
    cut = records_of(catalog, warc)[len(records_of(catalog, warc)) // 2]
    archive.truncate(warc, cut.offset + cut.length // 2)

    result = fixity.verify_file(catalog, archive.store, warc.id, actor="alice")

    assert result.outcome == "fail"
    assert (result.file_id, result.key) == (warc.id, warc.key)
    assert (result.record_id, result.offset) == (cut.record_id, cut.offset)
    assert result.problem is not None and "truncated" in result.problem
    detail = result.detail or ""
    assert f"{warc.key}: record {cut.record_id} at offset {cut.offset}" in detail
    assert f"the catalog records {warc.size}" in detail
    (event,) = _events(catalog)
    assert (event.file_id, event.outcome, event.actor, event.detail) == (
        warc.id,
        "fail",
        "alice",
        detail,
    )


def test_a_changed_byte_in_a_records_compressed_data_fails_naming_that_record(
    catalog: Catalog, archive: Archive
) -> None:
    warc = archive.warcs()[0]
    hit = max(records_of(catalog, warc), key=lambda r: r.length)
    archive.damage(warc, hit.offset + hit.length // 2)

    result = fixity.verify_file(catalog, archive.store, warc.id)

    assert result.outcome == "fail"
    assert (result.record_id, result.offset) == (hit.record_id, hit.offset)
    assert f"sha256 {result.sha256}, the catalog records {warc.sha256}" in (result.detail or "")
    assert [e.outcome for e in _events(catalog)] == ["fail"]


def test_a_changed_byte_in_a_gzip_member_header_fails_naming_that_record(
    catalog: Catalog, archive: Archive
) -> None:
    """Bytes 4-7 of a member (MTIME) are ignored by zlib: the file's SHA-256 catches the
    change and the member whose header differs from the others' is named."""
    warc = archive.warcs()[0]
    hit = records_of(catalog, warc)[2]
    archive.damage(warc, hit.offset + 5)

    result = fixity.verify_file(catalog, archive.store, warc.id)

    assert result.outcome == "fail"
    assert (result.record_id, result.offset) == (hit.record_id, hit.offset)
    assert "gzip header" in (result.problem or "")


def test_a_changed_byte_in_a_parquet_file_fails_on_its_sha256(
    catalog: Catalog, archive: Archive
) -> None:
    parquet = next(f for f in archive.files if f.kind == "parquet")
    archive.damage(parquet, parquet.size // 2)

    result = fixity.verify_file(catalog, archive.store, parquet.id)

    assert result.outcome == "fail" and result.record_id is None
    assert result.detail == (
        f"{parquet.key}: sha256 {result.sha256}, the catalog records {parquet.sha256}"
    )


def test_a_file_gone_from_the_store_is_missing(catalog: Catalog, archive: Archive) -> None:
    warc = archive.warcs()[0]
    archive.path(warc).unlink()

    result = fixity.verify_file(catalog, archive.store, warc.id)

    assert (result.outcome, result.ok) == ("missing", False)
    assert warc.key in (result.detail or "")
    assert [(e.outcome, e.algorithm) for e in _events(catalog)] == [("missing", "sha256")]


def test_an_unreachable_store_is_not_a_fixity_result(catalog: Catalog, archive: Archive) -> None:
    unreachable = UnreachableStore(archive.store.root)

    with pytest.raises(StoreError):
        fixity.verify_file(catalog, unreachable, archive.files[0].id)
    with pytest.raises(StoreError):
        list(fixity.verify_files(catalog, unreachable, [f.id for f in archive.files], workers=2))
    assert _events(catalog) == []


def test_a_file_id_the_catalog_does_not_know_is_an_error(
    catalog: Catalog, archive: Archive
) -> None:
    with pytest.raises(ArchiverError, match="no stored file '01NOSUCHFILE' in the catalog"):
        fixity.verify_file(catalog, archive.store, "01NOSUCHFILE")


def test_the_daemons_fixity_sampling_is_the_same_check(catalog: Catalog, archive: Archive) -> None:
    warc = archive.warcs()[0]
    hit = records_of(catalog, warc)[1]
    archive.damage(warc, hit.offset + hit.length // 2)

    results = Housekeeping(archive.config, catalog, archive.store, clock=lambda: T0).fixity()

    assert len(results) == len(archive.files)
    (bad,) = [r for r in results if not r.ok]
    assert (bad.file_id, bad.record_id, bad.offset) == (warc.id, hit.record_id, hit.offset)
    events = _events(catalog)
    assert {(e.actor, e.algorithm) for e in events} == {("archiver-daemon", "sha256")}
    assert sorted(e.outcome for e in events) == ["fail"] + ["pass"] * (len(archive.files) - 1)


# -- files written straight through the spool (records no catalog row points to) --------------


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _stored(catalog: Catalog, store: LocalStore, tmp_path: Path, n: int = 1) -> list[StoredFile]:
    """Stored WARC files whose one metadata record was never committed to the catalog."""
    spool = Spool(tmp_path / "spool", store, catalog, max_bytes=10**9)
    spool.prepare()
    rows = []
    for i in range(n):
        writer = WarcWriter(spool.directory, Partition("general", "mke-bluesky", "2026-03"), INFO)
        writer.append(metadata_record(f"urn:test:{i}", json.dumps({"n": i}).encode()))
        rows.append(spool.store_closed(writer.close()))
    return rows


def test_records_the_catalog_does_not_know_are_orphans_and_the_file_passes(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    (row,) = _stored(catalog, store, tmp_path)

    result = fixity.verify_file(catalog, store, row.id)

    assert result.ok and result.records == 2 and len(result.orphans) == 1
    assert "1 record(s) the catalog does not know (orphans, not a failure)" in (result.detail or "")


def test_a_sample_checks_that_many_random_files(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    rows = _stored(catalog, store, tmp_path, n=4)

    assert fixity.check_sample(catalog, store, 0) == []
    two = fixity.check_sample(catalog, store, 2)
    every = fixity.check_sample(catalog, store, 10)

    assert len(two) == 2 and all(r.ok for r in two)
    assert sorted(r.file_id for r in every) == sorted(r.id for r in rows)
    assert len(_events(catalog)) == 6
