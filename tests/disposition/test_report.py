"""Disposition reports on a captured archive: groups, sizes, notice status, expiry, approval.

The corpus (tests/corpus.py) is captured once per module and database; its items are then
placed in the shipped schedule's series as a records officer's rules would (posts to a
transfer series, comments to a series needing notice, a moderated comment to a longer one,
profiles to an event-triggered one), a notice is recorded for the comments and a legal
hold covers the deleted reply. Reports are then made "as of" chosen dates.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, update

from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import (
    AuditEntry,
    DispositionReport,
    DispositionReportItem,
    Hold,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    RetentionNotice,
)
from archiver.config import Config
from archiver.disposition import report
from archiver.errors import RetentionError
from archiver.evaluate import load_context
from archiver.series import Schedules, load_schedules
from archiver.store import LocalStore
from tests.corpus import Corpus, capture_corpus
from tests.pgcluster import PgServer, _to_sqlalchemy, _with_database

#: The series each notable item is placed in (as assignment rules would).
SERIES = {
    "snow_post": "EXAMPLE-POSTS",
    "images_post": "EXAMPLE-POSTS",
    "edited_post": "EXAMPLE-POSTS",
    "plow_reply": "EXAMPLE-COMMENTS",
    "cafe_reply": "EXAMPLE-COMMENTS",
    "mastodon_reply": "EXAMPLE-COMMENTS",
    "deleted_reply": "EXAMPLE-COMMENTS",
    "hidden_reply": "EXAMPLE-MODERATED",
    "bluesky_profile": "EXAMPLE-ACCOUNT-RECORDS",
    "mastodon_profile": "EXAMPLE-ACCOUNT-RECORDS",
}
POSTS = ("snow_post", "images_post", "edited_post")
COMMENTS = ("plow_reply", "cafe_reply", "mastodon_reply")
NOTICE = "WHS-2034-007"
NOTICE_SENT = datetime(2034, 1, 15, tzinfo=UTC)
#: 60 days after the notice was sent.
NOTICE_ENDS = datetime(2034, 3, 16, tzinfo=UTC)
#: Items created in 2026 are eligible 7 years after the end of 2026 in Chicago.
ELIGIBLE_ON = datetime(2034, 1, 1, 6, 0, tzinfo=UTC)
BEFORE_NOTICE_ENDS = datetime(2034, 3, 1, 12, 0, tzinfo=UTC)
AFTER_NOTICE_ENDS = datetime(2034, 4, 1, 12, 0, tzinfo=UTC)
CASE = "CV-2033-0042"
TTL = timedelta(days=30)


@dataclass(frozen=True)
class Archive:
    """A catalog and store holding the corpus, placed in series, with a notice and a hold."""

    catalog: Catalog
    store: LocalStore
    corpus: Corpus
    schedules: Schedules
    dialect: str

    @property
    def config(self) -> Config:
        return self.corpus.config


def place_in_series(catalog: Catalog, corpus: Corpus) -> None:
    """Assign the corpus' items to the shipped schedule's series; record the notice and hold."""
    with catalog.session() as s:
        for name, code in SERIES.items():
            s.execute(update(Item).where(Item.id == corpus.item(name).id).values(series=code))
        s.add(
            RetentionNotice(
                series="EXAMPLE-COMMENTS",
                kind="sent",
                on=NOTICE_SENT,
                reference=NOTICE,
                recorded_at=NOTICE_SENT,
                recorded_by="records",
            )
        )
        s.add(
            Hold(
                case_id=CASE,
                kind="legal",
                reason="Oak Avenue claim",
                accounts=[corpus.bluesky_account],
                query='"Oak Avenue"',
                created_at=datetime(2030, 1, 1, tzinfo=UTC),
                created_by="legal",
            )
        )


@contextmanager
def database(kind: str, root: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new empty catalog database URL of ``kind`` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'catalog.sqlite3'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"disposition_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _to_sqlalchemy(_with_database(server.admin_conninfo, name))
    finally:
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def captured_archive(kind: str, root: Path, request: pytest.FixtureRequest) -> Iterator[Archive]:
    """The corpus captured into a new catalog of ``kind`` and a local store under ``root``."""
    with database(kind, root, request) as url:
        catalog = Catalog.open(url)
        try:
            upgrade(catalog)
            store = LocalStore(root / "store")
            corpus = capture_corpus(catalog, store, root / "work")
            place_in_series(catalog, corpus)
            yield Archive(catalog, store, corpus, load_schedules(None), kind)
        finally:
            catalog.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    with captured_archive(
        request.param, tmp_path_factory.mktemp(f"report-{request.param}"), request
    ) as found:
        yield found


def make(
    archive: Archive, now: datetime, *, series: str | None = None, actor: str = "alice"
) -> str:
    with archive.catalog.session() as s:
        ctx = load_context(s, archive.config, archive.schedules)
        return report.make_report(s, ctx, now, actor, TTL, series=series)


def load(archive: Archive, report_id: str) -> report.ReportView:
    with archive.catalog.reader() as s:
        return report.load_report(s, report_id)


def stored_bytes(archive: Archive, *names: str) -> int:
    """What the items' records take in the store: every version, and each media record once."""
    ids = [archive.corpus.item(n).id for n in names]
    with archive.catalog.reader() as s:
        versions = sum(
            s.scalars(select(ItemVersion.warc_length).where(ItemVersion.item_id.in_(ids))).all()
        )
        media = s.execute(
            select(Media.id, Media.warc_length)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(ids))
            .distinct()
        ).all()
    return versions + sum(length for _, length in media)


