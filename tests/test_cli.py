"""The ``archiver`` command line as its users meet it: exit codes, messages, no tracebacks.

Every test runs the installed console script in a child process, so what is checked is
what a shell or systemd sees. Exit codes are those of ``archiver/errors.py``.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from sqlalchemy import select, text

from archiver import __version__
from archiver.catalog.models import AuditEntry
from archiver.catalog.schema import schema_state
from archiver.errors import (
    CatalogError,
    ConfigError,
    PermissionDenied,
    SchemaMismatchError,
)
from tests.commands.clitools import (
    ARCHIVER,
    PASSWORD_ENV,
    Outcome,
    Workspace,
    clean_env,
    describe,
    make_workspace,
)

#: Every command that opens the configuration; none may touch data when it is invalid.
COMMANDS = [
    ("run",),
    ("status",),
    ("status", "--json"),
    ("catalog", "upgrade"),
    ("audit", "verify"),
]


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert 'File "' not in stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --------------------------------------------------------------------------- basics


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ARCHIVER), "--version"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == f"archiver, version {__version__}"


def test_help_lists_the_commands(workspace: Workspace) -> None:
    result = workspace.ok("--help")
    for command in ("run", "status", "catalog", "audit"):
        assert command in result.stdout


def test_an_unknown_command_is_a_usage_error(workspace: Workspace) -> None:
    result = workspace.archiver("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert_no_traceback(result.stderr)


# --------------------------------------------------------------------------- configuration

BAD_CONFIGS = {
    "unknown key": (
        '[archiver]\noperator = "X"\n\n[catalog]\nurll = "sqlite:///var/c.sqlite3"\n',
        "config.toml:5: catalog.urll: unknown key; did you mean 'url'?",
    ),
    "wrong type": (
        '[archiver]\noperator = "X"\n\n[warc]\nrotate_size = "1 GiB"\nrotate_idle = true\n',
        "config.toml:6: warc.rotate_idle:",
    ),
    "wrong type in an account": (
        '[archiver]\noperator = "X"\n\n[[accounts]]\nid = "a"\nplatform = "facebook"\n'
        'handle = "h"\ndepartment = "d"\nseries = "s"\nenabled = "yes"\n',
        "config.toml:10: accounts[0].enabled: expected true or false (got 'yes')",
    ),
    "missing operator": (
        '# no operator\n[archiver]\nnode = "a"\n',
        "config.toml:2: archiver.operator: required key is missing",
    ),
    "missing [archiver] table": (
        '[catalog]\nurl = "sqlite:///var/c.sqlite3"\n',
        'archiver: required key is missing: the [archiver] table, with at least operator = "..."',
    ),
    "TOML syntax error": (
        '[archiver]\noperator = "X"\nnode = \n',
        "config.toml:3: TOML syntax error",
    ),
    "a password in the catalog URL": (
        '[archiver]\noperator = "X"\n[catalog]\n'
        'url = "postgresql+psycopg://archiver:hunter2-secret@db.example.org/archiver"\n',
        "config.toml:4: catalog.url: the URL contains a password",
    ),
}


def _write_bad_config(tmp_path: Path, case: str) -> tuple[Workspace, str]:
    text, expected = BAD_CONFIGS[case]
    ws = make_workspace(tmp_path)
    ws.config.write_text(text, encoding="utf-8")
    return ws, expected


def assert_config_refused(
    ws: Workspace, result: Outcome | CompletedProcess[str], expected: str
) -> None:
    assert result.returncode == ConfigError.exit_code == 3, describe(result)
    assert expected in result.stderr
    assert str(ws.config) in result.stderr  # the file, as given to --config
    assert_no_traceback(result.stderr)
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert not (ws.root / "var").exists()
    assert not (ws.cwd / "var").exists()


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "missing operator"])
def test_archiver_run_with_an_invalid_config_exits_3_naming_file_line_and_key_and_touches_nothing(
    tmp_path: Path, case: str
) -> None:
    ws, expected = _write_bad_config(tmp_path, case)
    assert_config_refused(ws, ws.archiver("run"), expected)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_every_command_refuses_an_invalid_config_before_touching_anything(
    tmp_path: Path,
    case: str,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, expected = _write_bad_config(tmp_path, case)
    assert_config_refused(ws, ws.in_process(capsys, monkeypatch, *command), expected)


def test_every_problem_of_a_config_is_reported_at_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.config.write_text(
        '[archiver]\noperator = "X"\n[catalog]\nurll = "x"\n[spool]\nmax_bytes = true\n',
        encoding="utf-8",
    )
    result = ws.archiver("status")
    assert result.returncode == 3
    assert f"{ws.config}:4: catalog.urll" in result.stderr
    assert f"{ws.config}:6: spool.max_bytes" in result.stderr


def test_a_missing_config_file_exits_3_naming_the_path(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    missing = tmp_path / "etc" / "nowhere.toml"
    result = ws.archiver("--config", str(missing), "status")
    assert result.returncode == 3, describe(result)
    assert str(missing) in result.stderr
    assert "not found" in result.stderr
    assert_no_traceback(result.stderr)
    assert not (tmp_path / "etc").exists()


def test_the_config_path_can_come_from_the_environment(workspace: Workspace) -> None:
    result = subprocess.run(
        [str(ARCHIVER), "catalog", "upgrade"],
        capture_output=True,
        text=True,
        env={**workspace.env, "ARCHIVER_CONFIG": str(workspace.config)},
        cwd=workspace.cwd,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, describe(result)
    assert (workspace.var / "catalog.sqlite3").is_file()


def test_relative_paths_resolve_next_to_the_config_not_the_working_directory(
    workspace: Workspace,
) -> None:
    workspace.ok("catalog", "upgrade")
    assert (workspace.var / "catalog.sqlite3").is_file()
    assert (workspace.var / "store" / "layout-version").is_file()
    assert list(workspace.cwd.iterdir()) == []


# --------------------------------------------------------------------------- catalog problems


UNSUPPORTED = "catalog database 'mysql' is not supported; use sqlite or postgresql"


def test_a_catalog_url_of_an_unsupported_database_is_a_config_error_naming_the_line(
    tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path, catalog_url="mysql://archiver@localhost/archiver")
    result = ws.archiver("run")
    assert result.returncode == ConfigError.exit_code == 3, describe(result)
    assert UNSUPPORTED in result.stderr
    assert re.search(r"config\.toml:\d+: catalog\.url", result.stderr), result.stderr
    assert_no_traceback(result.stderr)
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_an_unsupported_database(
    tmp_path: Path,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = make_workspace(tmp_path, catalog_url="mysql://archiver@localhost/archiver")
    result = ws.in_process(capsys, monkeypatch, *command)
    assert result.returncode == 3, describe(result)
    assert UNSUPPORTED in result.stderr
    assert_no_traceback(result.stderr)


def _unreachable(tmp_path: Path) -> Workspace:
    url = f"postgresql+psycopg://archiver:pw-never-shown@127.0.0.1:{free_port()}/archiver"
    ws = make_workspace(tmp_path, catalog_url=url)
    assert ws.env[PASSWORD_ENV] == "pw-never-shown"
    return ws


def assert_unreachable(result: Outcome | CompletedProcess[str]) -> None:
    assert result.returncode == CatalogError.exit_code == 4, describe(result)
    assert "catalog operation failed on postgresql+psycopg://archiver:***@127.0.0.1" in (
        result.stderr
    )
    assert "Connection refused" in result.stderr
    assert_no_traceback(result.stderr)
    assert "pw-never-shown" not in result.stdout + result.stderr


def test_an_unreachable_postgresql_exits_4_without_showing_the_password(tmp_path: Path) -> None:
    assert_unreachable(_unreachable(tmp_path).archiver("run"))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_reports_an_unreachable_postgresql_as_a_catalog_error(
    tmp_path: Path,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert_unreachable(_unreachable(tmp_path).in_process(capsys, monkeypatch, *command))


def test_an_unset_password_variable_exits_3_naming_it(tmp_path: Path) -> None:
    ws = make_workspace(
        tmp_path, catalog_url=f"postgresql+psycopg://archiver:pw@127.0.0.1:{free_port()}/x"
    )
    del ws.env[PASSWORD_ENV]
    result = ws.archiver("status")
    assert result.returncode == 3, describe(result)
    assert f"environment variable {PASSWORD_ENV} is not set" in result.stderr
    assert_no_traceback(result.stderr)


NOT_MIGRATING = [c for c in COMMANDS if c[0] not in ("run", "catalog")]
NO_SCHEMA = "has no archiver schema yet: run `archiver catalog upgrade`"


def test_status_refuses_an_unmigrated_catalog_with_exit_5_naming_the_command_to_run(
    workspace: Workspace,
) -> None:
    result = workspace.archiver("status")
    assert result.returncode == SchemaMismatchError.exit_code == 5, describe(result)
    assert NO_SCHEMA in result.stderr
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("command", NOT_MIGRATING, ids=" ".join)
def test_commands_other_than_run_and_upgrade_never_migrate(
    workspace: Workspace,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(2):  # refusing created no schema: the second try is refused alike
        result = workspace.in_process(capsys, monkeypatch, *command)
        assert result.returncode == 5, describe(result)
        assert NO_SCHEMA in result.stderr
    with workspace.open_catalog() as catalog:
        assert schema_state(catalog).current is None


def _from_the_future(workspace: Workspace) -> None:
    workspace.ok("catalog", "upgrade")
    with workspace.open_catalog() as catalog, catalog.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))


def assert_too_new(result: Outcome | CompletedProcess[str]) -> None:
    assert result.returncode == SchemaMismatchError.exit_code == 5, describe(result)
    assert "9999_from_the_future, newer than this archiver knows" in result.stderr
    assert "upgrade the archiver package" in result.stderr
    assert_no_traceback(result.stderr)


def test_run_refuses_a_catalog_newer_than_the_code(workspace: Workspace) -> None:
    _from_the_future(workspace)
    assert_too_new(workspace.archiver("run"))


def test_every_command_refuses_a_catalog_newer_than_the_code(
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _from_the_future(workspace)
    for command in COMMANDS:
        if command != ("run",):  # in-process `run` would install signal handlers
            assert_too_new(workspace.in_process(capsys, monkeypatch, *command))


# --------------------------------------------------------------------------- who may act

NOBODY_UID = 65534


def _nobody_exists() -> bool:
    try:
        return pwd.getpwnam("nobody").pw_uid == NOBODY_UID
    except KeyError:
        return False


needs_root_and_nobody = pytest.mark.skipif(
    not (os.getuid() == 0 and _nobody_exists()),
    reason="needs to run as root with a 'nobody' user (uid 65534), to act as sudo does",
)


@needs_root_and_nobody
def test_staff_acting_through_sudo_without_the_role_are_refused_with_exit_8_and_audited(
    tmp_path: Path,
) -> None:
    """Root with SUDO_USER/SUDO_UID is what `sudo archiver ...` run by staff looks like."""
    ws = make_workspace(tmp_path, extra='\n[roles]\nrecords = "officer"\n')
    ws.ok("catalog", "upgrade")  # root acting directly is the service: admin
    sudo = {"SUDO_USER": "nobody", "SUDO_UID": str(NOBODY_UID), "SUDO_GID": str(NOBODY_UID)}

    result = ws.archiver("status", env=sudo)

    assert result.returncode == PermissionDenied.exit_code == 8, describe(result)
    assert "nobody (via sudo as root) may not run `archiver status`" in result.stderr
    assert "[roles]" in result.stderr
    assert_no_traceback(result.stderr)
    result = ws.archiver("catalog", "upgrade", env=sudo)
    assert result.returncode == 8
    assert "needs the role admin" in result.stderr

    with ws.open_catalog() as catalog, catalog.session() as s:
        denied = s.scalars(select(AuditEntry).where(AuditEntry.action == "permission.denied")).all()
        assert [(e.actor, e.subject) for e in denied] == [
            ("nobody (via sudo as root)", "status"),
            ("nobody (via sudo as root)", "catalog upgrade"),
        ]
        assert denied[0].detail["needs"] == ["legal", "officer"]
    assert ws.archiver("audit", "verify").returncode == 0
