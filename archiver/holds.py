"""Legal holds and public-records-request holds: recording them, and the store's legal holds.

A hold stops the disposition of every item in its *scope*: some accounts (none named: every
account), an item creation-date range (the first capture's date when the platform gives no
creation date), and a search query. The scope is stored, not a list of items, and
:mod:`archiver.evaluate` resolves it whenever retention is evaluated, so items captured after
the hold was placed are covered too. Two kinds:

- ``legal``: litigation, an audit, an investigation; it lasts until an officer releases it.
- ``prr``: a public-records request. Wis. Stat. § 19.35(5): the requested records may not be
  destroyed until the request is granted, or until 60 days after it is denied. Closing the
  hold records the outcome (:func:`close`); :meth:`archiver.retention.Hold.active` decides
  when the hold stops stopping disposition, this module only records.

Every change (:func:`create`, :func:`release`, :func:`close`) is made holding the
``retention`` lock (:mod:`archiver.locks`), so it takes effect either before a disposition
re-checks its items or after the disposition has finished, never in between. In one catalog
transaction the change is written to the store as a control fact (:mod:`archiver.control`,
before the rows commit, so ``archiver catalog rebuild`` replays it) and appended to the
audit log.

**The store's legal holds.** :func:`sync_legal_holds` puts a legal hold (an S3 Object Lock
legal hold, or the local store's sidecar flag) on every stored WARC and Parquet file holding
a record of an item an active hold covers, and lifts it from files no active hold needs any
more. It runs at the end of every change; it must also run periodically (daemon
housekeeping), which is when the files of items captured after a hold was placed are held.
The records of a covered item, found through catalog columns only (no store reads):

- its versions' records (``item_versions.warc_file_id``) and Parquet rows
  (``item_versions.parquet_file_id``), and its media (``media.warc_file_id`` via
  ``item_media``);
- the raw API exchanges its versions were read from: the record a version's record names
  in ``WARC-Refers-To`` (``warc_records.refers_to``: the response, or a deletion check's
  evidence) and the request sent with it (``warc_records.concurrent_to``); the records that
  refer to the versions or media (moderation state notes, media revisits) and the media
  downloads' requests.

A version whose record has no link in the catalog (rows written before the catalog kept
``WARC-Refers-To``) is traced by its capture run instead: every file holding records of the
run that wrote it, in the item's partition or in the run's exchange partition (the account's
capture month); without a run either, that exchange partition whole. More than the exact
records, never less (:attr:`SyncReport.approximated` counts such versions).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from archiver import audit, control, locks
from archiver.catalog.db import Catalog
from archiver.catalog.models import (
    Account,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.catalog.models import Hold as HoldRow
from archiver.errors import ArchiverError, UnsafeKeyError
from archiver.evaluate import hold_rows_to_holds
from archiver.layout import Partition, period_of
from archiver.retention import PRR_DENIAL_DAYS, Hold, HoldKind, ItemFacts
from archiver.search import parse
from archiver.store.base import Store
from archiver.warc import WarcInfo

KINDS: tuple[HoldKind, ...] = ("legal", "prr")
#: How long a hold change waits for a running disposition to let go of the retention lock.
LOCK_WAIT = timedelta(seconds=30)
#: Ids per ``IN (...)`` list.
BATCH = 1000
#: Most file keys one ``hold.sync`` audit entry lists (the counts are always complete).
AUDIT_KEYS = 200
#: Longest case id (the catalog column's width).
MAX_CASE = 256


def _wall() -> datetime:
    # Lock expiries follow the real clock, never ARCHIVER_NOW: a rehearsal "in 2031" that
    # crashed must not leave the lock taken until 2031.
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _day(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).date().isoformat()


# --- records crossing the boundary -----------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """Who records a change, and what the control fact's ``warcinfo`` says about the software."""

    actor: str
    info: WarcInfo
    tmp_dir: Path | None = None