def group(view: report.ReportView, series: str, month: str) -> dict[str, object]:
    found = [g for g in view.summary["groups"] if (g["series"], g["month"]) == (series, month)]
    assert len(found) == 1, view.summary["groups"]
    return found[0]


# --- what a report says ---------------------------------------------------------------------


def test_before_any_retention_ends_a_report_lists_nothing_and_counts_what_is_kept(
    archive: Archive,
) -> None:
    view = load(archive, make(archive, datetime(2033, 6, 1, tzinfo=UTC)))

    assert view.item_ids == []
    assert view.summary["groups"] == []
    assert view.summary["awaiting_notice"] == []
    assert view.summary["kept"] == {"awaiting-event": 2, "held": 1, "retained": 7}
    assert view.summary["totals"]["eligible"] == {"items": 0, "bytes": 0}


def test_eligible_items_are_grouped_by_series_and_creation_month_with_counts_and_sizes(
    archive: Archive,
) -> None:
    corpus = archive.corpus
    view = load(archive, make(archive, AFTER_NOTICE_ENDS))

    assert set(view.item_ids) == corpus.ids(*POSTS, *COMMENTS)
    assert [(g["series"], g["month"], g["items"]) for g in view.summary["groups"]] == [
        ("EXAMPLE-COMMENTS", "2026-01", 3),
        ("EXAMPLE-POSTS", "2026-01", 2),
        ("EXAMPLE-POSTS", "2026-02", 1),
    ]
    leaves = group(view, "EXAMPLE-POSTS", "2026-02")
    assert leaves["action"] == "transfer"
    # The post's two images are its own records: the size counts them.
    assert leaves["bytes"] == stored_bytes(archive, "images_post")
    with archive.catalog.reader() as s:
        versions_only = sum(
            s.scalars(
                select(ItemVersion.warc_length).where(ItemVersion.item_id == corpus.images_post.id)
            ).all()
        )
    assert leaves["bytes"] > versions_only
    assert leaves["earliest_created"] == "2026-02-03T10:01:00+00:00"
    assert leaves["earliest_eligible"] == ELIGIBLE_ON.isoformat()
    january = group(view, "EXAMPLE-POSTS", "2026-01")
    assert january["bytes"] == stored_bytes(archive, "snow_post", "edited_post")
    comments = group(view, "EXAMPLE-COMMENTS", "2026-01")
    assert comments["action"] == "destroy"
    assert comments["notice"] == [NOTICE]
    assert comments["bytes"] == stored_bytes(archive, *COMMENTS)
    assert view.summary["totals"]["eligible"] == {
        "items": 6,
        "bytes": stored_bytes(archive, *POSTS, *COMMENTS),
    }
    # The held reply and the moderated one stay, and so do the profiles (event not recorded).
    assert view.summary["kept"] == {"awaiting-event": 2, "held": 1, "retained": 1}


def test_each_series_states_its_authority_action_and_whether_a_notice_satisfied_it(
    archive: Archive,
) -> None:
    view = load(archive, make(archive, AFTER_NOTICE_ENDS))

    posts = view.summary["series"]["EXAMPLE-POSTS"]
    assert posts["action"] == "transfer"
    assert posts["items"] == 3
    assert posts["authority"] == archive.schedules["EXAMPLE-POSTS"].authority
    assert posts["notice"] == {
        "required": False,
        "to": "Wisconsin Historical Society",
        "days": 60,
        "status": "not required",
    }
    comments = view.summary["series"]["EXAMPLE-COMMENTS"]
    assert comments["notice"]["status"] == "satisfied"
    assert comments["notice"]["satisfied_by"] == [NOTICE]


