"""The daemon in-process: start-up, heartbeats, anchoring the audit head, a clean stop.

``tests/commands/test_run_cmd.py`` runs the same daemon as a real process under signals;
here a hand-moved clock and a short heartbeat interval show what happens over hours.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import __version__, audit
from archiver import daemon as daemon_module
from archiver.app import App
from archiver.catalog.models import Account, AuditEntry, Heartbeat
from archiver.catalog.schema import head_revision
from archiver.daemon import ANCHOR_EVERY, Daemon
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
    assert beat.detail == {"recovered_files": 0, "orphans": 0}

    with app.catalog.session() as s:
        accounts = {a.id: a for a in s.scalars(select(Account))}
    assert set(accounts) == set(ACCOUNT_IDS)
    assert accounts["mke-facebook"].status == "unknown"
    assert _aware(accounts["mke-facebook"].created_at) == T0

    (entry,) = _entries(app)
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
    assert beat.detail == {"recovered_files": 0, "orphans": 0}  # kept, not replaced
    actions = [e.action for e in _entries(app)]
    assert actions == ["daemon.start", "daemon.stop"]
    assert _anchors(workspace) == ["000000000002.json"]
    report = audit.verify(app.catalog, app.store)
    assert report.ok and report.entries == 2 and report.anchors == 1


def _serve_for(daemon: Daemon, clock: Clock, beats: int, every: timedelta) -> None:
    """Let ``serve`` beat ``beats`` times while the clock moves ``every`` per beat."""
    original = daemon._beat
    count = 0

    def beat(state: str, detail: dict[str, object] | None = None) -> None:
        nonlocal count
        original(state, detail)
        count += 1
        if count >= beats:
            daemon.stopping.set()

    def tick(_seconds: float | None = None) -> bool:
        clock.advance(every)
        return daemon.stopping.is_set()

    daemon._beat = beat  # type: ignore[method-assign]
    daemon.stopping.wait = tick  # type: ignore[method-assign]
    daemon.serve()


def test_serve_beats_until_asked_to_stop(app: App, clock: Clock) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()

    _serve_for(daemon, clock, beats=3, every=daemon_module.HEARTBEAT_EVERY)

    beat = _heartbeat(app)
    assert beat.state == "running"
    assert _aware(beat.beat_at) == T0 + 3 * daemon_module.HEARTBEAT_EVERY


def test_serve_anchors_the_audit_head_once_an_anchor_interval_has_passed(
    app: App, workspace: Workspace, clock: Clock
) -> None:
    daemon = Daemon(app, clock=clock)
    daemon.start()

    _serve_for(daemon, clock, beats=2, every=ANCHOR_EVERY / 2 - timedelta(seconds=1))
    assert _anchors(workspace) == []  # not yet an hour

    daemon.stopping.clear()
    _serve_for(daemon, clock, beats=1, every=timedelta(seconds=2))
    assert _anchors(workspace) == ["000000000001.json"]  # daemon.start is the head

    daemon.stopping.clear()
    _serve_for(daemon, clock, beats=3, every=ANCHOR_EVERY)
    assert _anchors(workspace) == ["000000000001.json"]  # an anchored head is not rewritten


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
    assert [e.action for e in _entries(app)] == ["daemon.start", "daemon.stop", "daemon.start"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_ask_the_daemon_to_stop(tmp_path: Path, signum: signal.Signals) -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    daemon = Daemon(App(make_workspace(tmp_path).config, actor=SERVICE))
    try:
        daemon.install_signal_handlers()
        assert not daemon.stopping.is_set()
        os.kill(os.getpid(), signum)
        assert daemon.stopping.wait(5)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