@dataclass(frozen=True)
class Scope:
    """What a hold covers; an empty field does not narrow it. Dates are UTC, both inclusive."""

    accounts: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    query: str | None = None

    def check(self) -> None:
        """Refuse a scope that cannot be what was meant (with what to write instead)."""
        for name in ("created_from", "created_to"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if (
            self.created_from is not None
            and self.created_to is not None
            and self.created_from > self.created_to
        ):
            raise ArchiverError(
                f"the hold's date range starts ({self.created_from.isoformat()}) after it ends "
                f"({self.created_to.isoformat()}): give --from on or before --to"
            )
        if self.query is not None:
            if not self.query.strip():
                raise ArchiverError("--query is empty: give search words, or leave it out")
            parse(self.query)  # SearchQueryError names what is wrong and where


@dataclass(frozen=True)
class HoldRecord:
    """A hold as the catalog records it."""

    id: int
    case: str
    kind: HoldKind
    reason: str
    accounts: tuple[str, ...]
    created_from: datetime | None
    created_to: datetime | None
    query: str | None
    created_at: datetime
    created_by: str
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None
    granted_on: datetime | None = None
    denied_on: datetime | None = None

    @classmethod
    def of(cls, row: HoldRow) -> HoldRecord:
        return cls(
            id=row.id,
            case=row.case_id,
            kind="prr" if row.kind == "prr" else "legal",
            reason=row.reason,
            accounts=tuple(row.accounts or ()),
            created_from=row.created_from,
            created_to=row.created_to,
            query=row.query,
            created_at=row.created_at,
            created_by=row.created_by,
            released_at=row.released_at,
            released_by=row.released_by,
            release_reason=row.release_reason,
            granted_on=row.granted_on,
            denied_on=row.denied_on,
        )

    def _pure(self) -> Hold:
        # Activity does not depend on the scope, so the query need not be resolved here.
        return Hold(
            id=self.id,
            case=self.case,
            kind=self.kind,
            accounts=frozenset(self.accounts),
            start=self.created_from,
            end=self.created_to,
            item_ids=None,
            created_at=self.created_at,
            released_at=self.released_at,
            granted_on=self.granted_on,
            denied_on=self.denied_on,
        )

    def active(self, now: datetime) -> bool:
        """Whether it stops disposition at ``now`` (:meth:`archiver.retention.Hold.active`)."""
        return self._pure().active(now)

    @property
    def closed(self) -> bool:
        return self.granted_on is not None or self.denied_on is not None

    @property
    def holds_until(self) -> datetime | None:
        """For a denied request: when its hold ends (Wis. Stat. § 19.35(5))."""
        if self.denied_on is None:
            return None
        return self.denied_on + timedelta(days=PRR_DENIAL_DAYS)

    def status(self, now: datetime, zone: ZoneInfo) -> str:
        """One line: active, released, or where a public-records request stands."""
        if self.released_at is not None:
            return (
                f"released {_day(self.released_at, zone)} by {self.released_by}: "
                f"{self.release_reason}"
            )
        if self.kind == "legal":
            return "active"
        if self.granted_on is not None:
            return f"prr: granted {_day(self.granted_on, zone)}, ended"
        until = self.holds_until
        if self.denied_on is not None and until is not None:
            verb = "holds until" if self.active(now) else "ended"
            return f"prr: denied {_day(self.denied_on, zone)}, {verb} {_day(until, zone)}"
        return "prr: open (the request is neither granted nor denied yet)"

    def scope_text(self, zone: ZoneInfo) -> str:
        """The scope in words: ``accounts a, b; created 2026-01-01 to 2026-01-31; query "x"``."""
        parts = [f"accounts {', '.join(self.accounts)}" if self.accounts else "every account"]
        if self.created_from is not None or self.created_to is not None:
            start = _day(self.created_from, zone) if self.created_from else "the beginning"
            end = _day(self.created_to, zone) if self.created_to else "now"
            parts.append(f"created {start} to {end}")
        if self.query is not None:
            parts.append(f"query {self.query}")
        return "; ".join(parts)

    def as_json(self, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "case": self.case,
            "kind": self.kind,
            "reason": self.reason,
            "accounts": list(self.accounts),
            "created_from": _iso(self.created_from),
            "created_to": _iso(self.created_to),
            "query": self.query,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "released_at": _iso(self.released_at),
            "released_by": self.released_by,
            "release_reason": self.release_reason,
            "granted_on": _iso(self.granted_on),
            "denied_on": _iso(self.denied_on),
            "holds_until": _iso(self.holds_until),
            "active": self.active(now),
            "status": self.status(now, zone),
        }


@dataclass
class SyncReport:
    """What :func:`sync_legal_holds` found and changed."""

    active_holds: int = 0
    covered_items: int = 0
    files: int = 0  # stored WARC and Parquet files looked at
    held: int = 0  # of which an active hold needs
    placed: list[str] = field(default_factory=list)  # keys a legal hold was put on
    lifted: list[str] = field(default_factory=list)  # keys a legal hold was lifted from
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    # Covered versions whose record names no source in the catalog (written before the
    # catalog kept WARC-Refers-To): their exchanges were found by capture run instead.
    approximated: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "active_holds": self.active_holds,
            "covered_items": self.covered_items,
            "files": self.files,
            "held": self.held,
            "placed": list(self.placed),
            "lifted": list(self.lifted),
            "failed": [{"key": k, "error": e} for k, e in self.failed],
            "approximated": self.approximated,
        }