def test_items_awaiting_a_notice_are_listed_with_the_day_destruction_may_proceed(
    archive: Archive,
) -> None:
    corpus = archive.corpus
    view = load(archive, make(archive, BEFORE_NOTICE_ENDS))

    # Only the posts (no notice needed) are in the report itself.
    assert set(view.item_ids) == corpus.ids(*POSTS)
    [waiting] = view.summary["awaiting_notice"]
    assert (waiting["series"], waiting["month"], waiting["items"]) == (
        "EXAMPLE-COMMENTS",
        "2026-01",
        3,
    )
    assert set(waiting["item_ids"]) == corpus.ids(*COMMENTS)
    assert waiting["bytes"] == stored_bytes(archive, *COMMENTS)
    notice = view.summary["series"]["EXAMPLE-COMMENTS"]["notice"]
    assert notice["status"] == "missing"
    assert notice["awaiting"]["items"] == 3
    assert notice["awaiting"]["proceed_from"] == NOTICE_ENDS.isoformat()
    assert f"notice recorded ({NOTICE}) covers them" in notice["awaiting"]["what_to_do"]
    assert "from 2034-03-16 00:00 UTC" in notice["awaiting"]["what_to_do"]
    assert notice["awaiting"]["pending_notices"] == [
        {
            "reference": NOTICE,
            "on": NOTICE_SENT.isoformat(),
            "effective_at": NOTICE_ENDS.isoformat(),
            "covers": 3,
        }
    ]
    assert view.summary["kept"]["awaiting-notice"] == 3
    assert view.summary["totals"]["awaiting_notice"]["items"] == 3


def test_without_any_notice_the_report_says_what_is_missing_and_a_series_limits_its_scope(
    archive: Archive,
) -> None:
    # Ten years after 2026 the moderated comment's period is over; no notice names it.
    now = datetime(2037, 2, 1, tzinfo=UTC)
    view = load(archive, make(archive, now, series="EXAMPLE-MODERATED"))

    assert view.item_ids == []
    assert view.summary["scope"] == {"series": "EXAMPLE-MODERATED"}
    assert view.summary["totals"]["evaluated"] == 1
    notice = view.summary["series"]["EXAMPLE-MODERATED"]["notice"]
    assert notice["status"] == "missing"
    assert notice["awaiting"]["pending_notices"] == []
    assert notice["awaiting"]["proceed_from"] is None
    assert notice["awaiting"]["if_sent_now"] == (now + timedelta(days=60)).isoformat()
    assert "archiver retention notice record" in notice["awaiting"]["what_to_do"]
    assert "2037-01-01" in notice["awaiting"]["what_to_do"]


def test_a_report_for_an_unknown_series_is_refused_naming_the_known_ones(
    archive: Archive,
) -> None:
    with pytest.raises(RetentionError, match=r"no records series 'NOPE'.*EXAMPLE-POSTS"):
        make(archive, AFTER_NOTICE_ENDS, series="NOPE")


def test_a_report_stores_one_row_per_eligible_item_with_its_reason_and_is_audited(
    archive: Archive,
) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS, actor="alice (via sudo as archiver)")

    with archive.catalog.reader() as s:
        row = s.get(DispositionReport, report_id)
        assert row is not None
        assert row.created_by == "alice (via sudo as archiver)"
        assert row.expires_at == AFTER_NOTICE_ENDS + TTL
        assert row.status == "open"
        items = s.scalars(
            select(DispositionReportItem).where(DispositionReportItem.report_id == report_id)
        ).all()
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "retention.report", AuditEntry.subject == report_id
            )
        ).one()
    by_id = {i.item_id: i for i in items}
    assert set(by_id) == archive.corpus.ids(*POSTS, *COMMENTS)
    plow = by_id[archive.corpus.plow_reply.id]
    assert plow.series == "EXAMPLE-COMMENTS"
    assert plow.eligible_on == ELIGIBLE_ON
    assert NOTICE in plow.reason
    assert entry.actor == "alice (via sudo as archiver)"
    assert entry.detail["eligible"] == 6
    assert entry.detail["kept"] == {"awaiting-event": 2, "held": 1, "retained": 1}


# --- expiry and approval --------------------------------------------------------------------


def _requiring_approval(config: Config) -> Config:
    retention = config.retention.model_copy(update={"require_approval": True})
    return config.model_copy(update={"retention": retention})


