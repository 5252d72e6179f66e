"""A capture asked to stop (``CaptureRunner.capture(stop=...)``) ends at its next commit.

The daemon passes its stopping event; the run finishes the page in hand, commits it with
its checkpoint, closes and stores its WARC files and is recorded ``interrupted``. The next
run resumes from the checkpoint and versions nothing twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from archiver.capture import STOPPED_REASON, CaptureRunner, RunStats
from archiver.catalog import Catalog
from archiver.catalog.models import Account, CaptureRun, Checkpoint, Item, ItemVersion, Lease
from archiver.config import load_config
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import FakeBluesky
from tests.warctools import assert_all_digests_pass

INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    f = FakeBluesky(httpserver)
    f.now = datetime.now(UTC) - timedelta(days=3)
    return f


@pytest.fixture
def runner(tmp_path: Path, fake: FakeBluesky, catalog: Catalog) -> CaptureRunner:
    (tmp_path / "config.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
options = {{ page_size = 3 }}
"""
    )
    config = load_config(tmp_path / "config.toml")
    return CaptureRunner(config, catalog, LocalStore(tmp_path / "var" / "store"), INFO)


def _count(catalog: Catalog, model: type) -> int:
    with catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _stop_after(pages: int, stop: threading.Event) -> object:
    def progress(stats: RunStats) -> None:
        if stats.pages >= pages:
            stop.set()

    return progress


def test_a_run_asked_to_stop_ends_interrupted_at_its_next_commit_and_the_next_resumes(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    for n in range(12):
        fake.post(f"Notice {n}")
    stop = threading.Event()

    result = runner.capture("mke-bluesky", stop=stop, progress=_stop_after(2, stop))  # type: ignore[arg-type]

    assert (result.status, result.reason) == ("interrupted", STOPPED_REASON)
    assert result.stats["pages"] == 2
    with catalog.session() as s:
        run = s.scalars(select(CaptureRun)).one()
        account = s.get(Account, "mke-bluesky")
        lease = s.get(Lease, "mke-bluesky")
    assert (run.status, run.reason) == ("interrupted", STOPPED_REASON)
    assert account is not None and account.last_success_at is None  # still due
    assert lease is not None and lease.holder is None  # released
    assert _count(catalog, Checkpoint) >= 1  # kept: the next run resumes there
    partial = _count(catalog, Item)
    assert 0 < partial < 13
    stored = sorted(runner.store.root.glob("warc/**/*.warc.gz"))  # type: ignore[attr-defined]
    assert_all_digests_pass(stored)
    assert list(runner.config.spool.path.glob("*.open")) == []

    resumed = runner.capture("mke-bluesky")

    assert resumed.status == "complete", resumed.reason
    assert _count(catalog, Item) == 13  # twelve posts and the profile
    with catalog.session() as s:
        per_item = s.execute(
            select(ItemVersion.item_id, func.count()).group_by(ItemVersion.item_id)
        ).all()
    assert {n for _, n in per_item} == {1}


def test_a_run_asked_to_stop_skips_the_deletion_checks(
    runner: CaptureRunner, fake: FakeBluesky, catalog: Catalog
) -> None:
    fake.post("Library hours")
    gone = fake.post("Wrong date, sorry")
    assert runner.capture("mke-bluesky").status == "complete"
    fake.delete(gone)
    stop = threading.Event()
    stop.set()  # asked before the run even started: it commits one page and stops

    result = runner.capture("mke-bluesky", full_walk=True, stop=stop)

    assert result.status == "interrupted"
    assert result.stats["deleted"] == 0
    with catalog.session() as s:
        assert s.scalars(select(Item.state).where(Item.platform_item_id == gone)).one() == "present"

    again = runner.capture("mke-bluesky", full_walk=True)
    assert again.status == "complete" and again.stats["deleted"] == 1
