"""``archiver run`` as systemd runs it: a real process, a real notification socket.

The daemon captures a fake Bluesky AppView (``tests/connectors/fake_bluesky.py``) served
from this process. ``$NOTIFY_SOCKET`` is a unix datagram socket bound here, with
``WATCHDOG_USEC`` set and ``WATCHDOG_PID`` unset, which ``sd_watchdog_enabled(3)`` reads
as "any process". The tests read what systemd would read: READY, STATUS, WATCHDOG and
STOPPING notifications, the exit code, and what the catalog and the store hold.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

from archiver.catalog.models import CaptureRun, Checkpoint, Item, ItemVersion
from archiver.layout import Partition
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import metadata_record
from tests.commands.clitools import RunningArchiver, Workspace, make_workspace
from tests.connectors.fake_bluesky import FakeBluesky
from tests.warctools import assert_all_digests_pass

#: The watchdog timeout the tests give the daemon: it must ping at least every second.
WATCHDOG_USEC = 2_000_000
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Testing", "node-a")


@dataclass
class SlowBluesky(FakeBluesky):
    """The fake AppView, answering every XRPC call after ``delay`` seconds."""

    delay: float = 0.0

    def _xrpc(self, request: Request) -> Response:
        time.sleep(self.delay)
        return super()._xrpc(request)


@dataclass
class Notifications:
    """What systemd would receive on ``$NOTIFY_SOCKET``, with when it arrived."""

    sock: socket.socket
    path: Path
    received: list[tuple[float, list[str]]] = field(default_factory=list)
    on_ready: Callable[[], object] | None = None
    ready_check: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def listen(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = data.decode().split("\n")
            if "READY=1" in fields and self.on_ready is not None:
                self.ready_check = self.on_ready()  # look at the disk the moment READY arrives
            with self._lock:
                self.received.append((time.monotonic(), fields))

    def close(self) -> None:
        self._stop.set()

    def all(self) -> list[tuple[float, list[str]]]:
        with self._lock:
            return list(self.received)

    def fields(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, f) for t, fs in self.all() for f in fs if f.startswith(prefix)]

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.fields(prefix)
            if found:
                return found[0][1]
            time.sleep(0.05)
        raise AssertionError(f"no {prefix} notification within {timeout} s: {self.all()}")


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    path = tmp_path / "n.sock"
    assert len(str(path)) < 100, "unix socket paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notes = Notifications(sock, path)
    thread = threading.Thread(target=notes.listen, daemon=True)
    thread.start()
    yield notes
    notes.close()
    thread.join(5)
    sock.close()


def _workspace(
    root: Path,
    fake: FakeBluesky,
    notes: Notifications,
    *,
    schedule: str = "1h",
    stop_timeout: str = "30s",
) -> Workspace:
    accounts = f"""
