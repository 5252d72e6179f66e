"""The capture schedule: due-ness from the catalog, jobs built from config, reloads.

In-process, with a hand-moved clock where the outcome depends on time; the scheduler is
started paused so that its jobs can be looked at without running them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.app import App
from archiver.catalog import Catalog
from archiver.catalog.models import Account, AuditEntry, Heartbeat
from archiver.config import Config, load_config
from archiver.daemon import Daemon
from archiver.identity import Actor
from archiver.scheduler import CAPTURES, Scheduler, first_run, next_after
from tests.commands.clitools import Workspace, make_workspace

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SERVICE = Actor(user="archiver", uid=998)
HOUR = timedelta(hours=1)


def account(account_id: str, schedule: str = "1h", *, enabled: bool = True) -> str:
    return f"""
[[accounts]]
id = "{account_id}"
platform = "bluesky"
handle = "{account_id}.example.gov"
department = "Office of the Mayor"
series = "social-media"
schedule = "{schedule}"
enabled = {str(enabled).lower()}
"""


ACCOUNTS = (
    account("fresh") + account("stale", "6h") + account("recent") + account("off", enabled=False)
)
DAEMON = '[daemon]\njitter = "10s"\nretry_after = "15m"\nworkers = 2\n'


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workspace(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = make_workspace(tmp_path, catalog_url=catalog_url, accounts=ACCOUNTS, extra=DAEMON)
    for name, value in ws.env.items():
        if name.startswith("ARCHIVER_"):  # a PostgreSQL catalog's password
            monkeypatch.setenv(name, value)
    return ws


@pytest.fixture
def config(workspace: Workspace) -> Config:
    return load_config(workspace.config)


def _succeeded(catalog: Catalog, **last: datetime) -> None:
    with catalog.session() as s:
        for account_id, when in last.items():
            s.merge(
                Account(
                    id=account_id,
                    platform="bluesky",
                    series="general",
                    created_at=T0 - timedelta(days=30),
                    status="ok",
                    last_success_at=when,
                )
            )


class Captures:
    """The capture function the scheduler calls: records calls, answers as told."""

    def __init__(self, answer: tuple[str, str | None] = ("complete", None)) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, account_id: str) -> tuple[str, str | None]:
        self.calls.append(account_id)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def paused(config: Config, catalog: Catalog, clock: Clock) -> Iterator[tuple[Scheduler, Captures]]:
    captures = Captures()
    scheduler = Scheduler(config, catalog, captures, clock=clock)
    scheduler.start(paused=True)
    yield scheduler, captures
    scheduler.shutdown()


# -- due-ness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (None, T0),  # never captured: now
        (T0 - 2 * HOUR, T0),  # overdue (the daemon was down): now
        (T0 - HOUR, T0),  # exactly one schedule ago: now
        (T0 - timedelta(minutes=20), T0 + timedelta(minutes=40)),  # last success + schedule
        ((T0 - timedelta(minutes=20)).replace(tzinfo=None), T0 + timedelta(minutes=40)),  # SQLite
    ],
)
def test_an_account_is_due_a_schedule_after_its_last_success(
    last: datetime | None, expected: datetime
) -> None:
    assert first_run(T0, last, HOUR) == expected


@pytest.mark.parametrize(
    ("status", "schedule", "expected"),
    [
        ("complete", HOUR, T0 + HOUR),
        ("incomplete", HOUR, T0 + timedelta(minutes=15)),  # retry_after
        ("failed", HOUR, T0 + timedelta(minutes=15)),
        ("interrupted", HOUR, T0 + timedelta(minutes=15)),
        ("failed", timedelta(minutes=5), T0 + timedelta(minutes=5)),  # the schedule, if shorter
    ],
)
def test_after_a_run_the_next_one_follows_its_outcome(
    status: str, schedule: timedelta, expected: datetime
) -> None:
    assert next_after(T0, status, schedule, timedelta(minutes=15)) == expected


# -- building jobs ---------------------------------------------------------------------------


def test_each_enabled_account_gets_one_job_due_by_the_catalog(
    config: Config, catalog: Catalog, clock: Clock
) -> None:
    _succeeded(catalog, stale=T0 - timedelta(hours=30), recent=T0 - timedelta(minutes=20))
    scheduler = Scheduler(config, catalog, Captures(), clock=clock)
    scheduler.start(paused=True)
    try:
        scheduler.schedule_accounts(config)
        jobs = {job.id: job for job in scheduler.aps.get_jobs()}
    finally:
        scheduler.shutdown()

    assert set(jobs) == {"capture:fresh", "capture:stale", "capture:recent"}  # not "off"
    jitter = timedelta(seconds=10)
    for due_now in ("capture:fresh", "capture:stale"):  # never run; down for 30 hours
        assert T0 <= jobs[due_now].next_run_time <= T0 + jitter
    recent = T0 + timedelta(minutes=40)
    assert recent <= jobs["capture:recent"].next_run_time <= recent + jitter
    stale = jobs["capture:stale"]
    assert stale.trigger.interval == timedelta(hours=6)
    assert stale.trigger.jitter == 10
    assert (stale.coalesce, stale.max_instances, stale.misfire_grace_time) == (True, 1, None)
    assert stale.executor == CAPTURES
    assert stale.args == ("stale",)


def test_captures_run_at_most_workers_at_a_time(config: Config, catalog: Catalog) -> None:
    """Real threads and the real clock: three accounts due at once, two workers."""
    running, most, lock = 0, 0, threading.Lock()
    done: list[str] = []

    def capture(account_id: str) -> tuple[str, str | None]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)
        with lock:
            running -= 1
            done.append(account_id)
        return "complete", None

    fast = config.model_copy(
        update={"daemon": config.daemon.model_copy(update={"jitter": timedelta(seconds=0.01)})}
    )
    scheduler = Scheduler(fast, catalog, capture)
    scheduler.schedule_accounts(fast)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        states = scheduler.states()
    finally:
        scheduler.shutdown()
    assert sorted(done) == ["fresh", "recent", "stale"]
    assert most == 2
    for account_id in done:
        state = states[account_id]
        assert state.last_status == "complete" and not state.running
        assert state.next_run is not None and state.last_run_at is not None
        assert state.next_run - state.last_run_at >= HOUR  # a schedule later


# -- after a run -----------------------------------------------------------------------------


def test_a_complete_run_is_next_due_a_schedule_later(
    paused: tuple[Scheduler, Captures], config: Config, clock: Clock
) -> None:
    scheduler, captures = paused
    scheduler.schedule_accounts(config)
    clock.advance(timedelta(minutes=3))

    scheduler._run_account("fresh")

    assert captures.calls == ["fresh"]
    state = scheduler.states()["fresh"]
    assert (state.last_status, state.last_error, state.last_run_at) == ("complete", None, clock.now)
    assert clock.now + HOUR <= state.next_run <= clock.now + HOUR + timedelta(seconds=10)  # type: ignore[operator]
    assert scheduler.jobs()["capture:fresh"] == state.next_run


@pytest.mark.parametrize(
    "answer",
    [("incomplete", "rate limited for 900 s"), RuntimeError("rate limited for 900 s")],
)
def test_a_run_that_did_not_complete_is_retried_after_retry_after(
    paused: tuple[Scheduler, Captures],
    config: Config,
    clock: Clock,
    answer: tuple[str, str] | BaseException,
) -> None:
    scheduler, captures = paused
    captures.answer = answer  # type: ignore[assignment]
    scheduler.schedule_accounts(config)

    scheduler._run_account("stale")  # schedule 6h, retry_after 15m

    state = scheduler.states()["stale"]
    assert state.last_status in ("incomplete", "failed")
    assert state.last_error == "rate limited for 900 s"
    assert state.next_run == clock.now + timedelta(minutes=15)
    detail = scheduler.detail()["stale"]
    assert detail["last_error"] == "rate limited for 900 s"
    assert detail["next_run"] == (clock.now + timedelta(minutes=15)).isoformat()


def test_an_account_captured_meanwhile_elsewhere_is_not_captured_again(
    paused: tuple[Scheduler, Captures], config: Config, catalog: Catalog, clock: Clock
) -> None:
    scheduler, captures = paused
    scheduler.schedule_accounts(config)
    _succeeded(catalog, fresh=T0 - timedelta(minutes=5))  # another node just did it

    scheduler._run_account("fresh")

    assert captures.calls == []
    due = T0 + timedelta(minutes=55)
    assert due <= scheduler.jobs()["capture:fresh"] <= due + timedelta(seconds=10)  # type: ignore[operator]


def test_once_stopping_no_capture_starts(
    paused: tuple[Scheduler, Captures], config: Config
) -> None:
    scheduler, captures = paused
    scheduler.schedule_accounts(config)

    scheduler.stop_jobs()
    scheduler._run_account("fresh")

    assert captures.calls == []
    assert not any(job.startswith("capture:") for job in scheduler.jobs())
    assert scheduler.wait_idle(0.1)


# -- reloading -------------------------------------------------------------------------------


@pytest.fixture
def daemon(workspace: Workspace, clock: Clock) -> Iterator[Daemon]:
    app = App(workspace.config, actor=SERVICE)
    daemon = Daemon(app, clock=clock)
    daemon.start()
    assert daemon.scheduler is not None
    daemon.scheduler.start(paused=True)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    saved[signal.SIGUSR1] = signal.getsignal(signal.SIGUSR1)
    daemon.install_signal_handlers()
    try:
        yield daemon
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        daemon.scheduler.shutdown()
        app.close()


def _sighup(daemon: Daemon) -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    assert daemon.reload_requested.wait(5)
    daemon.tick()  # the main loop's turn: it reloads


def test_sighup_with_a_broken_config_keeps_the_running_schedule(
    daemon: Daemon, workspace: Workspace
) -> None:
    assert daemon.scheduler is not None
    before = daemon.scheduler.jobs()
    good = workspace.config.read_text()
    workspace.config.write_text(good.replace('schedule = "6h"', 'schedule = "often"'))

    _sighup(daemon)

    assert daemon.scheduler.jobs() == before
    assert daemon.config.account("stale").schedule == timedelta(hours=6)
    assert "often" in daemon.status_line() and "config reload refused" in daemon.status_line()
    assert "often" in daemon.detail()["config_error"]

    workspace.config.write_text("this is not [toml")
    _sighup(daemon)
    assert daemon.scheduler.jobs() == before


def test_sighup_with_a_good_config_rebuilds_the_account_jobs(
    daemon: Daemon, workspace: Workspace, clock: Clock
) -> None:
    assert daemon.scheduler is not None
    before = daemon.scheduler.jobs()
    text = workspace.config.read_text()
    workspace.config.write_text(text + "[oops")  # first a broken one, refused
    _sighup(daemon)
    assert "config_error" in daemon.detail()
    text = text.replace('schedule = "6h"', 'schedule = "2h"')  # stale: re-timed
    text = text.replace(account("recent"), "")  # removed
    text += account("added", "30m")  # new
    workspace.config.write_text(text)
    clock.advance(timedelta(minutes=1))

    _sighup(daemon)

    after = daemon.scheduler.jobs()
    accounts = {job for job in after if job.startswith("capture:")}
    assert accounts == {"capture:fresh", "capture:stale", "capture:added"}
    assert after["capture:fresh"] == before["capture:fresh"]  # unchanged: kept as it was
    stale = next(j for j in daemon.scheduler.aps.get_jobs() if j.id == "capture:stale")
    assert stale.trigger.interval == timedelta(hours=2)
    assert clock.now <= after["capture:added"] <= clock.now + timedelta(seconds=10)  # type: ignore[operator]
    assert "config reload refused" not in daemon.status_line()
    daemon.heartbeat()
    with daemon.app.catalog.session() as s:
        beat = s.scalars(select(Heartbeat)).one()
        assert "config_error" not in beat.detail
        assert set(beat.detail["accounts"]) == {"fresh", "stale", "added"}
        assert s.get(Account, "added") is not None
        entries = s.execute(
            select(AuditEntry.action, AuditEntry.subject).order_by(AuditEntry.seq)
        ).all()
    assert [a for a, _ in entries if a.startswith("daemon.")] == ["daemon.start", "daemon.reload"]
    assert ("account.registered", "added") in entries  # the reload registered the new account


def test_an_account_removed_while_it_is_captured_finishes_its_run_then_is_forgotten(
    config: Config, catalog: Catalog, clock: Clock
) -> None:
    without = config.model_copy(
        update={"accounts": [a for a in config.accounts if a.id != "fresh"]}
    )
    seen: dict[str, object] = {}

    def capture(account_id: str) -> tuple[str, str | None]:
        scheduler.schedule_accounts(without)  # a SIGHUP reload lands mid-run
        seen["running"] = scheduler.running()
        seen["idle"] = scheduler.wait_idle(0.05)
        return "complete", None

    scheduler = Scheduler(config, catalog, capture, clock=clock)
    scheduler.start(paused=True)
    try:
        scheduler.schedule_accounts(config)
        scheduler._run_account("fresh")
        assert seen == {"running": ["fresh"], "idle": False}  # a stop would wait for it
        assert "fresh" not in scheduler.states()
        assert "capture:fresh" not in scheduler.jobs()
        assert scheduler.running() == []
    finally:
        scheduler.shutdown()
