"""Holds, events, notices, reassignments and destructions come back from the store alone.

Each test records retention facts the way their commands do (the catalog rows, and the
control fact written in the same transaction before the commit) with small recorders of its
own, so that what is proven here is the rebuild's replay of the facts' documented bodies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from ulid import ULID

from archiver import control
from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import (
    Certificate,
    DispositionReport,
    DispositionRun,
    Hold,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    RetentionEvent,
    RetentionNotice,
    StoredFile,
    WarcRecord,
)
from archiver.errors import IntegrityError
from archiver.layout import Partition, sidecar_key
from archiver.rebuild import compare, rebuild
from archiver.rebuild.compare import lines
from archiver.rebuild.pipeline import RebuildReport
from archiver.rebuild.render import rebuild_lines
from archiver.rebuild.write import PARTITION_RULE, require_empty
from archiver.search import index, search
from archiver.store import LocalStore, ensure_layout
from archiver.store.base import put_bytes
from archiver.warc import WarcWriter
from archiver.warc_records import metadata_record
from tests.connectors.fake_bluesky import FakeBluesky
from tests.corpus import INFO, Corpus, capture_corpus
from tests.rebuild.conftest import Small, small_capture

OFFICER = "jdoe (records officer)"
LEGAL = "asmith (city attorney)"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass
class Recorder:
    """Records retention facts as the hold, retention and disposition commands do."""

    catalog: Catalog
    store: LocalStore
    tmp: Path
    clock: datetime = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    #: How far the clock moves between two facts: none under a fixed ``ARCHIVER_NOW``.
    step: timedelta = timedelta(minutes=7)
    facts: list[control.Fact] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def tick(self) -> datetime:
        self.clock += self.step
        return self.clock

    def fact(
        self, s: Session, kind: str, body: dict[str, Any], at: datetime, actor: str = OFFICER
    ) -> control.Fact:
        written = control.write_fact(
            self.store, s, kind, body, actor=actor, info=INFO, at=at, tmp_dir=self.tmp
        )
        self.facts.append(written)
        return written

    # -- holds ---------------------------------------------------------------------------

    def hold(
        self,
        case: str,
        reason: str,
        *,
        kind: str = "legal",
        accounts: Sequence[str] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        query: str | None = None,
        actor: str = OFFICER,
    ) -> int:
        at = self.tick()
        with self.catalog.session() as s:
            row = Hold(
                case_id=case,
                kind=kind,
                reason=reason,
                accounts=list(accounts),
                created_from=created_from,
                created_to=created_to,
                query=query,
                created_at=at,
                created_by=actor,
            )
            s.add(row)
            s.flush()
            body = {
                "hold": row.id,
                "case": case,
                "kind": kind,
                "reason": reason,
                "accounts": list(accounts),
                "created_from": iso(created_from),
                "created_to": iso(created_to),
                "query": query,
            }
            self.fact(s, "hold.created", body, at, actor)
            return row.id

    def release(self, hold: int, reason: str) -> None:
        at = self.tick()
        with self.catalog.session() as s:
            row = s.get_one(Hold, hold)
            row.released_at, row.released_by, row.release_reason = at, OFFICER, reason
            self.fact(s, "hold.released", {"hold": hold, "reason": reason}, at)

    def close(self, hold: int, *, denied_on: datetime) -> None:
        at = self.tick()
        with self.catalog.session() as s:
            s.get_one(Hold, hold).denied_on = denied_on
            body = {"hold": hold, "granted_on": None, "denied_on": iso(denied_on)}
            self.fact(s, "hold.closed", body, at)

    # -- events, notices, assignments ------------------------------------------------------

    def event(self, kind: str, account: str | None, occurred_at: datetime, note: str) -> int:
        at = self.tick()
        with self.catalog.session() as s:
            row = RetentionEvent(
                kind=kind,
                account_id=account,
                occurred_at=occurred_at,
                recorded_at=at,
                recorded_by=OFFICER,
                note=note,
            )
            s.add(row)
            s.flush()
            body = {
                "event": row.id,
                "kind": kind,
                "account": account,
                "occurred_at": iso(occurred_at),
                "note": note,
            }
            self.fact(s, "event.recorded", body, at)
            return row.id

    def notice(self, series: str, kind: str, on: datetime, reference: str) -> int:
        at = self.tick()
        with self.catalog.session() as s:
            row = RetentionNotice(
                series=series,
                kind=kind,
                on=on,
                reference=reference,
                recorded_at=at,
                recorded_by=OFFICER,
                note=None,
            )
            s.add(row)
            s.flush()
            body = {
                "notice": row.id,
                "series": series,
                "kind": kind,
                "on": iso(on),
                "reference": reference,
                "note": None,
            }
            self.fact(s, "notice.recorded", body, at)
            return row.id

    def reassign(self, items: Sequence[tuple[str, str]], to: str, rule: str) -> None:
        """Move (account, platform item id) items to series ``to`` under ``rule``."""
        at = self.tick()
        with self.catalog.session() as s:
            changes = []
            for account, item in items:
                row = s.scalars(
                    select(Item).where(Item.account_id == account, Item.platform_item_id == item)
                ).one()
                changes.append(
                    {
                        "account": account,
                        "item": item,
                        "from": row.series,
                        "to": to,
                        "rule": rule,
                        "why": f"rule {rule}",
                    }
                )
                row.series, row.series_rule = to, rule
            self.fact(s, "assignment.changed", {"cause": "reassign", "changes": changes}, at)

    # -- disposition -------------------------------------------------------------------------

    def destroy(
        self,
        items: Sequence[int],
        *,
        files: Sequence[str] = (),
        registered: bool = False,
        document: bytes | None = None,
    ) -> str:
        """Destroy ``items`` (catalog ids) and the stored ``files`` (keys) holding them.

        The items become stubs as ``archiver.disposition.scrub`` leaves them (versions kept
        without text); the certificate's JSON and HTML are stored, with sidecars and
        ``stored_files`` rows when ``registered``; ``document`` replaces the JSON's bytes
        after its fact recorded the right ones (a certificate changed behind our back).
        """
        at = self.tick()
        certificate, run, report = str(ULID()), str(ULID()), str(ULID())
        json_key = f"control/certificates/{certificate}.json"
        html_key = f"control/certificates/{certificate}.html"
        with self.catalog.session() as s:
            rows = s.scalars(select(Item).where(Item.id.in_(items)).order_by(Item.id)).all()
            entries = [
                {
                    "account": i.account_id,
                    "item": i.platform_item_id,
                    "series": i.series,
                    "created_at": iso(i.created_at),
                    "first_captured_at": iso(i.first_captured_at),
                    "content_sha256": i.content_sha256,
                }
                for i in rows
            ]
            raw = json.dumps({"certificate": certificate, "items": entries}, sort_keys=True)
            page = f"<!DOCTYPE html><title>Certificate {certificate}</title>".encode()
            digest = hashlib.sha256(raw.encode()).hexdigest()
            for key, data in ((json_key, document or raw.encode()), (html_key, page)):
                stored = put_bytes(self.store, key, data, tmp_dir=self.tmp)
                if registered:
                    file_id = str(ULID())
                    sidecar = {"file_id": file_id, "key": key, "sha256": stored.sha256}
                    put_bytes(self.store, sidecar_key(key), json.dumps(sidecar).encode())
                    s.add(_control_file(file_id, key, stored.sha256, stored.size, at))
            s.add(
                DispositionReport(
                    id=report,
                    created_at=at,
                    created_by=OFFICER,
                    expires_at=at + timedelta(days=7),
                    status="disposed",
                    summary={},
                )
            )
            s.flush()
            s.add(
                DispositionRun(
                    id=run,
                    report_id=report,
                    started_at=at,
                    started_by=OFFICER,
                    finished_at=at,
                    state="done",
                    plan={},
                    certificate_id=certificate,
                )
            )
            s.flush()
            body = {
                "certificate": certificate,
                "run": run,
                "report": report,
                "json_key": json_key,
                "html_key": html_key,
                "sha256": digest,
                "disposed_at": iso(at),
                "items": entries,
            }
            self.fact(s, "disposition.certificate", body, at)
            s.add(
                Certificate(
                    id=certificate,
                    run_id=run,
                    created_at=at,
                    json_key=json_key,
                    html_key=html_key,
                    sha256=digest,
                    summary={"items": len(entries)},
                )
            )
            self._scrub(s, list(items), files, certificate, at)
        return certificate

    def _scrub(
        self, s: Session, items: list[int], files: Sequence[str], certificate: str, at: datetime
    ) -> None:
        gone = s.scalars(select(StoredFile).where(StoredFile.key.in_(files))).all()
        for f in gone:
            self.store.delete(f.key, bypass_governance=True)
            self.store.delete(sidecar_key(f.key), bypass_governance=True)
            f.state, f.disposed_at = "disposed", at
        s.execute(delete(WarcRecord).where(WarcRecord.file_id.in_([f.id for f in gone])))
        versions = list(s.scalars(select(ItemVersion.id).where(ItemVersion.item_id.in_(items))))
        s.execute(
            update(Item)
            .where(Item.id.in_(items))
            .values(
                text=None,
                author=None,
                permalink=None,
                edited_at=None,
                disposed_at=at,
                certificate_id=certificate,
            )
        )
        s.execute(update(ItemVersion).where(ItemVersion.id.in_(versions)).values(text=None))
        media = list(
            s.scalars(select(ItemMedia.media_id).where(ItemMedia.version_id.in_(versions)))
        )
        s.execute(
            update(ItemMedia)
            .where(ItemMedia.version_id.in_(versions))
            .values(alt_text=None, media_id=None, detail=None, status="disposed")
        )
        s.execute(delete(Media).where(Media.id.in_([m for m in media if m is not None])))
        index.backend(s).delete(s, versions)


def _control_file(file_id: str, key: str, sha256: str, size: int, at: datetime) -> StoredFile:
    return StoredFile(
        id=file_id,
        key=key,
        kind="control",
        partition=None,
        sha256=sha256,
        size=size,
        records=0,
        created_at=at,
        stored_at=at,
        state="stored",
    )


def _clean(live: Catalog, target: Catalog) -> None:
    comparison = compare(live, target)
    assert comparison.clean, "\n".join(lines(comparison, limit=40))


def _item(catalog: Catalog, account: str, item: str) -> Item:
    with catalog.reader() as s:
        return s.scalars(
            select(Item).where(Item.account_id == account, Item.platform_item_id == item)
        ).one()


def _files(catalog: Catalog, partition: str) -> list[str]:
    with catalog.reader() as s:
        return list(s.scalars(select(StoredFile.key).where(StoredFile.partition == partition)))


# --- the corpus, with every kind of fact -------------------------------------------------------


@dataclass
class Retained:
    corpus: Corpus
    recorder: Recorder
    holds: dict[str, int]
    event: int
    notice: int
    certificate: str
    destroyed: list[tuple[str, str]]


@pytest.fixture
def retained(catalog: Catalog, tmp_path: Path) -> Retained:
    """The corpus with three holds, an event, a notice, two reassignments and a destruction."""
    store = LocalStore(tmp_path / "store")
    ensure_layout(store, create=True)
    corpus = capture_corpus(catalog, store, tmp_path / "corpus")
    rec = Recorder(catalog, store, tmp_path / "facts")
    bluesky, mastodon = corpus.bluesky_account, corpus.mastodon_account
    holds = {
        "released": rec.hold("CV-2026-0113", "Smith v. City: snow removal claims"),
        "prr": rec.hold(
            "PRR-2026-044", "records request about plowing", kind="prr", accounts=[bluesky]
        ),
        "active": rec.hold(
            "CV-2026-0200",
            "Bay View brush pickup complaint",
            accounts=[mastodon],
            created_from=datetime(2026, 1, 1, tzinfo=UTC),
            created_to=datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC),
            query='"brush crew"',
            actor=LEGAL,
        ),
    }
    rec.release(holds["released"], "the claim was settled")
    rec.close(holds["prr"], denied_on=datetime(2026, 2, 20, 15, 30, tzinfo=UTC))
    event = rec.event(
        "account-closed", mastodon, datetime(2026, 2, 27, 17, 0, tzinfo=UTC), "DPW left Mastodon"
    )
    notice = rec.notice(
        "EXAMPLE-COMMENTS", "sent", datetime(2026, 2, 28, tzinfo=UTC), "WHS-2026-017"
    )
    moderated = [(bluesky, corpus.hidden_reply.platform_item_id)]
    rec.reassign(
        [(bluesky, corpus.cafe_reply.platform_item_id), *moderated],
        "EXAMPLE-COMMENTS",
        "public-comments",
    )
    rec.reassign(moderated, "EXAMPLE-MODERATED", "moderator-removed")  # the later fact wins
    # The whole February partition of mke-bluesky goes: the leaf post and its deleted reply.
    images = _item(catalog, bluesky, corpus.images_post.platform_item_id)
    certificate = rec.destroy(
        [corpus.images_post.id, corpus.deleted_reply.id], files=_files(catalog, images.partition)
    )
    destroyed = [
        (bluesky, corpus.images_post.platform_item_id),
        (bluesky, corpus.deleted_reply.platform_item_id),
    ]
    return Retained(corpus, rec, holds, event, notice, certificate, destroyed)


def test_holds_events_notices_reassignments_and_a_certificate_are_rebuilt_and_compare_clean(
    retained: Retained, target: Catalog
) -> None:
    rec, corpus = retained.recorder, retained.corpus
    live = rec.catalog

    report = rebuild(rec.store, target, actor=OFFICER, accounts=corpus.config.accounts)

    _clean(live, target)
    assert not report.problems and not report.damaged and not report.retention.unmatched
    r = report.retention
    assert (r.facts, r.holds, r.holds_released, r.holds_closed) == (len(rec.facts), 3, 1, 1)
    assert (r.events, r.notices, r.reassigned, r.certificates, r.stubs) == (1, 1, 2, 1, 2)
    assert report.fact_files == len(rec.facts) and report.certificate_files == 2
    comparison = compare(live, target)
    for table, rows in (
        ("holds", 3),
        ("retention_events", 1),
        ("retention_notices", 1),
        ("certificates", 1),
    ):
        assert comparison.tables[table].live == comparison.tables[table].rebuilt == rows
    with target.reader() as s:
        holds = {h.id: h for h in s.scalars(select(Hold))}
        released, prr, active = (holds[retained.holds[k]] for k in ("released", "prr", "active"))
        assert released.released_by == OFFICER
        assert released.release_reason == "the claim was settled"
        assert prr.kind == "prr" and prr.denied_on == datetime(2026, 2, 20, 15, 30, tzinfo=UTC)
        assert active.created_by == LEGAL and active.query == '"brush crew"'
        assert active.accounts == [corpus.mastodon_account] and active.released_at is None
        event = s.get_one(RetentionEvent, retained.event)
        assert (event.kind, event.account_id) == ("account-closed", corpus.mastodon_account)
        assert s.get_one(RetentionNotice, retained.notice).reference == "WHS-2026-017"
        series = dict(
            (r.platform_item_id, f"{r.series} {r.series_rule}")
            for r in s.execute(select(Item.platform_item_id, Item.series, Item.series_rule))
        )
        stubs = s.scalars(select(Item).where(Item.disposed_at.is_not(None))).all()
        versions = s.scalar(
            select(func.count())
            .select_from(ItemVersion)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.disposed_at.is_not(None))
        )
        control_files = set(
            s.scalars(select(StoredFile.key).where(StoredFile.key.like("control/facts/%")))
        )
    assert series[corpus.cafe_reply.platform_item_id] == "EXAMPLE-COMMENTS public-comments"
    assert series[corpus.hidden_reply.platform_item_id] == "EXAMPLE-MODERATED moderator-removed"
    assert series[corpus.snow_post.platform_item_id].endswith(" " + PARTITION_RULE)
    # The destroyed items are stubs: what the certificate says, no text, no versions.
    assert sorted((i.account_id, i.platform_item_id) for i in stubs) == sorted(retained.destroyed)
    assert {(i.certificate_id, i.text, i.versions) for i in stubs} == {
        (retained.certificate, None, 0)
    }
    assert versions == 0
    assert not search(target, "leaf").results and not search(target, "Oak Avenue").results
    assert control_files == {f.key for f in rec.facts}
    # The holds kept their ids, and the next hold placed in the rebuilt catalog gets a new one
    # (PostgreSQL's sequence was moved past them).
    with target.session() as s:
        s.add(
            Hold(
                case_id="CV-2026-0301",
                kind="legal",
                reason="new",
                accounts=[],
                created_at=rec.tick(),
                created_by=OFFICER,
            )
        )
    with target.reader() as s:
        added = s.scalar(select(func.max(Hold.id)))
    assert added == max(retained.holds.values()) + 1
    text = "\n".join(rebuild_lines(report, "rebuilt"))
    assert f"replayed {len(rec.facts)} control fact(s)" in text
    assert "3 hold(s) (1 released, 1 request(s) closed)" in text
    assert "1 certificate(s) of destruction with 2 destroyed item stub(s)" in text
    # And the comparison does look at them: a released hold and a lost stub are named.
    hold, (account, item) = retained.holds["active"], retained.destroyed[0]
    with target.session() as s:
        s.execute(update(Hold).where(Hold.id == hold).values(released_at=rec.tick()))
        s.execute(
            update(Item)
            .where(Item.account_id == account, Item.platform_item_id == item)
            .values(disposed_at=None, certificate_id=None)
        )
    assert {(d.table, d.key, d.column) for d in compare(live, target).differences} == {
        ("holds", (str(hold),), "released_at"),
        ("holds", (str(added),), None),  # only in the rebuilt catalog
        ("items", (account, item), "disposed_at"),
        ("items", (account, item), "certificate_id"),
    }


# --- one account, item by item ------------------------------------------------------------------


def _winter(fake: FakeBluesky) -> None:
    """A November post, a December reply to it, and a December post."""
    rink = fake.post("Ice rink opens at Red Arrow Park", created_at=_utc(2025, 11, 20, 15))
    fake.reply(rink, "Is the rink open on Sundays?", created_at=_utc(2025, 12, 2, 9))
    fake.post("Street sweeping suspended for the winter", created_at=_utc(2025, 12, 5, 8))


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def winter(catalog: Catalog, tmp_path: Path, httpserver: HTTPServer) -> Iterator[Small]:
    """Captured into each supported database."""
    yield small_capture(catalog, tmp_path / "winter", httpserver, _winter)


def _sqlite(path: Path) -> Catalog:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Catalog.open(f"sqlite:///{path}")


@pytest.fixture
def winter_sqlite(tmp_path: Path, httpserver: HTTPServer) -> Iterator[Small]:
    """Captured into SQLite only, for what does not depend on the database."""
    live = _sqlite(tmp_path / "live" / "catalog.sqlite3")
    upgrade(live)
    yield small_capture(live, tmp_path / "winter", httpserver, _winter)
    live.dispose()


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Iterator[Catalog]:
    target = _sqlite(tmp_path / "rebuilt" / "catalog.sqlite3")
    yield target
    target.dispose()


def _by_text(small: Small, words: str) -> Item:
    with small.catalog.reader() as s:
        return s.scalars(select(Item).where(Item.text.contains(words))).one()


def test_a_reply_kept_after_its_post_was_destroyed_points_at_the_posts_stub(
    winter: Small, target: Catalog, tmp_path: Path
) -> None:
    rec = Recorder(winter.catalog, winter.store, tmp_path / "facts")
    rink = _by_text(winter, "Ice rink")
    reply = _by_text(winter, "open on Sundays")
    assert reply.parent_id == rink.id and rink.partition != reply.partition
    rec.destroy([rink.id], files=_files(winter.catalog, rink.partition))

    report = rebuild(winter.store, target, actor=OFFICER, accounts=winter.accounts)

    _clean(winter.catalog, target)
    assert report.retention.stubs == 1 and not report.problems
    with target.reader() as s:
        stub = s.scalars(select(Item).where(Item.platform_item_id == rink.platform_item_id)).one()
        child = s.scalars(select(Item).where(Item.platform_item_id == reply.platform_item_id)).one()
    assert child.parent_id == stub.id and stub.text is None and stub.kind == "unknown"
    assert stub.first_captured_at == rink.first_captured_at and stub.created_at == rink.created_at


def test_an_item_destroyed_while_its_records_wait_for_a_lock_is_rebuilt_as_a_stub_without_text(
    winter: Small, target: Catalog, tmp_path: Path
) -> None:
    rec = Recorder(winter.catalog, winter.store, tmp_path / "facts")
    sweeping = _by_text(winter, "Street sweeping suspended")
    # A COMPLIANCE lock keeps its file in the store for now; the certificate is registered.
    certificate = rec.destroy([sweeping.id], registered=True)

    report = rebuild(winter.store, target, actor=OFFICER, accounts=winter.accounts)

    _clean(winter.catalog, target)
    assert not report.problems and report.certificate_files == 2
    stub = _item(target, "mke-small", sweeping.platform_item_id)
    assert (stub.text, stub.versions, stub.certificate_id) == (None, 0, certificate)
    assert stub.author is None and stub.permalink is None
    assert not search(target, "sweeping").results
    assert len(search(target, "Sundays").results) == 1  # the rest is indexed as usual
    with target.reader() as s:
        registered = set(s.scalars(select(StoredFile.key).where(StoredFile.kind == "control")))
    assert {k for k in registered if k.startswith("control/certificates/")} == {
        f"control/certificates/{certificate}.json",
        f"control/certificates/{certificate}.html",
    }


def test_a_fact_naming_an_item_the_store_does_not_hold_is_listed_and_the_rest_is_rebuilt(
    winter_sqlite: Small, sqlite_target: Catalog, tmp_path: Path
) -> None:
    winter, target = winter_sqlite, sqlite_target
    rec = Recorder(winter.catalog, winter.store, tmp_path / "facts")
    rink = _by_text(winter, "Ice rink")
    rec.reassign([("mke-small", rink.platform_item_id)], "EXAMPLE-POSTS", "city-posts")
    # A capture wrote this fact, then crashed before committing the item it names.
    at = rec.tick()
    ghost = "at://did:plc:ghost/app.bsky.feed.post/3never"
    change = {"account": "mke-small", "item": ghost, "from": "a", "to": "b", "rule": "r", "why": ""}
    with winter.catalog.session() as s:
        fact = rec.fact(s, "assignment.changed", {"cause": "capture", "changes": [change]}, at)

    report = rebuild(winter.store, target, actor=OFFICER, accounts=winter.accounts)

    assert report.retention.unmatched == [f"mke-small {ghost} ({fact.key})"]
    assert report.retention.reassigned == 1 and not report.problems
    assert _item(target, "mke-small", rink.platform_item_id).series == "EXAMPLE-POSTS"
    assert report.audit_seq is not None
    text = list(rebuild_lines(report, "rebuilt"))
    assert f"  mke-small {ghost} ({fact.key})" in text


def test_facts_recorded_at_one_fixed_moment_are_replayed_in_the_order_they_were_written(
    winter_sqlite: Small, sqlite_target: Catalog, tmp_path: Path
) -> None:
    # A rehearsal under ARCHIVER_NOW: every fact says it happened at the same instant, so
    # only write order (the fact ids, ULIDs of when each was written) tells that each hold
    # was placed before it was released.
    rec = Recorder(winter_sqlite.catalog, winter_sqlite.store, tmp_path / "facts")
    rec.step = timedelta(0)
    holds = [rec.hold(f"CV-2034-{n:04d}", "rehearsal") for n in range(8)]
    for hold in holds:
        rec.release(hold, "rehearsal over")
    assert len({f.at for f in rec.facts}) == 1
    assert [f.id for f in rec.facts] == sorted(f.id for f in rec.facts)

    report = rebuild(winter_sqlite.store, sqlite_target, actor=OFFICER)

    assert not report.problems and report.retention.holds_released == len(holds)
    _clean(winter_sqlite.catalog, sqlite_target)


def _foreign_fact(store: LocalStore, work: Path, kind: str, body: dict[str, Any]) -> str:
    """A fact file as a newer archiver (or a damaged one) would leave it: not write_fact's."""
    at = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    fact_id = str(ULID.from_datetime(at))
    key = control.fact_key(fact_id, at)
    doc = {"fact": kind, "id": fact_id, "at": iso(at), "actor": OFFICER, "body": body}
    work.mkdir(parents=True, exist_ok=True)
    writer = WarcWriter(work, Partition("control", "facts", "2026-03"), INFO, clock=lambda: at)
    writer.append(metadata_record(f"urn:archiver:fact:{kind}:{fact_id}", json.dumps(doc).encode()))
    closed = writer.close()
    store.put(key, closed.path, closed.sha256)
    sidecar = {"file_id": closed.file_id, "key": key, "sha256": closed.sha256, "size": closed.size}
    put_bytes(store, sidecar_key(key), json.dumps(sidecar).encode(), tmp_dir=work)
    return key