def check(archive: Archive, report_id: str, now: datetime, executor: str, config: Config) -> None:
    with archive.catalog.reader() as s:
        report.check_executable(s, report_id, now, config, executor)


def approve(archive: Archive, report_id: str, who: str, now: datetime) -> None:
    with archive.catalog.session() as s:
        report.approve(s, report_id, who, now, "checked against the schedule")


def test_a_report_can_be_carried_out_until_it_expires_and_not_after(archive: Archive) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)

    check(
        archive, report_id, AFTER_NOTICE_ENDS + TTL - timedelta(seconds=1), "alice", archive.config
    )
    with pytest.raises(RetentionError, match="make a new report: archiver retention report") as e:
        check(archive, report_id, AFTER_NOTICE_ENDS + TTL, "alice", archive.config)
    assert e.value.exit_code == 7
    assert "expired" in e.value.message


def test_an_unknown_or_already_carried_out_report_cannot_be_executed(archive: Archive) -> None:
    with pytest.raises(RetentionError, match=r"no disposition report 'NOPE'.*retention reports"):
        check(archive, "NOPE", AFTER_NOTICE_ENDS, "alice", archive.config)
    report_id = make(archive, AFTER_NOTICE_ENDS)
    with archive.catalog.session() as s:
        s.execute(
            update(DispositionReport)
            .where(DispositionReport.id == report_id)
            .values(status="disposed")
        )
    with pytest.raises(RetentionError, match="already carried out"):
        check(archive, report_id, AFTER_NOTICE_ENDS, "alice", archive.config)
    with pytest.raises(RetentionError, match="already carried out"):
        approve(archive, report_id, "bob", AFTER_NOTICE_ENDS)


def test_with_approval_required_a_second_officer_must_approve_and_not_the_executor(
    archive: Archive,
) -> None:
    config = _requiring_approval(archive.config)
    now = AFTER_NOTICE_ENDS + timedelta(hours=1)
    report_id = make(archive, AFTER_NOTICE_ENDS)

    with pytest.raises(RetentionError, match=f"retention approve {report_id}") as e:
        check(archive, report_id, now, "alice", config)
    assert "other than alice" in e.value.message

    approve(archive, report_id, "alice", now)
    with pytest.raises(RetentionError, match="your own approval does not count"):
        check(archive, report_id, now, "alice", config)
    # Through sudo she is still alice.
    with pytest.raises(RetentionError, match="your own approval does not count"):
        check(archive, report_id, now, "alice (via sudo as archiver)", config)

    approve(archive, report_id, "bob (via sudo as archiver)", now)
    check(archive, report_id, now, "alice", config)
    check(archive, report_id, now, "bob", config)  # alice's approval is another officer's
    assert load(archive, report_id).approvals == ["alice", "bob (via sudo as archiver)"]
    # Without the requirement nobody needs to approve.
    check(archive, make(archive, AFTER_NOTICE_ENDS), now, "carol", archive.config)


def test_an_officer_approves_a_report_once_and_the_approval_is_audited(archive: Archive) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)
    approve(archive, report_id, "bob", AFTER_NOTICE_ENDS)

    with pytest.raises(RetentionError, match="bob already approved"):
        approve(archive, report_id, "bob (via sudo as archiver)", AFTER_NOTICE_ENDS)
    with archive.catalog.reader() as s:
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "retention.approve", AuditEntry.subject == report_id
            )
        ).one()
    assert entry.actor == "bob"
    assert entry.detail == {"note": "checked against the schedule", "report_created_by": "alice"}


def test_an_expired_report_cannot_be_approved(archive: Archive) -> None:
    report_id = make(archive, AFTER_NOTICE_ENDS)

    with pytest.raises(RetentionError, match=r"expired.*make a new report"):
        approve(archive, report_id, "bob", AFTER_NOTICE_ENDS + TTL + timedelta(days=1))
    assert load(archive, report_id).approvals == []


def test_reports_are_listed_newest_first_with_their_item_counts(archive: Archive) -> None:
    first = make(archive, BEFORE_NOTICE_ENDS)
    second = make(archive, AFTER_NOTICE_ENDS)

    with archive.catalog.reader() as s:
        listed = report.list_reports(s)
    ids = [v.id for v in listed]
    assert ids.index(second) < ids.index(first)
    counts = {v.id: v.summary["report_items"] for v in listed}
    assert (counts[first], counts[second]) == (3, 6)
    assert report.person("bob (via sudo as archiver)") == "bob"
