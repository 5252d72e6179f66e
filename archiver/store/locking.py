"""The retention-date seam: a store that gives every object it stores a retain-until date.

Callers of :meth:`~archiver.store.base.Store.put` (the spool, the Parquet roll, the audit
anchor) do not decide how long what they store must be kept; the records series does. This
wrapper asks one function, ``lock_until(key, now)``, for the date each new object is locked
until (S3 Object Lock, or the local store's retention sidecar). Until retention schedules
supply real dates per series, that function is a configured default period
(``[retention] default_lock``, :func:`default_lock`); ``None`` stores the object unlocked.

Everything else passes straight through to the wrapped backend.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.store.base import ObjectInfo, Store

#: Given an object's key and the time it is stored, the date it is locked until (or None).
LockUntil = Callable[[str, datetime], datetime | None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_lock(period: timedelta) -> LockUntil:
    """Lock every object for ``period`` from when it is stored (a zero period: no lock)."""

    def lock_until(_key: str, now: datetime) -> datetime | None:
        return now + period if period > timedelta(0) else None

    return lock_until


class LockingStore:
    """A :class:`~archiver.store.base.Store` whose puts carry a retain-until from a seam.

    A put that names its own ``retain_until`` keeps the later of the two dates: a caller may
    lock longer than the default, never shorter.
    """

    def __init__(
        self,
        inner: Store,
        lock_until: LockUntil,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.inner = inner
        self._lock_until = lock_until
        self._now = now

    def put(
        self, key: str, source: Path, sha256: str, *, retain_until: datetime | None = None
    ) -> ObjectInfo:
        seam = self._lock_until(key, self._now())
        dates = [d for d in (retain_until, seam) if d is not None]
        return self.inner.put(key, source, sha256, retain_until=max(dates) if dates else None)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(key, offset, length)

    def open(self, key: str) -> Iterator[bytes]:
        return self.inner.open(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def set_retention(self, key: str, retain_until: datetime) -> ObjectInfo:
        return self.inner.set_retention(key, retain_until)

    def set_legal_hold(self, key: str, on: bool) -> ObjectInfo:
        return self.inner.set_legal_hold(key, on)

    def delete(self, key: str, *, bypass_governance: bool = False) -> None:
        self.inner.delete(key, bypass_governance=bypass_governance)

    def list_versions(self, key: str) -> builtins.list[ObjectInfo]:
        return self.inner.list_versions(key)

    def delete_all_versions(self, key: str, *, bypass_governance: bool = False) -> int:
        return self.inner.delete_all_versions(key, bypass_governance=bypass_governance)

    def check(self) -> None:
        self.inner.check()

    def describe(self) -> str:
        return self.inner.describe()


if TYPE_CHECKING:
    _conforms: type[Store] = LockingStore
