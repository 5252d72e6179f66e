"""Account leases: one capture of an account at a time, across processes and nodes.

A lease has a holder, an expiry and a generation. Taking it bumps the generation; every
page commit checks that the generation is still the one taken (fencing), so a holder whose
lease expired and was taken over can never commit over the new holder's work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import CaptureRun, Lease
from archiver.errors import CaptureError

DEFAULT_TTL = timedelta(minutes=10)


class LeaseHeldError(CaptureError):
    """Another process holds the account's lease."""


def acquire(
    catalog: Catalog, account_id: str, holder: str, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> int:
    """Take the lease and return its new generation; ``LeaseHeldError`` if someone else holds it."""
    with catalog.session() as session:
        lease = session.get(Lease, account_id, with_for_update=True)
        if lease is None:
            lease = Lease(account_id=account_id, generation=0)
            session.add(lease)
        elif (
            lease.holder not in (None, holder)
            and lease.expires_at is not None
            and lease.expires_at > now
        ):
            raise LeaseHeldError(
                f"account {account_id} is being captured by {lease.holder} until "
                f"{lease.expires_at.isoformat()}; try again later"
            )
        lease.holder = holder
        lease.generation = (lease.generation or 0) + 1
        # Runs under an older generation can never commit again (fencing): whoever held the
        # lease died or lost it, so their runs are closed as interrupted, not left "running".
        session.execute(
            update(CaptureRun)
            .where(
                CaptureRun.account_id == account_id,
                CaptureRun.status == "running",
                CaptureRun.lease_generation < lease.generation,
            )
            .values(
                status="interrupted",
                finished_at=now,
                reason=f"its node lost the account lease; taken over by {holder}",
            )
        )
        lease.expires_at = now + ttl
        lease.renewed_at = now
        session.flush()
        return lease.generation


def fence(
    session: Session, account_id: str, generation: int, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> None:
    """In the caller's transaction: renew the lease, or raise if it was taken over."""
    result = session.execute(
        update(Lease)
        .where(Lease.account_id == account_id, Lease.generation == generation)
        .values(expires_at=now + ttl, renewed_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseHeldError(
            f"the lease on account {account_id} was taken over by another process; this run "
            "stops without committing its last page"
        )


def release(catalog: Catalog, account_id: str, generation: int) -> None:
    with catalog.session() as session:
        session.execute(
            update(Lease)
            .where(Lease.account_id == account_id, Lease.generation == generation)
            .values(holder=None, expires_at=None)
        )
