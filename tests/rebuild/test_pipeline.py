"""A catalog rebuilt from the store alone holds the same facts as the live one."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from archiver import audit
from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import (
    Account,
    AuditEntry,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
)
from archiver.errors import CatalogError
from archiver.rebuild import compare, rebuild
from archiver.rebuild.compare import lines
from archiver.search import search
from tests.rebuild.conftest import EXPORT, PARKS, Archive, Small


def _count(catalog: Catalog, *where: object, model: type = ItemVersion) -> int:
    with catalog.reader() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def test_a_rebuild_into_an_empty_database_compares_clean_with_the_live_catalog(
    archive: Archive, target: Catalog
) -> None:
    live = archive.catalog

    report = rebuild(archive.store, target, actor="records-officer", accounts=archive.accounts)

    comparison = compare(live, target)
    assert comparison.clean, "\n".join(lines(comparison, limit=40))
    assert not report.damaged and not report.orphans and not report.problems
    # The comparison covered what matters: every kind of fact, all of it non-trivial.
    tables = comparison.tables
    assert tables["items"].live == tables["items"].rebuilt >= 20
    assert tables["warc_records"].rebuilt == report.records > 100
    assert {"parquet", "warc"} <= {k for (k,) in _kinds(target)}
    assert _count(target, ItemVersion.change == "deleted") == 1
    assert _count(target, ItemVersion.change == "hidden") >= 2  # the corpus's and the parks'
    assert _count(target, ItemMedia.status == "revisit", model=ItemMedia) >= 1
    assert _count(target, ItemVersion.parquet_file_id.is_(None)) == 0
    assert _count(target, model=Media) == _count(live, model=Media) >= 5
    corpus = archive.corpus
    with target.reader() as s:
        states = dict(s.execute(select(Item.platform_item_id, Item.state)).all())
        edited = s.scalars(
            select(ItemVersion.text)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.platform_item_id == corpus.edited_post.platform_item_id)
            .order_by(ItemVersion.version_no)
        ).all()
        accounts = {a.id: a for a in s.scalars(select(Account))}
    assert states[corpus.hidden_reply.platform_item_id] == "hidden"
    assert states[corpus.deleted_reply.platform_item_id] == "deleted"
    assert states[corpus.edited_post.platform_item_id] == "edited"
    assert edited == [
        "Brush pickup starts May 1 in Riverwest",
        "Brush pickup starts May 8 in Harambee",
    ]
    # The search index was rebuilt with the rows: an old version's words are found.
    (found,) = search(target, '"Brush pickup starts May 1"').results
    assert found.platform_item_id == corpus.edited_post.platform_item_id
    assert report.search_index.startswith("rebuilt")
    # The store knows id, platform and series; the configuration adds the rest.
    assert (
        accounts[EXPORT].platform == "mastodon_export" and accounts[EXPORT].series == "social-media"
    )
    assert accounts[PARKS].department == "Milwaukee County Parks" and accounts[PARKS].enabled


def _kinds(catalog: Catalog) -> list[tuple[str]]:
    with catalog.reader() as s:
        return [(k,) for k in s.scalars(select(StoredFile.kind).distinct())]


def test_the_rebuilt_audit_log_starts_with_one_entry_continuing_the_latest_anchored_head(
    small: Small, target: Catalog
) -> None:
    first = audit.anchor_head(small.catalog, small.store, node="node-1")
    with small.catalog.session() as s:
        audit.append(s, actor="clerk", action="status")
    latest = audit.anchor_head(small.catalog, small.store, node="node-1")
    assert first is not None and latest is not None and first != latest
    anchors = audit.read_anchors(small.store)

    report = rebuild(small.store, target, actor="records-officer", accounts=small.accounts)

    with target.reader() as s:
        (entry,) = s.scalars(select(AuditEntry)).all()
    assert entry.action == "catalog.rebuild" and entry.actor == "records-officer"
    assert entry.seq == anchors[-1].seq + 1 == report.audit_seq
    assert entry.prev_hash == anchors[-1].hash
    assert entry.hash == audit.entry_hash(entry)
    assert entry.detail["anchors"] == [
        {"seq": a.seq, "hash": a.hash, "key": a.key} for a in anchors
    ]
    assert entry.detail["files"]["warc"] == report.warc_files > 0
    # The next entry anchors under a new key instead of colliding with the old chain's.
    with target.session() as s:
        audit.append(s, actor="clerk", action="status")
    assert audit.anchor_head(target, small.store, node="node-1") == audit.anchor_key(entry.seq + 1)


def test_a_database_that_holds_anything_is_refused_and_left_untouched(
    small: Small, target: Catalog
) -> None:
    upgrade(target)
    with target.session() as s:
        audit.append(s, actor="clerk", action="status")

    with pytest.raises(CatalogError, match=r"not empty .*1 audit_log.*create a new one"):
        rebuild(small.store, target, actor="records-officer")

    assert _count(target, model=AuditEntry) == 1
    assert _count(target, model=Item) == 0


def test_a_configured_account_without_records_is_registered_and_an_unconfigured_one_inactive(
    small: Small, target: Catalog
) -> None:
    settings = small.accounts[0]
    newcomer = settings.model_copy(update={"id": "mke-newcomer"})

    rebuild(small.store, target, actor="records-officer", accounts=[newcomer])

    with target.reader() as s:
        accounts = {a.id: a for a in s.scalars(select(Account))}
    assert accounts["mke-newcomer"].status == "unknown" and accounts["mke-newcomer"].enabled
    assert accounts["mke-small"].status == "inactive" and not accounts["mke-small"].enabled
    small = accounts["mke-small"]
    assert small.platform == "bluesky" and small.series == "social-media"


def test_the_rebuilt_audit_log_verifies_as_continuing_the_anchored_chain(
    small: Small, target: Catalog
) -> None:
    """After a disaster recovery, `audit verify` must not cry tampering, nor be fooled."""
    with small.catalog.session() as s:
        audit.append(s, actor="clerk", action="status")
    assert audit.anchor_head(small.catalog, small.store, node="node-1") is not None
    rebuild(small.store, target, actor="records-officer", accounts=small.accounts)
    with target.session() as s:
        audit.append(s, actor="clerk", action="status")
    audit.anchor_head(target, small.store, node="node-1")

    report = audit.verify(target, small.store)

    assert report.ok, report.problems
    assert report.rebuilt_after == audit.read_anchors(small.store)[-2].seq
    assert report.entries == 2

    # A rebuild entry that claims a head no anchor holds is a break, not a continuation.
    with target.session() as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).first()
        assert entry is not None
        entry.detail = {**entry.detail, "continues": {"seq": entry.seq - 1, "hash": "0" * 64}}
        entry.prev_hash = "0" * 64
    forged = audit.verify(target, small.store)
    assert not forged.ok and forged.rebuilt_after is None
    assert any("no head anchored in the store" in p for p in forged.problems)
