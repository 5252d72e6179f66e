"""Helpers for tests that run ``archiver run`` daemons as real processes and kill them.

A :class:`Node` is one installation of a node: its own directory with a ``config.toml``,
its own spool, and a catalog URL and store directory that several nodes may share. A
:class:`DaemonProcess` is one ``archiver run`` of a node, its output going to numbered log
files in the node's directory (``run-<n>.stderr``), so a test can start the same node many
times and still read what each process said. :func:`wait_for` is the one bounded poll loop
the tests wait with: it gives up after a number of polls and a number of seconds, and at
once when a daemon it watches dies, with the daemons' last log lines in the failure.

Fake platforms run on ``127.0.0.1`` only: :func:`fake_bluesky_server` starts a threaded
pytest-httpserver (several daemons and their workers may call it at once) and puts a
:class:`~tests.connectors.fake_bluesky.FakeBluesky` on it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TypeVar

from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from archiver.catalog import Catalog
from archiver.catalog.models import CaptureRun, Lease
from archiver.errors import CatalogError
from tests.commands.clitools import ARCHIVER, catalog_section, clean_env, toml_str
from tests.connectors.fake_bluesky import FakeBluesky

T = TypeVar("T")

#: Environment a daemon must not inherit from whatever runs the tests: systemd's
#: notification and watchdog variables would make it talk to the wrong service manager.
SERVICE_MANAGER_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
#: How long a killed or stopped daemon may take to be reaped.
REAP_TIMEOUT = 15.0
#: Log lines of each daemon shown when a wait fails.
TAIL_LINES = 30
#: The fake's request quota per window: more than any test here uses.
RATE_LIMIT = 1_000_000


# --- fake platforms ---------------------------------------------------------------------


@contextmanager
def fake_bluesky_server(days_ago: float = 3) -> Iterator[FakeBluesky]:
    """A FakeBluesky on its own threaded server on 127.0.0.1; its clock ``days_ago`` back.

    The fake's posts are then recent enough for every run's rescan to walk their threads;
    its rate-limit quota is out of reach. Werkzeug's per-request log lines are kept out of
    the test report.
    """
    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        fake = FakeBluesky(server)
        fake.now = datetime.now(UTC) - timedelta(days=days_ago)
        # Many runs in a few minutes would use up the AppView's real quota (3000 per 5 min),
        # and a daemon would rightly stop its runs incomplete until the window resets.
        fake.rate_limit = RATE_LIMIT
        yield fake
    finally:
        server.clear()
        if server.is_running():
            server.stop()
        quiet.setLevel(level)


def bluesky_account(
    account_id: str,
    fake: FakeBluesky,
    *,
    schedule: str = "10s",
    page_size: int = 10,
    rescan_days: int = 14,
) -> str:
    """An ``[[accounts]]`` table capturing the fake's City account."""
    return (
        "[[accounts]]\n"
        f"id = {toml_str(account_id)}\n"
        'platform = "bluesky"\n'
        f"handle = {toml_str(fake.handle)}\n"
        f"api_base = {toml_str(fake.base_url)}\n"
        'department = "Office of the Mayor"\n'
        'series = "social-media"\n'
        f"schedule = {toml_str(schedule)}\n"
        f"rescan_days = {rescan_days}\n"
        f"options = {{ page_size = {page_size} }}\n"
    )


# --- nodes and their processes ----------------------------------------------------------


@dataclass
class Node:
    """One node's installation: config, environment, spool; catalog and store may be shared."""

    name: str
    root: Path
    config: Path
    env: dict[str, str]
    spool: Path
    store: Path
    #: The catalog URL with any password in it, for the test to look into the catalog.
    catalog_url: str
    starts: int = 0


def make_node(
    root: Path,
    *,
    name: str,
    catalog_url: str,
    store: Path,
    accounts: str,
    daemon: Mapping[str, str | int],
    extra: str = "",
) -> Node:
    """Write ``root/config.toml`` for node ``name``; the spool is ``root/spool``.

    ``daemon`` holds the ``[daemon]`` keys, values written as TOML (strings quoted).
    A PostgreSQL password in ``catalog_url`` goes into the environment, as the
    configuration refuses it inside the URL.
    """
    root.mkdir(parents=True, exist_ok=True)
    catalog, env = catalog_section(catalog_url)
    daemon_lines = "".join(
        f"{key} = {toml_str(value) if isinstance(value, str) else value}\n"
        for key, value in daemon.items()
    )
    spool = root / "spool"
    text = (
        "[archiver]\n"
        'operator = "City of Testing"\n'
        f"node = {toml_str(name)}\n"
        "\n"
        f"{catalog}\n"
        "[store]\n"
        f"path = {toml_str(str(store))}\n"
        "\n"
        "[spool]\n"
        f"path = {toml_str(str(spool))}\n"
        "\n"
        "[http]\n"
        "max_retries = 2\n"
        'max_wait = "5s"\n'
        "\n"
        "[daemon]\n"
        f"{daemon_lines}\n"
        "[logging]\n"
        'level = "INFO"\n'
        'format = "json"\n'
        f"{extra}\n"
        f"{accounts}"
    )
    config = root / "config.toml"
    config.write_text(text, encoding="utf-8")
    child_env = clean_env(env)
    for name_ in SERVICE_MANAGER_ENV:
        child_env.pop(name_, None)
    return Node(name, root, config, child_env, spool, store, catalog_url)


