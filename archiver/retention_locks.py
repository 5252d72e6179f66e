"""How long each stored object is locked: the records series of its partition sets the floor.

The store's retention seam (:mod:`archiver.store.locking`) asks one function for the date a
new object is locked until. :func:`lock_until_for` answers from the key alone:

- ``warc/<series>/<account>/<YYYY-MM>/…`` and ``parquet/…`` (and their ``.sha256.json``
  sidecars): the partition's *provisional retain-until*, the earliest moment any item of
  that partition could become eligible for disposition
  (:func:`archiver.retention.provisional_retain_until` for the month's first instant). A
  raw-exchange partition (capture month) gets its account series' floor the same way: the
  lock is only a floor, and disposition waits for the last item an exchange evidences.
- a permanent series, a series no schedule defines, a key that names no partition under
  ``warc/`` or ``parquet/``, and ``control/certificates/…``: :data:`PERMANENT_LOCK` from now
  (never disposed of; a lock can be extended later, never shortened).
- every other key (``control/facts/…``, ``control/audit/…``, ``layout-version``): only the
  configured default.

Whatever the key, the result is never earlier than ``[retention] default_lock`` from now.
An event-triggered series' floor is provisional (now plus the period); when the event is
recorded, :func:`extend_for_event` moves the locks of its stored files to the real date.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.models import StoredFile
from archiver.errors import ObjectNotFoundError
from archiver.layout import sidecar_key
from archiver.retention import (
    Event,
    ItemFacts,
    Period,
    Policy,
    Series,
    eligible_on,
    provisional_retain_until,
)
from archiver.store.base import Store
from archiver.store.locking import LockUntil

#: How long a permanent record is locked for: far enough to outlive any schedule; extendable.
PERMANENT_LOCK = Period(years=100)
#: Keys of objects that are never disposed of whatever their series.
PERMANENT_PREFIXES = ("control/certificates/",)
_PARTITIONED = ("warc", "parquet")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _later(*dates: datetime | None) -> datetime | None:
    known = [d for d in dates if d is not None]
    return max(known) if known else None


def partition_floor(series: Series | None, period: str, policy: Policy, now: datetime) -> datetime:
    """The lock floor of a partition of ``series`` (None: unknown) for month ``period``."""
    match = _MONTH.fullmatch(period)
    if series is None or match is None:
        return PERMANENT_LOCK.after(now)
    start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
    floor = provisional_retain_until(series, start, policy, now)
    return PERMANENT_LOCK.after(now) if floor is None else floor


def series_floor(
    key: str, schedules: Mapping[str, Series], policy: Policy, now: datetime
) -> datetime | None:
    """What the key's records series asks for (None: nothing beyond the default)."""
    if key.startswith(PERMANENT_PREFIXES):
        return PERMANENT_LOCK.after(now)
    parts = key.split("/")
    if parts[0] not in _PARTITIONED:
        return None
    if len(parts) < 5:
        # Something under warc/ or parquet/ that names no partition: keep it, to be safe.
        return PERMANENT_LOCK.after(now)
    return partition_floor(schedules.get(parts[1]), parts[3], policy, now)


def lock_until_for(
    schedules: Mapping[str, Series], policy: Policy, default_lock: timedelta
) -> LockUntil:
    """The store seam's ``lock_until(key, now)`` for these schedules (see the module doc)."""

    def lock_until(key: str, now: datetime) -> datetime | None:
        default = now + default_lock if default_lock > timedelta(0) else None
        return _later(series_floor(key, schedules, policy, now), default)

    return lock_until


# --- an event recorded: extend the provisional locks -------------------------------------------


@dataclass(frozen=True, slots=True)
class Extended:
    """A stored file whose lock an event moved later."""

    file_id: str
    key: str
    before: datetime | None
    after: datetime


def event_floor(
    series: Series, account: str, events: tuple[Event, ...], policy: Policy
) -> datetime | None:
    """When items of ``series`` for ``account`` become eligible, given the recorded events."""
    probe = ItemFacts(
        item_id=0,
        account=account,
        kind="",
        state="",
        created_at=None,
        captured_at=datetime(1970, 1, 1, tzinfo=UTC),
        series=series.code,
    )
    return eligible_on(probe, series, events, policy)


def _whole_second(moment: datetime) -> datetime:
    # S3 keeps retain-until dates to the second: compare what it can hold.
    return moment.replace(microsecond=0)


def _extend(store: Store, key: str, target: datetime) -> None:
    held = store.head(key).retain_until
    if held is None or held < target:
        store.set_retention(key, target)


def extend_for_event(
    session: Session,
    store: Store,
    schedules: Mapping[str, Series],
    policy: Policy,
    event: Event,
    events: tuple[Event, ...],
) -> list[Extended]:
    """Extend the locks of the stored files of every series the event starts, in partitions of
    the event's account (every account when it names none), to when their items can go.

    Never shortens: a file whose lock already reaches that date is left alone. Updates
    ``stored_files.retain_until`` in ``session``; the caller commits. Idempotent, so a run
    cut short is finished by recording the same event again.
    """
    extended: list[Extended] = []
    for series in schedules.values():
        if series.trigger != "event" or series.event != event.kind:
            continue
        query = select(StoredFile).where(
            StoredFile.kind.in_(_PARTITIONED),
            StoredFile.state != "disposed",
            # LIKE reads "_" as a wildcard: the exact match is checked below.
            StoredFile.partition.like(f"{series.code}/%"),
        )
        for row in session.scalars(query.order_by(StoredFile.key)):
            parts = (row.partition or "").split("/")
            if len(parts) != 3 or parts[0] != series.code:
                continue
            if event.account is not None and parts[1] != event.account:
                continue
            floor = event_floor(series, parts[1], events, policy)
            if floor is None:
                continue
            target = _whole_second(floor)
            if row.retain_until is not None and _whole_second(row.retain_until) >= target:
                continue
            before = row.retain_until
            _extend(store, row.key, target)
            # A file stored without its sidecar object has nothing more to lock.
            with contextlib.suppress(ObjectNotFoundError):
                _extend(store, sidecar_key(row.key), target)
            row.retain_until = target
            extended.append(Extended(row.id, row.key, before, target))
    return extended
