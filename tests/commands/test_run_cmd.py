"""``archiver run``: the daemon as systemd runs it, started and stopped as a real process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import __version__
from archiver.catalog.models import Account, AuditEntry
from archiver.catalog.schema import head_revision
from archiver.store.base import LAYOUT_KEY, LAYOUT_VERSION
from tests.commands.clitools import (
    ACCOUNT_IDS,
    FB_TOKEN,
    PASSWORD_ENV,
    RunningArchiver,
    Workspace,
    describe,
    make_workspace,
)

#: A clean stop takes well under a second; this leaves room for a loaded machine.
STOP_WITHIN = 5.0


def _log_events(stderr: str) -> list[dict[str, object]]:
    """The JSON log events of ``stderr`` (the start-up banner is the one other line)."""
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
        else:
            assert line.startswith("archiver running as node "), line
    return events


def _actions(ws: Workspace) -> list[str]:
    with ws.open_catalog() as catalog, catalog.session() as s:
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))
        return [a for a in actions if a.startswith("daemon.")]


def _start(ws: Workspace, run: RunningArchiver) -> dict[str, object]:
    run.wait_until_running()
    status = ws.status()
    nodes = status["nodes"]
    assert isinstance(nodes, list)
    assert [(n["node"], n["state"], n["pid"]) for n in nodes] == [
        ("node-a", "running", run.proc.pid)
    ]
    return status


def _assert_stopped_cleanly(ws: Workspace, run: RunningArchiver) -> None:
    status = ws.status()
    (node,) = status["nodes"]  # type: ignore[misc]
    assert node["node"] == "node-a"
    assert node["state"] == "stopped"
    assert node["pid"] == run.proc.pid
    assert node["version"] == __version__
    assert status["counts"]["accounts"] == len(ACCOUNT_IDS)  # type: ignore[index]

    with ws.open_catalog() as catalog, catalog.session() as s:
        accounts = {a.id: a for a in s.scalars(select(Account))}
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert set(accounts) == set(ACCOUNT_IDS)
        assert accounts["mke-facebook"].platform == "facebook"
        assert accounts["mke-facebook"].department == "Office of the Mayor"
        assert accounts["mke-mastodon"].enabled is False
        assert [e.action for e in entries][-2:] == ["daemon.start", "daemon.stop"]
        start, stop = entries[-2:]
        assert start.subject == stop.subject == "node-a"
        assert start.detail["pid"] == stop.detail["pid"] == run.proc.pid
        assert start.detail["schema"] == head_revision()
        head_seq, head_hash = stop.seq, stop.hash

    anchors = sorted((ws.store_root / "control" / "audit").glob("*.json"))
    assert anchors, "the daemon anchors the audit chain's head in the store when it stops"
    anchored = json.loads(anchors[-1].read_text())
    assert (anchored["seq"], anchored["hash"], anchored["node"]) == (head_seq, head_hash, "node-a")

    verify = ws.ok("audit", "verify")
    assert f"{len(anchors)} anchored heads agree" in verify.stdout


@pytest.fixture
def debug_workspace(tmp_path: Path, catalog_url: str) -> Workspace:
    """Logging at DEBUG, so that as much as possible is written where a secret could leak."""
    return make_workspace(tmp_path, catalog_url=catalog_url, logging_level="DEBUG")


def test_run_starts_beats_and_stops_on_sigterm_with_exit_0(debug_workspace: Workspace) -> None:
    ws = debug_workspace
    with ws.running() as run:
        _start(ws, run)
        code, took = run.stop(signal.SIGTERM)

    assert code == 0, run.output()
    assert took < STOP_WITHIN, run.output()
    _assert_stopped_cleanly(ws, run)

    # Nothing goes to stdout: logs and the banner are on stderr, for journald.
    assert run.stdout == ""
    events = _log_events(run.stderr)
    by_name = {e["event"]: e for e in events}
    assert by_name["archiver running"]["accounts"] == len(ACCOUNT_IDS)
    assert by_name["archiver running"]["node"] == "node-a"
    assert by_name["stop requested"]["signal"] == "SIGTERM"
    assert "archiver stopped" in by_name


def test_run_never_prints_a_secret(debug_workspace: Workspace) -> None:
    ws = debug_workspace
    assert ws.env["ARCHIVER_FB_PAGE_TOKEN"] == FB_TOKEN
    with ws.running() as run:
        run.wait_until_running()
        code, _ = run.stop(signal.SIGTERM)
    assert code == 0, run.output()
    output = run.stdout + run.stderr
    for secret in ws.secrets:
        assert secret not in output
    if PASSWORD_ENV in ws.env:  # PostgreSQL: the URL is shown, its password is not
        assert ws.env[PASSWORD_ENV] not in output
        assert "postgresql+psycopg://" in output


def test_ctrl_c_stops_run_cleanly_with_exit_0(workspace: Workspace) -> None:
    with workspace.running() as run:
        _start(workspace, run)
        code, took = run.stop(signal.SIGINT)

    assert code == 0, run.output()
    assert took < STOP_WITHIN
    assert "interrupted" not in run.stderr
    _assert_stopped_cleanly(workspace, run)
    assert {"event": "stop requested", "signal": "SIGINT"}.items() <= next(
        e for e in _log_events(run.stderr) if e["event"] == "stop requested"
    ).items()


def test_a_restart_keeps_one_row_per_account_and_a_verifiable_chain(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    for _ in range(2):
        with ws.running() as run:
            run.wait_until_running()
            code, _ = run.stop()
        assert code == 0, run.output()

    assert _actions(ws) == ["daemon.start", "daemon.stop", "daemon.start", "daemon.stop"]
    assert ws.status()["counts"]["accounts"] == 2  # type: ignore[index]
    assert len(list((ws.store_root / "control" / "audit").glob("*.json"))) == 2
    assert "2 anchored heads agree" in ws.ok("audit", "verify").stdout


def test_run_updates_accounts_from_the_config_and_keeps_those_removed_from_it(
    tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    with ws.running() as run:
        run.wait_until_running()
        assert run.stop()[0] == 0, run.output()

    text = ws.config.read_text().replace("Office of the Mayor", "Office of the Clerk")
    text = text[: text.index('[[accounts]]\nid = "mke-mastodon"')]
    ws.config.write_text(text)
    with ws.running() as run:
        run.wait_until_running()
        assert run.stop()[0] == 0, run.output()

    with ws.open_catalog() as catalog, catalog.session() as s:
        accounts = {a.id: a for a in s.scalars(select(Account))}
    assert set(accounts) == set(ACCOUNT_IDS)  # records outlive the configuration
    assert accounts["mke-facebook"].department == "Office of the Clerk"


def test_run_refuses_a_store_of_an_unknown_layout_version(workspace: Workspace) -> None:
    workspace.put_object(LAYOUT_KEY, json.dumps({"layout": LAYOUT_VERSION + 98}).encode())
    result = workspace.archiver("run", timeout=30)
    assert result.returncode == 6, describe(result)
    assert str(LAYOUT_VERSION + 98) in result.stderr
    assert "Traceback" not in result.stderr
    assert "daemon.start" not in _actions(workspace)
