"""A capture run end to end: fake platform → archiving client → WARC → store → catalog → Parquet."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select, text
from warcio.archiveiterator import ArchiveIterator

from archiver import parquet as parquet_module
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import (
    CaptureRun,
    Checkpoint,
    Item,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.config import Config, load_config
from archiver.layout import sidecar_key
from archiver.parquet import roll
from archiver.retrieve import read_record
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import FakeBluesky
from tests.warctools import assert_all_digests_pass

WARCIO = Path(sys.executable).with_name("warcio")
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")


def write_config(tmp_path: Path, fake: FakeBluesky, catalog_url: str) -> Config:
    (tmp_path / "config.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[catalog]
url = "sqlite:///var/unused.sqlite3"

[http]
max_retries = 2
max_wait = "2s"

[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
rescan_days = 14
full_walk_days = 30
"""
    )
    return load_config(tmp_path / "config.toml")


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    f = FakeBluesky(httpserver)
    f.now = datetime.now(UTC) - timedelta(days=3)
    return f


@pytest.fixture
def runner(tmp_path: Path, fake: FakeBluesky, catalog: Catalog, catalog_url: str) -> CaptureRunner:
    config = write_config(tmp_path, fake, catalog_url)
    return CaptureRunner(config, catalog, LocalStore(tmp_path / "var" / "store"), INFO)


def stored_warcs(runner: CaptureRunner) -> list[Path]:
    store = runner.store
    assert isinstance(store, LocalStore)
    return sorted(store.root.glob("warc/**/*.warc.gz"))


