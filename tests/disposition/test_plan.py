"""Planning a disposition: which stored records the destroyed items own, file by file.

The corpus is captured once per database (SQLite, PostgreSQL); each test plans the
destruction of some of its items and checks what the plan takes, keeps and why. Nothing is
destroyed here: a plan only reads the catalog and the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, update

from archiver.catalog.models import ItemMedia, ItemVersion, Media, WarcRecord
from archiver.disposition.plan import (
    WHY_EXCHANGE,
    WHY_MEDIA,
    WHY_NOTE,
    WHY_PARTNER,
    WHY_VERSION,
    Decide,
    Plan,
    backfill_links,
    make_plan,
)
from archiver.retention import Decision, Outcome
from tests.commands.clitools import catalog_section
from tests.disposition.disposing import Installation, database, installation

HIDDEN_UNTIL = datetime(2037, 1, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def inst(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp(f"plan-{request.param}")
    with database(request.param, root, request) as url, pytest.MonkeyPatch.context() as mp:
        for name, value in catalog_section(url)[1].items():
            mp.setenv(name, value)
        found = installation(root, catalog_url=url)
        try:
            yield found
        finally:
            found.close()


def decider(inst: Installation, outcomes: Mapping[str, tuple[Outcome, datetime | None]]) -> Decide:
    """A ``decide`` giving each named item the outcome and date given (kept until 2037 else)."""
    by_id = {inst.corpus.item(n).id: v for n, v in outcomes.items()}

    def decide(ids: set[int]) -> dict[int, Decision]:
        out: dict[int, Decision] = {}
        for item_id in ids:
            outcome, on = by_id.get(item_id, (Outcome.RETAINED, HIDDEN_UNTIL))
            out[item_id] = Decision(
                item_id,
                "EXAMPLE-MODERATED",
                outcome,
                on,
                "destroy",
                (7,) if outcome is Outcome.HELD else (),
                None,
                "held by hold 7 (case CV-1)" if outcome is Outcome.HELD else "kept 10 years",
            )
        return out

    return decide


def plan_for(inst: Installation, *names: str, decide: Decide | None = None) -> Plan:
    with inst.catalog.reader() as s:
        return make_plan(s, inst.app.store, inst.ids(*names), decide or decider(inst, {}))


def records_of(inst: Installation, *names: str) -> dict[str, str]:
    """Record id → type of the items' version records."""
    with inst.catalog.reader() as s:
        return dict(
            s.execute(
                select(WarcRecord.record_id, WarcRecord.warc_type)
                .join(ItemVersion, ItemVersion.warc_record_id == WarcRecord.record_id)
                .where(ItemVersion.item_id.in_(inst.ids(*names)))
            ).all()
        )


def why(plan: Plan) -> dict[str, str]:
    return {r.record_id: r.why for r in plan.records}


def test_an_item_takes_its_versions_and_the_media_only_it_carries(inst: Installation) -> None:
    plan = plan_for(inst, "images_post")
    reasons = why(plan)
    assert {r for r in records_of(inst, "images_post")} <= {
        r for r, w in reasons.items() if w == WHY_VERSION
    }
    with inst.catalog.reader() as s:
        media = s.execute(
            select(Media.id, Media.warc_record_id)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(inst.ids("images_post")))
        ).all()
        requests = s.scalars(
            select(WarcRecord.record_id).where(
                WarcRecord.concurrent_to.in_([m.warc_record_id for m in media])
            )
        ).all()
    assert len(media) == 2
    assert set(plan.media_ids) == {m.id for m in media}
    assert all(reasons[m.warc_record_id] == WHY_MEDIA for m in media)
    assert requests and all(reasons[r] == WHY_PARTNER for r in requests)
    assert [i.item_id for i in plan.items] == sorted(inst.ids("images_post"))


def test_a_destroyed_version_takes_the_state_note_written_about_it(inst: Installation) -> None:
    plan = plan_for(inst, "hidden_reply")
    notes = [r for r in plan.records if r.why == WHY_NOTE]
    assert len(notes) == 1 and notes[0].warc_type == "metadata"
    versions = records_of(inst, "hidden_reply")
    with inst.catalog.reader() as s:
        note = s.get(WarcRecord, notes[0].record_id)
    assert note is not None and note.refers_to in versions


def test_media_a_kept_item_also_carries_stays(inst: Installation) -> None:
    with inst.catalog.session() as s:
        media_id = s.scalars(
            select(ItemMedia.media_id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(inst.ids("images_post")), ItemMedia.position == 0)
        ).one()
        cafe_version = s.scalars(
            select(ItemVersion.id).where(ItemVersion.item_id.in_(inst.ids("cafe_reply")))
        ).one()
        s.add(ItemMedia(version_id=cafe_version, position=0, media_id=media_id, status="stored"))
    try:
        plan = plan_for(inst, "images_post")
        with inst.catalog.reader() as s:
            record = s.get(Media, media_id)
        assert record is not None
        assert media_id not in plan.media_ids and len(plan.media_ids) == 1
        assert record.warc_record_id not in why(plan)
        assert any(f.action == "compact" for f in plan.files if f.kind == "warc")
    finally:
        with inst.catalog.session() as s:
            s.execute(delete(ItemMedia).where(ItemMedia.version_id == cafe_version))