def test_a_fact_of_a_kind_this_archiver_does_not_know_stops_the_rebuild_naming_its_key(
    sqlite_target: Catalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    ensure_layout(store, create=True)
    key = _foreign_fact(store, tmp_path / "new", "hold.extended", {"hold": 1})
    target = sqlite_target

    with pytest.raises(IntegrityError) as stopped:
        rebuild(store, target, actor=OFFICER, skip_damaged=True)

    assert stopped.value.exit_code == 90
    message = str(stopped.value)
    assert key in message and "'hold.extended'" in message and "upgrade the archiver" in message
    require_empty(target)  # nothing was written


def _damaged(report: RebuildReport) -> dict[str, str]:
    return {d.key: d.problem for d in report.damaged}


def test_a_certificate_unlike_its_fact_and_a_fact_missing_a_field_are_damage(
    winter_sqlite: Small, sqlite_target: Catalog, tmp_path: Path
) -> None:
    winter, target = winter_sqlite, sqlite_target
    rec = Recorder(winter.catalog, winter.store, tmp_path / "facts")
    rink = _by_text(winter, "Ice rink")
    certificate = rec.destroy([rink.id], document=b'{"certificate": "rewritten"}')
    broken = _foreign_fact(winter.store, tmp_path / "broken", "hold.released", {"reason": "x"})

    with pytest.raises(IntegrityError, match="nothing was written"):
        rebuild(winter.store, target, actor=OFFICER, accounts=winter.accounts)
    report = rebuild(
        winter.store, target, actor=OFFICER, accounts=winter.accounts, skip_damaged=True
    )

    damaged = _damaged(report)
    assert set(damaged) == {f"control/certificates/{certificate}.json", broken}
    assert "the certificate fact" in damaged[f"control/certificates/{certificate}.json"]
    assert damaged[broken] == "its hold.released fact lacks 'hold'"
    # The certificate's fact is intact: the item is still known to have been destroyed.
    assert _item(target, "mke-small", rink.platform_item_id).certificate_id == certificate
