"""What the catalog's constraints promise, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from archiver.catalog import Catalog
from archiver.catalog.models import Account, Item, ItemVersion, Media
from archiver.errors import CatalogError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _account(s: object) -> None:
    from sqlalchemy.orm import Session

    assert isinstance(s, Session)
    s.add(Account(id="fb-city", platform="facebook", series="general", created_at=NOW))


def test_an_item_is_unique_per_account_and_platform_id(catalog: Catalog) -> None:
    with catalog.session() as s:
        _account(s)
        s.add(
            Item(
                account_id="fb-city",
                platform_item_id="123_456",
                kind="post",
                series="general",
                first_captured_at=NOW,
                last_seen_at=NOW,
            )
        )
    with pytest.raises(CatalogError, match="IntegrityError"), catalog.session() as s:
        s.add(
            Item(
                account_id="fb-city",
                platform_item_id="123_456",
                kind="post",
                series="general",
                first_captured_at=NOW,
                last_seen_at=NOW,
            )
        )


def test_versions_point_into_warc_files_by_id_offset_and_length(catalog: Catalog) -> None:
    with catalog.session() as s:
        _account(s)
        item = Item(
            account_id="fb-city",
            platform_item_id="1",
            kind="comment",
            series="general",
            first_captured_at=NOW,
            last_seen_at=NOW,
        )
        s.add(item)
        s.flush()
        s.add(
            ItemVersion(
                item_id=item.id,
                version_no=1,
                content_sha256="a" * 64,
                captured_at=NOW,
                change="new",
                warc_file_id="01JD4S2W7X0Y8H6K3M9N5P1Q2R",
                warc_offset=2**33,
                warc_length=1234,
                warc_record_id="<urn:uuid:00000000-0000-0000-0000-000000000001>",
            )
        )
    with catalog.session() as s:
        v = s.scalars(select(ItemVersion)).one()
    # Offsets past 4 GiB must survive: WARC files on S3 can be large.
    assert (v.warc_offset, v.warc_length) == (2**33, 1234)


def test_media_is_stored_once_per_sha256_within_a_partition(catalog: Catalog) -> None:
    def media(partition: str) -> Media:
        return Media(
            sha256="b" * 64,
            partition=partition,
            size=10,
            warc_file_id="F" * 26,
            warc_offset=0,
            warc_length=10,
            warc_record_id="<urn:uuid:x>",
            first_captured_at=NOW,
        )

    with catalog.session() as s:
        s.add(media("general/fb-city/2026-11"))
        s.add(media("general/fb-city/2026-10"))  # another partition: stored again
    with pytest.raises(CatalogError), catalog.session() as s:
        s.add(media("general/fb-city/2026-11"))
