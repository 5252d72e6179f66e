"""The retention-date seam: every object stored through the app is locked for its period."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.app import App
from archiver.errors import RetentionError, StoreError
from archiver.store import LocalStore
from archiver.store.locking import LockingStore, default_lock
from tests.store.conftest import KEY, START, Clock


def _source(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / f"source-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_every_put_is_locked_for_the_default_period_from_when_it_is_stored(
    store: LocalStore, clock: Clock, tmp_path: Path
) -> None:
    locking = LockingStore(store, default_lock(timedelta(days=30)), now=clock)
    source, digest = _source(tmp_path, b"a warc file")

    info = locking.put(KEY, source, digest)

    assert info.retain_until == START + timedelta(days=30)
    assert store.head(KEY).retain_until == START + timedelta(days=30)
    with pytest.raises(RetentionError, match="retained until"):
        locking.delete(KEY)
    clock.advance(days=31)
    locking.delete(KEY)
    assert not locking.exists(KEY)


def test_a_caller_may_lock_longer_than_the_default_but_never_shorter(
    store: LocalStore, clock: Clock, tmp_path: Path
) -> None:
    locking = LockingStore(store, default_lock(timedelta(days=30)), now=clock)
    longer, digest = _source(tmp_path, b"kept for a year")
    shorter, digest2 = _source(tmp_path, b"asked for a day")

    assert locking.put(KEY, longer, digest, retain_until=START + timedelta(days=365)).retain_until
    assert store.head(KEY).retain_until == START + timedelta(days=365)
    other = KEY.replace(".warc.gz", "-2.warc.gz")
    locking.put(other, shorter, digest2, retain_until=START + timedelta(days=1))
    assert store.head(other).retain_until == START + timedelta(days=30)


def test_a_zero_period_stores_objects_unlocked(
    store: LocalStore, clock: Clock, tmp_path: Path
) -> None:
    locking = LockingStore(store, default_lock(timedelta(0)), now=clock)
    source, digest = _source(tmp_path, b"unlocked")

    assert locking.put(KEY, source, digest).retain_until is None
    locking.delete(KEY)
    assert not store.exists(KEY)


def test_the_app_store_locks_for_the_configured_default(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[archiver]\noperator = "City of Testing"\n\n[retention]\ndefault_lock = "7d"\n',
        encoding="utf-8",
    )
    app = App(config)
    source, digest = _source(tmp_path, b"through the app")

    # A key of no records series: only the default applies (series: tests/test_retention_locks).
    info = app.checked_store().put("control/audit/000000000001.json", source, digest)

    assert isinstance(app.store, LockingStore)
    assert isinstance(app.store.inner, LocalStore)
    assert info.retain_until is not None and info.created is not None
    assert info.retain_until - info.created == pytest.approx(timedelta(days=7), abs=timedelta(1))


def test_checking_a_local_store_creates_its_root(tmp_path: Path) -> None:
    root = tmp_path / "new" / "store"
    LocalStore(root).check()
    assert root.is_dir()


def test_a_local_store_whose_root_is_a_file_fails_the_check_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.write_text("not a directory")
    with pytest.raises(StoreError) as failed:
        LocalStore(root).check()
    assert str(root) in str(failed.value)
    assert "\n" not in str(failed.value)
