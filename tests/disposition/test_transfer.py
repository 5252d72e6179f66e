"""Transfer to another archive: a valid BagIt bag of original records, then a receipt.

Built on the captured archive of ``test_report`` (posts in the transfer series
EXAMPLE-POSTS, comments in the destroy series EXAMPLE-COMMENTS).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import bagit
import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from archiver.catalog.models import (
    AuditEntry,
    DispositionReport,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.disposition import report
from archiver.disposition.transfer import make_bag
from archiver.errors import ArchiverError, RetentionError
from tests.disposition.test_report import (
    AFTER_NOTICE_ENDS,
    COMMENTS,
    POSTS,
    Archive,
    captured_archive,
    make,
)

WARCIO = Path(sys.executable).with_name("warcio")
OPERATOR = "City of Milwaukee"
ZONE = ZoneInfo("America/Chicago")
RECEIVED = datetime(2034, 4, 3, 15, 0, tzinfo=UTC)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    with captured_archive(
        request.param, tmp_path_factory.mktemp(f"transfer-{request.param}"), request
    ) as found:
        yield found


def bag_of(archive: Archive, report_id: str, out: Path) -> Path:
    made = make_bag(
        archive.catalog,
        archive.store,
        report_id,
        out,
        operator=OPERATOR,
        actor="alice",
        now=AFTER_NOTICE_ENDS,
        zone=ZONE,
    )
    return made.path


def records_of(archive: Archive, *names: str) -> set[str]:
    """The record ids of the items' versions and of the media they own."""
    ids = archive.corpus.ids(*names)
    with archive.catalog.reader() as s:
        versions = s.scalars(
            select(ItemVersion.warc_record_id).where(ItemVersion.item_id.in_(ids))
        ).all()
        media = s.scalars(
            select(Media.warc_record_id)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(ids))
        ).all()
    return {*versions, *media}


def check_by_hand(path: Path) -> dict[str, str]:
    """RFC 8493 read without the bagit library: declaration, both manifests, Payload-Oxum.
    Returns bag-info.txt's fields."""
    assert (path / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )

    def manifest(name: str) -> dict[str, str]:
        lines = (path / name).read_text(encoding="utf-8").splitlines()
        return {rel: digest for digest, rel in (line.split(None, 1) for line in lines)}

    payload = {p.relative_to(path).as_posix() for p in (path / "data").rglob("*") if p.is_file()}
    listed = manifest("manifest-sha256.txt")
    assert set(listed) == payload
    tags = manifest("tagmanifest-sha256.txt")
    assert set(tags) == {"bagit.txt", "bag-info.txt", "manifest-sha256.txt"}
    for rel, digest in (*listed.items(), *tags.items()):
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest, rel
    info = dict(
        line.split(": ", 1)
        for line in (path / "bag-info.txt").read_text(encoding="utf-8").splitlines()
    )
    size = sum((path / p).stat().st_size for p in payload)
    assert info["Payload-Oxum"] == f"{size}.{len(payload)}"
    return info


