"""``archiver run``: start-up, the schedule, systemd notifications, reload and a clean stop.

Start-up migrates the catalog (under its lock), initialises or checks the store's layout
version, finishes whatever a crash left in the spool, releases leases that a dead process
of this node still held, and registers the configured accounts; then it tells systemd
``READY=1``. The scheduler (:mod:`archiver.scheduler`) runs captures and housekeeping on
its threads; the main thread only handles requests and talks to systemd:

- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC``, but only while the scheduler is healthy:
  its thread is alive and its heartbeat job completed within ``STALE_BEATS`` heartbeat
  intervals. A wedged scheduler therefore stops the pings and systemd restarts the service.
- ``STATUS=`` a one-line summary (accounts scheduled, capturing, due; store; last error).
- SIGTERM/SIGINT: ``STOPPING=1``; no new captures; the runs in hand stop at their next
  commit (their WARC files are closed and stored, their checkpoint kept); the audit head is
  anchored; exit 0, all within ``[daemon] stop_timeout``. Past it the process exits anyway
  and start-up recovery finds what the runs left.
- SIGHUP: reload the configuration. A file that does not validate is refused (logged) and
  the running schedule is kept; a good one rebuilds the account jobs.
- SIGUSR1 (diagnostic): wedge the heartbeat job on purpose, to check that systemd's
  watchdog restarts the service. Nothing else changes; SIGTERM still stops cleanly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from archiver import __version__, sdnotify
from archiver.app import App
from archiver.capture import CaptureRunner
from archiver.catalog import upgrade
from archiver.catalog.db import redacted
from archiver.catalog.models import Heartbeat
from archiver.config import Config, load_config
from archiver.disposition.execute import resume_unfinished
from archiver.errors import ArchiverError, ConfigError
from archiver.housekeeping import (
    CLEAN_EVERY,
    HOLD_SYNC_EVERY,
    ROLL_EVERY,
    STORE_RETRY_EVERY,
    Housekeeping,
)
from archiver.lease import LeaseHeldError
from archiver.logging import get_logger
from archiver.scheduler import HEARTBEAT, Scheduler
from archiver.spool import RecoveryReport, Spool
from archiver.startup import register_accounts, release_dead_leases
from archiver.store import ensure_layout

log = get_logger(__name__)

#: The watchdog is fed while the heartbeat job completed within this many intervals.
STALE_BEATS = 3
#: How often the main thread wakes to handle requests (at most; sooner for the watchdog).
TICK = 1.0
#: Of ``stop_timeout``, what is kept for anchoring and the last heartbeat after the runs.
FINISH_SHARE = 0.2
#: Sections whose changes a reload cannot apply (the parts built from them stay).
RESTART_SECTIONS = (
    "archiver",
    "catalog",
    "store",
    "spool",
    "warc",
    "http",
    "parquet",
    "daemon",
    "logging",
)

_FAILURES = (ArchiverError, SQLAlchemyError, OSError)


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
        self.config: Config = app.config
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.wedged = threading.Event()
        self.started_at = clock()
        self.scheduler: Scheduler | None = None
        self.housekeeping: Housekeeping | None = None
        self._startup: dict[str, Any] = {}
        self._beat_done = time.monotonic()
        self._beat_lock = threading.Lock()
        self._healthy = True
        self._watchdog = sdnotify.watchdog_interval()
        self._next_ping = 0.0
        self._status_sent: str | None = None
        self._reload_error: str | None = None

    # -- start-up --------------------------------------------------------------------------

    def start(self) -> Started:
        """Migrate, check the store, recover the spool, register accounts, build the jobs."""
        cfg = self.config
        catalog = self.app.catalog
        sdnotify.status("starting: checking the store and the catalog schema")
        # First, before anything touches the spool: a wrong endpoint or a missing bucket
        # stops the start with one line, and every file waiting in the spool stays put.
        store = self.app.checked_store()
        state = upgrade(catalog)
        layout = ensure_layout(store, create=True)
        spool = Spool(cfg.spool.path, store, catalog, max_bytes=cfg.spool.max_bytes)
        sdnotify.status("starting: recovering the spool")
        recovery = spool.recover()
        release_dead_leases(catalog, cfg.archiver.node, clock=self.clock)
        register_accounts(catalog, cfg, self.app.actor.display, self.clock())
        self._finish_dispositions()
        self.housekeeping = Housekeeping(
            cfg, catalog, store, clock=self.clock, stopping=self.stopping
        )
        self.scheduler = Scheduler(cfg, catalog, self._capture, clock=self.clock)
        self._build_jobs()
        self._startup = {"recovered_files": len(recovery.files), "orphans": recovery.orphans}
        self._write_heartbeat("running", self.detail())
        self.app.record(
            "daemon.start",
            subject=cfg.archiver.node,
            detail={"pid": os.getpid(), "version": __version__, "schema": state.current},
        )
        log.info(
            "archiver running",
            node=cfg.archiver.node,
            catalog=redacted(catalog.engine.url),
            store=store.describe(),
            spool=str(cfg.spool.path),
            accounts=len(cfg.accounts),
            recovered_files=len(recovery.files),
            orphan_records=recovery.orphans,
            set_aside=len(recovery.damaged),
        )
        return Started(state.current, layout, recovery)

    def _build_jobs(self) -> None:
        assert self.scheduler is not None and self.housekeeping is not None
        d, hk, now = self.config.daemon, self.housekeeping, self.clock()
        self.scheduler.schedule_accounts(self.config)
        self.scheduler.add_job("heartbeat", self.heartbeat, d.heartbeat_every, executor=HEARTBEAT)
        self.scheduler.add_job("store-retry", hk.retry_stores, STORE_RETRY_EVERY)
        self.scheduler.add_job("parquet-roll", hk.roll_parquet, ROLL_EVERY)
        self.scheduler.add_job("audit-anchor", hk.anchor, d.anchor_every)
        self.scheduler.add_job("spool-clean", hk.clean_spool, CLEAN_EVERY, first=now)
        self.scheduler.add_job("hold-sync", hk.sync_holds, HOLD_SYNC_EVERY)
        if d.fixity_sample > 0:
            self.scheduler.add_job("fixity", hk.fixity, d.fixity_every)
        every = self.config.retention.report_every
        if every > timedelta(0):
            self.scheduler.add_job("disposition-report", hk.disposition_report, every)

    def _finish_dispositions(self) -> None:
        """Roll forward a disposition a crash interrupted (its journal says what is left),
        and delete objects that waited for a COMPLIANCE lock now past. Never starts one."""
        sdnotify.status("starting: finishing interrupted dispositions")
        try:
            results = resume_unfinished(self.app)
        except _FAILURES as exc:
            log.error(
                "an interrupted disposition could not be finished; an officer finishes it "
                "with `archiver retention dispose REPORT --resume`",
                error=str(exc),
            )
            return
        for result in results:
            log.info(
                "interrupted disposition finished",
                report=result.report_id,
                run=result.run_id,
                state=result.state,
                certificate=result.certificate_id,
                pending=len(result.pending),
            )

    # -- the jobs --------------------------------------------------------------------------

    def _capture(self, account_id: str) -> tuple[str, str | None]:
        """One capture of one account (a scheduler job), then its Parquet roll."""
        assert self.housekeeping is not None
        config = self.config
        runner = CaptureRunner(
            config, self.app.catalog, self.app.store, self.app.warc_info(), clock=self.clock
        )
        try:
            result = runner.capture(account_id, stop=self.stopping)
        except LeaseHeldError as exc:
            log.info("capture skipped", account=account_id, reason=str(exc))
            return "busy", str(exc)
        except ArchiverError as exc:
            log.error("capture failed", account=account_id, error=str(exc))
            return "failed", str(exc)
        finally:
            self._after_run()
        if result.status != "interrupted":
            archive = any(a.id == account_id and a.archive for a in config.accounts)
            self.housekeeping.roll_parquet(force=archive)
        log.info(
            "capture finished",
            account=account_id,
            status=result.status,
            reason=result.reason,
            **result.stats,
        )
        return result.status, result.reason

    def _after_run(self) -> None:
        """Files the run could not store wait in the spool: try now, which shows an outage."""
        assert self.housekeeping is not None
        try:
            waiting = self.housekeeping.spool.state().waiting_files
        except OSError:
            return
        if waiting:
            self.housekeeping.retry_stores()

    def heartbeat(self) -> None:
        """The heartbeat job: the catalog row ``archiver status`` reads, and proof of life."""
        if self.wedged.is_set():
            log.warning("heartbeat job wedged on request (SIGUSR1); the watchdog is not fed")
            self.stopping.wait()
            return
        with self._beat_lock:  # never after stop() wrote "stopping"
            if self.stopping.is_set():
                return
            try:
                self._write_heartbeat("running", self.detail())
            except _FAILURES as exc:
                log.error("the heartbeat could not be written", error=str(exc))
        self._beat_done = time.monotonic()

    def detail(self) -> dict[str, Any]:
        """The heartbeat row's detail: accounts, store, spool, what start-up recovered."""
        detail: dict[str, Any] = dict(self._startup)
        if self.scheduler is not None:
            detail["accounts"] = self.scheduler.detail()
        if self.housekeeping is not None:
            detail["store"] = self.housekeeping.store_detail()
            detail["spool"] = self.housekeeping.spool_detail()
        if self._reload_error is not None:
            detail["config_error"] = self._reload_error
        return detail

    def _write_heartbeat(self, state: str, detail: dict[str, Any]) -> None:
        """Write this node's heartbeat row; ``detail`` replaces what the last beat said."""
        node = self.config.archiver.node
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
            row.detail = detail

    # -- the main thread -------------------------------------------------------------------

    def serve(self) -> None:
        """Start the scheduler, tell systemd READY=1, then tend requests until asked to stop."""
        if self.stopping.is_set() or self.scheduler is None:
            return
        self.scheduler.start()
        self._status_sent = self.status_line()
        sdnotify.ready(self._status_sent)
        tick = TICK if self._watchdog is None else min(TICK, self._watchdog / 2)
        self.tick()
        while not self.stopping.wait(tick):
            self.tick()

    def tick(self) -> None:
        """One turn of the main loop: reload if asked, feed the watchdog, update STATUS."""
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()
        healthy = self.healthy()
        if healthy != self._healthy:
            self._healthy = healthy
            if healthy:
                log.info("scheduler healthy again; feeding the watchdog")
            else:
                log.error("scheduler unhealthy: its heartbeat job stalled; watchdog not fed")
        now = time.monotonic()
        if self._watchdog is not None and healthy and now >= self._next_ping:
            sdnotify.watchdog()
            self._next_ping = now + self._watchdog
        line = self.status_line()
        if line != self._status_sent:
            sdnotify.status(line)
            self._status_sent = line

    def healthy(self) -> bool:
        """The scheduler runs and its heartbeat job completed recently."""
        if self.scheduler is None or not self.scheduler.alive:
            return False
        stale = STALE_BEATS * self.config.daemon.heartbeat_every.total_seconds()
        return time.monotonic() - self._beat_done <= stale

    def status_line(self) -> str:
        """The one line systemd shows: accounts scheduled, capturing, due; store; errors."""
        if self.stopping.is_set():
            return "stopping"
        if self.scheduler is None or self.housekeeping is None:
            return "starting"
        states, now = self.scheduler.states(), self.clock()
        running = sorted(a for a, s in states.items() if s.running)
        due = [a for a, s in states.items() if not s.running and s.next_run and s.next_run <= now]
        parts = [
            f"{len(states)} accounts scheduled",
            f"{len(running)} capturing" + (f" ({', '.join(running)})" if running else ""),
            f"{len(due)} due",
        ]
        store = self.housekeeping.store_health
        parts.append("store ok" if store.ok else f"store failing ({store.waiting} files waiting)")
        errors = [
            (s.last_run_at or now, a, s.last_error) for a, s in states.items() if s.last_error
        ]
        if errors:
            _, account, error = max(errors)
            parts.append(f"last error {account}: {error}")
        if not store.ok:
            parts.append(f"store error: {store.error}")
        if self._reload_error:
            parts.append(f"config reload refused: {self._reload_error}")
        return "; ".join(parts)[:500]

    def reload(self) -> bool:
        """Reload the configuration; keep the running schedule if the new file is invalid."""
        path = self.app.config_path
        try:
            new = load_config(path)
        except ConfigError as exc:
            self._reload_error = " ".join(exc.message.split())
            log.error(
                "configuration reload refused; the running schedule is kept", error=exc.message
            )
            return False
        changed = [n for n in RESTART_SECTIONS if getattr(new, n) != getattr(self.config, n)]
        if changed:
            log.warning("configuration changes that apply only after a restart", sections=changed)
        config = self.config.model_copy(update={"accounts": new.accounts})
        try:
            register_accounts(self.app.catalog, config, self.app.actor.display, self.clock())
            if self.scheduler is not None:
                self.scheduler.schedule_accounts(config)
        except _FAILURES as exc:
            self._reload_error = str(exc)
            log.error("configuration reload failed; the running schedule is kept", error=str(exc))
            return False
        self.config, self._reload_error = config, None
        try:
            self.app.record(
                "daemon.reload",
                subject=config.archiver.node,
                detail={"accounts": [a.id for a in config.accounts if a.enabled]},
            )
        except _FAILURES as exc:
            log.error("the reload could not be audited", error=str(exc))
        log.info("configuration reloaded", accounts=len(config.accounts), restart_needed=changed)
        return True

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> bool:
        """Stop cleanly within ``stop_timeout``; False if runs were still going at the end."""
        timeout = self.config.daemon.stop_timeout.total_seconds()
        deadline = time.monotonic() + timeout
        self.stopping.set()
        running = self.scheduler.running() if self.scheduler is not None else []
        sdnotify.stopping(f"stopping: {len(running)} capture(s) finishing their page")
        idle = True
        if self.scheduler is not None:
            self.scheduler.stop_jobs()
            idle = self.scheduler.wait_idle(timeout * (1 - FINISH_SHARE))
            if not idle:
                log.warning(
                    "stop timeout reached; the runs left are recovered at the next start",
                    jobs=self.scheduler.busy(),
                    stop_timeout=timeout,
                )
        with self._beat_lock:
            self._record_stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        log.info(
            "archiver stopped",
            node=self.config.archiver.node,
            clean=idle,
            took_seconds=round(timeout - (deadline - time.monotonic()), 2),
        )
        return idle

    def _record_stop(self) -> None:
        """The last heartbeats, the audit entry and the anchored chain head."""
        try:
            self._write_heartbeat("stopping", self.detail())
            self.app.record(
                "daemon.stop", subject=self.config.archiver.node, detail={"pid": os.getpid()}
            )
            if self.housekeeping is not None:
                self.housekeeping.anchor()
            self._write_heartbeat("stopped", self.detail())
        except _FAILURES as exc:
            log.error("the stop could not be recorded", error=str(exc))

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1 wedges the heartbeat (diagnostic).

        The handlers only set flags; the main thread acts on them in :meth:`tick`.
        """

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stop requested", signal=signal.Signals(signum).name)
            self.stopping.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            log.info("configuration reload requested", signal="SIGHUP")
            self.reload_requested.set()

        def wedge(_signum: int, _frame: FrameType | None) -> None:
            log.warning("SIGUSR1: wedging the heartbeat job (watchdog self-test)")
            self.wedged.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        signal.signal(signal.SIGUSR1, wedge)
