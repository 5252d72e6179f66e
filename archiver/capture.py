"""One capture run of one account: connector → archiving client → WARC → catalog.

The write order of the DESIGN holds for every page: the records of the page (the raw
exchanges, the media, the item versions, state changes) are appended and fsynced, and only
then are the page's catalog rows committed, with the connector's checkpoint, in one
transaction that also checks the account lease. A run interrupted anywhere resumes from its
last committed page; records written after it are orphans that the next run writes again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from archiver import lease
from archiver.accounts import ensure_registered
from archiver.assignment import Assigner, Move, record_moves
from archiver.catalog.db import Catalog
from archiver.catalog.models import (
    Account,
    CaptureRun,
    ItemMedia,
    ItemVersion,
)
from archiver.catalog.models import (
    Checkpoint as CheckpointRow,
)
from archiver.catalog.models import (
    Item as ItemRow,
)
from archiver.catalog.records import register_records
from archiver.changes import Change, Decision, Known, decide, state_after
from archiver.config import AccountSettings, Config
from archiver.connector import (
    AccountInfo,
    AccountState,
    CapturePlan,
    Checkpoint,
    Item,
    ItemKind,
    ItemStatus,
    canonical_json,
)
from archiver.errors import ArchiverError, CaptureError, ConfigError
from archiver.exports import open_export
from archiver.http import ArchivingHttpClient
from archiver.layout import Partition, period_of
from archiver.logging import get_logger
from archiver.media import MediaFetcher, StoredMedia
from archiver.parquet import Rolled, roll
from archiver.plugins import load_connector
from archiver.ratelimit import policy_for
from archiver.redact import scrub_registered
from archiver.retention import Assignment, ItemFacts
from archiver.search.index import index_session, index_versions
from archiver.series import Schedules, load_schedules
from archiver.spool import Spool
from archiver.store.base import Store
from archiver.warc import WarcInfo
from archiver.warc_pool import WriterPool
from archiver.warc_records import RecordPointer, WarcRecord, conversion_record, metadata_record

log = get_logger(__name__)

Clock = Callable[[], datetime]

#: Why a run asked to stop (``CaptureRunner.capture(stop=...)``) ended early.
STOPPED_REASON = "stopped on request at a page boundary; the next run resumes from its checkpoint"
#: Item columns a new version sets (besides its state, series and version count).
_VERSIONED_COLUMNS = (
    *("permalink", "author", "created_at", "edited_at", "text", "platform_parent_id"),
    *("thread_id", "content_sha256"),
)
#: What a page commit reads of each of its known items.
_PAGE_ROW_COLUMNS = (
    *("id", "platform_item_id", "state", "state_changed_at", "versions", "series"),
    *("series_rule", "parent_id", *_VERSIONED_COLUMNS),
)
_UPDATED_COLUMNS = (
    *("id", "last_seen_at", "series", "series_rule", "state", "state_changed_at", "versions"),
    *_VERSIONED_COLUMNS,
)
_NEW_ITEM_COLUMNS = (
    *("account_id", "platform_item_id", "kind", "first_captured_at", "partition"),
    *_UPDATED_COLUMNS[1:],
)
#: Most values in one ``IN (...)`` list.
_IN_CHUNK = 500
# Page commits write through the tables (Core): no ORM object per row.
_ITEMS = cast(Table, ItemRow.__table__)
_VERSIONS = cast(Table, ItemVersion.__table__)
_ITEM_MEDIA = cast(Table, ItemMedia.__table__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _update_by_id(s: Session, rows: list[dict[str, Any]]) -> None:
    """UPDATE items by id, one executemany; each row gives its ``id`` and the new values."""
    if not rows:
        return
    params = [{("item_row_id" if k == "id" else k): v for k, v in r.items()} for r in rows]
    s.execute(update(_ITEMS).where(_ITEMS.c.id == bindparam("item_row_id")), params)


def _period(partition_name: str) -> str | None:
    """The period of a catalog partition name (None for an item stored before partitions)."""
    return Partition.parse(partition_name).period if partition_name else None


@dataclass(slots=True)
class RunStats:
    pages: int = 0
    items_seen: int = 0
    new: int = 0
    unchanged: int = 0
    edited: int = 0
    hidden: int = 0
    unhidden: int = 0
    reappeared: int = 0
    deleted: int = 0
    checks_unknown: int = 0
    media_stored: int = 0
    media_revisits: int = 0
    media_failed: int = 0
    media_too_large: int = 0
    # Items seen again after their disposition: not captured again (see _commit_page).
    disposed_seen: int = 0

    def count(self, change: Change) -> None:
        setattr(self, change.value, getattr(self, change.value) + 1)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: int
    account: str
    status: str  # "complete", "incomplete", "unavailable", "failed", "interrupted"
    reason: str | None
    stats: dict[str, int]


class PageSink:
    """Where the client's exchange records go: the capture-month partition, collected per page."""

    def __init__(self, pool: WriterPool, partition: Partition) -> None:
        self._pool = pool
        self.partition = partition
        self.pointers: list[RecordPointer] = []

    def append(self, record: WarcRecord) -> RecordPointer:
        pointer = self._pool.append(self.partition, record)
        self.pointers.append(pointer)
        return pointer

    def take(self) -> list[RecordPointer]:
        taken, self.pointers = self.pointers, []
        return taken


