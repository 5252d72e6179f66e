"""Fixtures for the store tests: a store on a temporary directory with a hand-moved clock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.store import LocalStore, ObjectInfo, Store

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KEY = "warc/general/city-hall/2024-03/01HQZX3Y4W5V6T7S8R9P0N1M2K.warc.gz"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the store that nothing may read or write through the store."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"not yours")
    return path


@pytest.fixture
def store(root: Path, clock: Clock) -> LocalStore:
    return LocalStore(root, now=clock)


class PutFn:
    """Writes bytes to a source file and stores it with its (or a given) sha256."""

    def __init__(self, store: Store, sources: Path) -> None:
        self.store = store
        self.sources = sources
        sources.mkdir()
        self.count = 0

    def __call__(
        self,
        key: str,
        data: bytes = b"record bytes",
        *,
        sha256: str | None = None,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        self.count += 1
        source = self.sources / f"source-{self.count}"
        source.write_bytes(data)
        digest = sha256 or hashlib.sha256(data).hexdigest()
        return self.store.put(key, source, digest, retain_until=retain_until)


@pytest.fixture
def put(store: LocalStore, tmp_path: Path) -> PutFn:
    """Store bytes under a key: ``put(key, data, sha256=..., retain_until=...)``."""
    return PutFn(store, tmp_path / "sources")
