"""Named catalog locks: one holder at a time; a dead holder's lock expires; fencing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver import locks
from archiver.catalog import Catalog
from archiver.locks import LockBusyError

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_a_second_holder_is_refused_until_the_first_releases(catalog: Catalog) -> None:
    with (
        locks.held(catalog, "retention", "ann@n1", clock=lambda: T0),
        pytest.raises(LockBusyError, match="held by ann@n1"),
    ):
        locks.acquire(catalog, "retention", "bob@n1", T0)
    assert locks.acquire(catalog, "retention", "bob@n1", T0) >= 1


def test_a_dead_holders_lock_expires_and_its_generation_is_fenced(catalog: Catalog) -> None:
    first = locks.acquire(catalog, "retention", "ann@n1", T0, timedelta(minutes=1))
    later = T0 + timedelta(minutes=2)
    second = locks.acquire(catalog, "retention", "bob@n1", later)
    assert second == first + 1
    with pytest.raises(LockBusyError, match="taken over"), catalog.session() as s:
        locks.fence(s, "retention", first, later)
    with catalog.session() as s:
        locks.fence(s, "retention", second, later)


def test_held_waits_for_the_lock_before_giving_up(catalog: Catalog) -> None:
    locks.acquire(catalog, "retention", "ann@n1", datetime.now(UTC), timedelta(seconds=60))
    with (
        pytest.raises(LockBusyError),
        locks.held(catalog, "retention", "bob@n1", wait=timedelta(seconds=0.5)),
    ):
        pass