@dataclass(frozen=True, slots=True)
class _Prior:
    """What the catalog knew of an item before this page."""

    id: int
    known: Known
    versions: int
    series: str
    partition: str
    first_captured_at: datetime
    disposed: bool = False


@dataclass(slots=True)
class _Observed:
    """An item of the current page, with what was written for it."""

    item: Item
    partition: Partition
    decision: Decision
    assignment: Assignment | None = None  # set when the item gets a new version
    version: RecordPointer | None = None
    content_sha256: str = ""  # of the new version (its document says it too)
    state_note: RecordPointer | None = None
    media: list[StoredMedia] = field(default_factory=list)


class CaptureRunner:
    """Runs captures for the accounts of one configuration."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        store: Store,
        warc_info: WarcInfo,
        *,
        clock: Clock = _utcnow,
        schedules: Schedules | None = None,
        actor: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.warc_info = warc_info
        self.clock = clock
        self.schedules = (
            schedules if schedules is not None else load_schedules(config.retention.schedules_dir)
        )
        #: Who series moves made by a capture are attributed to: the service on this node.
        self.actor = actor or f"archiver@{config.archiver.node}"
        self.spool = Spool(config.spool.path, store, catalog, max_bytes=config.spool.max_bytes)
        #: What the archiving client sends through (None: the network); benchmarks and tests
        #: hand in an in-process transport that answers like the platform.
        self.transport = transport

    # -- the run ---------------------------------------------------------------------------

    def capture(
        self,
        account_id: str,
        *,
        full_walk: bool | None = None,
        progress: Callable[[RunStats], None] | None = None,
        stop: threading.Event | None = None,
    ) -> RunResult:
        """Capture one account. With ``stop``, a run asked to stop ends after its next
        page commit (or before the deletion checks) with status ``"interrupted"``; its
        checkpoint is kept, so the next run resumes there."""
        settings = self.config.account(account_id)
        self.spool.prepare()
        self.spool.check_space()
        now = self.clock()
        holder = f"{self.config.archiver.node}:{os.getpid()}"
        self._ensure_account(settings, now)
        generation = lease.acquire(
            self.catalog, settings.id, holder, now, ttl=self.config.daemon.lease_ttl
        )
        run_id = self._start_run(settings.id, generation, now)
        pool = WriterPool(
            self.config.spool.path,
            self.warc_info,
            max_size=self.config.warc.rotate_size,
            max_idle=self.config.warc.rotate_idle.total_seconds(),
            clock=self.clock,
        )
        run = _Run(self, settings, run_id, generation, pool, progress, stop)
        status: str = "failed"
        reason: str | None = "the run did not finish"
        try:
            status, reason = run.execute(full_walk)
            if status == "interrupted":
                log.info("capture stopped", account=settings.id, run_id=run_id, reason=reason)
        except CaptureError as exc:
            status, reason = "incomplete", str(exc)
            log.warning("capture incomplete", account=settings.id, run_id=run_id, reason=reason)
        except ArchiverError as exc:
            status, reason = "failed", str(exc)
            log.error("capture failed", account=settings.id, run_id=run_id, reason=reason)
            raise
        finally:
            close = getattr(getattr(run, "source", None), "close", None)
            if close is not None:
                close()
            run.register_pending()
            self._finish(run, status, reason)
            lease.release(self.catalog, settings.id, generation)
        return RunResult(run_id, settings.id, status, reason, run.stats.as_dict())

    def roll_parquet(self, account_id: str | None = None) -> list[Rolled]:
        """Roll the partitions that are due into Parquet files.

        An import from an export archive is one large batch, so its rows are rolled at once
        instead of waiting for ``[parquet] max_age``.
        """
        force = account_id is not None and self.config.account(account_id).archive is not None
        return roll(
            self.catalog,
            self.store,
            self.config.spool.path,
            min_rows=self.config.parquet.min_rows,
            max_age=self.config.parquet.max_age,
            force=force,
            clock=self.clock,
        )

    def _make_client(self, connector_cls: Any, settings: AccountSettings, sink: PageSink) -> Any:
        """What the connector reads through: an archiving HTTP client or an export archive."""
        if getattr(connector_cls, "source", "api") == "export":
            if settings.archive is None:
                raise ConfigError(
                    f"accounts.{settings.id}: platform {settings.platform!r} imports an export "
                    "archive; set `archive` to its path"
                )
            return open_export(settings.archive, sink=sink)
        return ArchivingHttpClient(
            sink,
            policy=policy_for(getattr(connector_cls, "rate_limit", "default")),
            settings=self.config.http,
            transport=self.transport,
        )

    def _ensure_account(self, settings: AccountSettings, now: datetime) -> None:
        # A capture of an account the daemon never registered (``archiver capture`` first).
        ensure_registered(self.catalog, settings, f"{self.config.archiver.node}:{os.getpid()}", now)

    def _start_run(self, account_id: str, generation: int, now: datetime) -> int:
        with self.catalog.session() as s:
            run = CaptureRun(
                account_id=account_id,
                node=self.config.archiver.node,
                started_at=now,
                status="running",
                lease_generation=generation,
                stats={},
            )
            s.add(run)
            s.flush()
            return run.id

    def _finish(self, run: _Run, status: str, reason: str | None) -> None:
        closed_ok = True
        try:
            for closed in run.pool.close_all():
                self.spool.store_closed(closed)
        except ArchiverError as exc:
            closed_ok = False
            log.error("closing the run's WARC files failed; they stay in the spool", error=str(exc))
        with self.catalog.session() as s:
            row = s.get(CaptureRun, run.run_id)
            assert row is not None
            row.finished_at = self.clock()
            row.status = status
            row.reason = (
                reason if closed_ok else f"{reason or ''}; WARC files left in the spool".strip("; ")
            )
            row.stats = run.stats.as_dict()
            acct = s.get(Account, run.settings.id)
            if acct is not None and status == "complete":
                acct.last_success_at = row.finished_at
                if run.full_walk:
                    acct.last_full_walk_at = row.started_at


class _Run:
    """The state of one run; the page loop and its commits."""

    def __init__(
        self,
        runner: CaptureRunner,
        settings: AccountSettings,
        run_id: int,
        generation: int,
        pool: WriterPool,
        progress: Callable[[RunStats], None] | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.runner = runner
        self.stop = stop
        self.settings = settings
        self.run_id = run_id
        self.generation = generation
        self.pool = pool
        self.progress = progress
        self.stats = RunStats()
        self.full_walk = False
        self.seen: set[str] = set()
        self.captured_at = runner.clock()
        self.exchange_partition = Partition(
            settings.series, settings.id, period_of(self.captured_at)
        )
        self.sink = PageSink(pool, self.exchange_partition)
        with runner.catalog.reader() as s:
            self.assigner = Assigner.of(runner.config, runner.schedules, s)

    @property
    def catalog(self) -> Catalog:
        return self.runner.catalog

    def execute(self, full_walk: bool | None) -> tuple[str, str | None]:
        connector_cls = load_connector(self.settings.platform)
        info = AccountInfo(
            id=self.settings.id,
            platform=self.settings.platform,
            handle=self.settings.handle,
            platform_id=self.settings.platform_id,
            api_base=self.settings.api_base,
            options=dict(self.settings.options),
            credentials=dict(self.settings.credentials),
        )
        source = self.runner._make_client(connector_cls, self.settings, self.sink)
        self.source = source
        connector = connector_cls(info, source)
        self.media = MediaFetcher(self.runner.config, self.catalog, self.pool, source)
        checkpoint, plan = self._plan(connector_cls, full_walk)
        status = connector.check_account()
        self._record_account_status(status)
        if status.state is AccountState.UNAVAILABLE:
            return "unavailable", f"account unavailable: {status.reason or 'no reason given'}"
        page: list[Item] = [status.profile] if status.profile is not None else []
        stream = connector.capture(checkpoint, plan)
        for out in stream:
            if isinstance(out, Checkpoint):
                self._commit_page(page, out)
                page = []
                if self.stopping:
                    getattr(stream, "close", lambda: None)()
                    return "interrupted", STOPPED_REASON
            else:
                page.append(out)
        if page:
            self._commit_page(page, None)
        if self.stopping or not self._check_missing(connector, plan):
            return "interrupted", STOPPED_REASON
        return "complete", None

    def _fence(self, s: Session) -> None:
        """In the commit's transaction: renew the lease for ``[daemon] lease_ttl``, or raise."""
        ttl = self.runner.config.daemon.lease_ttl
        lease.fence(s, self.settings.id, self.generation, self.runner.clock(), ttl)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _plan(
        self, connector_cls: Any, full_walk: bool | None
    ) -> tuple[Checkpoint | None, CapturePlan]:
        now = self.captured_at
        with self.catalog.reader() as s:
            acct = s.get(Account, self.settings.id)
            last_walk = acct.last_full_walk_at if acct is not None else None
            row = s.scalars(
                select(CheckpointRow)
                .where(CheckpointRow.account_id == self.settings.id)
                .order_by(CheckpointRow.id.desc())
                .limit(1)
            ).first()
            threads: list[str] = []
            if self.settings.rescan_days > 0:
                since = now - timedelta(days=self.settings.rescan_days)
                threads = list(
                    s.scalars(
                        select(ItemRow.platform_item_id)
                        .where(
                            ItemRow.account_id == self.settings.id,
                            ItemRow.kind == ItemKind.POST.value,
                            ItemRow.state != "deleted",
                            ItemRow.disposed_at.is_(None),
                            ItemRow.created_at >= since,
                        )
                        .order_by(ItemRow.created_at.desc())
                    )
                )
        checkpoint = None
        if row is not None and row.version == getattr(connector_cls, "checkpoint_version", None):
            checkpoint = Checkpoint(version=row.version, state=row.state, stream=row.stream)
        if full_walk is None:
            full_walk = last_walk is None or now - last_walk >= timedelta(
                days=self.settings.full_walk_days
            )
        self.full_walk = full_walk
        return checkpoint, CapturePlan(rescan_threads=tuple(threads), full_walk=full_walk)

    def _record_account_status(self, status: Any) -> None:
        if status.state is AccountState.UNAVAILABLE:
            body = canonical_json(
                {
                    "account": self.settings.id,
                    "state": status.state.value,
                    "reason": status.reason,
                    "seen_at": self.captured_at.isoformat(),
                }
            )
            self.sink.append(
                metadata_record(
                    f"urn:archiver:account:{self.settings.id}", body, refers_to=status.evidence
                )
            )
        self.pool.sync()
        with self.catalog.session() as s:
            register_records(s, self.sink.take(), run_id=self.run_id)
            acct = s.get(Account, self.settings.id)
            assert acct is not None
            acct.status = "ok" if status.state is AccountState.REACHABLE else "unavailable"
            acct.status_reason = status.reason
            self._fence(s)

    # -- one page ------------------------------------------------------------------------

    def _commit_page(self, items: list[Item], checkpoint: Checkpoint | None) -> None:
        known = self._known(items)
        observed: list[_Observed] = []
        item_pointers: list[RecordPointer] = []
        moves: list[Move] = []
        for item in items:
            self.seen.add(item.item_id)
            self.stats.items_seen += 1
            prior = known.get(item.item_id)
            if prior is not None and prior.disposed:
                # Destroyed under its schedule, with a certificate: what the platform still
                # shows of it is past retention too, and capturing it again would bring back
                # what the certificate says is gone. Its stub stays as it is.
                self.stats.disposed_seen += 1
                continue
            decision = decide(item, prior.known if prior is not None else None)
            self.stats.count(decision.change)
            partition = Partition(
                self.settings.series,
                self.settings.id,
                period_of(item.created_at or self.captured_at),
            )
            obs = _Observed(item, partition, decision)
            if decision.new_version:
                # A new item, or a new state of a known one: (re)assign its series. Its
                # records go to the partition of that series for its creation month.
                obs.assignment = self._assign(item, prior, decision)
                period = _period(prior.partition) if prior is not None else None
                partition = obs.partition = Partition(
                    obs.assignment.series, self.settings.id, period or partition.period
                )
                if prior is not None and obs.assignment.series != prior.series:
                    moves.append(self._move(prior, item, obs.assignment))
                obs.media = [self.media.store(ref, partition, self.stats) for ref in item.media]
                version_no = prior.versions + 1 if prior is not None else 1
                doc = item.document(
                    captured_at=self.captured_at, account=self.settings.id, version_no=version_no
                )
                doc["change"] = decision.change.value
                obs.content_sha256 = doc["content_sha256"]
                doc["media_sha256"] = [m.sha256 for m in obs.media]
                target = item.permalink or f"urn:archiver:item:{item.platform}:{item.item_id}"
                # A platform that echoes one of our tokens must not get it into the archive.
                body = scrub_registered(canonical_json(doc).decode()).encode()
                obs.version = self.pool.append(
                    partition, conversion_record(target, body, refers_to=item.evidence)
                )
                item_pointers.append(obs.version)
                if decision.change in (Change.HIDDEN, Change.UNHIDDEN, Change.REAPPEARED):
                    obs.state_note = self.pool.append(
                        partition,
                        metadata_record(
                            target,
                            canonical_json(
                                {
                                    "item": item.item_id,
                                    "change": decision.change.value,
                                    "why": decision.why,
                                    "seen_at": self.captured_at.isoformat(),
                                    "moderation": item.moderation.value,
                                }
                            ),
                            refers_to=obs.version.record_id,
                        ),
                    )
                    item_pointers.append(obs.state_note)
                item_pointers.extend(p for m in obs.media for p in m.pointers)
            observed.append(obs)
        self.pool.sync()  # the write order: records durable before the rows that point to them
        with self.catalog.session() as s:
            if moves:
                self._record_moves(s, moves)
            register_records(s, [*self.sink.take(), *item_pointers], run_id=self.run_id)
            version_ids = self._apply(s, observed)
            # The search index, in the transaction that writes the versions.
            index_versions(s, version_ids)
            index_session(s)
            if checkpoint is not None:
                s.add(
                    CheckpointRow(
                        run_id=self.run_id,
                        account_id=self.settings.id,
                        stream=checkpoint.stream,
                        version=checkpoint.version,
                        state=dict(checkpoint.state),
                        created_at=self.runner.clock(),
                    )
                )
            run = s.get(CaptureRun, self.run_id)
            assert run is not None
            self.stats.pages += 1
            run.stats = self.stats.as_dict()
            self._fence(s)
        if self.progress is not None:
            self.progress(self.stats)

    def _known(self, items: list[Item]) -> dict[str, _Prior]:
        ids = [i.item_id for i in items]
        if not ids:
            return {}
        with self.catalog.reader() as s:
            rows = s.execute(
                select(
                    ItemRow.platform_item_id,
                    ItemRow.id,
                    ItemRow.content_sha256,
                    ItemRow.state,
                    ItemRow.versions,
                    ItemRow.series,
                    ItemRow.partition,
                    ItemRow.first_captured_at,
                    ItemRow.disposed_at,
                ).where(ItemRow.account_id == self.settings.id, ItemRow.platform_item_id.in_(ids))
            ).all()
        return {
            r.platform_item_id: _Prior(
                r.id,
                Known(r.content_sha256 or "", r.state),
                r.versions,
                r.series,
                r.partition,
                r.first_captured_at,
                r.disposed_at is not None,
            )
            for r in rows
        }

    # -- series assignment ---------------------------------------------------------------

    def _assign(self, item: Item, prior: _Prior | None, decision: Decision) -> Assignment:
        """The item's series in the state this version puts it in (a pure function call)."""
        facts = ItemFacts(
            item_id=prior.id if prior is not None else 0,
            account=self.settings.id,
            kind=item.kind.value,
            state=state_after(
                decision.change, prior.known.state if prior else None, item.moderation
            ),
            created_at=item.created_at,
            captured_at=prior.first_captured_at if prior is not None else self.captured_at,
            series=prior.series if prior is not None else self.settings.series,
        )
        return self.assigner.assign(facts, self.settings.series)

    def _move(self, prior: _Prior, item: Item, assignment: Assignment) -> Move:
        return Move(
            item_id=prior.id,
            account=self.settings.id,
            platform_item_id=item.item_id,
            kind=item.kind.value,
            created_at=item.created_at,
            from_series=prior.series,
            to_series=assignment.series,
            rule=assignment.rule,
            why=assignment.why,
        )

    def _record_moves(self, s: Session, moves: list[Move]) -> None:
        """The moves' control fact and audit entry, in the page's transaction (before its
        commit: a crash in between leaves a fact the next rebuild applies, no lost move)."""
        record_moves(
            self.runner.store,
            s,
            moves,
            cause="capture",
            actor=self.runner.actor,
            info=self.runner.warc_info,
            at=self.runner.clock(),
            tmp_dir=self.runner.config.spool.path,
            subject=self.settings.id,
            detail={
                "run_id": self.run_id,
                "changes": [
                    {"item": m.platform_item_id, "from": m.from_series, "to": m.to_series}
                    for m in moves
                ],
            },
        )
        for move in moves:
            log.info(
                "item moved to another series",
                account=move.account,
                item=move.platform_item_id,
                series_from=move.from_series,
                series_to=move.to_series,
                rule=move.rule,
            )

    def _apply(self, s: Session, observed: list[_Observed]) -> list[int]:
        """Write the page's item, version and media-link rows; the ids of the new versions.

        A handful of statements per page, whatever its size: the page's items are read once,
        new ones inserted and changed ones updated in bulk, versions inserted in bulk.
        """
        now = self.captured_at
        rows = self._page_rows(s, [obs.item.item_id for obs in observed])
        touched: dict[str, dict[str, Any]] = {}
        versions: list[tuple[dict[str, Any], _Observed, dict[str, Any]]] = []
        for obs in observed:
            item = obs.item
            row = rows.get(item.item_id)
            if row is None:
                row = rows[item.item_id] = {
                    "id": None,
                    "account_id": self.settings.id,
                    "platform_item_id": item.item_id,
                    "kind": item.kind.value,
                    "series": obs.assignment.series if obs.assignment else self.settings.series,
                    "series_rule": None,
                    "first_captured_at": now,
                    "versions": 0,
                    "partition": obs.partition.name,
                    "state": None,
                    "state_changed_at": None,
                    "parent_id": None,
                    **dict.fromkeys(_VERSIONED_COLUMNS),
                }
            touched[item.item_id] = row
            row["last_seen_at"] = now
            if obs.version is None:
                continue
            if obs.assignment is not None:
                row["series"] = obs.assignment.series
                row["series_rule"] = obs.assignment.rule
            row["versioned"] = True
            row["permalink"] = item.permalink
            row["author"] = item.author_handle or item.author_name or item.author_id
            row["created_at"] = item.created_at
            row["edited_at"] = item.edited_at
            row["text"] = item.text
            row["platform_parent_id"] = item.parent_id
            row["thread_id"] = item.thread_id
            row["content_sha256"] = obs.content_sha256
            new_state = state_after(obs.decision.change, row["state"], item.moderation)
            if new_state != row["state"]:
                row["state_changed_at"] = now
            row["state"] = new_state
            row["versions"] = (row["versions"] or 0) + 1
            version = {
                "version_no": row["versions"],
                "content_sha256": row["content_sha256"],
                "captured_at": now,
                "run_id": self.run_id,
                "change": obs.decision.change.value,
                "warc_file_id": obs.version.file_id,
                "warc_offset": obs.version.offset,
                "warc_length": obs.version.length,
                "warc_record_id": obs.version.record_id,
                "partition": obs.partition.name,
                "text": item.text,
            }
            versions.append((row, obs, version))
        self._write_items(s, list(touched.values()))
        version_ids: list[int] = []
        if versions:
            for _row, _obs, version in versions:
                version["item_id"] = _row["id"]
            # Ids matched by key, not by order: RETURNING in parameter order makes SQLite's
            # dialect insert row by row; this is one multi-row INSERT per thousand rows.
            returned = s.execute(
                insert(_VERSIONS).returning(
                    _VERSIONS.c.id, _VERSIONS.c.item_id, _VERSIONS.c.version_no
                ),
                [v for _r, _o, v in versions],
            )
            by_key = {(item_id, no): version_id for version_id, item_id, no in returned}
            version_ids = [by_key[(v["item_id"], v["version_no"])] for _r, _o, v in versions]
        links = []
        for version_id, (_row, obs, _version) in zip(version_ids, versions, strict=True):
            for position, (ref, media) in enumerate(zip(obs.item.media, obs.media, strict=True)):
                media_row = media.upsert(s, now)
                links.append(
                    {
                        "version_id": version_id,
                        "position": position,
                        "media_id": media_row.id if media_row is not None else None,
                        "platform_media_id": ref.media_id,
                        "alt_text": ref.alt_text,
                        "status": media.status,
                        "detail": media.detail,
                    }
                )
        if links:
            s.execute(insert(_ITEM_MEDIA), links)
        self._link_parents(s, touched)
        return version_ids

    def _page_rows(self, s: Session, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The catalog rows of a page's items (what :meth:`_apply` reads and may change)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(item_ids))
        for i in range(0, len(unique), _IN_CHUNK):
            result = s.execute(
                select(*(_ITEMS.c[c] for c in _PAGE_ROW_COLUMNS)).where(
                    _ITEMS.c.account_id == self.settings.id,
                    _ITEMS.c.platform_item_id.in_(unique[i : i + _IN_CHUNK]),
                )
            )
            for r in result.mappings():
                found[r["platform_item_id"]] = dict(r)
        return found

    def _write_items(self, s: Session, rows: list[dict[str, Any]]) -> None:
        """Insert the new items (their ids set in ``rows``) and update the changed ones."""
        new = [r for r in rows if r["id"] is None]
        if new:
            for r in new:
                r["state"] = r["state"] or "present"
            values = [{c: r[c] for c in _NEW_ITEM_COLUMNS} for r in new]
            returned = s.execute(
                insert(_ITEMS).returning(_ITEMS.c.id, _ITEMS.c.platform_item_id), values
            )
            ids = {platform_id: item_id for item_id, platform_id in returned}
            for r in new:
                r["id"] = ids[r["platform_item_id"]]
                r["inserted"] = True
        old = [r for r in rows if not r.get("inserted")]
        _update_by_id(s, [{c: r[c] for c in _UPDATED_COLUMNS} for r in old if r.get("versioned")])
        _update_by_id(
            s,
            [
                {"id": r["id"], "last_seen_at": r["last_seen_at"]}
                for r in old
                if not r.get("versioned")
            ],
        )

    def _link_parents(self, s: Session, rows: dict[str, dict[str, Any]]) -> None:
        """Point items at their parent's row when the parent is in the catalog."""
        orphans = [r for r in rows.values() if r["platform_parent_id"] and r["parent_id"] is None]
        if not orphans:
            return
        # A reply's parent is mostly on the same page: only the others are looked up.
        parents = {key: r["id"] for key, r in rows.items() if r["id"] is not None}
        wanted = list(
            dict.fromkeys(
                r["platform_parent_id"] for r in orphans if r["platform_parent_id"] not in parents
            )
        )
        for i in range(0, len(wanted), _IN_CHUNK):
            result = s.execute(
                select(_ITEMS.c.platform_item_id, _ITEMS.c.id).where(
                    _ITEMS.c.account_id == self.settings.id,
                    _ITEMS.c.platform_item_id.in_(wanted[i : i + _IN_CHUNK]),
                )
            )
            parents.update((platform_id, row_id) for platform_id, row_id in result)
        _update_by_id(
            s,
            [
                {"id": r["id"], "parent_id": parents[r["platform_parent_id"]]}
                for r in orphans
                if r["platform_parent_id"] in parents
            ],
        )

    # -- deletions -----------------------------------------------------------------------

    def _check_missing(self, connector: Any, plan: CapturePlan) -> bool:
        """Items the run should have seen and did not: ask the platform about each one.

        Returns False when the run was asked to stop before every item was checked.
        """
        with self.catalog.session() as s:
            query = select(
                ItemRow.platform_item_id,
                ItemRow.id,
                ItemRow.kind,
                ItemRow.partition,
                ItemRow.permalink,
                ItemRow.series,
                ItemRow.created_at,
                ItemRow.first_captured_at,
            ).where(
                ItemRow.account_id == self.settings.id,
                ItemRow.state != "deleted",
                ItemRow.disposed_at.is_(None),
                ItemRow.kind.in_([ItemKind.POST.value, ItemKind.COMMENT.value]),
            )
            if not plan.full_walk:
                if not plan.rescan_threads:
                    return True
                query = query.where(
                    ItemRow.kind == ItemKind.COMMENT.value,
                    ItemRow.thread_id.in_(list(plan.rescan_threads)),
                )
            missing = [r for r in s.execute(query).all() if r[0] not in self.seen]
        for item_id, row_id, kind, partition_name, permalink, series, created, first in missing:
            if self.stopping:
                self._flush_sink()
                return False
            check = connector.check_item(item_id, ItemKind(kind))
            if check.status is not ItemStatus.NOT_FOUND:
                if check.status is ItemStatus.UNKNOWN:
                    self.stats.checks_unknown += 1
                    log.info(
                        "missing item could not be confirmed", item=item_id, detail=check.detail
                    )
                continue
            # Deleted is a state of its own: the item may now belong to another series.
            assignment = self.assigner.assign(
                ItemFacts(row_id, self.settings.id, kind, "deleted", created, first, series),
                self.settings.series,
            )
            partition = Partition(
                assignment.series,
                self.settings.id,
                _period(partition_name) or self.exchange_partition.period,
            )
            move = None
            if assignment.series != series:
                move = Move(
                    row_id,
                    self.settings.id,
                    item_id,
                    kind,
                    created,
                    series,
                    assignment.series,
                    assignment.rule,
                    assignment.why,
                )
            target = permalink or f"urn:archiver:item:{self.settings.platform}:{item_id}"
            note = self.pool.append(
                partition,
                metadata_record(
                    target,
                    canonical_json(
                        {
                            "item": item_id,
                            "change": "deleted",
                            "seen_at": self.captured_at.isoformat(),
                            "why": "the platform answered item-level not-found",
                            "detail": check.detail,
                        }
                    ),
                    refers_to=check.evidence,
                ),
            )
            self.pool.sync()
            with self.catalog.session() as s:
                if move is not None:
                    self._record_moves(s, [move])
                register_records(s, [*self.sink.take(), note], run_id=self.run_id)
                row = s.scalars(
                    select(ItemRow).where(
                        ItemRow.account_id == self.settings.id, ItemRow.platform_item_id == item_id
                    )
                ).one()
                row.series = assignment.series
                row.series_rule = assignment.rule
                row.state = "deleted"
                row.state_changed_at = self.captured_at
                row.versions += 1
                s.add(
                    ItemVersion(
                        item_id=row.id,
                        version_no=row.versions,
                        content_sha256=row.content_sha256 or "",
                        captured_at=self.captured_at,
                        run_id=self.run_id,
                        change=Change.DELETED.value,
                        warc_file_id=note.file_id,
                        warc_offset=note.offset,
                        warc_length=note.length,
                        warc_record_id=note.record_id,
                        partition=partition.name,
                        text=row.text,
                    )
                )
                index_session(s)
                self._fence(s)
            self.stats.deleted += 1
        self._flush_sink()
        return True

    def register_pending(self) -> None:
        """Register the exchanges of a page the run did not commit (it stopped or failed).

        The answers a run gave up on (a 429 storm, a malformed page) are in its WARC: they
        are evidence of what the platform said and must be findable, not orphans. If the
        catalog itself is what failed, ``catalog rebuild`` finds them in the stored file.
        """
        try:
            self._flush_sink()
        except (ArchiverError, OSError, SQLAlchemyError) as exc:
            log.error(
                "the run's last exchanges could not be registered in the catalog; they are in "
                "its WARC file, and `archiver catalog rebuild` registers them",
                account=self.settings.id,
                run_id=self.run_id,
                error=str(exc),
            )

    def _flush_sink(self) -> None:
        """Commit the exchanges written since the last commit (the item checks' evidence)."""
        if self.sink.pointers:
            self.pool.sync()
            with self.catalog.session() as s:
                register_records(s, self.sink.take(), run_id=self.run_id)
