"""The daemon's housekeeping: a store outage is survived, stray temp files are cleared.

The store is a real local store that can be switched off: while it is off every call
fails the way an unreachable network store's would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.app import App
from archiver.catalog import Catalog
from archiver.catalog.models import FixityEvent, Heartbeat, StoredFile
from archiver.config import Config, load_config
from archiver.daemon import Daemon
from archiver.errors import StoreError
from archiver.housekeeping import STORE_BACKOFF, Housekeeping
from archiver.identity import Actor
from archiver.layout import Partition
from archiver.store import LocalStore
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import ClosedWarc, metadata_record
from tests.commands.clitools import make_workspace

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-a")
SERVICE = Actor(user="archiver", uid=998)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class SwitchableStore(LocalStore):
    """A local store that fails every call while ``down``, counting the attempts."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.down = False
        self.attempts = 0

    def _check(self) -> None:
        if self.down:
            self.attempts += 1
            raise StoreError("the store did not answer (connection refused)")

    def exists(self, key: str) -> bool:
        self._check()
        return super().exists(key)

    def open(self, key: str) -> Iterator[bytes]:
        self._check()
        return super().open(key)

    def put(self, key: str, source: Path, sha256: str, **kw: Any) -> Any:
        self._check()
        return super().put(key, source, sha256, **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path, catalog_url: str) -> Config:
    return load_config(make_workspace(tmp_path, catalog_url=catalog_url).config)


def _waiting_file(spool: Path) -> ClosedWarc:
    """A closed, verified WARC that its run could not store (its sidecar still there)."""
    spool.mkdir(parents=True, exist_ok=True)
    writer = WarcWriter(spool, Partition("social-media", "mke-facebook", "2026-03"), INFO)
    writer.append(metadata_record("urn:test:1", json.dumps({"n": 1}).encode()))
    return writer.close()


def test_a_store_outage_keeps_closed_files_in_the_spool_and_retries_with_backoff(
    config: Config, catalog: Catalog, tmp_path: Path, clock: Clock
) -> None:
    store = SwitchableStore(config.store.path)  # type: ignore[union-attr]
    hk = Housekeeping(config, catalog, store, clock=clock)
    closed = _waiting_file(config.spool.path)
    store.down = True

    assert hk.retry_stores() == []
    detail = hk.store_detail()
    assert detail["ok"] is False and "connection refused" in detail["error"]
    assert detail["waiting_files"] == 1
    assert detail["next_retry"] == (T0 + STORE_BACKOFF).isoformat()
    assert closed.path.exists()

    attempts = store.attempts
    clock.advance(STORE_BACKOFF / 2)
    assert hk.retry_stores() == []
    assert store.attempts == attempts  # backing off: not tried

    clock.advance(STORE_BACKOFF)
    assert hk.retry_stores() == []
    assert hk.store_health.next_try == clock.now + 2 * STORE_BACKOFF  # doubled
    for _ in range(10):
        clock.advance(timedelta(hours=1))
        hk.retry_stores()
    assert hk.store_health.next_try == clock.now + config.daemon.retry_after  # capped

    store.down = False
    clock.advance(config.daemon.retry_after)
    assert hk.retry_stores() == [closed.file_id]
    assert hk.store_detail() == {
        "ok": True,
        "error": None,
        "waiting_files": 0,
        "next_retry": None,
    }
    assert list(config.spool.path.iterdir()) == []
    with catalog.session() as s:
        row = s.get(StoredFile, closed.file_id)
    assert row is not None and row.sha256 == closed.sha256
    assert (store.root / row.key).is_file()


def test_the_daemon_keeps_running_through_a_store_outage_and_says_so(
    tmp_path: Path, catalog_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path, catalog_url=catalog_url)
    for name, value in ws.env.items():
        if name.startswith("ARCHIVER_"):  # a PostgreSQL catalog's password
            monkeypatch.setenv(name, value)
    app = App(ws.config, actor=SERVICE)
    store = SwitchableStore(ws.store_root)
    app.__dict__["store"] = store
    try:
        daemon = Daemon(app, clock=clock)
        daemon.start()
        assert daemon.housekeeping is not None
        _waiting_file(app.config.spool.path)
        store.down = True

        daemon.housekeeping.retry_stores()
        daemon.heartbeat()
        daemon.housekeeping.anchor()  # fails quietly: logged, tried again later

        line = daemon.status_line()
        assert "store failing (1 files waiting)" in line and "connection refused" in line
        with app.catalog.session() as s:
            beat = s.scalars(select(Heartbeat)).one()
        assert beat.detail["store"]["ok"] is False
        assert beat.detail["spool"]["waiting_files"] == 1

        store.down = False
        clock.advance(timedelta(minutes=1))
        daemon.housekeeping.retry_stores()
        assert "store ok" in daemon.status_line()
    finally:
        app.close()


def test_stray_temporary_files_older_than_a_day_are_removed_and_nothing_else(
    config: Config, catalog: Catalog, clock: Clock
) -> None:
    spool = config.spool.path
    spool.mkdir(parents=True)
    names = {
        ".put-x1y2z3": True,
        ".01ABC.json.tmp": True,
        "01ABC.parquet": True,
        "01DEF.warc.gz.open": False,  # a run's open file: recovery's business, never ours
        "01DEF.json": False,
        "01GHI.warc.gz": False,
    }
    for name in names:
        (spool / name).write_bytes(b"x")
        old = (T0 - timedelta(days=2)).timestamp()
        os.utime(spool / name, (old, old))
    (spool / ".put-recent").write_bytes(b"x")
    recent = (T0 - timedelta(hours=2)).timestamp()
    os.utime(spool / ".put-recent", (recent, recent))

    removed = Housekeeping(
        config, catalog, LocalStore(config.store.path), clock=clock
    ).clean_spool()  # type: ignore[union-attr]

    assert removed == sorted(n for n, stray in names.items() if stray)
    left = sorted(p.name for p in spool.iterdir())
    assert left == sorted([*(n for n, stray in names.items() if not stray), ".put-recent"])


def test_fixity_sampling_through_an_unreachable_store_records_nothing_and_raises_nothing(
    config: Config, catalog: Catalog, clock: Clock
) -> None:
    store = SwitchableStore(config.store.path)  # type: ignore[union-attr]
    hk = Housekeeping(config, catalog, store, clock=clock)
    closed = _waiting_file(config.spool.path)
    assert hk.retry_stores() == [closed.file_id]
    assert [r.outcome for r in hk.fixity()] == ["pass"]

    store.down = True
    assert hk.fixity() == []
    with catalog.session() as s:
        assert [e.outcome for e in s.scalars(select(FixityEvent))] == ["pass"]
