"""Helpers for tests that drive the real ``archiver`` command in a child process.

A :class:`Workspace` is one installation in a temporary directory: a ``config.toml`` whose
relative paths (``var/``) resolve next to it, the environment the commands run with, and a
way to look into the catalog and the store the commands wrote. Commands run as separate
processes through the console script next to ``sys.executable``, so exit codes, stderr
and signal handling are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy.engine import make_url

from archiver import logging as archiver_logging
from archiver.catalog import Catalog
from archiver.cli import main
from archiver.store import LocalStore

ARCHIVER = Path(sys.executable).with_name("archiver")
#: Environment variable the workspace's config names for a PostgreSQL password.
PASSWORD_ENV = "ARCHIVER_TEST_CATALOG_PASSWORD"
#: A credential a configured account refers to; it must never show in any output.
FB_TOKEN_ENV = "ARCHIVER_FB_PAGE_TOKEN"
FB_TOKEN = "EAAB-very-secret-123"
#: How long a command may take before the test fails rather than hangs.
COMMAND_TIMEOUT = 60
#: How long ``archiver run`` may take to start, and to stop after a signal.
START_TIMEOUT = 30
STOP_TIMEOUT = 15

ACCOUNTS = """
[[accounts]]
id = "mke-facebook"
platform = "facebook"
handle = "CityofMilwaukee"
platform_id = "123456789012345"
department = "Office of the Mayor"
series = "social-media"
schedule = "1h"
credentials = { page_token = { env = "ARCHIVER_FB_PAGE_TOKEN" } }

