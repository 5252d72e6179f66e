"""Legal and public-records-request holds: recorded, written to the store, and enforced there.

The archive is the shared corpus (two accounts captured through the real pipeline, Parquet
rolled) in a real LocalStore, on SQLite and PostgreSQL; one test puts it on moto's S3 server
with Object Lock. Which files hold an item's records is worked out here independently of
:mod:`archiver.holds`: from the catalog's pointers and, for the raw exchange a version was
read from, from the ``WARC-Refers-To`` header of the version's record as stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver import audit, holds, locks, parquet
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import AuditEntry, Item, ItemMedia, ItemVersion, Media, StoredFile
from archiver.catalog.models import Hold as HoldRow
from archiver.config import load_config
from archiver.control import read_facts
from archiver.errors import ArchiverError, RetentionError, SearchQueryError
from archiver.holds import Recording, Scope
from archiver.layout import Partition
from archiver.retrieve import locate_one, read_record
from archiver.search import search
from archiver.store import LocalStore, Store
from tests.connectors.fake_bluesky import FakeBluesky
from tests.corpus import INFO, Corpus, capture_corpus

pytest_plugins = ["tests.store.s3server"]

ALICE = Recording(actor="alice", info=INFO)
BOB = Recording(actor="bob", info=INFO)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ZONE = ZoneInfo("America/Chicago")


@dataclass
class Archive:
    catalog: Catalog
    store: Store
    corpus: Corpus | None = None

    @property
    def items(self) -> Corpus:
        assert self.corpus is not None
        return self.corpus


def _archive(catalog: Catalog, store: Store, work: Path) -> Archive:
    corpus = capture_corpus(catalog, store, work)  # type: ignore[arg-type]
    parquet.roll(catalog, store, work, min_rows=1, max_age=timedelta(0), force=True)
    return Archive(catalog, store, corpus)


@pytest.fixture
def archive(catalog: Catalog, tmp_path: Path) -> Archive:
    """The corpus captured into a LocalStore, with its Parquet files rolled."""
    return _archive(catalog, LocalStore(tmp_path / "store"), tmp_path / "corpus")


@pytest.fixture
def empty(catalog: Catalog, tmp_path: Path) -> Archive:
    """A catalog and a LocalStore with nothing captured yet."""
    return Archive(catalog, LocalStore(tmp_path / "store"))


def create(
    a: Archive, case: str = "LIT-1", *, kind: Any = "legal", now: datetime = NOW, **scope: Any
) -> holds.Change:
    return holds.create(
        a.catalog,
        a.store,
        case=case,
        reason="litigation hold",
        kind=kind,
        scope=Scope(**scope),
        recording=ALICE,
        now=now,
    )


def files_holding(a: Archive, item_ids: Iterable[int]) -> set[str]:
    """Keys of the files holding the items' version records, media, Parquet rows and the
    exchange each version names in its stored ``WARC-Refers-To``."""
    ids = list(item_ids)
    with a.catalog.reader() as s:
        versions = s.execute(
            select(ItemVersion.warc_record_id, ItemVersion.parquet_file_id).where(
                ItemVersion.item_id.in_(ids)
            )
        ).all()
        media = s.scalars(
            select(Media.warc_record_id)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(ids))
        ).all()
        parquet_keys = {
            s.scalars(select(StoredFile.key).where(StoredFile.id == v.parquet_file_id)).one()
            for v in versions
            if v.parquet_file_id is not None
        }
    records = [v.warc_record_id for v in versions] + list(media)
    sources = [
        read_record(a.catalog, a.store, v.warc_record_id).headers["WARC-Refers-To"]
        for v in versions
    ]
    return {locate_one(a.catalog, r).key for r in records + sources} | parquet_keys


def held_keys(a: Archive) -> set[str]:
    """Keys the store holds under legal hold, checked against the catalog's flags."""
    with a.catalog.reader() as s:
        rows = s.execute(
            select(StoredFile.key, StoredFile.legal_hold).where(
                StoredFile.kind.in_(("warc", "parquet"))
            )
        ).all()
    in_store = {key for key, _ in rows if a.store.head(key).legal_hold}
    assert in_store == {key for key, flag in rows if flag}
    return in_store


def account_of(a: Archive, key: str) -> str:
    with a.catalog.reader() as s:
        partition = s.scalars(select(StoredFile.partition).where(StoredFile.key == key)).one()
    return Partition.parse(partition).account


def items_of(a: Archive, account: str) -> set[int]:
    with a.catalog.reader() as s:
        return set(s.scalars(select(Item.id).where(Item.account_id == account)))


