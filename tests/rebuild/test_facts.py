"""Orphans: records a crash left uncommitted are dropped, the committed copy is kept."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from archiver.capture import RunStats
from archiver.catalog import Catalog
from archiver.catalog.models import Item, ItemVersion, Lease, Media, StoredFile, WarcRecord
from archiver.connector import canonical_json
from archiver.layout import Partition
from archiver.rebuild import compare, rebuild
from archiver.rebuild.compare import lines
from archiver.rebuild.facts import Orphan
from archiver.retrieve import read_record
from archiver.spool import Spool
from archiver.warc import WarcWriter
from archiver.warc_records import conversion_record
from archiver.warc_recovery import scan_warc
from tests.corpus import INFO
from tests.rebuild.conftest import Small


def test_an_uncommitted_copy_of_a_version_written_before_the_committed_one_is_dropped(
    small: Small, target: Catalog
) -> None:
    live = small.catalog
    with live.reader() as s:
        item_id, version = s.execute(
            select(Item.platform_item_id, ItemVersion)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.kind == "post")
            .order_by(Item.id)
            .limit(1)
        ).one()
    committed = read_record(live, small.store, version.warc_record_id)
    doc = json.loads(committed.block)
    # The crashed run started an hour earlier and wrote this version (same content, same
    # number) to a file that start-up recovery then stored; its commit never happened.
    crashed_at = version.captured_at - timedelta(hours=1)
    doc["captured_at"] = crashed_at.isoformat().replace("+00:00", "Z")
    spool_dir = small.runner.config.spool.path
    writer = WarcWriter(
        spool_dir, Partition.parse(version.partition), INFO, clock=lambda: crashed_at
    )
    orphan = writer.append(
        conversion_record(
            committed.headers["WARC-Target-URI"],
            canonical_json(doc),
            refers_to=committed.headers["WARC-Refers-To"],
        )
    )
    Spool(spool_dir, small.store, live, max_bytes=1 << 30).store_closed(writer.close())

    report = rebuild(small.store, target, actor="records-officer", accounts=small.accounts)

    assert report.orphans == [
        Orphan(orphan.record_id, "conversion", item_id, "version 1 written again later")
    ]
    comparison = compare(live, target)
    assert comparison.clean, "\n".join(lines(comparison, limit=40))
    with target.reader() as s:
        assert s.get(WarcRecord, orphan.record_id) is None
        assert s.get(StoredFile, orphan.file_id) is not None  # the file itself is a stored file


def test_a_page_whose_commit_was_fenced_off_is_written_again_and_only_its_exchanges_differ(
    small: Small, target: Catalog
) -> None:
    live = small.catalog
    # Newest first, one post a page: Friday's page commits, Thursday's (with a photo) is lost.
    small.fake.post("Street sweeping Thursday", images=[("Sweeper on Thursday", "image/png")])
    small.fake.post("Street sweeping Friday")

    def take_the_lease_after_the_first_page(stats: RunStats) -> None:
        if stats.pages == 1:  # another node takes over: the next page's commit is refused
            with live.session() as s:
                s.execute(update(Lease).values(generation=Lease.generation + 1))

    lost = small.runner.capture("mke-small", progress=take_the_lease_after_the_first_page)
    assert lost.status == "incomplete" and "lease" in (lost.reason or "")
    redone = small.runner.capture("mke-small")
    assert redone.status == "complete" and redone.stats["new"] >= 1

    report = rebuild(small.store, target, actor="records-officer", accounts=small.accounts)

    with live.reader() as s:
        committed = set(s.scalars(select(WarcRecord.record_id)))
    uncommitted = {
        ptr.record_id: ptr
        for path in sorted(small.store.root.glob("warc/**/*.warc.gz"))
        for ptr in scan_warc(path).records
        if ptr.warc_type != "warcinfo" and ptr.record_id not in committed
    }
    dropped = {o.record_id for o in report.orphans}
    assert dropped and dropped == {r for r, p in uncommitted.items() if p.warc_type == "conversion"}
    assert all(o.why == "version 1 written again later" for o in report.orphans)
    # Every fact compares clean; what differs is exactly the uncommitted page's exchanges
    # (and media responses), which the store alone cannot tell from committed ones.
    comparison = compare(live, target)
    assert {d.table for d in comparison.differences} == {"warc_records"}
    assert {d.kind for d in comparison.differences} == {"only_rebuilt"}
    assert {d.key[0] for d in comparison.differences} == set(uncommitted) - dropped
    assert {uncommitted[d.key[0]].warc_type for d in comparison.differences} == {
        "request",
        "response",
    }
    # The lost page had stored Thursday's photo; its media row points at the copy the
    # committed page wrote again, not at the lost one.
    (lost_photo,) = [
        p
        for p in uncommitted.values()
        if p.warc_type == "response" and "/img/feed_fullsize/" in (p.target_uri or "")
    ]
    with target.reader() as s:
        media = s.scalars(select(Media).where(Media.source_url == lost_photo.target_uri)).one()
    assert media.warc_record_id in committed and media.warc_record_id != lost_photo.record_id
