"""``archiver run``: start-up, the heartbeat, and a clean shutdown.

Start-up migrates the catalog (under its lock), initialises or checks the store's layout
version, finishes whatever a crash left in the spool, and registers the configured
accounts. Then the daemon beats until SIGTERM or SIGINT, and on the way out anchors the
audit chain's head in the store. Scheduled captures join this loop with issue 4.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from archiver import __version__, audit
from archiver.app import App
from archiver.capture import CaptureRunner
from archiver.catalog import upgrade
from archiver.catalog.db import redacted
from archiver.catalog.models import Account, Heartbeat
from archiver.errors import ArchiverError
from archiver.logging import get_logger
from archiver.spool import RecoveryReport, Spool
from archiver.store import ensure_layout

log = get_logger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=30)
ANCHOR_EVERY = timedelta(hours=1)
RETRY_AFTER = timedelta(minutes=15)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Started:
    """What start-up found and did, for the log and the first heartbeat."""

    schema: str | None
    layout: int
    recovery: RecoveryReport


class Daemon:
    """The long-running archiver process of one node."""

    def __init__(self, app: App, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.app = app
        self.clock = clock
        self.stopping = threading.Event()
        self.started_at = clock()
        self._last_anchor = self.started_at
        self._attempted: dict[str, datetime] = {}

    def start(self) -> Started:
        cfg = self.app.config
        state = upgrade(self.app.catalog)
        layout = ensure_layout(self.app.store, create=True)
        spool = Spool(
            cfg.spool.path, self.app.store, self.app.catalog, max_bytes=cfg.spool.max_bytes
        )
        recovery = spool.recover()
        self._register_accounts()
        self._beat("running", {"recovered_files": len(recovery.files), "orphans": recovery.orphans})
        self.app.record(
            "daemon.start",
            subject=cfg.archiver.node,
            detail={"pid": os.getpid(), "version": __version__, "schema": state.current},
        )
        log.info(
            "archiver running",
            node=cfg.archiver.node,
            catalog=redacted(self.app.catalog.engine.url),
            store=self.app.store.describe(),
            spool=str(cfg.spool.path),
            accounts=len(cfg.accounts),
            recovered_files=len(recovery.files),
            orphan_records=recovery.orphans,
            set_aside=len(recovery.damaged),
        )
        return Started(state.current, layout, recovery)

    def _register_accounts(self) -> None:
        now = self.clock()
        with self.app.catalog.session() as session:
            for acct in self.app.config.accounts:
                row = session.get(Account, acct.id)
                if row is None:
                    row = Account(id=acct.id, created_at=now, status="unknown")
                    session.add(row)
                row.platform = acct.platform
                row.handle = acct.handle
                row.platform_id = acct.platform_id
                row.department = acct.department
                row.series = acct.series
                row.enabled = acct.enabled

    def _beat(self, state: str, detail: dict[str, object] | None = None) -> None:
        """The periodic liveness signal (and a state change)."""
        self._write_heartbeat(state, detail)

    def _note(self, detail: dict[str, object]) -> None:
        """Record what the daemon is doing now (not a beat: liveness is judged by beats)."""
        self._write_heartbeat("running", detail)

    def _write_heartbeat(self, state: str, detail: dict[str, object] | None = None) -> None:
        node = self.app.config.archiver.node
        with self.app.catalog.session() as session:
            row = session.get(Heartbeat, node)
            if row is None:
                row = Heartbeat(node=node, started_at=self.started_at)
                session.add(row)
            row.pid = os.getpid()
            row.version = __version__
            row.started_at = self.started_at
            row.beat_at = self.clock()
            row.state = state
            row.detail = {**(row.detail or {}), **(detail or {})}

    def _anchor(self) -> None:
        audit.anchor_head(
            self.app.catalog,
            self.app.store,
            node=self.app.config.archiver.node,
            tmp_dir=self.app.config.spool.path,
        )
        self._last_anchor = self.clock()

    def due_accounts(self) -> list[str]:
        """Enabled accounts whose last good run is older than their schedule.

        Due-ness comes from the catalog, so downtime heals itself: an account whose run was
        missed is due at once after a restart. After a failed or incomplete run an account
        waits ``RETRY_AFTER`` (or its schedule, if shorter) before it is tried again.
        """
        now = self.clock()
        due = []
        with self.app.catalog.session() as session:
            for acct in self.app.config.accounts:
                if not acct.enabled:
                    continue
                row = session.get(Account, acct.id)
                last = row.last_success_at if row is not None else None
                tried = self._attempted.get(acct.id)
                if tried is not None and now - tried < min(acct.schedule, RETRY_AFTER):
                    continue
                if last is None or now - last >= acct.schedule:
                    due.append(acct.id)
        return due

    def capture_due(self) -> None:
        """Capture every due account, one after the other, until asked to stop."""
        runner = CaptureRunner(
            self.app.config,
            self.app.catalog,
            self.app.store,
            self.app.warc_info(),
            clock=self.clock,
        )
        for account_id in self.due_accounts():
            if self.stopping.is_set():
                return
            self._attempted[account_id] = self.clock()
            self._note({"capturing": account_id})
            try:
                result = runner.capture(account_id)
                runner.roll_parquet(account_id)
            except ArchiverError as exc:
                log.error("capture failed", account=account_id, error=str(exc))
                self._note({"capturing": None, "last_error": f"{account_id}: {exc}"})
                continue
            log.info(
                "capture finished",
                account=account_id,
                status=result.status,
                reason=result.reason,
                **result.stats,
            )
            error = None if result.status == "complete" else f"{account_id}: {result.reason}"
            self._note({"capturing": None, "last_error": error})

    def serve(self) -> None:
        """Capture what is due, beat, anchor the audit head now and then; until asked to stop."""
        self.capture_due()
        while not self.stopping.wait(HEARTBEAT_EVERY.total_seconds()):
            self.capture_due()
            self._beat("running")
            if self.clock() - self._last_anchor >= ANCHOR_EVERY:
                self._anchor()

    def stop(self) -> None:
        """Leave cleanly: record the stop, anchor the chain head, mark the heartbeat."""
        self._beat("stopping")
        self.app.record(
            "daemon.stop", subject=self.app.config.archiver.node, detail={"pid": os.getpid()}
        )
        self._anchor()
        self._beat("stopped")
        log.info("archiver stopped", node=self.app.config.archiver.node)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop requested", signal=signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