def test_a_hold_over_an_account_holds_every_file_of_its_items_and_no_other_accounts_file(
    archive: Archive,
) -> None:
    bluesky = archive.items.bluesky_account

    change = create(archive, accounts=(bluesky,))

    expected = files_holding(archive, items_of(archive, bluesky))
    held = held_keys(archive)
    assert expected <= held
    assert any(k.startswith("parquet/") for k in expected)
    assert {account_of(archive, k) for k in held} == {bluesky}
    assert change.sync.covered_items == len(items_of(archive, bluesky))
    assert sorted(change.sync.placed) == sorted(held) and change.sync.ok
    assert change.sync.approximated == 0  # every version's source is linked in the catalog
    with pytest.raises(RetentionError, match="legal hold"):
        archive.store.delete(sorted(held)[0])
    assert change.hold.active(NOW) and change.hold.created_by == "alice"
    # A hold lifted behind the catalog's back is put back when the store is asked.
    tampered = sorted(held)[0]
    archive.store.set_legal_hold(tampered, False)
    assert holds.sync_legal_holds(archive.catalog, archive.store, NOW).placed == []
    repaired = holds.sync_legal_holds(archive.catalog, archive.store, NOW, check_store=True)
    assert repaired.placed == [tampered] and held_keys(archive) == held


def test_releasing_a_hold_lifts_the_legal_hold_except_where_another_hold_still_covers(
    archive: Archive,
) -> None:
    corpus = archive.items
    account_hold = create(archive, "LIT-1", accounts=(corpus.bluesky_account,))
    query_hold = create(archive, "PRR-7", kind="prr", query='"Elm Street"')
    everything = held_keys(archive)

    released = holds.release(
        archive.catalog,
        archive.store,
        account_hold.hold.id,
        reason="case settled",
        recording=BOB,
        now=NOW + timedelta(days=1),
    )

    still = files_holding(archive, {corpus.plow_reply.id})
    assert held_keys(archive) == still
    assert still < everything
    assert sorted(released.sync.lifted) == sorted(everything - still)
    assert released.hold.released_by == "bob" and released.hold.release_reason == "case settled"
    assert not released.hold.active(NOW + timedelta(days=1))

    holds.release(
        archive.catalog,
        archive.store,
        query_hold.hold.id,
        reason="request withdrawn",
        recording=BOB,
        now=NOW + timedelta(days=2),
    )
    assert held_keys(archive) == set()
    with pytest.raises(ArchiverError, match=rf"hold {query_hold.hold.id} .* already released"):
        holds.release(
            archive.catalog, archive.store, query_hold.hold.id, reason="x", recording=BOB, now=NOW
        )


def test_a_query_hold_covers_exactly_what_the_query_finds_and_dates_narrow_it(
    archive: Archive,
) -> None:
    corpus = archive.items
    query = '"Elm Street" OR Riverwest OR coffee'
    found = {r.id for r in search(archive.catalog, query, limit=100).results}

    by_query = create(archive, "Q", query=query)
    by_date = create(
        archive,
        "D",
        accounts=(corpus.bluesky_account,),
        created_from=datetime(2026, 1, 12, 15, 2, tzinfo=UTC),
        created_to=datetime(2026, 1, 12, 15, 3, tzinfo=UTC),
    )

    with archive.catalog.reader() as s:
        rows = {r.case_id: r for r in s.scalars(select(HoldRow))}
        assert holds.covered_item_ids(s, rows["Q"]) == found
        assert holds.covered_item_ids(s, rows["D"]) == corpus.ids("plow_reply", "cafe_reply")
    # An edited post is found by the words of its first version too.
    assert found == corpus.ids("plow_reply", "cafe_reply", "edited_post")
    assert by_date.sync.covered_items == 3  # plow_reply and cafe_reply are in both
    assert by_query.hold.scope_text(ZONE) == f"every account; query {query}"


def test_closing_a_public_records_request_records_its_outcome_and_when_the_hold_ends(
    archive: Archive,
) -> None:
    prr = create(archive, "PRR-2027-1", kind="prr", accounts=(archive.items.bluesky_account,))
    legal = create(archive, "LIT-1", accounts=(archive.items.mastodon_account,))
    denied = datetime(2026, 6, 10, 5, 0, tzinfo=UTC)  # 2026-06-10 00:00 in Chicago

    closed = holds.close(
        archive.catalog,
        archive.store,
        prr.hold.id,
        denied_on=denied,
        recording=ALICE,
        now=denied + timedelta(hours=1),
    )

    assert closed.hold.denied_on == denied and closed.hold.granted_on is None
    assert closed.hold.holds_until == denied + timedelta(days=60)
    assert closed.hold.active(denied + timedelta(days=59))
    assert not closed.hold.active(denied + timedelta(days=60))
    assert (
        closed.hold.status(denied + timedelta(days=1), ZONE)
        == "prr: denied 2026-06-10, holds until 2026-08-09"
    )
    assert closed.hold.status(denied + timedelta(days=61), ZONE) == (
        "prr: denied 2026-06-10, ended 2026-08-09"
    )
    # Still held: the 60 days have not passed.
    assert closed.sync.lifted == [] and any(
        account_of(archive, k) == archive.items.bluesky_account for k in held_keys(archive)
    )
    with pytest.raises(ArchiverError, match="already closed: the request was denied"):
        holds.close(
            archive.catalog,
            archive.store,
            prr.hold.id,
            granted_on=denied,
            recording=ALICE,
            now=denied + timedelta(days=1),
        )
    with pytest.raises(ArchiverError, match=r"is a legal hold.*archiver hold release"):
        holds.close(
            archive.catalog,
            archive.store,
            legal.hold.id,
            granted_on=denied,
            recording=ALICE,
            now=denied + timedelta(days=1),
        )
    # Sixty days after the denial, a sync lifts the request's legal holds.
    later = holds.sync_legal_holds(archive.catalog, archive.store, denied + timedelta(days=60))
    assert later.lifted and {account_of(archive, k) for k in held_keys(archive)} == {
        archive.items.mastodon_account
    }


