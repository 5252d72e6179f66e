"""Fixity: stored files re-hashed through the store, every check recorded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import fixity
from archiver.catalog import Catalog
from archiver.catalog.models import FixityEvent, StoredFile
from archiver.errors import StoreError
from archiver.layout import Partition
from archiver.spool import Spool
from archiver.store import LocalStore
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import metadata_record

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")


class UnreachableStore(LocalStore):
    """A local store whose reads fail as a network store's do when it cannot be reached."""

    def open(self, key: str) -> Iterator[bytes]:
        raise StoreError("the store did not answer within 30 s")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _stored(catalog: Catalog, store: LocalStore, tmp_path: Path, n: int = 1) -> list[StoredFile]:
    spool = Spool(tmp_path / "spool", store, catalog, max_bytes=10**9)
    spool.prepare()
    rows = []
    for i in range(n):
        writer = WarcWriter(spool.directory, Partition("general", "mke-bluesky", "2026-03"), INFO)
        writer.append(metadata_record(f"urn:test:{i}", json.dumps({"n": i}).encode()))
        rows.append(spool.store_closed(writer.close()))
    return rows


def _events(catalog: Catalog) -> list[FixityEvent]:
    with catalog.session() as s:
        return list(s.scalars(select(FixityEvent).order_by(FixityEvent.id)))


def test_an_intact_file_passes_and_the_check_is_recorded(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    (row,) = _stored(catalog, store, tmp_path)

    result = fixity.verify_file(catalog, store, row.id, clock=lambda: T0)

    assert result.ok and (result.outcome, result.detail, result.key) == ("pass", None, row.key)
    (event,) = _events(catalog)
    assert (event.file_id, event.outcome, event.actor) == (row.id, "pass", "archiver-daemon")
    assert event.checked_at.replace(tzinfo=UTC) == T0


def test_a_changed_file_fails_naming_both_digests(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    (row,) = _stored(catalog, store, tmp_path)
    path = store.root / row.key
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))

    result = fixity.verify_file(catalog, store, row.id, actor="jdoe")

    assert result.outcome == "fail"
    assert row.sha256 in (result.detail or "") and row.key in (result.detail or "")
    (event,) = _events(catalog)
    assert (event.outcome, event.actor) == ("fail", "jdoe")


def test_a_file_gone_from_the_store_is_missing(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    (row,) = _stored(catalog, store, tmp_path)
    (store.root / row.key).unlink()

    assert fixity.verify_file(catalog, store, row.id).outcome == "missing"
    assert [e.outcome for e in _events(catalog)] == ["missing"]


def test_an_unreachable_store_is_not_a_fixity_result(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    (row,) = _stored(catalog, store, tmp_path)

    with pytest.raises(StoreError):
        fixity.verify_file(catalog, UnreachableStore(store.root), row.id)
    assert _events(catalog) == []


def test_a_sample_checks_that_many_random_files(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    rows = _stored(catalog, store, tmp_path, n=4)

    assert fixity.check_sample(catalog, store, 0) == []
    two = fixity.check_sample(catalog, store, 2)
    every = fixity.check_sample(catalog, store, 10)

    assert len(two) == 2 and all(r.ok for r in two)
    assert sorted(r.file_id for r in every) == sorted(r.id for r in rows)
    assert len(_events(catalog)) == 6