[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
schedule = "{schedule}"
options = {{ page_size = 5 }}
"""
    daemon = f'[daemon]\nheartbeat_every = "1s"\njitter = "1s"\nstop_timeout = "{stop_timeout}"\n'
    ws = make_workspace(root, accounts=accounts, extra=daemon)
    ws.env["NOTIFY_SOCKET"] = str(notes.path)
    ws.env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
    ws.env.pop("WATCHDOG_PID", None)
    return ws


def _fake(httpserver: HTTPServer, posts: int, delay: float = 0.0) -> SlowBluesky:
    fake = SlowBluesky(httpserver, delay=delay)
    fake.now = datetime.now(UTC) - timedelta(days=2)
    for n in range(posts):
        fake.post(f"Notice {n}: the city council meets on Tuesday")
    return fake


def _events(run: RunningArchiver) -> list[dict[str, object]]:
    return [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]


def _runs(ws: Workspace) -> list[CaptureRun]:
    with ws.open_catalog() as catalog, catalog.session() as s:
        return list(s.scalars(select(CaptureRun).order_by(CaptureRun.id)))


def _wait(
    what: str, check: Callable[[], object], run: RunningArchiver, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert run.proc.poll() is None, (
            f"archiver run exited while waiting for {what}\n{run.output()}"
        )
        assert time.monotonic() < deadline, f"no {what} within {timeout} s\n{run.output()}"
        time.sleep(0.1)


def _stored_warcs(ws: Workspace) -> list[Path]:
    return sorted((ws.store_root / "warc").glob("**/*.warc.gz"))


def _torn_spool_file(ws: Workspace) -> str:
    """A spool file as kill -9 leaves it: records written, the last one cut short."""
    spool = ws.var / "spool"
    spool.mkdir(parents=True)
    writer = WarcWriter(spool, Partition("general", "mke-bluesky", "2026-11"), INFO)
    for n in range(3):
        writer.append(metadata_record(f"urn:test:{n}", json.dumps({"n": n}).encode() * 20))
    writer.abandon()
    with writer.path.open("r+b") as f:
        f.truncate(writer.path.stat().st_size - 25)
    return writer.path.name.removesuffix(".warc.gz.open")


def test_ready_comes_after_recovery_and_the_watchdog_is_fed_until_the_scheduler_wedges(
    tmp_path: Path, httpserver: HTTPServer, notifications: Notifications
) -> None:
    fake = _fake(httpserver, posts=6, delay=0.3)  # a capture that takes a few seconds
    ws = _workspace(tmp_path, fake, notifications)
    file_id = _torn_spool_file(ws)
    spool = ws.var / "spool"

    def at_ready() -> tuple[list[str], list[str]]:
        return (
            [p.name for p in spool.glob("*.open")],
            [p.name for p in (ws.store_root / "warc").glob("**/*.warc.gz")],
        )

    notifications.on_ready = at_ready
    with ws.running() as run:
        ready = notifications.wait_for("READY=1")
        assert ready == "READY=1"
        open_files, stored = notifications.ready_check  # type: ignore[misc]
        assert open_files == [], "the torn spool file was not repaired before READY=1"
        assert stored == [f"{file_id}.warc.gz"]
        assert_all_digests_pass(_stored_warcs(ws))
        repaired = [e for e in _events(run) if e["event"] == "torn spool file repaired"]
        assert repaired and repaired[0]["file_id"] == file_id
        (_, mainpid), *_ = notifications.fields("MAINPID=")
        assert mainpid == f"MAINPID={run.proc.pid}"
        said = [f for _, fs in notifications.all() for f in fs]
        assert said.index("STATUS=starting: recovering the spool") < said.index("READY=1")

        # STATUS= says what it is doing; the capture starts within the jitter.
        notifications.wait_for("STATUS=1 accounts scheduled; 1 capturing (mke-bluesky)")

        # WATCHDOG=1 every half WATCHDOG_USEC while the scheduler is healthy.
        time.sleep(4)
        pings = [t for t, _ in notifications.fields("WATCHDOG=1")]
        assert len(pings) >= 4, notifications.all()
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < WATCHDOG_USEC / 1e6, gaps

        # Wedge the scheduler's heartbeat job: the pings stop, so systemd would restart us.
        run.proc.send_signal(signal.SIGUSR1)
        wedged = time.monotonic()
        time.sleep(7)
        late = [t - wedged for t, _ in notifications.fields("WATCHDOG=1") if t > wedged + 4.5]
        assert late == [], f"pings {late} s after the wedge\n{run.output()}"
        assert any(e["event"].startswith("scheduler unhealthy") for e in _events(run))  # type: ignore[union-attr]
        assert run.proc.poll() is None  # systemd, not the daemon, acts on a stalled watchdog

        code, _ = run.stop(signal.SIGTERM, timeout=40)
    assert code == 0, run.output()
    assert notifications.fields("STOPPING=1"), notifications.all()


def test_sigterm_mid_capture_stops_at_a_commit_and_a_restart_completes_the_run(
    tmp_path: Path, httpserver: HTTPServer, notifications: Notifications
) -> None:
    posts = 60
    fake = _fake(httpserver, posts=posts, delay=0.05)
    ws = _workspace(tmp_path, fake, notifications)

    def checkpoints() -> int:
        with ws.open_catalog() as catalog, catalog.session() as s:
            return int(s.scalar(select(func.count()).select_from(Checkpoint)) or 0)

    with ws.running() as run:
        notifications.wait_for("READY=1")
        _wait(
            "a first page commit",
            lambda: ws.var.joinpath("catalog.sqlite3").exists() and checkpoints() > 0,
            run,
        )
        code, took = run.stop(signal.SIGTERM, timeout=40)
    assert code == 0, run.output()
    assert took < 30, run.output()
    assert notifications.fields("STOPPING=1")
    (interrupted,) = _runs(ws)
    assert interrupted.status == "interrupted", (interrupted.status, interrupted.reason)
    assert "stopped on request" in (interrupted.reason or "")
    assert [p.name for p in (ws.var / "spool").glob("*.warc.gz*")] == []  # closed and stored
    assert_all_digests_pass(_stored_warcs(ws))
    with ws.open_catalog() as catalog, catalog.session() as s:
        items_before = int(s.scalar(select(func.count()).select_from(Item)) or 0)
    assert 0 < items_before < posts + 1, "the run should have stopped part-way"
    events = {e["event"] for e in _events(run)}
    assert "capture stopped" in events and "archiver stopped" in events

    # A restart resumes: the account is due at once, the run completes.
    with ws.running() as run:
        _wait("a complete run", lambda: any(r.status == "complete" for r in _runs(ws)), run)
        code, _ = run.stop(signal.SIGTERM, timeout=40)
    assert code == 0, run.output()
    assert [r.status for r in _runs(ws)] == ["interrupted", "complete"]
    assert_all_digests_pass(_stored_warcs(ws))
    with ws.open_catalog() as catalog, catalog.session() as s:
        items = int(s.scalar(select(func.count()).select_from(Item)) or 0)
        versions = s.execute(
            select(ItemVersion.item_id, func.count()).group_by(ItemVersion.item_id)
        ).all()
    assert items == posts + 1  # every post and the profile
    assert len(versions) == items
    assert {n for _, n in versions} == {1}, "an item was versioned twice"


def test_sighup_with_a_broken_config_keeps_the_schedule_running(
    tmp_path: Path, httpserver: HTTPServer, notifications: Notifications
) -> None:
    fake = _fake(httpserver, posts=2)
    ws = _workspace(tmp_path, fake, notifications, schedule="10s")

    def complete() -> int:
        return sum(r.status == "complete" for r in _runs(ws))

    with ws.running() as run:
        notifications.wait_for("READY=1")
        _wait(
            "the first capture",
            lambda: ws.var.joinpath("catalog.sqlite3").exists() and complete() >= 1,
            run,
        )
        good = ws.config.read_text()
        ws.config.write_text(good.replace('schedule = "10s"', 'schedule = "every now and then"'))
        run.proc.send_signal(signal.SIGHUP)
        _wait(
            "the refusal",
            lambda: any(
                e["event"].startswith("configuration reload refused") for e in _events(run)
            ),  # type: ignore[union-attr]
            run,
        )
        notifications.wait_for(
            "STATUS=1 accounts scheduled; 0 capturing; 0 due; store ok; config reload refused"
        )
        # The old schedule keeps running: the next capture comes 10 s after the first.
        _wait("the next capture", lambda: complete() >= 2, run, timeout=40)
        assert run.proc.poll() is None
        code, _ = run.stop(signal.SIGTERM, timeout=40)
    assert code == 0, run.output()
    refused = next(
        e for e in _events(run) if str(e["event"]).startswith("configuration reload refused")
    )
    assert "every now and then" in str(refused["error"])


def test_a_run_that_cannot_reach_a_commit_within_stop_timeout_is_left_for_recovery(
    tmp_path: Path, httpserver: HTTPServer, notifications: Notifications
) -> None:
    fake = _fake(httpserver, posts=3, delay=4.0)  # the first answer comes after the timeout
    ws = _workspace(tmp_path, fake, notifications, stop_timeout="2s")

    with ws.running() as run:
        notifications.wait_for("READY=1")
        _wait(
            "the run to start",
            lambda: ws.var.joinpath("catalog.sqlite3").exists() and _runs(ws),
            run,
        )
        code, took = run.stop(signal.SIGTERM, timeout=20)
    assert code == 0, run.output()
    assert took < 2 + 1.5, run.output()
    assert notifications.fields("STOPPING=1")
    events = {str(e["event"]) for e in _events(run)}
    assert any(e.startswith("stop timeout reached") for e in events), events
    assert [r.status for r in _runs(ws)] == ["running"]  # as kill -9 would leave it

    # The next start finds the run, releases the dead process's lease and captures at once.
    fake.delay = 0.0
    with ws.running() as run:
        _wait("a complete run", lambda: any(r.status == "complete" for r in _runs(ws)), run)
        code, _ = run.stop(signal.SIGTERM, timeout=40)
    assert code == 0, run.output()
    first, second = _runs(ws)
    assert first.status == "interrupted" and "found at start-up" in (first.reason or "")
    assert second.status == "complete"
    assert_all_digests_pass(_stored_warcs(ws))