def test_a_granted_request_ends_its_hold_at_once(archive: Archive) -> None:
    prr = create(archive, "PRR-2", kind="prr", query="coffee")
    granted = NOW + timedelta(days=3)

    closed = holds.close(
        archive.catalog,
        archive.store,
        prr.hold.id,
        granted_on=granted,
        recording=ALICE,
        now=granted,
    )

    assert closed.hold.granted_on == granted and not closed.hold.active(granted)
    assert prr.sync.placed and sorted(closed.sync.lifted) == sorted(prr.sync.placed)
    assert held_keys(archive) == set()
    assert closed.hold.status(granted, ZONE) == "prr: granted 2026-06-04, ended"
    assert [h.id for h in holds.list_holds(archive.catalog, granted)] == []
    assert [h.id for h in holds.list_holds(archive.catalog, granted, everything=True)] == [
        prr.hold.id
    ]


def test_every_change_is_a_control_fact_in_the_store_and_an_audit_entry(
    archive: Archive,
) -> None:
    bluesky = archive.items.bluesky_account
    frm, to = datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 2, 1, 5, 59, tzinfo=UTC)
    at = [NOW + timedelta(minutes=n) for n in range(4)]
    legal = create(archive, "LIT-9", accounts=(bluesky,), created_from=frm, created_to=to)
    prr = create(archive, "PRR-9", kind="prr", query="plow", now=at[1])
    holds.close(
        archive.catalog, archive.store, prr.hold.id, denied_on=NOW, recording=BOB, now=at[2]
    )
    holds.release(
        archive.catalog, archive.store, legal.hold.id, reason="done", recording=BOB, now=at[3]
    )

    facts = list(read_facts(archive.store))
    assert [(f.kind, f.actor, dict(f.body)) for f in facts] == [
        (
            "hold.created",
            "alice",
            {
                "hold": legal.hold.id,
                "case": "LIT-9",
                "kind": "legal",
                "reason": "litigation hold",
                "accounts": [bluesky],
                "created_from": frm.isoformat(),
                "created_to": to.isoformat(),
                "query": None,
            },
        ),
        (
            "hold.created",
            "alice",
            {
                "hold": prr.hold.id,
                "case": "PRR-9",
                "kind": "prr",
                "reason": "litigation hold",
                "accounts": [],
                "created_from": None,
                "created_to": None,
                "query": "plow",
            },
        ),
        (
            "hold.closed",
            "bob",
            {"hold": prr.hold.id, "granted_on": None, "denied_on": NOW.isoformat()},
        ),
        ("hold.released", "bob", {"hold": legal.hold.id, "reason": "done"}),
    ]
    assert [f.at for f in facts] == at
    with archive.catalog.reader() as s:
        entries = s.scalars(
            select(AuditEntry).where(AuditEntry.action.like("hold.%")).order_by(AuditEntry.seq)
        ).all()
    changes = [(e.action, e.actor, e.subject) for e in entries if e.action != "hold.sync"]
    assert changes == [
        ("hold.create", "alice", f"hold:{legal.hold.id}"),
        ("hold.create", "alice", f"hold:{prr.hold.id}"),
        ("hold.close", "bob", f"hold:{prr.hold.id}"),
        ("hold.release", "bob", f"hold:{legal.hold.id}"),
    ]
    recorded = [e for e in entries if e.action != "hold.sync"]
    assert [e.detail["fact_key"] for e in recorded] == [f.key for f in facts]
    assert any(e.action == "hold.sync" and e.detail["placed"] > 0 for e in entries)
    assert audit.verify(archive.catalog, None).ok