def test_an_exchange_a_kept_item_was_read_from_stays_and_says_when_it_follows(
    inst: Installation,
) -> None:
    plan = plan_for(
        inst,
        "plow_reply",
        decide=decider(inst, {"snow_post": (Outcome.RETAINED, datetime(2033, 1, 12, tzinfo=UTC))}),
    )
    assert plan.exchanges_kept
    kept_ids = {e.record_id for e in plan.exchanges_kept}
    assert not kept_ids & set(why(plan))
    for exchange in plan.exchanges_kept:
        assert set(exchange.evidences_items_kept) >= inst.ids("hidden_reply", "cafe_reply")
        assert exchange.follows_on == HIDDEN_UNTIL.isoformat()  # the last of them to go
        assert "it goes when the last of them is destroyed" in exchange.why


def test_an_exchange_kept_for_a_held_item_has_no_date_yet(inst: Installation) -> None:
    plan = plan_for(inst, "plow_reply", decide=decider(inst, {"cafe_reply": (Outcome.HELD, None)}))
    assert plan.exchanges_kept
    for exchange in plan.exchanges_kept:
        assert exchange.follows_on is None
        assert "held by hold 7" in exchange.why


def test_an_exchange_naming_only_destroyed_items_goes_with_its_request(inst: Installation) -> None:
    plan = plan_for(inst, "mastodon_reply", "edited_post")
    gone = [r for r in plan.records if r.why == WHY_EXCHANGE]
    requests = [r for r in plan.records if r.why == WHY_PARTNER and r.warc_type == "request"]
    # Two captures: the first read the reply from the thread's context, the second read the
    # context again (the reply unchanged) and the edit: every one of those responses goes.
    assert len(gone) >= 4 and len(requests) >= len(gone)
    assert not plan.exchanges_kept
    with inst.catalog.reader() as s:
        partners = s.scalars(
            select(WarcRecord.concurrent_to).where(
                WarcRecord.record_id.in_([r.record_id for r in requests])
            )
        ).all()
    assert {r.record_id for r in gone} <= set(partners)


def test_files_all_of_whose_records_go_are_deleted_whole_and_the_others_compacted(
    inst: Installation,
) -> None:
    plan = plan_for(inst, "images_post", "deleted_reply")
    actions = {(f.kind, f.partition.rsplit("/", 1)[-1], f.action) for f in plan.files}
    assert ("warc", "2026-02", "delete") in actions
    assert ("parquet", "2026-02", "delete") in actions
    assert not any(a == "compact" and p == "2026-02" for _k, p, a in actions)
    for f in plan.files:
        if f.action == "compact":
            assert f.new_file_id and f.keep > 0 and f.new_file_id != f.file_id
        else:
            assert f.new_file_id is None and f.keep == 0
    deleted = {f.file_id for f in plan.files if f.action == "delete" and f.kind == "warc"}
    with inst.catalog.reader() as s:
        in_deleted = set(
            s.scalars(select(WarcRecord.record_id).where(WarcRecord.file_id.in_(deleted)))
        )
    assert in_deleted <= set(why(plan))  # a file deleted whole takes every record with it


def test_the_plan_reads_back_from_the_journal_unchanged(inst: Installation) -> None:
    plan = plan_for(inst, "plow_reply", "images_post")
    assert Plan.from_json(plan.as_json()) == plan
    assert plan.accounts == [inst.corpus.bluesky_account]


def test_links_missing_from_rows_written_before_they_were_kept_are_read_from_the_store(
    inst: Installation,
) -> None:
    with inst.catalog.reader() as s:
        before = {
            r.record_id: (r.refers_to, r.concurrent_to) for r in s.scalars(select(WarcRecord))
        }
    with inst.catalog.session() as s:
        s.execute(update(WarcRecord).values(refers_to=None, concurrent_to=None))
    with inst.catalog.session() as s:
        read = backfill_links(s, inst.app.store, inst.ids("plow_reply", "edited_post"))
    assert read > 0
    with inst.catalog.session() as s:
        after = {r.record_id: (r.refers_to, r.concurrent_to) for r in s.scalars(select(WarcRecord))}
        for record_id, links in before.items():
            if after[record_id] != links:
                s.execute(
                    update(WarcRecord)
                    .where(WarcRecord.record_id == record_id)
                    .values(refers_to=links[0], concurrent_to=links[1])
                )
    restored = {rid: after[rid] for rid in after if after[rid] != (None, None)}
    assert restored and all(before[rid] == links for rid, links in restored.items())
    assert any(links[0] for links in restored.values())
    assert any(links[1] for links in restored.values())
