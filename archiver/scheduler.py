"""The capture schedule: APScheduler 3.x jobs built from the configuration.

Jobs live in memory only (the default ``MemoryJobStore``): they are rebuilt from the
configuration at every start and every reload, and a job store must never be shared
between schedulers (DESIGN, "Scheduler and daemon"). Each enabled account has one job on
an interval trigger of its ``schedule``, spread by ``[daemon] jitter``, with
``coalesce=True`` (a backlog of missed runs is one run) and ``max_instances=1`` (an
account is never captured twice at once in this process; the catalog lease guards
against other processes and nodes).

Due-ness comes from the catalog, so downtime heals itself: an account whose last
successful run is older than its schedule runs right away, otherwise at the last success
plus its schedule. After a run that did not complete, the account is tried again after
``min(schedule, [daemon] retry_after)``; after a complete one, a schedule later.

Captures run on a thread pool of ``[daemon] workers`` threads; housekeeping jobs on a
small pool of their own and the heartbeat on its own thread, so a long capture never
delays the heartbeat that the systemd watchdog relies on.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, CaptureRun
from archiver.config import AccountSettings, Config
from archiver.errors import ArchiverError
from archiver.logging import get_logger

log = get_logger(__name__)

#: Executors: captures (``[daemon] workers`` threads), housekeeping, and the heartbeat.
CAPTURES, HOUSEKEEPING, HEARTBEAT = "captures", "housekeeping", "heartbeat"
HOUSEKEEPING_THREADS = 2
CAPTURE_PREFIX = "capture:"
#: A job that fires this close before the catalog's due time runs (clocks, rounding).
DUE_TOLERANCE = timedelta(seconds=2)

Clock = Callable[[], datetime]
#: Runs one capture of an account; returns (status, reason) as a capture run records them.
CaptureFn = Callable[[str], tuple[str, str | None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; the catalog stores UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def first_run(now: datetime, last_success: datetime | None, schedule: timedelta) -> datetime:
    """When an account is next due, judged from its last successful run alone."""
    last = _aware(last_success)
    if last is None or now - last >= schedule:
        return now
    return last + schedule


def next_after(
    finished: datetime, status: str, schedule: timedelta, retry_after: timedelta
) -> datetime:
    """When to capture again after a run that ended at ``finished`` with ``status``."""
    if status == "complete":
        return finished + schedule
    return finished + min(schedule, retry_after)


@dataclass(slots=True)
class AccountState:
    """What the heartbeat says about one account."""

    next_run: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_run_at: datetime | None = None
    running: bool = False

    def as_detail(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(UTC).isoformat()

        return {
            "next_run": iso(self.next_run),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_run_at": iso(self.last_run_at),
            "running": self.running,
        }


class Scheduler:
    """The daemon's APScheduler, its account jobs and what they last did."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        capture: CaptureFn,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self._capture = capture
        self._config = config
        self._accounts: dict[str, AccountSettings] = {}
        self._states: dict[str, AccountState] = {}
        self._busy: set[str] = set()  # housekeeping jobs running now
        self._cond = threading.Condition()
        self._stopping = False
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.aps = BackgroundScheduler(
            executors={
                CAPTURES: ThreadPoolExecutor(config.daemon.workers),
                HOUSEKEEPING: ThreadPoolExecutor(HOUSEKEEPING_THREADS),
                HEARTBEAT: ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )

    # -- life cycle ------------------------------------------------------------------------

    def start(self, *, paused: bool = False) -> None:
        self.aps.start(paused=paused)

    @property
    def alive(self) -> bool:
        """The scheduler runs and its thread is alive."""
        thread = getattr(self.aps, "_thread", None)
        return bool(self.aps.running) and thread is not None and thread.is_alive()

    def stop_jobs(self) -> None:
        """Start no more jobs; the ones in hand go on (captures are asked to stop elsewhere)."""
        with self._cond:
            self._stopping = True
        if self.aps.running:
            self.aps.pause()
        for job in self.aps.get_jobs():
            if job.id.startswith(CAPTURE_PREFIX):
                self._remove(job.id)

    def busy(self) -> list[str]:
        """Captures (``capture:<account>``) and housekeeping jobs running now."""
        with self._cond:
            return sorted({*self._busy, *(CAPTURE_PREFIX + a for a in self.running())})

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no capture or housekeeping job runs; False if some still do after
        ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self.busy(), timeout=max(0.0, timeout))

    def shutdown(self) -> None:
        """Stop the scheduler without waiting for job threads (the caller waited already)."""
        if self.aps.running:
            self.aps.shutdown(wait=False)

    # -- jobs ------------------------------------------------------------------------------

    def add_job(
        self,
        name: str,
        func: Callable[[], object],
        every: timedelta,
        *,
        first: datetime | None = None,
        executor: str = HOUSEKEEPING,
    ) -> None:
        """A housekeeping job every ``every``, first at ``first`` (default: after ``every``)."""
        self.aps.add_job(
            self._tracked,
            IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
            args=(name, func),
            id=name,
            name=name,
            executor=executor,
            misfire_grace_time=max(1, int(every.total_seconds())),
            next_run_time=first or self.clock() + every,
            replace_existing=True,
        )

    def schedule_accounts(self, config: Config) -> None:
        """(Re)build the account jobs from ``config``: new, removed and re-timed accounts.

        An account whose schedule is unchanged keeps its job and next run time.
        """
        wanted = {a.id: a for a in config.accounts if a.enabled}
        now = self.clock()
        last, seen = self._from_catalog(wanted)
        with self._cond:
            self._config = config
            old, self._accounts = self._accounts, wanted
            for account_id in set(self._states) - set(wanted):
                if not self._states[account_id].running:  # a run in hand finishes first
                    del self._states[account_id]
            for account_id in wanted:
                self._states.setdefault(account_id, seen.get(account_id) or AccountState())
        for account_id in set(old) - set(wanted):
            self._remove(CAPTURE_PREFIX + account_id)
            log.info("account unscheduled", account=account_id)
        for account_id, acct in wanted.items():
            before = old.get(account_id)
            if before is not None and before.schedule == acct.schedule:
                continue
            when = self._jittered(first_run(now, last.get(account_id), acct.schedule))
            self.aps.add_job(
                self._run_account,
                IntervalTrigger(
                    seconds=acct.schedule.total_seconds(),
                    jitter=config.daemon.jitter.total_seconds(),
                    timezone=UTC,
                ),
                args=(account_id,),
                id=CAPTURE_PREFIX + account_id,
                name=f"capture {account_id}",
                executor=CAPTURES,
                # A late capture is still wanted: run it however late (coalesced to one).
                misfire_grace_time=None,
                next_run_time=when,
                replace_existing=True,
            )
            self._set(account_id, next_run=when)
            log.info("account scheduled", account=account_id, next_run=when.isoformat())

    def _from_catalog(
        self, accounts: Iterable[str]
    ) -> tuple[dict[str, datetime | None], dict[str, AccountState]]:
        """Each account's last good run, and what its latest run did, from the catalog."""
        last: dict[str, datetime | None] = {}
        seen: dict[str, AccountState] = {}
        with self.catalog.reader() as s:
            for account_id in accounts:
                row = s.get(Account, account_id)
                last[account_id] = row.last_success_at if row is not None else None
                latest = s.scalars(
                    select(CaptureRun)
                    .where(CaptureRun.account_id == account_id)
                    .order_by(CaptureRun.id.desc())
                    .limit(1)
                ).first()
                if latest is not None:
                    seen[account_id] = AccountState(
                        last_status=latest.status,
                        last_error=None if latest.status == "complete" else latest.reason,
                        last_run_at=_aware(latest.finished_at or latest.started_at),
                    )
        return last, seen

    def _jittered(self, when: datetime) -> datetime:
        jitter = self._config.daemon.jitter.total_seconds()
        return when + timedelta(seconds=random.uniform(0, jitter))  # noqa: S311 - not security

    def _remove(self, job_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.aps.remove_job(job_id)

    def _set(self, account_id: str, **changes: Any) -> None:
        with self._cond:
            state = self._states.setdefault(account_id, AccountState())
            for name, value in changes.items():
                setattr(state, name, value)
            self._cond.notify_all()

    def _tracked(self, name: str, func: Callable[[], object]) -> None:
        """Run a housekeeping job, known to :meth:`wait_idle`; a failure is logged."""
        with self._cond:
            if self._stopping:
                return
            self._busy.add(name)
        try:
            func()
        except Exception as exc:  # a failed job must not end the schedule
            log.error("scheduled job failed", job=name, error=str(exc) or type(exc).__name__)
        finally:
            with self._cond:
                self._busy.discard(name)
                self._cond.notify_all()

    # -- one capture -----------------------------------------------------------------------

    def _run_account(self, account_id: str) -> None:
        """The account job: capture, record the outcome, decide when to try again."""
        with self._cond:
            acct = self._accounts.get(account_id)
            if self._stopping or acct is None:
                return
        try:
            due = self._due_at(account_id, acct.schedule)
        except ArchiverError:
            due = None  # the capture meets the catalog's failure too, and records it
        if due is not None:
            # Another process or node captured it meanwhile: due-ness is the catalog's.
            self._reschedule(account_id, self._jittered(due))
            return
        self._set(account_id, running=True)
        status: str = "failed"
        reason: str | None = "the capture ended unexpectedly"
        try:
            status, reason = self._capture(account_id)
        except Exception as exc:  # a failed run must not end the schedule
            status, reason = "failed", str(exc) or type(exc).__name__
            log.error("capture failed", account=account_id, error=reason)
        finally:
            finished = self.clock()
            with self._cond:
                state = self._states.setdefault(account_id, AccountState())
                state.running = False
                state.last_status, state.last_run_at = status, finished
                state.last_error = None if status == "complete" else reason
                if account_id not in self._accounts:  # unscheduled by a reload meanwhile
                    del self._states[account_id]
                stopping = self._stopping or account_id not in self._accounts
                retry_after = self._config.daemon.retry_after
                self._cond.notify_all()
        if stopping:
            return
        when = next_after(finished, status, acct.schedule, retry_after)
        self._reschedule(account_id, self._jittered(when) if status == "complete" else when)

    def _due_at(self, account_id: str, schedule: timedelta) -> datetime | None:
        """None if the account is due now, else when the catalog says it will be."""
        with self.catalog.reader() as s:
            row = s.get(Account, account_id)
            last = row.last_success_at if row is not None else None
        now = self.clock()
        when = first_run(now, last, schedule)
        return None if when <= now + DUE_TOLERANCE else when

    def _reschedule(self, account_id: str, when: datetime) -> None:
        try:
            self.aps.modify_job(CAPTURE_PREFIX + account_id, next_run_time=when)
        except JobLookupError:
            return  # unscheduled by a reload meanwhile
        self._set(account_id, next_run=when)

    # -- what it is doing ------------------------------------------------------------------

    def running(self) -> list[str]:
        """Accounts being captured now."""
        with self._cond:
            return sorted(a for a, s in self._states.items() if s.running)

    def jobs(self) -> dict[str, datetime | None]:
        """Every job's id and next run time."""
        return {job.id: job.next_run_time for job in self.aps.get_jobs()}

    def states(self) -> dict[str, AccountState]:
        """A copy of each scheduled account's state, with the job's next run time."""
        jobs = self.jobs()
        with self._cond:
            out = {}
            for account_id, state in self._states.items():
                copy = AccountState(**{f: getattr(state, f) for f in AccountState.__slots__})
                copy.next_run = jobs.get(CAPTURE_PREFIX + account_id, state.next_run)
                out[account_id] = copy
            return out

    def detail(self) -> dict[str, dict[str, Any]]:
        """The heartbeat's ``accounts`` detail."""
        return {a: s.as_detail() for a, s in sorted(self.states().items())}
