"""The daemon in-process: start-up, heartbeats, anchoring the audit head, a clean stop.

``tests/commands/test_run_cmd.py`` runs the same daemon as a real process under signals;
here a hand-moved clock and a short heartbeat interval show what happens over hours.
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

from archiver import __version__, audit
from archiver.app import App
from archiver.catalog.models import Account, AuditEntry, CaptureRun, Heartbeat
from archiver.catalog.schema import head_revision
from archiver.daemon import Daemon
from archiver.housekeeping import HOLD_SYNC_EVERY
from archiver.identity import Actor
from archiver.store.base import LAYOUT_KEY, LAYOUT_VERSION
from tests.commands.clitools import ACCOUNT_IDS, Workspace, make_workspace

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SERVICE = Actor(user="archiver", uid=998)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def workspace(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = make_workspace(tmp_path, catalog_url=catalog_url)
    for name, value in ws.env.items():
        if name.startswith("ARCHIVER_"):
            monkeypatch.setenv(name, value)
    return ws


@pytest.fixture
def app(workspace: Workspace) -> Iterator[App]:
    app = App(workspace.config, actor=SERVICE)
    yield app
    app.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _heartbeat(app: App) -> Heartbeat:
    with app.catalog.session() as s:
        row = s.get(Heartbeat, "node-a")
        assert row is not None
        return row


def _entries(app: App) -> list[AuditEntry]:
    with app.catalog.session() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def _anchors(workspace: Workspace) -> list[str]:
    return sorted(p.name for p in (workspace.store_root / "control" / "audit").glob("*.json"))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the catalog stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_start_migrates_initialises_the_store_registers_accounts_and_beats(
    app: App, workspace: Workspace, clock: Clock
) -> None:
    started = Daemon(app, clock=clock).start()

    assert started.schema == head_revision()
    assert started.layout == LAYOUT_VERSION
    assert (workspace.store_root / LAYOUT_KEY).is_file()
    assert started.recovery.files == [] and started.recovery.damaged == []

    beat = _heartbeat(app)
    assert (beat.state, beat.pid, beat.version) == ("running", os.getpid(), __version__)
    assert _aware(beat.started_at) == _aware(beat.beat_at) == T0
    assert (beat.detail["recovered_files"], beat.detail["orphans"]) == (0, 0)
    assert set(beat.detail["accounts"]) == {"mke-facebook"}  # mke-mastodon is disabled
    assert beat.detail["store"] == {
        "ok": True,
        "error": None,
        "waiting_files": 0,
        "next_retry": None,
    }

    with app.catalog.session() as s:
        accounts = {a.id: a for a in s.scalars(select(Account))}
    assert set(accounts) == set(ACCOUNT_IDS)
    assert accounts["mke-facebook"].status == "unknown"
    assert _aware(accounts["mke-facebook"].created_at) == T0

    *registered, entry = _entries(app)
    # Each configured account's registration is audited before the start itself.
    assert sorted((e.action, e.subject) for e in registered) == [
        ("account.registered", account) for account in sorted(ACCOUNT_IDS)
    ]
    assert (entry.action, entry.actor, entry.subject) == ("daemon.start", "archiver", "node-a")
    assert entry.detail["schema"] == head_revision()


def test_stop_marks_the_node_stopped_and_anchors_the_chain_head(
    app: App, workspace: Workspace, clock: Clock
) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()
    clock.advance(timedelta(minutes=5))

    daemon.stop()

    beat = _heartbeat(app)
    assert beat.state == "stopped"
    assert _aware(beat.beat_at) == T0 + timedelta(minutes=5)
    assert (beat.detail["recovered_files"], beat.detail["orphans"]) == (0, 0)  # kept
    actions = [e.action for e in _entries(app) if e.action.startswith("daemon.")]
    assert actions == ["daemon.start", "daemon.stop"]
    assert _anchors(workspace) == ["000000000004.json"]  # after 2 registrations, start, stop
    report = audit.verify(app.catalog, app.store)
    assert report.ok and report.entries == 4 and report.anchors == 1


def test_the_heartbeat_job_beats_with_each_account_s_schedule_in_its_detail(
    app: App, clock: Clock
) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()
    daemon.scheduler.start(paused=True)  # type: ignore[union-attr]
    try:
        clock.advance(timedelta(seconds=30))
        daemon.heartbeat()
        assert daemon.healthy()
    finally:
        daemon.scheduler.shutdown()  # type: ignore[union-attr]
    assert not daemon.healthy()  # its thread is gone

    beat = _heartbeat(app)
    assert beat.state == "running"
    assert _aware(beat.beat_at) == T0 + timedelta(seconds=30)
    facebook = beat.detail["accounts"]["mke-facebook"]
    assert facebook["last_status"] is None and facebook["running"] is False
    # Never captured: due at once, spread by at most [daemon] jitter.
    next_run = datetime.fromisoformat(facebook["next_run"])
    assert T0 <= next_run <= T0 + app.config.daemon.jitter
    assert "mke-mastodon" not in beat.detail["accounts"]  # disabled
    assert beat.detail["store"]["ok"] is True
    assert beat.detail["spool"]["waiting_files"] == 0


def test_housekeeping_jobs_are_scheduled_from_the_daemon_settings(app: App, clock: Clock) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()
    assert daemon.scheduler is not None
    jobs = {job.id: job for job in daemon.scheduler.aps.get_jobs()}
    settings = app.config.daemon
    assert set(jobs) == {
        "capture:mke-facebook",
        "heartbeat",
        "store-retry",
        "parquet-roll",
        "audit-anchor",
        "spool-clean",
        "fixity",
        "hold-sync",
        "disposition-report",
    }
    assert jobs["disposition-report"].trigger.interval == app.config.retention.report_every
    assert jobs["hold-sync"].trigger.interval == HOLD_SYNC_EVERY
    assert jobs["heartbeat"].trigger.interval == settings.heartbeat_every
    assert jobs["heartbeat"].executor == "heartbeat"
    assert jobs["audit-anchor"].trigger.interval == settings.anchor_every
    assert jobs["audit-anchor"].next_run_time == T0 + settings.anchor_every
    assert jobs["fixity"].trigger.interval == settings.fixity_every
    assert jobs["capture:mke-facebook"].executor == "captures"


def test_the_anchor_job_anchors_the_head_once(app: App, workspace: Workspace, clock: Clock) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()
    assert daemon.housekeeping is not None
    assert _anchors(workspace) == []

    clock.advance(app.config.daemon.anchor_every)
    daemon.housekeeping.anchor()
    assert _anchors(workspace) == ["000000000003.json"]  # daemon.start is the head

    daemon.housekeeping.anchor()
    assert _anchors(workspace) == ["000000000003.json"]  # an anchored head is not rewritten


def test_serve_runs_the_schedule_on_real_threads_until_asked_to_stop(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path, catalog_url=catalog_url, extra='[daemon]\njitter = "1s"')
    for name, value in ws.env.items():
        if name.startswith("ARCHIVER_"):
            monkeypatch.setenv(name, value)
    app = App(ws.config, actor=SERVICE)
    daemon = Daemon(app)  # the real clock: APScheduler keeps real time
    daemon.start()
    server = threading.Thread(target=daemon.serve)
    server.start()
    try:
        # mke-facebook is due at once (never captured) and has no connector installed here.
        deadline = time.monotonic() + 60
        while True:
            with app.catalog.session() as s:
                runs = s.scalars(select(CaptureRun)).all()
            # Finished in the catalog is not yet rescheduled: wait for the scheduler too,
            # or stopping now would leave the first next_run in place.
            state = daemon.scheduler.states().get("mke-facebook") if daemon.scheduler else None
            rescheduled = (
                state is not None
                and state.last_run_at is not None
                and state.next_run is not None
                and state.next_run > state.last_run_at
            )
            if runs and runs[0].status != "running" and rescheduled:
                break
            assert time.monotonic() < deadline, "no capture run was recorded"
            time.sleep(0.1)
        assert runs[0].account_id == "mke-facebook" and runs[0].status == "incomplete"
        assert "no connector is installed" in (runs[0].reason or "")
        assert daemon.healthy()
    finally:
        daemon.stopping.set()
        server.join(10)
        assert daemon.stop() is True
    assert not server.is_alive()
    beat = _heartbeat(app)
    assert beat.state == "stopped"
    account = beat.detail["accounts"]["mke-facebook"]
    assert account["last_status"] == "incomplete"
    assert "no connector is installed" in account["last_error"]
    # Tried again after min(schedule, retry_after), not at once.
    retry = datetime.fromisoformat(account["next_run"]) - datetime.fromisoformat(
        account["last_run_at"]
    )
    assert abs(retry - min(timedelta(hours=1), app.config.daemon.retry_after)) < timedelta(
        seconds=1
    )
    app.close()


def test_a_restart_keeps_accounts_and_their_first_sighting(
    app: App, workspace: Workspace, clock: Clock
) -> None:
    first = Daemon(app, clock=clock)
    first.start()
    first.stop()
    clock.advance(timedelta(days=3))

    second = Daemon(app, clock=clock)
    second.start()

    with app.catalog.session() as s:
        accounts = list(s.scalars(select(Account)))
    assert sorted(a.id for a in accounts) == sorted(ACCOUNT_IDS)
    assert all(_aware(a.created_at) == T0 for a in accounts)
    beat = _heartbeat(app)
    assert beat.state == "running"
    assert _aware(beat.started_at) == T0 + timedelta(days=3)
    daemon_actions = [e.action for e in _entries(app) if e.action.startswith("daemon.")]
    assert daemon_actions == ["daemon.start", "daemon.stop", "daemon.start"]


HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_ask_the_daemon_to_stop(tmp_path: Path, signum: signal.Signals) -> None:
    saved = {s: signal.getsignal(s) for s in HANDLED}
    daemon = Daemon(App(make_workspace(tmp_path).config, actor=SERVICE))
    try:
        daemon.install_signal_handlers()
        assert not daemon.stopping.is_set()
        os.kill(os.getpid(), signum)
        assert daemon.stopping.wait(5)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_sighup_asks_for_a_reload_and_sigusr1_wedges_the_heartbeat(tmp_path: Path) -> None:
    saved = {s: signal.getsignal(s) for s in HANDLED}
    daemon = Daemon(App(make_workspace(tmp_path).config, actor=SERVICE))
    try:
        daemon.install_signal_handlers()
        os.kill(os.getpid(), signal.SIGHUP)
        assert daemon.reload_requested.wait(5)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert daemon.wedged.wait(5)
        assert not daemon.stopping.is_set()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_the_hold_sync_job_applies_the_active_holds(app: App, clock: Clock) -> None:
    from archiver.catalog.models import Hold

    daemon = Daemon(app, clock=clock)
    daemon.start()
    assert daemon.housekeeping is not None
    with app.catalog.session() as s:
        s.add(
            Hold(
                case_id="LIT-1",
                kind="legal",
                reason="litigation",
                accounts=["mke-facebook"],
                created_at=T0,
                created_by="ann",
            )
        )
    result = daemon.housekeeping.sync_holds()
    assert result is not None and result.ok
    assert result.active_holds == 1
