"""Named catalog locks: one holder at a time, across processes and nodes.

Disposition holds the ``retention`` lock while it re-checks eligibility and holds and
destroys; hold changes take the same lock, so a hold placed during a disposition takes
effect either before its re-check or after it has finished, never in between. A lock has a
holder, an expiry (a holder that died frees it) and a generation that fences a holder whose
lock expired and was taken over, as account leases do (:mod:`archiver.lease`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import NamedLock
from archiver.errors import RetentionError

RETENTION = "retention"
DEFAULT_TTL = timedelta(minutes=10)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LockBusyError(RetentionError):
    """Another process holds the lock."""


def acquire(
    catalog: Catalog, name: str, holder: str, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> int:
    """Take the lock and return its new generation; ``LockBusyError`` if someone else holds it."""
    with catalog.session() as session:
        lock = session.get(NamedLock, name, with_for_update=True)
        if lock is None:
            lock = NamedLock(name=name, generation=0)
            session.add(lock)
        elif lock.holder is not None and lock.expires_at is not None and lock.expires_at > now:
            raise LockBusyError(
                f"the {name} lock is held by {lock.holder} until {lock.expires_at.isoformat()}"
                " (a disposition or hold change is in progress); try again when it is done"
            )
        lock.holder = holder
        lock.generation = (lock.generation or 0) + 1
        lock.expires_at = now + ttl
        session.flush()
        return lock.generation


def fence(
    session: Session, name: str, generation: int, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> None:
    """In the caller's transaction: extend the lock, or raise if it was taken over."""
    result = session.execute(
        update(NamedLock)
        .where(NamedLock.name == name, NamedLock.generation == generation)
        .values(expires_at=now + ttl)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LockBusyError(
            f"the {name} lock expired and was taken over by another process; "
            "this process stops without committing"
        )


def release(catalog: Catalog, name: str, generation: int) -> None:
    with catalog.session() as session:
        session.execute(
            update(NamedLock)
            .where(NamedLock.name == name, NamedLock.generation == generation)
            .values(holder=None, expires_at=None)
        )


@contextmanager
def held(
    catalog: Catalog,
    name: str,
    holder: str,
    *,
    ttl: timedelta = DEFAULT_TTL,
    wait: timedelta = timedelta(0),
    clock: Clock = _utcnow,
) -> Iterator[int]:
    """Hold the lock for the ``with`` block, waiting up to ``wait`` for it; yield the generation."""
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            generation = acquire(catalog, name, holder, clock(), ttl)
            break
        except LockBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    try:
        yield generation
    finally:
        release(catalog, name, generation)