def test_the_bag_of_a_transfer_series_is_valid_bagit_naming_the_city_series_and_report(
    archive: Archive, tmp_path: Path
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    path = bag_of(archive, report_id, tmp_path / "to-whs")

    assert check_by_hand(path)["Source-Organization"] == OPERATOR
    bag = bagit.Bag(str(path))
    bag.validate()  # manifests, tag manifest and Payload-Oxum all check out
    assert bag.version_info == (1, 0)
    assert bag.info["Source-Organization"] == OPERATOR
    assert bag.info["Bagging-Date"] == "2034-04-01"
    assert "EXAMPLE-POSTS" in bag.info["External-Description"]
    assert report_id in bag.info["External-Description"]
    assert archive.schedules["EXAMPLE-POSTS"].title in bag.info["External-Description"]
    # No partial build directory is left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["to-whs"]


def test_the_bag_holds_only_the_transfer_series_items_as_jsonl(
    archive: Archive, tmp_path: Path
) -> None:
    corpus = archive.corpus
    report_id = make(archive, AFTER_NOTICE_ENDS)
    path = bag_of(archive, report_id, tmp_path / "bag")

    lines = (path / "data" / "items.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines]
    assert {i["item_id"] for i in items} == corpus.ids(*POSTS)
    assert not corpus.ids(*COMMENTS) & {i["item_id"] for i in items}
    edited = next(i for i in items if i["item_id"] == corpus.edited_post.id)
    assert [v["change"] for v in edited["versions"]] == ["new", "edited"]
    assert edited["series"] == "EXAMPLE-POSTS"
    assert edited["account"] == corpus.mastodon_account
    assert edited["platform"] == "mastodon"
    assert edited["text"] == "Brush pickup starts May 8 in Harambee"
    leaves = next(i for i in items if i["item_id"] == corpus.images_post.id)
    assert len(leaves["media"]) == 2
    for media in leaves["media"]:
        data = (path / "data" / media["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == media["sha256"]
        assert len(data) == media["size"]
    assert {m["file"].rsplit(".", 1)[1] for m in leaves["media"]} == {"png", "jpg"}


def test_the_bag_holds_the_original_records_byte_for_byte_and_passes_warcio_check(
    archive: Archive, tmp_path: Path
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    path = bag_of(archive, report_id, tmp_path / "bag")
    warc = path / "data" / "records.warc.gz"

    check = subprocess.run(
        [str(WARCIO), "check", "-v", str(warc)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with warc.open("rb") as f:
        found = {r.rec_headers.get_header("WARC-Record-ID") for r in ArchiveIterator(f)}
    assert found == records_of(archive, *POSTS)
    # Each record is the stored gzip member itself, where items.jsonl says it is.
    data = warc.read_bytes()
    items = [json.loads(line) for line in (path / "data" / "items.jsonl").read_text().splitlines()]
    placed = [
        (r["warc_record_id"], r["records_offset"], r["records_length"])
        for i in items
        for r in (*i["versions"], *i["media"])
    ]
    assert {p[0] for p in placed} == found
    with archive.catalog.reader() as s:
        for record_id, offset, length in placed:
            rec, key = s.execute(
                select(WarcRecord, StoredFile.key)
                .join(StoredFile, StoredFile.id == WarcRecord.file_id)
                .where(WarcRecord.record_id == record_id)
            ).one()
            assert length == rec.length
            assert data[offset : offset + length] == archive.store.get(key, rec.offset, rec.length)


def test_making_the_bag_is_noted_on_the_report_and_audited(
    archive: Archive, tmp_path: Path
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    path = bag_of(archive, report_id, tmp_path / "bag")

    with archive.catalog.reader() as s:
        row = s.get(DispositionReport, report_id)
        assert row is not None
        summary = row.summary
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "retention.transfer", AuditEntry.subject == report_id
            )
        ).one()
    [noted] = summary["transfers"]
    assert noted["name"] == "bag"
    assert set(noted["items"]) == archive.corpus.ids(*POSTS)
    tagmanifest = (path / "tagmanifest-sha256.txt").read_bytes()
    assert noted["tagmanifest_sha256"] == hashlib.sha256(tagmanifest).hexdigest()
    assert entry.actor == "alice"
    assert entry.detail["payload_oxum"] == noted["payload_oxum"]
    assert entry.detail["series"] == ["EXAMPLE-POSTS"]


def test_a_receipt_is_recorded_once_after_a_bag_was_made_and_disposition_can_read_it(
    archive: Archive, tmp_path: Path
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    with archive.catalog.session() as s:
        assert report.transfer_receipt(s, report_id) is None
        with pytest.raises(RetentionError, match="no transfer package was made"):
            report.record_receipt(
                s, report_id, reference="R-1", received_on=RECEIVED, actor="alice", now=RECEIVED
            )
    bag_of(archive, report_id, tmp_path / "bag")

    with archive.catalog.session() as s:
        report.record_receipt(
            s, report_id, reference="WHS-ACC-2034-12", received_on=RECEIVED, actor="bob",
            now=RECEIVED,
        )  # fmt: skip
    with archive.catalog.session() as s:
        receipt = report.transfer_receipt(s, report_id)
        with pytest.raises(RetentionError, match=r"WHS-ACC-2034-12.*already recorded"):
            report.record_receipt(
                s, report_id, reference="again", received_on=RECEIVED, actor="bob", now=RECEIVED
            )
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "retention.receipt", AuditEntry.subject == report_id
            )
        ).one()
    assert receipt is not None
    assert receipt["reference"] == "WHS-ACC-2034-12"
    assert receipt["received_on"] == RECEIVED.isoformat()
    assert receipt["recorded_by"] == "bob"
    assert set(receipt["items"]) == archive.corpus.ids(*POSTS)
    assert entry.detail["reference"] == "WHS-ACC-2034-12"
    assert entry.detail["items"] == 3


def test_a_report_without_transfer_items_or_an_occupied_directory_is_refused(
    archive: Archive, tmp_path: Path
) -> None:
    comments_only = make(archive, AFTER_NOTICE_ENDS, series="EXAMPLE-COMMENTS")
    with pytest.raises(RetentionError, match="no item of a series whose disposition is transfer"):
        bag_of(archive, comments_only, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(ArchiverError, match="not an empty directory"):
        bag_of(archive, make(archive, AFTER_NOTICE_ENDS), occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]


def test_a_receipt_that_arrives_after_its_report_expired_counts_for_the_next_report(
    archive: Archive, tmp_path: Path
) -> None:
    first = make(archive, AFTER_NOTICE_ENDS)
    bag_of(archive, first, tmp_path / "bag")
    later = AFTER_NOTICE_ENDS + timedelta(days=45)  # the first report has expired
    with archive.catalog.session() as s:
        report.record_receipt(
            s, first, reference="WHS-LATE-1", received_on=later, actor="bob", now=later
        )
    second = make(archive, later)

    with archive.catalog.reader() as s:
        receipt = report.transfer_receipt(s, second)
    assert receipt is not None
    assert set(receipt["items"]) == archive.corpus.ids(*POSTS)
    assert "WHS-LATE-1" in receipt["references"]
    assert receipt["report"] == first


def test_a_receipt_dated_before_its_package_was_made_is_refused(
    archive: Archive, tmp_path: Path
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    bag_of(archive, report_id, tmp_path / "bag")

    with archive.catalog.session() as s, pytest.raises(RetentionError, match="before the"):
        report.record_receipt(
            s, report_id, reference="R", received_on=datetime(2034, 3, 1, tzinfo=UTC),
            actor="bob", now=AFTER_NOTICE_ENDS,
        )  # fmt: skip


def test_an_item_with_a_version_captured_after_its_package_was_made_is_not_received(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with captured_archive("sqlite", tmp_path / "archive", request) as own:
        report_id = make(own, AFTER_NOTICE_ENDS)
        bag_of(own, report_id, tmp_path / "bag")
        with own.catalog.session() as s:
            report.record_receipt(
                s, report_id, reference="R-2", received_on=RECEIVED, actor="bob", now=RECEIVED
            )
            # The post is captured again with an edit after the package left.
            snow = s.get(Item, own.corpus.snow_post.id)
            assert snow is not None
            last = s.scalars(
                select(ItemVersion)
                .where(ItemVersion.item_id == snow.id)
                .order_by(ItemVersion.version_no.desc())
            ).first()
            assert last is not None
            snow.versions += 1
            s.add(
                ItemVersion(
                    item_id=snow.id,
                    version_no=snow.versions,
                    content_sha256="e" * 64,
                    captured_at=RECEIVED,
                    change="edited",
                    warc_file_id=last.warc_file_id,
                    warc_offset=last.warc_offset,
                    warc_length=last.warc_length,
                    warc_record_id=last.warc_record_id,
                    partition=last.partition,
                )
            )
        with own.catalog.reader() as s:
            receipt = report.transfer_receipt(s, report_id)
        assert receipt is not None
        assert set(receipt["items"]) == own.corpus.ids("images_post", "edited_post")
