"""pytest plugin: a throw-away PostgreSQL server for the test suite.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.pgcluster"]`` (or
``-p tests.pgcluster``). It provides

- ``pg_url`` (session): a SQLAlchemy URL (``postgresql+psycopg://...``) of a database
  that lives for the whole session;
- ``pg_database_url`` (function): a fresh, empty database for one test, dropped after it
  (``DROP DATABASE ... WITH (FORCE)``).

Tests that use either are marked ``postgres`` automatically (``-m "not postgres"``).

Which server
------------
If ``ARCHIVER_TEST_PG_URL`` is set, that server is used (its role needs ``CREATEDB``) and
nothing is started. Otherwise, on first use, a cluster is created in a temporary
directory under ``/tmp`` from the newest server binaries found (``ARCHIVER_TEST_PG_BINDIR``,
``/usr/lib/postgresql/<version>/bin``, ``/usr/pgsql-<version>/bin``, ``pg_config
--bindir``, ``initdb`` on ``PATH``), started on a free loopback port with durability off
(``fsync``, ``full_page_writes``, ``synchronous_commit``), and stopped and removed at the
end of the session. ``initdb`` and ``postgres`` refuse to run as root, so as root they run
as the ``postgres`` OS user (``runuser``, else ``su``). The socket directory lives inside
the 0700 cluster directory and TCP connections need a random password, so other local
users cannot reach the server.

If the server cannot be started the tests that need it are skipped, except when
``CI=true``, where they fail with the reason and the tail of the server log. Either way
the terminal summary says whether PostgreSQL was used, where, and how long it took to start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

ENV_URL = "ARCHIVER_TEST_PG_URL"
ENV_BINDIR = "ARCHIVER_TEST_PG_BINDIR"
SESSION_DATABASE = "archiver_test"
OS_USER = "postgres"
START_ATTEMPTS = 3
LOG_TAIL_LINES = 40
COMMAND_TIMEOUT = 120


class ClusterError(Exception):
    """The throw-away cluster could not be created or started."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail


@dataclass
class PgServer:
    """A PostgreSQL server the suite may use, and how to reach it."""

    url: str  # SQLAlchemy URL of the session database
    admin_conninfo: str  # libpq URL of a database to run CREATE/DROP DATABASE from
    external: bool
    version: str = ""
    start_seconds: float | None = None
    initdb_seconds: float | None = None
    root: Path | None = None
    bindir: Path | None = None
    _stop: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the cluster and remove its directory (no-op for an external server)."""
        if self.root is None:
            return
        root, self.root = self.root, None
        if self._stop:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    self._stop,
                    capture_output=True,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                    env=_clean_env(),
                )
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class _State:
    server: PgServer | None = None
    error: str | None = None
    requested: bool = False


_STATE_KEY = pytest.StashKey[_State]()


# --------------------------------------------------------------------------- helpers


def hide_password(url: str) -> str:
    """*url* with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _to_sqlalchemy(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {hide_password(url)}")
    return f"postgresql+psycopg://{rest}" if scheme.startswith("postgres") else url


def _to_libpq(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def _version_key(path: Path) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", path.as_posix())
    return tuple(int(n) for n in numbers) or (0,)


def find_bindir() -> Path | None:
    """The directory of the newest PostgreSQL server binaries on this machine, if any."""
    explicit = os.environ.get(ENV_BINDIR)
    if explicit:
        return Path(explicit)
    candidates = [
        p
        for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
        for p in Path("/").glob(pattern.lstrip("/"))
        if (p / "initdb").is_file() and (p / "pg_ctl").is_file()
    ]
    if candidates:
        return max(candidates, key=_version_key)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out and (Path(out) / "initdb").is_file():
                return Path(out)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _Runner:
    """Runs server binaries as the right OS user."""

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.owner: pwd.struct_passwd | None = None
        self.prefix: list[str] = []
        self.use_su = False
        if not self.as_root:
            return
        try:
            self.owner = pwd.getpwnam(OS_USER)
        except KeyError:
            raise ClusterError(
                f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as"
            ) from None
        runuser = shutil.which("runuser") or (
            "/usr/sbin/runuser" if Path("/usr/sbin/runuser").exists() else None
        )
        if runuser:
            self.prefix = [runuser, "-u", OS_USER, "--"]
        elif shutil.which("su"):
            self.use_su = True
        else:
            raise ClusterError("running as root and neither runuser nor su is available")

    def command(self, argv: list[str]) -> list[str]:
        if self.use_su:
            return ["su", OS_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]
        return [*self.prefix, *argv]

    def give(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def run(self, argv: list[str], what: str, log: Path | None = None) -> None:
        try:
            result = subprocess.run(
                self.command(argv),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                env=_clean_env(),
                cwd="/",
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ClusterError(f"{what} could not run: {exc}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            tail = _tail(log) if log is not None else ""
            raise ClusterError(f"{what} failed (exit {result.returncode}): {output[-2000:]}", tail)


# --------------------------------------------------------------------------- cluster


def start_cluster(bindir: Path) -> PgServer:
    """Create and start a throw-away cluster with the binaries in *bindir*."""
    runner = _Runner()
    root = Path(tempfile.mkdtemp(prefix="archiver-pg-", dir="/tmp"))
    try:
        return _start_in(root, bindir, runner)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _start_in(root: Path, bindir: Path, runner: _Runner) -> PgServer:
    root.chmod(0o700)
    runner.give(root)
    data, sockdir, log = root / "data", root / "sock", root / "server.log"
    password = secrets.token_urlsafe(24)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    runner.give(pwfile)
    sockdir.mkdir(mode=0o700)
    runner.give(sockdir)

    started = time.monotonic()
    runner.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        ],
        "initdb",
    )
    pwfile.unlink()
    initdb_seconds = time.monotonic() - started

    pg_ctl = str(bindir / "pg_ctl")
    stop = runner.command([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
    last_error: ClusterError | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        options = (
            f"-F -k {sockdir} -p {port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        try:
            runner.run(
                [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
                "pg_ctl start",
                log,
            )
        except ClusterError as exc:
            last_error = exc
            if "already in use" in exc.log_tail or "could not bind" in exc.log_tail:
                continue  # lost the race for the port; try another one
            raise
        break
    else:
        assert last_error is not None
        raise last_error
    start_seconds = time.monotonic() - started

    base = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}"
    server = PgServer(
        url="",
        admin_conninfo=f"{base}/postgres",
        external=False,
        root=root,
        bindir=bindir,
        start_seconds=start_seconds,
        initdb_seconds=initdb_seconds,
        _stop=stop,
    )
    try:
        with psycopg.connect(server.admin_conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{SESSION_DATABASE}"')
            row = conn.execute("SHOW server_version").fetchone()
            server.version = str(row[0]) if row else ""
    except psycopg.Error as exc:
        server.stop()
        raise ClusterError(f"the started server refused a connection: {exc}", _tail(log)) from exc
    server.url = _to_sqlalchemy(f"{base}/{SESSION_DATABASE}")
    return server


def external_server(url: str) -> PgServer:
    """The server named by ``ARCHIVER_TEST_PG_URL``, checked to answer."""
    server = PgServer(
        url=_to_sqlalchemy(url),
        admin_conninfo=_to_libpq(url),
        external=True,
    )
    started = time.monotonic()
    try:
        with psycopg.connect(server.admin_conninfo, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server.version = str(row[0]) if row else ""
    except psycopg.Error as exc:
        raise ClusterError(f"{ENV_URL} ({hide_password(url)}) is not reachable: {exc}") from exc
    server.start_seconds = time.monotonic() - started
    return server


def _unavailable(state: _State, error: ClusterError) -> NoReturn:
    state.error = error.message
    if os.environ.get("CI") == "true":
        detail = f"\n--- server log (tail) ---\n{error.log_tail}" if error.log_tail else ""
        pytest.fail(f"PostgreSQL is required in CI: {error.message}{detail}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {error.message}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """The PostgreSQL server of the session (started on first use)."""
    state = request.config.stash.setdefault(_STATE_KEY, _State())
    state.requested = True
    url = os.environ.get(ENV_URL)
    try:
        if url:
            server = external_server(url)
        else:
            bindir = find_bindir()
            if bindir is None:
                raise ClusterError(
                    f"no PostgreSQL server binaries found (install postgresql, "
                    f"or set {ENV_BINDIR} or {ENV_URL})"
                )
            if not (bindir / "initdb").is_file():
                raise ClusterError(f"{bindir} holds no initdb")
            server = start_cluster(bindir)
    except ClusterError as exc:
        _unavailable(state, exc)
    state.server = server
    atexit.register(server.stop)  # in case the session ends without teardown
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """SQLAlchemy URL of a PostgreSQL database shared by the whole session."""
    return pg_server.url


@pytest.fixture
def pg_database_url(pg_server: PgServer) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _to_sqlalchemy(_with_database(pg_server.admin_conninfo, name))
    finally:
        with psycopg.connect(pg_server.admin_conninfo, autocommit=True) as conn:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.SyntaxError:  # server older than 13
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE_KEY] = _State()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"pg_server", "pg_url", "pg_database_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get(ENV_URL)
    if url:
        return f"postgresql: {ENV_URL} = {hide_password(_to_sqlalchemy(url))}"
    bindir = find_bindir()
    if bindir is None:
        return "postgresql: no server binaries found; tests that need it will be skipped"
    return f"postgresql: throw-away cluster from {bindir} (started on first use)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return
    if getattr(config.option, "dist", "no") != "no":  # pytest-xdist controller
        line = "postgresql: each xdist worker uses its own server (see above)"
    elif not state.requested:
        line = "postgresql: not used by the selected tests"
    elif state.server is not None:
        s = state.server
        if s.external:
            line = f"postgresql: external server {s.version} at {hide_password(s.url)}"
        else:
            line = (
                f"postgresql: throw-away cluster {s.version} from {s.bindir} at "
                f"{hide_password(s.url)}; initdb {s.initdb_seconds:.2f} s, "
                f"ready after {s.start_seconds:.2f} s"
            )
    else:
        line = f"postgresql: NOT available ({state.error})"
    terminalreporter.write_sep("-", "postgresql")
    terminalreporter.write_line(line)
