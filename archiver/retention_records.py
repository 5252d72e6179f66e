"""Recording what starts or allows disposition: retention events and historical-society notices.

An *event* (``account-closed`` for an account, on a date) starts the period of every series
whose trigger is that event; a *notice* sent to the historical society (or its waiver) lets
the records of a series that requires one go once their retention has ended. Each is, in one
catalog transaction: its row, a control fact in the store written before the commit (so
``catalog rebuild`` keeps it) and an audit entry. Recording an event then extends the object
locks of the stored files of its series (:func:`archiver.retention_locks.extend_for_event`),
whose lock until then was provisional.

Events change when records may go, in both directions (a later closure keeps them longer),
so they are recorded under the retention lock, like holds; a notice only ever lets records
go that their retention already allows, and disposition re-checks notices at execution.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import audit, locks
from archiver.assignment import load_events
from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, RetentionEvent, RetentionNotice
from archiver.control import write_fact
from archiver.errors import ArchiverError
from archiver.retention import Event, NoticeKind, Policy, Series
from archiver.retention_locks import Extended, extend_for_event
from archiver.store.base import Store
from archiver.warc import WarcInfo

#: How long recording an event waits for the retention lock (a disposition or hold change).
LOCK_WAIT = timedelta(seconds=10)


@dataclass(frozen=True)
class Recorder:
    """Who records, where facts go, and when: what every recording needs."""

    catalog: Catalog
    store: Store
    actor: str
    info: WarcInfo
    tmp_dir: Path
    now: datetime
    holder: str


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEvent:
    """An event as recorded, and the stored files whose locks it extended."""

    id: int
    kind: str
    account: str | None
    occurred_at: datetime
    already: bool  # the same event was recorded before: nothing new but the lock check
    fact: str | None
    extended: tuple[Extended, ...]


def event_kinds(schedules: Mapping[str, Series]) -> list[str]:
    """The events the schedules' event-triggered series start on."""
    return sorted(
        {s.event for s in schedules.values() if s.trigger == "event" and s.event is not None}
    )


def record_event(
    rec: Recorder,
    schedules: Mapping[str, Series],
    policy: Policy,
    *,
    kind: str,
    account: str | None,
    occurred_at: datetime,
    note: str | None,
    configured_accounts: Collection[str],
) -> RecordedEvent:
    """Record that ``kind`` happened to ``account`` (None: every account) at ``occurred_at``.

    Recording the same event (kind, account, moment) again adds nothing; it finishes the lock
    extension if an earlier run was cut short.
    """
    kinds = event_kinds(schedules)
    if kind not in kinds:
        raise ArchiverError(
            f"no series in the retention schedules starts on event {kind!r}; the events they "
            f"use: {', '.join(kinds) or 'none'}"
        )
    with locks.held(rec.catalog, locks.RETENTION, rec.holder, wait=LOCK_WAIT) as generation:
        with rec.catalog.session() as s:
            if (
                account is not None
                and account not in configured_accounts
                and s.get(Account, account) is None
            ):
                known = sorted({*configured_accounts, *s.scalars(select(Account.id))})
                raise ArchiverError(
                    f"no account {account!r} in the configuration or the catalog (accounts: "
                    f"{', '.join(known) or 'none'}); `archiver accounts` lists them"
                )
            row = s.scalars(
                select(RetentionEvent).where(
                    RetentionEvent.kind == kind,
                    RetentionEvent.account_id.is_(None)
                    if account is None
                    else RetentionEvent.account_id == account,
                    RetentionEvent.occurred_at == occurred_at,
                )
            ).first()
            already = row is not None
            fact_key = None
            if row is None:
                row = RetentionEvent(
                    kind=kind,
                    account_id=account,
                    occurred_at=occurred_at,
                    recorded_at=rec.now,
                    recorded_by=rec.actor,
                    note=note,
                )
                s.add(row)
                s.flush()
                body = {
                    "event": row.id,
                    "kind": kind,
                    "account": account,
                    "occurred_at": occurred_at.isoformat(),
                    "note": note,
                }
                fact_key = _fact(rec, s, "event.recorded", body)
                audit.append(
                    s,
                    actor=rec.actor,
                    action="retention.event",
                    subject=f"{kind} {account or 'every account'}",
                    detail={**body, "fact": fact_key},
                    clock=lambda: rec.now,
                )
            event_id = row.id
            # The lock's expiry runs on the wall clock, whatever time decisions are made at.
            locks.fence(s, locks.RETENTION, generation, datetime.now(UTC))
        # The event is committed; now its series' stored files are locked until their items
        # can go (in a second transaction: a failure here is finished by recording it again).
        with rec.catalog.session() as s:
            extended = extend_for_event(
                s,
                rec.store,
                schedules,
                policy,
                Event(kind, account, occurred_at),
                load_events(s),
            )
            if extended:
                audit.append(
                    s,
                    actor=rec.actor,
                    action="retention.lock.extend",
                    subject=f"event {event_id}",
                    detail={
                        "files": len(extended),
                        "until": sorted({e.after.isoformat() for e in extended}),
                        "keys": [e.key for e in extended[:50]],
                    },
                    clock=lambda: rec.now,
                )
            # The lock's expiry runs on the wall clock, whatever time decisions are made at.
            locks.fence(s, locks.RETENTION, generation, datetime.now(UTC))
    return RecordedEvent(event_id, kind, account, occurred_at, already, fact_key, tuple(extended))