[[accounts]]
id = "mke-mastodon"
platform = "mastodon"
handle = "cityofmilwaukee@mastodon.social"
department = "Department of Public Works"
series = "social-media"
schedule = "6h"
enabled = false
"""
ACCOUNT_IDS = ("mke-facebook", "mke-mastodon")


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that would change who acts or which
    config is read (``ARCHIVER_*``, ``SUDO_*``, ``CREDENTIALS_DIRECTORY``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARCHIVER_", "SUDO_")) and k != "CREDENTIALS_DIRECTORY"
    }
    env.update(extra or {})
    return env


def catalog_section(url: str | None) -> tuple[str, dict[str, str]]:
    """The ``[catalog]`` table for ``url`` and the environment it needs.

    The configuration refuses a password inside the URL, so a PostgreSQL password is moved
    into ``password = { env = ... }`` and the returned environment.
    """
    if url is None:
        return "", {}
    parsed = make_url(url)
    env: dict[str, str] = {}
    lines = ["[catalog]"]
    if parsed.password is not None:
        env[PASSWORD_ENV] = str(parsed.password)
        parsed = parsed._replace(password=None)
        lines.append(f"url = {toml_str(parsed.render_as_string(hide_password=False))}")
        lines.append(f'password = {{ env = "{PASSWORD_ENV}" }}')
    else:
        lines.append(f"url = {toml_str(url)}")
    return "\n".join(lines) + "\n", env


@dataclass
class Workspace:
    """One installation in a directory: config, environment, and what the commands wrote."""

    root: Path
    config: Path
    env: dict[str, str]
    cwd: Path
    #: The catalog's URL with any password in it, for looking into the catalog directly.
    direct_url: str
    secrets: list[str] = field(default_factory=list)

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def store_root(self) -> Path:
        return self.var / "store"

    def archiver(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``archiver --config <config> *args`` to completion."""
        return subprocess.run(
            [str(ARCHIVER), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            timeout=timeout,
            check=False,
        )

    def in_process(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        *args: str,
    ) -> Outcome:
        """Run the CLI's entry point in this process (much faster than a child; for
        commands that fail before they would start anything long-lived)."""
        for name in list(os.environ):
            if name not in self.env:
                monkeypatch.delenv(name)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(self.cwd)
        capsys.readouterr()
        # `run` configures logging onto the captured stderr; undo that afterwards.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        monkeypatch.setattr(archiver_logging, "_handler", archiver_logging._handler)
        try:
            with pytest.raises(SystemExit) as exited:
                main(["--config", str(self.config), *args])
        finally:
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
        out, err = capsys.readouterr()
        code = exited.value.code
        return Outcome(code if isinstance(code, int) else 1, out, err)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command that must succeed; fail the test with its output otherwise."""
        result = self.archiver(*args)
        assert result.returncode == 0, describe(result)
        return result

    def status(self) -> dict[str, object]:
        report: dict[str, object] = json.loads(self.ok("status", "--json").stdout)
        return report

    @contextmanager
    def open_catalog(self) -> Iterator[Catalog]:
        catalog = Catalog.open(self.direct_url)
        try:
            yield catalog
        finally:
            catalog.dispose()

    def store(self) -> LocalStore:
        return LocalStore(self.store_root)

    def put_object(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in the workspace's store, as the archiver would."""
        source = self.root / "object-to-put"
        source.write_bytes(data)
        try:
            self.store().put(key, source, hashlib.sha256(data).hexdigest())
        finally:
            source.unlink()

    @contextmanager
    def running(self, *args: str) -> Iterator[RunningArchiver]:
        """``archiver run`` as a child process; killed on the way out if still alive."""
        proc = RunningArchiver(self, args)
        try:
            yield proc
        finally:
            proc.kill()


def make_workspace(
    root: Path,
    *,
    catalog_url: str | None = None,
    accounts: str = ACCOUNTS,
    extra: str = "",
    logging_level: str = "INFO",
    node: str = "node-a",
) -> Workspace:
    """Write ``root/config.toml`` (SQLite under ``root/var`` unless ``catalog_url``)."""
    root.mkdir(parents=True, exist_ok=True)
    catalog, env = catalog_section(catalog_url)
    text = (
        "[archiver]\n"
        'operator = "City of Testing"\n'
        f"node = {toml_str(node)}\n"
        "\n"
        f"{catalog}"
        "\n"
        "[logging]\n"
        f'level = "{logging_level}"\n'
        'format = "json"\n'
        f"{extra}\n"
        f"{accounts}"
    )
    config = root / "config.toml"
    config.write_text(text, encoding="utf-8")
    # Commands run from elsewhere: relative paths must follow the config, not the cwd.
    cwd = root / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env[FB_TOKEN_ENV] = FB_TOKEN
    return Workspace(
        root=root,
        config=config,
        env=clean_env(env),
        cwd=cwd,
        direct_url=catalog_url or f"sqlite:///{root / 'var' / 'catalog.sqlite3'}",
        secrets=[FB_TOKEN, *(v for k, v in env.items() if k == PASSWORD_ENV)],
    )


@dataclass(frozen=True)
class Outcome:
    """Exit code and output of a command run in-process."""

    returncode: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ("archiver (in-process)",)


def describe(result: subprocess.CompletedProcess[str] | Outcome) -> str:
    return (
        f"exit {result.returncode} from {' '.join(map(str, result.args))}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


class RunningArchiver:
    """A live ``archiver run``; its output goes to files so the pipes never fill up."""

    def __init__(self, ws: Workspace, args: tuple[str, ...]) -> None:
        self.ws = ws
        self.stdout_path = ws.root / "run.stdout"
        self.stderr_path = ws.root / "run.stderr"
        self._out: IO[bytes] = self.stdout_path.open("wb")
        self._err: IO[bytes] = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [str(ARCHIVER), "--config", str(ws.config), "run", *args],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env=ws.env,
            cwd=ws.cwd,
        )
        self.started = time.monotonic()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def wait_until_running(self, timeout: float = START_TIMEOUT) -> float:
        """Wait for the start-up banner (printed once start-up is done); seconds taken."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if "Stop with Ctrl-C" in self.stderr:
                return time.monotonic() - self.started
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"archiver run exited with {code} while starting\n{self.output()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"archiver run did not start within {timeout} s\n{self.output()}")

    def stop(
        self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT
    ) -> tuple[int, float]:
        """Send ``signum`` and wait for the exit; returns (exit code, seconds it took)."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"archiver run still alive {timeout} s after {signal.Signals(signum).name}\n"
                f"{self.output()}"
            ) from None
        return code, time.monotonic() - sent

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._out.close()
        self._err.close()
