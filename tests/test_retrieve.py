"""Reading records back by their catalog pointers: ranged, digest-checked, revisits followed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select, update

from archiver.catalog import Catalog
from archiver.catalog.models import Item, ItemVersion, StoredFile, WarcRecord
from archiver.errors import ArchiverError, IntegrityError
from archiver.retrieve import read_payload, read_record
from tests.connectors.fake_bluesky import FakeBluesky
from tests.test_restore import Archive, bluesky_archive, new_fake


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


@pytest.fixture
def archive(tmp_path: Path, fake: FakeBluesky, catalog: Catalog) -> Archive:
    return bluesky_archive(tmp_path, fake, catalog)


def _source_of(archive: Archive, platform_item_id: str) -> str:
    with archive.catalog.reader() as s:
        version = s.scalars(
            select(ItemVersion)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.platform_item_id == platform_item_id)
        ).one()
    record = read_record(archive.catalog, archive.store, version.warc_record_id)
    return record.headers["WARC-Refers-To"]


def test_a_response_payload_is_the_body_the_server_sent_after_the_http_head(
    archive: Archive, fake: FakeBluesky
) -> None:
    post = fake.post("Library hours")
    archive.capture("mke-bluesky")

    payload = read_payload(archive.catalog, archive.store, _source_of(archive, post))

    sent = archive.served_response(payload.record.headers["WARC-Target-URI"])
    assert payload.body == sent.get_data()
    assert payload.http_head is not None and payload.http_head.endswith(b"\r\n\r\n")
    assert payload.http_head + payload.body == payload.record.block
    assert payload.sha256 == hashlib.sha256(sent.get_data()).hexdigest()
    assert payload.revisit is None


def test_an_item_record_payload_is_its_whole_block(archive: Archive, fake: FakeBluesky) -> None:
    fake.post("Library hours")
    archive.capture("mke-bluesky")
    with archive.catalog.reader() as s:
        record_id = s.scalars(select(ItemVersion.warc_record_id).limit(1)).one()

    payload = read_payload(archive.catalog, archive.store, record_id)

    assert payload.http_head is None and payload.body == payload.record.block


def test_a_revisit_is_followed_to_the_earlier_capture_of_the_same_bytes(
    archive: Archive, fake: FakeBluesky
) -> None:
    fake.post("Library hours")
    archive.capture("mke-bluesky")
    fake.actors[fake.did].description = "The City's official account, now with a new bio."
    archive.capture("mke-bluesky")  # a new profile version: its avatar is downloaded again
    with archive.catalog.reader() as s:
        revisits = s.scalars(select(WarcRecord).where(WarcRecord.warc_type == "revisit")).all()
    assert revisits

    for revisit in revisits:
        payload = read_payload(archive.catalog, archive.store, revisit.record_id)
        assert payload.revisit is not None and payload.revisit.record_id == revisit.record_id
        assert payload.record.warc_type == "response"
        assert payload.record.record_id == payload.revisit.headers["WARC-Refers-To"]
        assert payload.body == archive.served(revisit.target_uri or "")
        assert payload.record.located.partition == payload.revisit.located.partition


def test_a_payload_that_disagrees_with_its_recorded_digest_is_refused_by_file_and_offset(
    archive: Archive, fake: FakeBluesky
) -> None:
    post = fake.post("Library hours")
    archive.capture("mke-bluesky")
    source = _source_of(archive, post)
    other = "sha256:" + "A" * 52 + "===="
    with archive.catalog.session() as s:
        s.execute(
            update(WarcRecord).where(WarcRecord.record_id == source).values(payload_digest=other)
        )
        rec, key = s.execute(
            select(WarcRecord, StoredFile.key)
            .join(StoredFile, StoredFile.id == WarcRecord.file_id)
            .where(WarcRecord.record_id == source)
        ).one()

    with pytest.raises(IntegrityError) as refused:
        read_payload(archive.catalog, archive.store, source)

    assert f"record {source} in {key} (file {rec.file_id}) at offset {rec.offset}" in str(
        refused.value
    )


def test_a_record_of_a_disposed_file_is_not_read(archive: Archive, fake: FakeBluesky) -> None:
    post = fake.post("Library hours")
    archive.capture("mke-bluesky")
    source = _source_of(archive, post)
    with archive.catalog.session() as s:
        file_id = s.scalars(select(WarcRecord.file_id).where(WarcRecord.record_id == source)).one()
        s.execute(update(StoredFile).where(StoredFile.id == file_id).values(state="disposed"))

    with pytest.raises(ArchiverError, match="the file is disposed"):
        read_record(archive.catalog, archive.store, source)
