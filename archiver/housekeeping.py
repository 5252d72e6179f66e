"""The daemon's housekeeping: Parquet rolls, store retries, fixity, spool clean-up, anchors,
disposition reports.

Each method is one scheduler job; none raises (a failure is logged and shown in the
heartbeat), so a broken store or a full disk never ends the daemon.

WARC files need no job of their own here: a capture run closes, verifies and stores its
files when it ends, and rotates them by size while it runs. What a store outage leaves
behind is a closed file waiting in the spool: :meth:`Housekeeping.retry_stores` puts those
into the store, backing off while the store keeps failing.

The disposition job (:meth:`Housekeeping.disposition_report`, every ``[retention]
report_every``) only *reports* what is eligible for disposition, for a records officer to
review: it never destroys anything. Disposition is ``archiver retention dispose``, run by an
officer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from archiver import audit, clock, fixity, holds, parquet
from archiver.catalog.db import Catalog
from archiver.config import Config
from archiver.disposition import report
from archiver.errors import ArchiverError
from archiver.evaluate import load_context
from archiver.logging import get_logger
from archiver.series import load_schedules
from archiver.spool import Spool
from archiver.store.base import LAYOUT_KEY, Store

log = get_logger(__name__)

#: How often closed files waiting in the spool are looked at (and the store probed).
STORE_RETRY_EVERY = timedelta(seconds=30)
#: The first wait after a failed store attempt; it doubles up to ``[daemon] retry_after``.
STORE_BACKOFF = timedelta(seconds=30)
#: How often Parquet partitions are checked for a roll (captures roll after each run too).
ROLL_EVERY = timedelta(minutes=15)
#: How often, and past which age, stray temporary files are removed from the spool.
CLEAN_EVERY = timedelta(hours=6)
#: How often the store's legal holds are brought in line with the active holds, so the files
#: of items captured after a hold was placed are held too.
HOLD_SYNC_EVERY = timedelta(minutes=15)
STRAY_AGE = timedelta(days=1)

Clock = Callable[[], datetime]

_FAILURES = (ArchiverError, SQLAlchemyError, OSError)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class StoreHealth:
    """Whether the store took the last attempt, and when the next one is due."""

    ok: bool = True
    error: str | None = None
    failures: int = 0
    next_try: datetime | None = None
    waiting: int = 0

    def as_detail(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "waiting_files": self.waiting,
            "next_retry": None if self.next_try is None else self.next_try.isoformat(),
        }


class Housekeeping:
    """The periodic jobs of one daemon, on its configuration, catalog and store."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        store: Store,
        *,
        clock: Clock = _utcnow,
        stopping: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.stopping = stopping or threading.Event()
        self.catalog = catalog
        self.store = store
        self.clock = clock
        self.spool = Spool(
            config.spool.path, store, catalog, max_bytes=config.spool.max_bytes, clock=clock
        )
        self.store_health = StoreHealth()
        self._lock = threading.Lock()
        self._roll_lock = threading.Lock()

    # -- Parquet ---------------------------------------------------------------------------

    def roll_parquet(self, *, force: bool = False) -> list[parquet.Rolled]:
        """Roll the partitions that are due (all with ``force``); one roll at a time."""
        with self._roll_lock:
            try:
                return parquet.roll(
                    self.catalog,
                    self.store,
                    self.config.spool.path,
                    min_rows=self.config.parquet.min_rows,
                    max_age=self.config.parquet.max_age,
                    force=force,
                    clock=self.clock,
                )
            except _FAILURES as exc:
                log.error("parquet roll failed; it is tried again later", error=str(exc))
                return []

    # -- the store -------------------------------------------------------------------------

    def retry_stores(self) -> list[str]:
        """Store the closed files waiting in the spool, backing off while the store fails."""
        now = self.clock()
        with self._lock:
            health = self.store_health
            if health.next_try is not None and now < health.next_try:
                return []
        try:
            self.store.exists(LAYOUT_KEY)  # a probe: is the store there at all?
            stored = self.spool.store_waiting(stop=self.stopping)
        except _FAILURES as exc:
            self._store_failed(now, exc)
            return []
        waiting = self.spool.state().waiting_files
        with self._lock:
            if not self.store_health.ok:
                log.info("store reachable again", stored=len(stored), waiting=waiting)
            self.store_health = StoreHealth(waiting=waiting)
        if stored:
            log.info("waiting spool files stored", files=stored)
        return stored

    def _store_failed(self, now: datetime, exc: BaseException) -> None:
        with self._lock:
            health = self.store_health
            failures = health.failures + 1
            delay = min(STORE_BACKOFF * 2 ** (failures - 1), self.config.daemon.retry_after)
            self.store_health = StoreHealth(
                ok=False,
                error=str(exc) or type(exc).__name__,
                failures=failures,
                next_try=now + delay,
                waiting=self._waiting(),
            )
        log.error(
            "store unavailable; closed WARC files stay in the spool",
            error=str(exc),
            failures=failures,
            retry_in_seconds=delay.total_seconds(),
        )

    def _waiting(self) -> int:
        try:
            return self.spool.state().waiting_files
        except OSError:
            return 0

    def store_detail(self) -> dict[str, Any]:
        with self._lock:
            return self.store_health.as_detail()

    def spool_detail(self) -> dict[str, Any]:
        try:
            state = self.spool.state()
        except OSError as exc:
            return {"error": str(exc)}
        return {
            "path": str(state.path),
            "open_files": state.open_files,
            "waiting_files": state.waiting_files,
            "damaged_files": state.damaged_files,
            "bytes": state.bytes,
            "max_bytes": state.max_bytes,
        }

    # -- fixity, clean-up, anchors ---------------------------------------------------------

    def fixity(self) -> list[fixity.FixityResult]:
        """Re-hash ``[daemon] fixity_sample`` random stored files and record each outcome."""
        results: list[fixity.FixityResult] = []
        try:
            for file_id in fixity.sample(self.catalog, self.config.daemon.fixity_sample):
                if self.stopping.is_set():
                    break
                results.append(
                    fixity.verify_file(self.catalog, self.store, file_id, clock=self.clock)
                )
        except _FAILURES as exc:
            log.error("fixity sampling failed; it is tried again later", error=str(exc))
        return results

    def clean_spool(self) -> list[str]:
        """Remove temporary files a crash left in the spool, once they are a day old."""
        try:
            return self.spool.clean_stray(STRAY_AGE)
        except OSError as exc:
            log.error("spool clean-up failed", error=str(exc))
            return []

    def anchor(self) -> str | None:
        """Write the audit chain's head to the store (nothing if it is anchored already)."""
        try:
            return audit.anchor_head(
                self.catalog,
                self.store,
                node=self.config.archiver.node,
                tmp_dir=self.config.spool.path,
                clock=self.clock,
            )
        except _FAILURES as exc:
            log.error("anchoring the audit head failed; it is tried again later", error=str(exc))
            return None

    # -- holds ------------------------------------------------------------------------------

    def sync_holds(self) -> holds.SyncReport | None:
        """Put legal holds on every stored file an active hold needs, lift them elsewhere."""
        try:
            result = holds.sync_legal_holds(
                self.catalog,
                self.store,
                clock.now(),
                actor=f"archiver@{self.config.archiver.node}",
            )
        except _FAILURES as exc:
            log.error("legal-hold sync failed; it is tried again later", error=str(exc))
            return None
        if result.failed:
            log.error("the store refused some legal holds", files=len(result.failed))
        return result

    # -- disposition reports ---------------------------------------------------------------

    def disposition_report(self) -> str | None:
        """Make a disposition report of what is eligible now; never disposes of anything.

        Nothing is stored when no item is eligible or waiting for notice. Returns the
        report's id, or None.
        """
        try:
            schedules = load_schedules(self.config.retention.schedules_dir)
            now = clock.now()
            # Evaluated in a reader (captures go on meanwhile), stored in a short transaction.
            with self.catalog.reader() as s:
                ctx = load_context(s, self.config, schedules)
                computed = report.compute_report(s, ctx, now)
            totals = computed.summary["totals"]
            if not totals["eligible"]["items"] and not totals["awaiting_notice"]["items"]:
                log.info("disposition report: nothing is eligible for disposition")
                return None
            with self.catalog.session() as s:
                report_id = report.store_report(
                    s,
                    computed,
                    f"archiver@{self.config.archiver.node}",
                    self.config.retention.report_ttl,
                )
        except _FAILURES as exc:
            log.error("the disposition report failed; it is tried again later", error=str(exc))
            return None
        log.info(
            "disposition report made; an officer reviews it with `archiver retention reports`",
            report=report_id,
            eligible=totals["eligible"]["items"],
            awaiting_notice=totals["awaiting_notice"]["items"],
        )
        return report_id