@dataclass
class DaemonProcess:
    """One ``archiver run`` of a node; stdout and stderr go to numbered files in its root."""

    node: Node
    proc: subprocess.Popen[bytes] = field(init=False)
    number: int = field(init=False)
    started: float = field(init=False)
    _files: list[IO[bytes]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.node.starts += 1
        self.number = self.node.starts
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(ARCHIVER), "--config", str(self.node.config), "run"],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=self.node.env,
            cwd=self.node.root,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def holder(self) -> str:
        """How this process names itself as a lease holder."""
        return f"{self.node.name}:{self.pid}"

    @property
    def stdout_path(self) -> Path:
        return self.node.root / f"run-{self.number}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.node.root / f"run-{self.number}.stderr"

    def poll(self) -> int | None:
        return self.proc.poll()

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of this process's output, for a failure message."""
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        out = self.stdout_path.read_text(encoding="utf-8", errors="replace").splitlines()
        shown = "\n".join(text[-lines:])
        return (
            f"--- {self.node.name} run #{self.number} (pid {self.pid}, exit {self.poll()}): "
            f"stderr, last {lines} lines\n{shown}\n--- stdout\n" + "\n".join(out[-lines:])
        )

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL and reap; the exit code (``-9`` unless it had exited already)."""
        self.signal(signal.SIGKILL)
        return self.wait(REAP_TIMEOUT)

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM and wait for the exit; (exit code, seconds it took)."""
        sent = time.monotonic()
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        return code, time.monotonic() - sent

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=REAP_TIMEOUT)
            self._close()
            raise AssertionError(
                f"{self.node.name} run #{self.number} still alive {timeout} s on\n{self.tail()}"
            ) from None
        self._close()
        return code

    def _close(self) -> None:
        for f in self._files:
            f.close()

    def cleanup(self) -> None:
        """Kill the process if it is still alive (on the way out of a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=REAP_TIMEOUT)
        self._close()


@contextmanager
def daemons() -> Iterator[list[DaemonProcess]]:
    """A list to put started daemons in; whatever is still alive is killed on the way out."""
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for d in started:
            d.cleanup()


# --- waiting --------------------------------------------------------------------------


def wait_for(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    watch: Sequence[DaemonProcess] = (),
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something other than None (or False); return that.

    Bounded twice: at most ``timeout / interval + 1`` polls and at most ``timeout``
    seconds. A daemon in ``watch`` that exits meanwhile fails the wait at once. The failure
    names ``what``, adds ``explain()`` (e.g. the catalog's view) and the daemons' output.
    """
    deadline = time.monotonic() + timeout
    polls = int(timeout / interval) + 1
    for _ in range(polls):
        value = check()
        if value is not None and value is not False:
            return value
        for d in watch:
            if d.poll() is not None:
                raise AssertionError(
                    f"{d.node.name} run #{d.number} exited with {d.poll()} while waiting "
                    f"for {what}\n{d.tail()}"
                )
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = explain() if explain is not None else ""
    outputs = "\n".join(d.tail() for d in watch)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}\n{detail}\n{outputs}")


# --- looking into the catalog -----------------------------------------------------------


class CatalogProbe:
    """The test's own view of a catalog that daemons create and migrate.

    The catalog is opened on first use, and for SQLite only once the daemon has created
    the file (the test must not create it first). :meth:`read` answers None while the
    catalog does not exist yet or has no tables.
    """

    def __init__(self, url: str, sqlite_path: Path | None = None) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self._catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.open(self.url)
        return self._catalog

    def read(self, query: Callable[[Catalog], T]) -> T | None:
        if self._catalog is None and self.sqlite_path is not None and not self.sqlite_path.exists():
            return None
        try:
            return query(self.catalog)
        except CatalogError:
            return None

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.dispose()
            self._catalog = None


def max_run_id(catalog: Catalog) -> int:
    """The highest capture-run id so far (0 before the first)."""
    with catalog.reader() as s:
        return int(s.scalar(select(func.max(CaptureRun.id))) or 0)


def runs_after(catalog: Catalog, after: int) -> list[CaptureRun]:
    """Capture runs with an id above ``after``, oldest first."""
    with catalog.reader() as s:
        return list(
            s.scalars(select(CaptureRun).where(CaptureRun.id > after).order_by(CaptureRun.id))
        )


def leases(catalog: Catalog) -> list[Lease]:
    with catalog.reader() as s:
        return list(s.scalars(select(Lease).order_by(Lease.account_id)))


def describe_runs_and_leases(probe: CatalogProbe) -> str:
    """The capture runs and leases as lines, for a failure message."""

    def query(catalog: Catalog) -> str:
        now = datetime.now(UTC)
        lines = ["capture runs:"]
        lines += [
            f"  #{r.id} {r.account_id} node={r.node} gen={r.lease_generation} {r.status} "
            f"{r.started_at:%H:%M:%S.%f}..{r.finished_at and f'{r.finished_at:%H:%M:%S.%f}'} "
            f"{r.reason or ''}"
            for r in runs_after(catalog, 0)
        ]
        lines.append(f"leases (now {now:%H:%M:%S.%f}):")
        lines += [
            f"  {lease.account_id} holder={lease.holder} gen={lease.generation} "
            f"expires={lease.expires_at and f'{lease.expires_at:%H:%M:%S.%f}'}"
            for lease in leases(catalog)
        ]
        return "\n".join(lines)

    return probe.read(query) or "(the catalog could not be read)"