@dataclass(frozen=True)
class Change:
    """A recorded hold change: the hold as it now is, its control fact, the store's sync."""

    hold: HoldRecord
    fact: control.Fact
    sync: SyncReport


# --- recording changes -----------------------------------------------------------------------


@contextmanager
def _locked(catalog: Catalog, recording: Recording, what: str) -> Iterator[int]:
    holder = f"{recording.actor} ({what}, pid {os.getpid()})"
    with locks.held(catalog, locks.RETENTION, holder, wait=LOCK_WAIT) as generation:
        yield generation


def _text(value: str, option: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ArchiverError(f"{option} is empty: say what it is")
    return text


def _get(session: Session, hold_id: int) -> HoldRow:
    row = session.get(HoldRow, hold_id)
    if row is None:
        raise ArchiverError(f"there is no hold {hold_id}: `archiver hold list --all` lists them")
    return row


def _check_accounts(session: Session, accounts: Sequence[str], configured: Collection[str]) -> None:
    known = set(session.scalars(select(Account.id))) | set(configured)
    unknown = [a for a in accounts if a not in known]
    if unknown:
        raise ArchiverError(
            f"no account {', '.join(repr(a) for a in unknown)} in the catalog or the "
            "configuration: `archiver accounts` lists them"
        )


def create(
    catalog: Catalog,
    store: Store,
    *,
    case: str,
    reason: str,
    kind: HoldKind,
    scope: Scope,
    recording: Recording,
    now: datetime,
    configured_accounts: Collection[str] = (),
) -> Change:
    """Place a hold, record it (control fact, audit), then put the store's legal holds on."""
    case = _text(case, "--case")
    if len(case) > MAX_CASE:
        raise ArchiverError(f"--case is {len(case)} characters long; at most {MAX_CASE}")
    reason = _text(reason, "--reason")
    if kind not in KINDS:
        raise ArchiverError(f"unknown hold type {kind!r}: choose legal or prr")
    scope.check()
    accounts = tuple(dict.fromkeys(scope.accounts))
    with _locked(catalog, recording, "hold create") as generation:
        with catalog.session() as s:
            locks.fence(s, locks.RETENTION, generation, _wall())
            _check_accounts(s, accounts, configured_accounts)
            row = HoldRow(
                case_id=case,
                kind=kind,
                reason=reason,
                accounts=list(accounts),
                created_from=scope.created_from,
                created_to=scope.created_to,
                query=scope.query,
                created_at=now,
                created_by=recording.actor,
            )
            s.add(row)
            s.flush()
            body = {
                "hold": row.id,
                "case": case,
                "kind": kind,
                "reason": reason,
                "accounts": list(accounts),
                "created_from": _iso(scope.created_from),
                "created_to": _iso(scope.created_to),
                "query": scope.query,
            }
            fact = _record(s, store, "hold.created", "hold.create", body, recording, now)
            record = HoldRecord.of(row)
        report = sync_legal_holds(catalog, store, now, actor=recording.actor, generation=generation)
    return Change(record, fact, report)


def release(
    catalog: Catalog,
    store: Store,
    hold_id: int,
    *,
    reason: str,
    recording: Recording,
    now: datetime,
) -> Change:
    """Release a hold (of either kind), then lift the store's legal holds no hold needs."""
    reason = _text(reason, "--reason")
    with _locked(catalog, recording, "hold release") as generation:
        with catalog.session() as s:
            locks.fence(s, locks.RETENTION, generation, _wall())
            row = _get(s, hold_id)
            if row.released_at is not None:
                raise ArchiverError(
                    f"hold {hold_id} (case {row.case_id}) was already released on "
                    f"{row.released_at.isoformat()} by {row.released_by}; nothing to do"
                )
            row.released_at = now
            row.released_by = recording.actor
            row.release_reason = reason
            body = {"hold": hold_id, "reason": reason}
            fact = _record(s, store, "hold.released", "hold.release", body, recording, now)
            record = HoldRecord.of(row)
        report = sync_legal_holds(catalog, store, now, actor=recording.actor, generation=generation)
    return Change(record, fact, report)


def close(
    catalog: Catalog,
    store: Store,
    hold_id: int,
    *,
    granted_on: datetime | None = None,
    denied_on: datetime | None = None,
    recording: Recording,
    now: datetime,
) -> Change:
    """Record a public-records request's outcome: granted (the hold ends) or denied (the hold
    ends 60 days later, Wis. Stat. § 19.35(5)); then sync the store's legal holds."""
    if (granted_on is None) == (denied_on is None):
        raise ArchiverError("give exactly one of --granted-on and --denied-on")
    outcome: Literal["granted", "denied"] = "granted" if granted_on is not None else "denied"
    moment = granted_on if granted_on is not None else denied_on
    assert moment is not None
    if moment > now:
        raise ArchiverError(
            f"--{outcome}-on {moment.isoformat()} is in the future; record the outcome once "
            "the request has been decided"
        )
    with _locked(catalog, recording, "hold close") as generation:
        with catalog.session() as s:
            locks.fence(s, locks.RETENTION, generation, _wall())
            row = _get(s, hold_id)
            label = f"hold {hold_id} (case {row.case_id})"
            if row.kind != "prr":
                raise ArchiverError(
                    f"{label} is a legal hold; only a public-records-request hold is closed "
                    f"with --granted-on or --denied-on. A legal hold ends with "
                    f"`archiver hold release {hold_id} --reason ...`"
                )
            if row.released_at is not None:
                raise ArchiverError(
                    f"{label} was released on {row.released_at.isoformat()}; "
                    "a released hold cannot be closed"
                )
            decided = row.granted_on or row.denied_on
            if decided is not None:
                was = "granted" if row.granted_on is not None else "denied"
                raise ArchiverError(
                    f"{label} was already closed: the request was {was} on {decided.isoformat()}"
                )
            row.granted_on = granted_on
            row.denied_on = denied_on
            body = {"hold": hold_id, "granted_on": _iso(granted_on), "denied_on": _iso(denied_on)}
            fact = _record(s, store, "hold.closed", "hold.close", body, recording, now)
            record = HoldRecord.of(row)
        report = sync_legal_holds(catalog, store, now, actor=recording.actor, generation=generation)
    return Change(record, fact, report)


def _record(
    session: Session,
    store: Store,
    kind: str,
    action: str,
    body: dict[str, Any],
    recording: Recording,
    now: datetime,
) -> control.Fact:
    """The control fact (in the store, before the commit) and the audit entry, in ``session``."""
    fact = control.write_fact(
        store,
        session,
        kind,
        body,
        actor=recording.actor,
        info=recording.info,
        at=now,
        tmp_dir=recording.tmp_dir,
    )
    audit.append(
        session,
        actor=recording.actor,
        action=action,
        subject=f"hold:{body['hold']}",
        detail={**body, "fact": fact.id, "fact_key": fact.key},
    )
    return fact


def list_holds(catalog: Catalog, now: datetime, *, everything: bool = False) -> list[HoldRecord]:
    """The holds active at ``now`` (every hold with ``everything``), oldest first."""
    with catalog.reader() as s:
        found = [HoldRecord.of(r) for r in s.scalars(select(HoldRow).order_by(HoldRow.id))]
    return found if everything else [h for h in found if h.active(now)]


# --- scope ----------------------------------------------------------------------------------


def _chunks(values: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_FACT_COLUMNS = (
    Item.id,
    Item.account_id,
    Item.kind,
    Item.state,
    Item.created_at,
    Item.first_captured_at,
    Item.series,
)


def _facts(row: Any) -> ItemFacts:
    return ItemFacts(
        item_id=row.id,
        account=row.account_id,
        kind=row.kind,
        state=row.state,
        created_at=row.created_at,
        captured_at=row.first_captured_at,
        series=row.series,
    )


def _covered(session: Session, hold: Hold) -> set[int]:
    """Ids of the not-disposed items in ``hold``'s scope (SQL narrows, ``covers`` decides)."""
    conditions: list[Any] = [Item.disposed_at.is_(None)]
    if hold.accounts:
        conditions.append(Item.account_id.in_(sorted(hold.accounts)))
    moment = func.coalesce(Item.created_at, Item.first_captured_at)
    if hold.start is not None:
        conditions.append(moment >= hold.start)
    if hold.end is not None:
        conditions.append(moment <= hold.end)
    found: set[int] = set()
    if hold.item_ids is not None:
        for chunk in _chunks(sorted(hold.item_ids)):
            rows = session.execute(
                select(*_FACT_COLUMNS).where(Item.id.in_(chunk), *conditions)
            ).all()
            found.update(r.id for r in rows if hold.covers(_facts(r)))
        return found
    last = 0
    while True:
        rows = session.execute(
            select(*_FACT_COLUMNS).where(Item.id > last, *conditions).order_by(Item.id).limit(BATCH)
        ).all()
        if not rows:
            return found
        found.update(r.id for r in rows if hold.covers(_facts(r)))
        last = rows[-1].id


def covered_item_ids(session: Session, hold_row: HoldRow) -> set[int]:
    """Ids of the items (not disposed) in the hold's scope now, whether or not it is active."""
    (hold,) = hold_rows_to_holds(session, [hold_row])
    return _covered(session, hold)


def held_item_ids(session: Session, holds: Iterable[Hold], now: datetime) -> set[int]:
    """Ids of the items some hold active at ``now`` covers (queries already resolved)."""
    found: set[int] = set()
    for hold in holds:
        if hold.active(now):
            found |= _covered(session, hold)
    return found


def files_of_items(session: Session, item_ids: Iterable[int]) -> tuple[set[str], int]:
    """Ids of the stored files holding records of the items (see the module docstring), and
    how many of their versions name no source record in the catalog (their exchanges are
    then found by capture run, see :func:`_run_files`)."""
    files: set[str] = set()
    records: set[str] = set()  # the versions' and media's own records
    evidence: set[str] = set()  # what the versions were read from (WARC-Refers-To)
    unlinked: list[Any] = []
    for chunk in _chunks(sorted(set(item_ids))):
        rows = session.execute(
            select(
                ItemVersion.id,
                ItemVersion.warc_file_id,
                ItemVersion.parquet_file_id,
                ItemVersion.warc_record_id,
                ItemVersion.run_id,
                ItemVersion.partition,
                ItemVersion.captured_at,
                Item.account_id,
                WarcRecord.refers_to,
            )
            .join(Item, Item.id == ItemVersion.item_id)
            .outerjoin(WarcRecord, WarcRecord.record_id == ItemVersion.warc_record_id)
            .where(ItemVersion.item_id.in_(chunk))
        ).all()
        for r in rows:
            files.add(r.warc_file_id)
            if r.parquet_file_id is not None:
                files.add(r.parquet_file_id)
            records.add(r.warc_record_id)
            if r.refers_to is not None:
                evidence.add(r.refers_to)
            else:
                unlinked.append(r)
        for versions in _chunks([r.id for r in rows]):
            for file_id, record_id in session.execute(
                select(Media.warc_file_id, Media.warc_record_id)
                .join(ItemMedia, ItemMedia.media_id == Media.id)
                .where(ItemMedia.version_id.in_(versions))
                .distinct()
            ):
                files.add(file_id)
                records.add(record_id)
    for column, wanted in (
        (WarcRecord.record_id, evidence),  # the source responses themselves
        (WarcRecord.refers_to, records),  # state notes, media revisits
        (WarcRecord.concurrent_to, evidence | records),  # the requests of those responses
    ):
        for chunk in _chunks(sorted(wanted)):
            files.update(
                session.scalars(select(WarcRecord.file_id).where(column.in_(chunk)).distinct())
            )
    return files | _run_files(session, unlinked, files), len(unlinked)


def _run_files(session: Session, versions: Sequence[Any], known: set[str]) -> set[str]:
    """For versions whose record names no source (rows written before the catalog kept
    links): every file holding records of the capture run that wrote the version, in the
    item's partition or in the run's exchange partition (the account's capture month); with
    no run either (a catalog rebuilt before links were kept), that exchange partition whole."""
    by_partition: dict[str, set[int]] = defaultdict(set)  # item partition -> runs
    by_exchange: dict[tuple[str, str], set[int]] = defaultdict(set)  # (account, month) -> runs
    runless: set[tuple[str, str]] = set()
    for v in versions:
        exchange = (v.account_id, period_of(v.captured_at))
        if v.run_id is None:
            runless.add(exchange)
        else:
            by_partition[v.partition].add(v.run_id)
            by_exchange[exchange].add(v.run_id)
    found: set[str] = set()
    if not by_partition and not runless:
        return found
    candidates: dict[str, set[int]] = {}
    for file_id, name in session.execute(
        select(StoredFile.id, StoredFile.partition).where(
            StoredFile.kind == "warc", StoredFile.partition.is_not(None)
        )
    ):
        if file_id in known or name is None:
            continue
        try:
            partition = Partition.parse(name)
        except UnsafeKeyError:
            continue
        month = (partition.account, partition.period)
        if month in runless:
            found.add(file_id)
            continue
        runs = by_partition.get(name, set()) | by_exchange.get(month, set())
        if runs:
            candidates[file_id] = runs
    for chunk in _chunks(sorted(candidates)):
        for file_id, run_id in session.execute(
            select(WarcRecord.file_id, WarcRecord.run_id)
            .where(WarcRecord.file_id.in_(chunk), WarcRecord.run_id.is_not(None))
            .distinct()
        ):
            if run_id in candidates[file_id]:
                found.add(file_id)
    return found


# --- the store's legal holds ------------------------------------------------------------------


def sync_legal_holds(
    catalog: Catalog,
    store: Store,
    now: datetime,
    *,
    holds: Sequence[Hold] | None = None,
    actor: str = "archiver",
    generation: int | None = None,
    check_store: bool = False,
) -> SyncReport:
    """Make the store's legal holds match the holds active at ``now``.

    ``holds``: the holds to apply, their queries resolved (:func:`archiver.evaluate.
    hold_rows_to_holds`); read from the catalog when None. ``generation``: the caller holds
    the ``retention`` lock with this generation; otherwise the lock is taken here (waiting up
    to :data:`LOCK_WAIT`), so a sync never interleaves with a disposition. ``check_store``:
    compare with what the store says (one ``head`` per file) rather than the catalog's
    ``stored_files.legal_hold``, to repair a store changed behind the catalog's back.

    A file the store refuses is reported in :attr:`SyncReport.failed` and the others are
    still done. Any change is audited (``hold.sync``), attributed to ``actor``.
    """
    if generation is None:
        holder = f"{actor} (legal-hold sync, pid {os.getpid()})"
        with locks.held(catalog, locks.RETENTION, holder, wait=LOCK_WAIT) as taken:
            return _sync(catalog, store, now, holds, actor, taken, check_store)
    return _sync(catalog, store, now, holds, actor, generation, check_store)


def _sync(
    catalog: Catalog,
    store: Store,
    now: datetime,
    holds: Sequence[Hold] | None,
    actor: str,
    generation: int,
    check_store: bool,
) -> SyncReport:
    report = SyncReport()
    with catalog.reader() as s:
        if holds is None:
            holds = hold_rows_to_holds(s, s.scalars(select(HoldRow).order_by(HoldRow.id)))
        report.active_holds = sum(1 for h in holds if h.active(now))
        covered = held_item_ids(s, holds, now)
        report.covered_items = len(covered)
        wanted, report.approximated = files_of_items(s, covered)
        stored = s.execute(
            select(StoredFile.id, StoredFile.key, StoredFile.legal_hold)
            .where(StoredFile.kind.in_(("warc", "parquet")), StoredFile.state == "stored")
            .order_by(StoredFile.key)
        ).all()
    report.files = len(stored)
    for file_id, key, recorded in stored:
        want = file_id in wanted
        report.held += want
        try:
            current = store.head(key).legal_hold if check_store else recorded
            if current == want and recorded == want:
                continue
            if current != want:
                store.set_legal_hold(key, want)
        except ArchiverError as exc:
            report.failed.append((key, str(exc)))
            continue
        # One commit per file, right after the store call: a crash leaves at most one
        # file whose catalog flag lags the store (``check_store`` repairs it).
        with catalog.session() as s:
            locks.fence(s, locks.RETENTION, generation, _wall())
            s.execute(update(StoredFile).where(StoredFile.id == file_id).values(legal_hold=want))
        (report.placed if want else report.lifted).append(key)
    if report.placed or report.lifted or report.failed:
        with catalog.session() as s:
            audit.append(
                s,
                actor=actor,
                action="hold.sync",
                subject="store legal holds",
                detail={
                    "active_holds": report.active_holds,
                    "covered_items": report.covered_items,
                    "placed": len(report.placed),
                    "lifted": len(report.lifted),
                    "failed": len(report.failed),
                    "placed_keys": report.placed[:AUDIT_KEYS],
                    "lifted_keys": report.lifted[:AUDIT_KEYS],
                    "failures": [{"key": k, "error": e} for k, e in report.failed[:AUDIT_KEYS]],
                },
            )
    return report