def count(catalog: Catalog, model: type, *where: object) -> int:
    with catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def test_a_first_capture_archives_every_item_with_verifiable_records(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    root = fake.post("Snow emergency declared", images=[("Map of snow routes", "image/png")])
    fake.reply(root, "Thanks for the update")
    fake.post("Leaf pickup schedule", links=["https://city.example.gov/leaves"])

    result = runner.capture("mke-bluesky")

    assert result.status == "complete", result.reason
    assert result.stats["new"] == 4  # the profile, two posts, one reply
    assert result.stats["media_stored"] >= 1
    warcs = stored_warcs(runner)
    assert warcs
    assert assert_all_digests_pass(warcs) > 10
    # Every item version's record reads back through the store by its catalog pointer.
    with catalog.session() as s:
        versions = s.scalars(select(ItemVersion)).all()
    for v in versions:
        got = read_record(catalog, runner.store, v.warc_record_id)
        assert got.headers["WARC-Type"] == "conversion"
        doc = json.loads(got.block)
        assert doc["version"] == 1 and doc["content_sha256"] == v.content_sha256
        refers = got.headers["WARC-Refers-To"]
        assert read_record(catalog, runner.store, refers).headers["WARC-Type"] in (
            "response",
            "resource",
        )


def test_a_second_capture_of_unchanged_content_adds_no_versions_and_no_media(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    root = fake.post("Snow emergency declared", images=[("Map of snow routes", "image/png")])
    fake.reply(root, "Thanks")
    runner.capture("mke-bluesky")
    versions, media = count(catalog, ItemVersion), count(catalog, Media)
    fake.like(root, 40)  # counters change; content does not

    second = runner.capture("mke-bluesky", full_walk=True)

    assert second.status == "complete"
    assert second.stats["new"] == 0 and second.stats["edited"] == 0
    assert count(catalog, ItemVersion) == versions
    assert count(catalog, Media) == media
    assert second.stats["media_stored"] == 0


def test_a_new_reply_on_an_old_post_is_found_by_the_rescan_and_a_hidden_one_marked(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    root = fake.post("Pothole reporting is open")
    runner.capture("mke-bluesky")
    reply = fake.reply(root, "There is one on 5th street")
    rude = fake.reply(root, "spam spam")
    fake.hide_reply(rude)

    result = runner.capture("mke-bluesky", full_walk=False)

    assert result.status == "complete"
    with catalog.session() as s:
        states = dict(s.execute(select(Item.platform_item_id, Item.state)).all())
        parent = s.scalars(select(Item).where(Item.platform_item_id == reply)).one()
    assert states[reply] == "present" and states[rude] == "hidden"
    assert parent.thread_id == root and parent.parent_id is not None


def test_a_deleted_post_is_marked_with_its_evidence_and_nothing_else_is(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    keep = fake.post("Library hours")
    gone = fake.post("Wrong date, sorry")
    runner.capture("mke-bluesky")
    fake.delete(gone)

    result = runner.capture("mke-bluesky", full_walk=True)

    assert result.stats["deleted"] == 1
    with catalog.session() as s:
        states = dict(s.execute(select(Item.platform_item_id, Item.state)).all())
        deletion = s.scalars(select(ItemVersion).where(ItemVersion.change == "deleted")).one()
    assert states[gone] == "deleted" and states[keep] == "present"
    note = read_record(catalog, runner.store, deletion.warc_record_id)
    assert note.headers["WARC-Type"] == "metadata"
    evidence = read_record(catalog, runner.store, note.headers["WARC-Refers-To"])
    assert b"400" in evidence.block.split(b"\r\n", 1)[0] and b"NotFound" in gzip_or_plain(
        evidence.block
    )


def gzip_or_plain(block: bytes) -> bytes:
    head, _, body = block.partition(b"\r\n\r\n")
    return gzip.decompress(body) if b"content-encoding: gzip" in head.lower() else body


def test_an_unreachable_account_marks_nothing_deleted(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    fake.post("Council meeting tonight")
    runner.capture("mke-bluesky")
    fake.takedown()

    result = runner.capture("mke-bluesky", full_walk=True)

    assert result.status == "unavailable"
    assert count(catalog, Item, Item.state == "deleted") == 0


def test_a_rate_limit_storm_stops_the_run_incomplete_and_the_next_run_resumes(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    for n in range(5):
        fake.post(f"Update {n}")
    assert runner.capture("mke-bluesky").status == "complete"
    checkpoints, items = count(catalog, Checkpoint), count(catalog, Item)
    for n in range(5, 30):
        fake.post(f"Update {n}")
    fake.rate_limit_next(50, endpoint="app.bsky.feed.getPostThread", reset_in=1)

    stopped = runner.capture("mke-bluesky")

    assert stopped.status == "incomplete" and "rate limit" in (stopped.reason or "").lower()
    # Nothing committed before is lost, and the checkpoint still points where it was.
    assert count(catalog, Item) == items and count(catalog, Checkpoint) == checkpoints
    fake._faults.clear()
    resumed = runner.capture("mke-bluesky")
    assert resumed.status == "complete", resumed.reason
    assert count(catalog, Item) == items + 25
    with catalog.session() as s:
        statuses = [r.status for r in s.scalars(select(CaptureRun).order_by(CaptureRun.id))]
        reasons = [r.reason for r in s.scalars(select(CaptureRun).order_by(CaptureRun.id))]
    assert statuses == ["complete", "incomplete", "complete"]
    assert reasons[1] and "getPostThread" in reasons[1]


def test_the_answers_a_stopped_run_gave_up_on_are_registered_as_evidence(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    """The 429s before the give-up are in the WARC *and* the catalog: no orphan records."""
    for n in range(3):
        fake.post(f"Update {n}")
    fake.rate_limit_next(50, endpoint="app.bsky.feed.getPostThread", reset_in=1)

    stopped = runner.capture("mke-bluesky")

    assert stopped.status == "incomplete"
    in_warcs = set()
    for path in stored_warcs(runner):
        with gzip.open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "warcinfo":
                    in_warcs.add(record.rec_headers.get_header("WARC-Record-ID"))
    with catalog.session() as s:
        registered = set(s.scalars(select(WarcRecord.record_id)))
        run_records = s.scalars(
            select(WarcRecord.target_uri).where(WarcRecord.run_id == stopped.run_id)
        ).all()
    assert in_warcs and in_warcs <= registered
    assert sum("getPostThread" in (uri or "") for uri in run_records) >= 2  # request, response


def test_a_malformed_answer_stops_the_run_incomplete_and_loses_nothing_committed(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    for n in range(3):
        fake.post(f"Post {n}")
    runner.capture("mke-bluesky")
    before = count(catalog, ItemVersion)
    fake.post("Another one")
    fake.malformed_next(1, endpoint="app.bsky.feed.getAuthorFeed")

    result = runner.capture("mke-bluesky")

    assert result.status == "incomplete" and "getAuthorFeed" in (result.reason or "")
    assert count(catalog, ItemVersion) >= before
    # The malformed answer itself was archived: it is evidence of what the platform said.
    assert count(catalog, WarcRecord, WarcRecord.warc_type == "response") > 0


def test_parquet_rows_are_readable_by_duckdb_with_their_warc_pointers(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog, tmp_path: Path
) -> None:
    root = fake.post("Snow emergency declared")
    fake.reply(root, "Thanks")
    runner.capture("mke-bluesky")

    rolled = roll(
        catalog,
        runner.store,
        runner.config.spool.path,
        min_rows=10**6,
        max_age=timedelta(days=1),
        force=True,
    )

    assert rolled and sum(r.rows for r in rolled) == count(catalog, ItemVersion)
    assert count(catalog, StoredFile, StoredFile.kind == "parquet") == len(rolled)
    store = runner.store
    assert isinstance(store, LocalStore)
    files = [str(store.root / r.key) for r in rolled]
    columns = "item_id, kind, warc_file_id, warc_offset, content_sha256"
    rows = duckdb.sql(f"SELECT {columns} FROM read_parquet({files!r})").fetchall()
    assert len(rows) == count(catalog, ItemVersion)
    assert {r[1] for r in rows} >= {"post", "comment", "profile"}
    # Each file's SHA-256 is recorded twice: in the catalog and in a sidecar next to it.
    for r in rolled:
        side = json.loads(store.get(sidecar_key(r.key)))
        assert (side["file_id"], side["key"], side["sha256"]) == (r.file_id, r.key, r.sha256)
        assert side["records"] == r.rows and side["size"] == (store.root / r.key).stat().st_size
    # Rolling again finds nothing pending: one file per partition, not one per run.
    assert (
        roll(
            catalog,
            runner.store,
            runner.config.spool.path,
            min_rows=1,
            max_age=timedelta(days=1),
            force=True,
        )
        == []
    )


def test_a_destroyed_items_waiting_versions_never_get_a_parquet_row(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    root = fake.post("Snow emergency declared")
    fake.reply(root, "Thanks")
    runner.capture("mke-bluesky")
    with catalog.session() as s:
        reply = s.scalars(select(Item).where(Item.kind == "comment")).one()
        reply.disposed_at = datetime.now(UTC)
        reply_versions = reply.versions

    rolled = roll(
        catalog,
        runner.store,
        runner.config.spool.path,
        min_rows=1,
        max_age=timedelta(days=1),
        force=True,
    )

    assert sum(r.rows for r in rolled) == count(catalog, ItemVersion) - reply_versions
    assert parquet_module.pending(catalog) == []


def test_an_item_destroyed_by_disposition_is_not_captured_again(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    root = fake.post("Snow emergency declared")
    reply = fake.reply(root, "Thanks")
    other = fake.reply(root, "When does it end?")
    runner.capture("mke-bluesky")
    with catalog.session() as s:
        stub = s.scalars(select(Item).where(Item.text == "Thanks")).one()
        stub.text, stub.disposed_at, stub.certificate_id = None, datetime.now(UTC), "C" * 26
        stub_id, versions = stub.id, stub.versions
    records = count(catalog, WarcRecord)
    fake.hide_reply(reply)  # a change that would otherwise make a new version
    fake.delete(other)

    result = runner.capture("mke-bluesky", full_walk=True)

    assert result.status == "complete", result.reason
    assert result.stats["disposed_seen"] == 1
    with catalog.reader() as s:
        again = s.get(Item, stub_id)
        assert again is not None
        assert (again.text, again.versions, again.state) == (None, versions, "present")
        # The other reply, not destroyed, is still followed: its deletion is recorded.
        assert (
            s.scalars(select(Item.state).where(Item.id != stub_id, Item.kind == "comment")).one()
            == "deleted"
        )
    assert count(catalog, WarcRecord) > records  # the run's own exchanges were archived


def test_a_server_error_then_success_is_retried_and_the_run_completes(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    fake.post("Water main repair on Oak St")
    fake.fail_next(1, status=500, endpoint="app.bsky.feed.getAuthorFeed")

    result = runner.capture("mke-bluesky")

    assert result.status == "complete", result.reason
    assert count(catalog, Item, Item.kind == "post") == 1
    # The failed attempt is archived too: it is part of what the platform said.
    with catalog.session() as s:
        statuses = [
            read_record(catalog, runner.store, rid).block.split(b" ", 2)[1]
            for rid in s.scalars(
                select(WarcRecord.record_id).where(WarcRecord.warc_type == "response")
            )
        ]
    assert b"500" in statuses and b"200" in statuses


def test_only_one_node_rolls_parquet_at_a_time(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog, catalog_url: str
) -> None:
    fake.post("Budget hearing Tuesday")
    runner.capture("mke-bluesky")
    if catalog.dialect != "postgresql":
        # SQLite serves one node, whose daemon runs its rolls one at a time: no lock to wait on.
        assert roll(
            catalog,
            runner.store,
            runner.config.spool.path,
            min_rows=1,
            max_age=timedelta(0),
            force=True,
        )
        return
    other = Catalog.open(catalog_url)
    with other.engine.connect() as conn:  # another node, in the middle of its roll
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": parquet_module._PG_ROLL_LOCK})
        assert (
            roll(
                catalog,
                runner.store,
                runner.config.spool.path,
                min_rows=1,
                max_age=timedelta(0),
                force=True,
            )
            == []
        )
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": parquet_module._PG_ROLL_LOCK})
    other.dispose()
    assert roll(
        catalog,
        runner.store,
        runner.config.spool.path,
        min_rows=1,
        max_age=timedelta(0),
        force=True,
    )