# --- notices --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedNotice:
    """A notice or waiver as recorded, and from when it lets the records it covers go."""

    id: int
    series: str
    kind: NoticeKind
    on: datetime
    reference: str
    fact: str
    effective_from: datetime


def record_notice(
    rec: Recorder,
    series: Series,
    *,
    kind: NoticeKind,
    on: datetime,
    reference: str,
    note: str | None,
) -> RecordedNotice:
    """Record a notice sent to (``kind`` "sent") or a waiver from the historical society
    for ``series``; refused for a series that requires no notice."""
    if not series.notice.required:
        raise ArchiverError(
            f"series {series.code} does not require notice to the historical society (its "
            f"schedule at {series.source} says notice required = false), so its records are "
            "disposed of without one; nothing was recorded"
        )
    reference = reference.strip()
    if not reference:
        raise ArchiverError("a notice needs its reference (the letter's or the waiver's)")
    with rec.catalog.session() as s:
        row = RetentionNotice(
            series=series.code,
            kind=kind,
            on=on,
            reference=reference,
            recorded_at=rec.now,
            recorded_by=rec.actor,
            note=note,
        )
        s.add(row)
        s.flush()
        body = {
            "notice": row.id,
            "series": series.code,
            "kind": kind,
            "on": on.isoformat(),
            "reference": reference,
            "note": note,
        }
        fact_key = _fact(rec, s, "notice.recorded", body)
        audit.append(
            s,
            actor=rec.actor,
            action="retention.notice",
            subject=series.code,
            detail={**body, "fact": fact_key},
            clock=lambda: rec.now,
        )
        notice_id = row.id
    return RecordedNotice(
        notice_id, series.code, kind, on, reference, fact_key, effective_from(series, kind, on)
    )


def effective_from(series: Series | None, kind: str, on: datetime) -> datetime:
    """When a notice lets the records it covers go: a waiver at once, a notice sent after the
    series' notice period (at once for a series no schedule defines any more)."""
    if kind == "waiver" or series is None:
        return on
    return on + timedelta(days=series.notice.days)


def _fact(rec: Recorder, session: Session, kind: str, body: Mapping[str, object]) -> str:
    # Facts are written through a temporary file next to the spool's.
    rec.tmp_dir.mkdir(parents=True, exist_ok=True)
    fact = write_fact(
        rec.store,
        session,
        kind,
        body,
        actor=rec.actor,
        info=rec.info,
        at=rec.now,
        tmp_dir=rec.tmp_dir,
    )
    return fact.key
