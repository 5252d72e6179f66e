"""Finding an item from what a records officer types, and loading all that is known of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.catalog import Catalog
from archiver.catalog.models import Item, ItemVersion, StoredFile
from archiver.errors import ArchiverError
from archiver.items import ItemDetail, jsonable, load, resolve
from tests.connectors.fake_bluesky import FakeBluesky
from tests.test_restore import Archive, bluesky_archive, flip_byte, new_fake


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


@pytest.fixture
def archive(tmp_path: Path, fake: FakeBluesky, catalog: Catalog) -> Archive:
    return bluesky_archive(tmp_path, fake, catalog)


@dataclass
class Thread:
    """A post with nested replies, one reply hidden by the City and one deleted."""

    post: str
    thanks: str
    agreed: str  # a reply to ``thanks``
    spam: str  # hidden
    wrong: str  # deleted


def moderated_thread(archive: Archive, fake: FakeBluesky) -> Thread:
    post = fake.post(
        "Snow emergency declared",
        images=[("Map of snow routes", "image/jpeg"), ("Parking ban sign", "image/jpeg")],
    )
    thanks = fake.reply(post, "Thanks for the update")
    agreed = fake.reply(thanks, "Agreed, very helpful")
    spam = fake.reply(post, "buy cheap followers")
    wrong = fake.reply(post, "The ban starts at 6, not 9")
    archive.capture("mke-bluesky")
    fake.hide_reply(spam)
    fake.delete(wrong)
    archive.capture("mke-bluesky", full_walk=True)
    return Thread(post, thanks, agreed, spam, wrong)


def _permalink(uri: str) -> str:
    did, _, rkey = uri.removeprefix("at://").partition("/app.bsky.feed.post/")
    return f"https://bsky.app/profile/{did}/post/{rkey}"


# -- resolving ------------------------------------------------------------------------------


def test_an_item_is_found_by_catalog_id_account_and_platform_id_permalink_or_bare_id(
    archive: Archive, fake: FakeBluesky
) -> None:
    post = fake.post("Library hours")
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)

    assert resolve(archive.catalog, str(item_id)) == item_id
    # Split at the first "/" only: the Bluesky id after it is an at:// URI full of slashes.
    assert resolve(archive.catalog, f"mke-bluesky/{post}") == item_id
    assert resolve(archive.catalog, _permalink(post)) == item_id
    assert resolve(archive.catalog, post) == item_id
    assert resolve(archive.catalog, f"  {item_id}\n") == item_id


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("999999", "no item matches '999999'"),
        ("mke-bluesky/at://did:plc:nobody/app.bsky.feed.post/x", "account mke-bluesky has no item"),
        ("https://bsky.app/profile/did:plc:nobody/post/x", "no item matches"),
        ("../../x", "no item matches '../../x'"),
        ("12\x003", "is not an item reference"),
        ("", "is not an item reference"),
        ("9" * 40, "no item matches"),
    ],
)
def test_a_reference_to_nothing_is_refused_saying_what_to_give(
    archive: Archive, fake: FakeBluesky, ref: str, message: str
) -> None:
    fake.post("Library hours")
    archive.capture("mke-bluesky")

    with pytest.raises(ArchiverError) as refused:
        resolve(archive.catalog, ref)

    assert message in str(refused.value)
    assert "ACCOUNT/PLATFORM_ITEM_ID" in str(refused.value)


def test_a_permalink_shared_by_a_post_and_its_repost_is_refused_listing_both(
    archive: Archive, fake: FakeBluesky
) -> None:
    post = fake.post("Library hours")
    fake.repost(post)
    archive.capture("mke-bluesky")
    with archive.catalog.reader() as s:
        ids = sorted(s.scalars(select(Item.id).where(Item.permalink == _permalink(post))))
    assert len(ids) == 2

    with pytest.raises(ArchiverError) as refused:
        resolve(archive.catalog, _permalink(post))

    assert "names 2 items" in str(refused.value)
    assert all(str(i) in str(refused.value) for i in ids)
    assert resolve(archive.catalog, f"mke-bluesky/{post}") == archive.item_id(post)


# -- loading --------------------------------------------------------------------------------


def _detail(archive: Archive, platform_item_id: str) -> ItemDetail:
    return load(archive.catalog, archive.item_id(platform_item_id), store=archive.store)


def test_a_post_comes_with_its_thread_replies_versions_and_media(
    archive: Archive, fake: FakeBluesky
) -> None:
    t = moderated_thread(archive, fake)

    detail = _detail(archive, t.post)

    assert detail.item.platform_item_id == t.post and detail.item.platform == "bluesky"
    assert detail.parent is None
    assert [r.platform_item_id for r in detail.replies] == [t.thanks, t.spam, t.wrong]
    assert [(n.item.platform_item_id, n.depth) for n in detail.thread] == [
        (t.post, 0),
        (t.thanks, 1),
        (t.agreed, 2),
        (t.spam, 1),
        (t.wrong, 1),
    ]
    assert [(v.version_no, v.change) for v in detail.versions] == [(1, "new")]
    with archive.catalog.reader() as s:
        version = s.scalars(select(ItemVersion).where(ItemVersion.item_id == detail.item.id)).one()
    assert detail.versions[0].content_sha256 == version.content_sha256
    assert detail.versions[0].record_id == version.warc_record_id
    assert [(m.position, m.alt_text, m.status) for m in detail.media] == [
        (0, "Map of snow routes", "stored"),
        (1, "Parking ban sign", "stored"),
    ]
    assert all(m.sha256 and m.size and m.record_id for m in detail.media)
    assert detail.history == []


def test_a_nested_reply_knows_its_parent_and_its_place_in_the_thread(
    archive: Archive, fake: FakeBluesky
) -> None:
    t = moderated_thread(archive, fake)

    detail = _detail(archive, t.agreed)

    assert detail.parent is not None and detail.parent.platform_item_id == t.thanks
    assert detail.replies == []
    assert [n.item.platform_item_id for n in detail.thread][:3] == [t.post, t.thanks, t.agreed]


def test_a_hidden_reply_and_a_deleted_one_carry_their_history_and_evidence(
    archive: Archive, fake: FakeBluesky
) -> None:
    t = moderated_thread(archive, fake)

    hidden = _detail(archive, t.spam)
    deleted = _detail(archive, t.wrong)

    assert hidden.item.state == "hidden"
    assert [(e.change, e.version_no) for e in hidden.history] == [("hidden", 2)]
    assert "hidden or removed" in hidden.history[0].what
    assert deleted.item.state == "deleted"
    (event,) = deleted.history
    assert event.change == "deleted" and event.version_no == 2
    assert event.note is not None and "item-level not-found" in event.note
    assert event.evidence is not None and event.evidence != event.record_id
    # The content captured before the deletion is still there; the deletion has none.
    assert [v.has_content for v in deleted.versions] == [True, False]


def test_a_damaged_deletion_note_is_reported_in_the_history_not_raised(
    archive: Archive, fake: FakeBluesky
) -> None:
    t = moderated_thread(archive, fake)
    item_id = archive.item_id(t.wrong)
    with archive.catalog.reader() as s:
        note = s.scalars(
            select(ItemVersion).where(
                ItemVersion.item_id == item_id, ItemVersion.change == "deleted"
            )
        ).one()
        key = s.scalars(select(StoredFile.key).where(StoredFile.id == note.warc_file_id)).one()
    flip_byte(archive.store, key, note.warc_offset + note.warc_length // 2)

    (event,) = load(archive.catalog, item_id, store=archive.store).history

    assert event.note is not None and "cannot be read" in event.note and key in event.note
    assert event.evidence is None


def test_the_detail_is_plain_json_with_iso_times(archive: Archive, fake: FakeBluesky) -> None:
    t = moderated_thread(archive, fake)

    doc = jsonable(_detail(archive, t.post))

    assert doc["item"]["platform_item_id"] == t.post
    assert isinstance(doc["item"]["created_at"], str) and "T" in doc["item"]["created_at"]
    assert [n["depth"] for n in doc["thread"]] == [0, 1, 2, 1, 1]
    assert len(doc["media"]) == 2 and len(doc["versions"]) == 1
