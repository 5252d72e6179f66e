"""Account leases: one capture per account, and a stale holder can never commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver import lease
from archiver.catalog import Catalog
from archiver.catalog.models import Account

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def account(catalog: Catalog) -> str:
    with catalog.session() as s:
        s.add(Account(id="mke-mastodon", platform="mastodon", series="general", created_at=NOW))
    return "mke-mastodon"


def test_a_second_holder_is_refused_while_the_lease_is_live(catalog: Catalog, account: str) -> None:
    lease.acquire(catalog, account, "node-a:1", NOW)
    with pytest.raises(lease.LeaseHeldError, match="node-a:1"):
        lease.acquire(catalog, account, "node-b:2", NOW + timedelta(minutes=1))


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    catalog: Catalog, account: str
) -> None:
    old = lease.acquire(catalog, account, "node-a:1", NOW)
    new = lease.acquire(
        catalog, account, "node-b:2", NOW + lease.DEFAULT_TTL + timedelta(seconds=1)
    )
    assert new == old + 1
    with pytest.raises(lease.LeaseHeldError, match="taken over"), catalog.session() as s:
        lease.fence(s, account, old, NOW)
    with catalog.session() as s:
        lease.fence(s, account, new, NOW)  # the new holder commits


def test_a_released_lease_can_be_taken_at_once(catalog: Catalog, account: str) -> None:
    gen = lease.acquire(catalog, account, "node-a:1", NOW)
    lease.release(catalog, account, gen)
    assert lease.acquire(catalog, account, "node-b:2", NOW) == gen + 1


def test_taking_a_lease_over_closes_the_old_holders_running_run(
    catalog: Catalog, account: str
) -> None:
    from archiver.catalog.models import CaptureRun

    old = lease.acquire(catalog, account, "node-a:1", NOW)
    with catalog.session() as s:
        s.add(
            CaptureRun(
                account_id=account,
                node="node-a",
                started_at=NOW,
                status="running",
                lease_generation=old,
                stats={},
            )
        )
    lease.acquire(catalog, account, "node-b:2", NOW + lease.DEFAULT_TTL + timedelta(seconds=1))
    with catalog.session() as s:
        run = s.query(CaptureRun).one()
    assert run.status == "interrupted" and "node-b:2" in (run.reason or "")