def test_a_hold_change_waits_for_a_running_disposition_and_records_nothing_if_it_cannot(
    empty: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = empty
    monkeypatch.setattr(holds, "LOCK_WAIT", timedelta(seconds=0.5))

    with (
        locks.held(archive.catalog, locks.RETENTION, "disposition run 01J"),
        pytest.raises(locks.LockBusyError, match="held by disposition run 01J") as busy,
    ):
        create(archive)

    assert busy.value.exit_code == 7
    with archive.catalog.reader() as s:
        assert s.scalars(select(HoldRow)).all() == []
    assert list(read_facts(archive.store)) == []
    # Once the disposition is done, the same change goes through.
    assert create(archive).hold.id == 1


def test_a_scope_that_cannot_be_meant_is_refused_before_anything_is_recorded(
    empty: Archive,
) -> None:
    archive = empty
    with pytest.raises(ArchiverError, match="no account 'mke-nowhere'"):
        create(archive, accounts=("mke-nowhere",))
    with pytest.raises(SearchQueryError):
        create(archive, query='"unclosed')
    with pytest.raises(ArchiverError, match=r"starts .* after it ends"):
        create(archive, created_from=NOW, created_to=NOW - timedelta(days=1))
    with pytest.raises(ArchiverError, match="--case is empty"):
        create(archive, "  ")
    with pytest.raises(ArchiverError, match="there is no hold 42"):
        holds.release(archive.catalog, archive.store, 42, reason="x", recording=BOB, now=NOW)
    with archive.catalog.reader() as s:
        assert s.scalars(select(HoldRow)).all() == []
    assert list(read_facts(archive.store)) == []


# --- items captured after the hold ------------------------------------------------------------


def _runner(tmp_path: Path, fake: FakeBluesky, catalog: Catalog, store: Store) -> CaptureRunner:
    (tmp_path / "config.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[spool]
path = "spool"

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Department of Public Works"
series = "social-media"
"""
    )
    return CaptureRunner(load_config(tmp_path / "config.toml"), catalog, store, INFO)


def test_an_item_captured_after_a_query_hold_is_covered_and_held_at_the_next_sync(
    tmp_path: Path, httpserver: HTTPServer, catalog: Catalog
) -> None:
    fake = FakeBluesky(httpserver)
    fake.now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    store = LocalStore(tmp_path / "store")
    runner = _runner(tmp_path, fake, catalog, store)
    post = fake.post("Pothole on Main Street reported")
    assert runner.capture("mke-bluesky").status == "complete"
    a = Archive(catalog, store)
    hold = create(a, "PRR-POTHOLE", kind="prr", query="pothole")
    fake.now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    reply = fake.reply(post, "Another pothole on 5th Street")
    assert runner.capture("mke-bluesky", full_walk=True).status == "complete"
    with catalog.reader() as s:
        ids = {p: i for p, i in s.execute(select(Item.platform_item_id, Item.id))}
        row = s.get(HoldRow, hold.hold.id)
        assert row is not None
        assert holds.covered_item_ids(s, row) == {ids[post], ids[reply]}
    new_files = files_holding(a, {ids[reply]})
    assert not new_files <= held_keys(a)  # the capture itself does not hold them

    report = holds.sync_legal_holds(catalog, store, NOW)

    assert new_files <= held_keys(a)
    assert report.covered_items == 2 and set(report.placed) == new_files - files_holding(
        a, {ids[post]}
    )


# --- on S3 with Object Lock ---------------------------------------------------------------------


def test_on_s3_the_objects_of_held_items_get_an_object_lock_legal_hold_and_lose_it_on_release(
    tmp_path: Path, moto_endpoint: str, lock_bucket: str, s3_admin: Any
) -> None:
    from archiver.store.s3 import S3Store

    store = S3Store(
        lock_bucket,
        prefix="city",
        region="us-east-1",
        endpoint_url=moto_endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    upgrade(catalog)
    try:
        a = _archive(catalog, store, tmp_path / "corpus")
        bluesky = a.items.bluesky_account

        def status(key: str) -> str:
            answer = s3_admin.get_object_legal_hold(Bucket=lock_bucket, Key=f"city/{key}")
            return str(answer["LegalHold"].get("Status", "OFF"))

        with catalog.reader() as s:
            keys = list(s.scalars(select(StoredFile.key).where(StoredFile.kind != "control")))
        change = create(a, accounts=(bluesky,))

        expected = files_holding(a, items_of(a, bluesky))
        on = {k for k in keys if status(k) == "ON"}
        assert expected <= on and {account_of(a, k) for k in on} == {bluesky}
        assert {account_of(a, k) for k in set(keys) - on} == {a.items.mastodon_account}

        holds.release(catalog, store, change.hold.id, reason="settled", recording=BOB, now=NOW)

        assert {k for k in keys if status(k) == "ON"} == set()
    finally:
        catalog.dispose()
