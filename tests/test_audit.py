"""The audit log: a hash chain that names its first break, anchored in the store."""

from __future__ import annotations

import itertools
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from archiver import audit
from archiver.catalog import Catalog
from archiver.catalog.models import AuditEntry
from archiver.store import LocalStore


def _tick() -> audit.Clock:
    moments = iter(
        datetime(2026, 11, 23, 9, 0, tzinfo=UTC) + timedelta(seconds=i) for i in range(10**6)
    )
    return lambda: next(moments)


def _write(catalog: Catalog, n: int, clock: audit.Clock | None = None) -> None:
    clock = clock or _tick()
    for i in range(n):
        with catalog.session() as s:
            audit.append(
                s,
                actor="alice",
                action="hold.place",
                subject=f"item:{i}",
                detail={"reason": "PRR-2026-014", "n": i, "note": "Beschwerde über Straße"},
                clock=clock,
            )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_entries_chain_from_genesis_and_verify(catalog: Catalog, store: LocalStore) -> None:
    _write(catalog, 5)
    with catalog.session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    report = audit.verify(catalog, store)
    assert report.ok and report.entries == 5 and report.first_break is None


def test_an_edited_row_is_named_as_the_first_break(catalog: Catalog, store: LocalStore) -> None:
    _write(catalog, 6)
    with catalog.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
    report = audit.verify(catalog, store)
    assert not report.ok
    assert report.first_break == 3
    assert "entry 3 was altered" in (report.problem or "")


def test_a_deleted_row_is_caught(catalog: Catalog, store: LocalStore) -> None:
    _write(catalog, 4)
    with catalog.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    report = audit.verify(catalog, store)
    assert report.first_break == 2


def _recompute_from(catalog: Catalog, seq: int) -> None:
    """What a careful forger does: edit a row, then rehash every later entry."""
    with catalog.session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        prev = audit.GENESIS
        for row in rows:
            if row.seq == seq:
                row.detail = {**row.detail, "reason": "nothing to see"}
            row.prev_hash = prev
            row.hash = audit.entry_hash(row)
            prev = row.hash


def test_a_recomputed_chain_passes_alone_but_not_against_the_anchored_head(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    _write(catalog, 3)
    first = audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path)
    _write(catalog, 4)
    second = audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path)
    assert (first, second) == ("control/audit/000000000003.json", "control/audit/000000000007.json")

    _recompute_from(catalog, 5)
    # The chain itself is consistent again: only the anchors can tell.
    assert audit.verify(catalog, None).ok
    report = audit.verify(catalog, store)
    assert not report.ok
    assert report.first_break == 4  # after the last anchor that still agrees (seq 3)
    assert "000000000007.json" in (report.problem or "")


def test_truncating_the_log_below_an_anchor_is_caught(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    _write(catalog, 5)
    audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path)
    with catalog.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    report = audit.verify(catalog, store)
    assert report.first_break == 5
    assert "missing from the log" in (report.problem or "")


def test_anchoring_is_write_once_and_idempotent(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    assert audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path) is None  # empty log
    _write(catalog, 2)
    key = audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path)
    assert key is not None
    assert audit.anchor_head(catalog, store, node="n1", tmp_dir=tmp_path) == key
    assert [a.seq for a in audit.read_anchors(store)] == [2]
    assert list(tmp_path.glob("audit-anchor-*")) == []


def _append_many(url: str, who: str, n: int) -> None:
    cat = Catalog.open(url)
    for i in range(n):
        with cat.session() as s:
            audit.append(s, actor=who, action="test.concurrent", subject=str(i))
    cat.dispose()


def test_concurrent_writers_in_separate_processes_never_fork_the_chain(
    catalog: Catalog, catalog_url: str, store: LocalStore
) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(catalog_url, f"w{i}", 25)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    report = audit.verify(catalog, store)
    assert report.ok, report.problems
    assert report.entries == 75
