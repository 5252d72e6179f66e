"""``archiver status``: counts, spool and daemons, as a table or as stable JSON."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from archiver import health
from archiver.accounts import reconcile
from archiver.catalog import Catalog
from archiver.catalog.models import Account, CaptureRun, Heartbeat
from archiver.catalog.schema import head_revision
from archiver.config import load_config
from tests.commands.clitools import Workspace, describe, make_workspace

COUNTS = {
    "accounts",
    "capture_runs",
    "items",
    "item_versions",
    "media",
    "stored_files",
    "audit_entries",
}


def test_status_json_reports_catalog_store_counts_spool_and_nodes(
    any_workspace: Workspace,
) -> None:
    ws = any_workspace
    ws.ok("catalog", "upgrade")

    result = ws.ok("status", "--json")

    report = json.loads(result.stdout)
    assert {"catalog", "store", "counts", "spool", "nodes"} <= set(report)
    assert report["catalog"]["schema"] == head_revision()
    assert set(report["counts"]) == COUNTS
    assert report["counts"]["audit_entries"] == 1  # the upgrade
    assert report["counts"]["accounts"] == 0  # registered by `run`, not by upgrade
    assert report["store"] == (ws.store_root).resolve().as_uri()
    assert report["spool"]["path"] == str(ws.var / "spool")
    assert report["spool"]["open_files"] == report["spool"]["waiting_files"] == 0
    assert report["nodes"] == []
    for secret in ws.secrets:
        assert secret not in result.stdout + result.stderr
    if ws.env.get("ARCHIVER_TEST_CATALOG_PASSWORD"):
        assert ":***@" in report["catalog"]["url"]


def test_status_without_json_is_a_readable_summary(workspace: Workspace) -> None:
    workspace.ok("catalog", "upgrade")
    out = workspace.ok("status").stdout
    assert f"(schema {head_revision()})" in out
    assert "spool" in out
    assert "no daemon has run yet" in out


def test_status_reads_and_never_writes_the_audit_log(workspace: Workspace) -> None:
    workspace.ok("catalog", "upgrade")
    before = workspace.status()["counts"]
    after = workspace.status()["counts"]
    assert before == after


# --- status --check ------------------------------------------------------------------------
#
# The workspace's node is "node-a"; mke-facebook (enabled, schedule 1h: staleness limit 3h)
# reads its token from $ARCHIVER_FB_PAGE_TOKEN; mke-mastodon is disabled and never checked.


def _now() -> datetime:
    return datetime.now(UTC)


def _beat(
    catalog: Catalog,
    *,
    age: timedelta = timedelta(seconds=5),
    state: str = "running",
    detail: dict[str, Any] | None = None,
) -> None:
    now = _now()
    with catalog.session() as s:
        s.merge(
            Heartbeat(
                node="node-a",
                pid=4242,
                version="0.1.0",
                started_at=now - timedelta(days=1),
                beat_at=now - age,
                state=state,
                detail=detail or {},
            )
        )


def _healthy(ws: Workspace) -> None:
    """An upgraded catalog, registered accounts, a fresh beat and a recent good run."""
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        reconcile(
            load_config(ws.config), catalog, "archiver", clock=lambda: _now() - timedelta(days=2)
        )
        _beat(catalog)
        _run(catalog, "complete", age=timedelta(minutes=30))


def _run(catalog: Catalog, status: str, *, age: timedelta, reason: str | None = None) -> None:
    now = _now()
    with catalog.session() as s:
        s.add(
            CaptureRun(
                account_id="mke-facebook",
                node="node-a",
                started_at=now - age - timedelta(minutes=1),
                finished_at=now - age,
                status=status,
                reason=reason,
                stats={},
            )
        )
        if status == "complete":
            account = s.get(Account, "mke-facebook")
            assert account is not None
            account.last_success_at = now - age


def _check(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    result = ws.archiver("status", "--check", "--json", *args, env=env)
    assert result.returncode in (0, 1), describe(result)
    for secret in ws.secrets:
        assert secret not in result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_check_passes_when_all_is_well(any_workspace: Workspace) -> None:
    _healthy(any_workspace)

    code, report, err = _check(any_workspace)

    assert (code, report["problems"], err) == (0, [], "")
    table = any_workspace.archiver("status", "--check")
    assert table.returncode == 0 and "check    healthy" in table.stdout, describe(table)


def test_check_fails_without_a_daemon_heartbeat(any_workspace: Workspace) -> None:
    _healthy(any_workspace)
    with any_workspace.open_catalog() as catalog, catalog.session() as s:
        s.execute(delete(Heartbeat))

    code, report, err = _check(any_workspace)

    assert code == 1
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [("daemon", "node-a")]
    assert err.splitlines() == [f"problem: {report['problems'][0]['message']}"]
    assert "no daemon heartbeat" in err


@pytest.mark.parametrize(
    ("age", "state", "expected"),
    [
        (timedelta(seconds=91), "running", "last heartbeat (running) was 1m 31s ago"),
        (timedelta(seconds=5), "stopped", "the daemon stopped"),
    ],
)
def test_check_fails_when_the_daemon_is_stale_or_stopped(
    workspace: Workspace, age: timedelta, state: str, expected: str
) -> None:
    _healthy(workspace)
    with workspace.open_catalog() as catalog:
        _beat(catalog, age=age, state=state)

    code, report, err = _check(workspace)

    assert code == 1 and [p["kind"] for p in report["problems"]] == ["daemon"]
    assert expected in err, err


def test_a_beat_within_three_intervals_is_fresh(workspace: Workspace) -> None:
    _healthy(workspace)
    with workspace.open_catalog() as catalog:
        _beat(catalog, age=timedelta(seconds=80), state="stopping")
    assert _check(workspace)[0] == 0


def test_check_fails_for_an_account_not_captured_within_its_limit(
    any_workspace: Workspace,
) -> None:
    _healthy(any_workspace)
    with any_workspace.open_catalog() as catalog:
        _run(catalog, "complete", age=timedelta(hours=3, minutes=5))
        _run(catalog, "incomplete", age=timedelta(minutes=10), reason="HTTP 503 for 15 minutes")

    code, report, err = _check(any_workspace)

    assert code == 1
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [("stale", "mke-facebook")]
    assert "last complete capture 3h 5m ago; its staleness limit is 3h" in err


def test_an_account_that_never_succeeded_is_stale_once_older_than_its_limit(
    workspace: Workspace,
) -> None:
    workspace.ok("catalog", "upgrade")
    with workspace.open_catalog() as catalog:
        config = load_config(workspace.config)
        reconcile(config, catalog, "archiver", clock=lambda: _now() - timedelta(hours=2))
        _beat(catalog)
        assert _check(workspace)[0] == 0  # registered 2 h ago, limit 3 h
        with catalog.session() as s:
            s.execute(update(Account).values(created_at=_now() - timedelta(hours=4)))

    code, report, err = _check(workspace)

    assert code == 1 and [p["subject"] for p in report["problems"]] == ["mke-facebook"]
    assert "never captured completely" in err


def test_check_fails_for_a_credential_that_does_not_resolve(any_workspace: Workspace) -> None:
    _healthy(any_workspace)

    code, report, err = _check(any_workspace, env={"ARCHIVER_FB_PAGE_TOKEN": ""})

    assert code == 1
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [
        ("credential", "mke-facebook")
    ]
    assert "credential 'page_token' does not resolve" in err
    assert "ARCHIVER_FB_PAGE_TOKEN is empty" in err


def test_check_fails_when_the_last_run_was_refused_for_its_token(
    any_workspace: Workspace,
) -> None:
    _healthy(any_workspace)
    with any_workspace.open_catalog() as catalog:
        _run(
            catalog,
            "failed",
            age=timedelta(minutes=5),
            reason="GET https://graph.facebook.com/v19.0/123/feed answered HTTP 401: "
            "Error validating access token",
        )

    code, report, err = _check(any_workspace)

    assert code == 1 and [p["kind"] for p in report["problems"]] == ["credential"]
    assert "was refused for its credentials" in err and "HTTP 401" in err
    # A later good run clears it.
    with any_workspace.open_catalog() as catalog:
        _run(catalog, "complete", age=timedelta(minutes=1))
    assert _check(any_workspace)[0] == 0


FILE_ACCOUNT = """
[[accounts]]
id = "mke-mastodon"
platform = "mastodon"
handle = "cityofmilwaukee@mastodon.social"
department = "Department of Public Works"
series = "social-media"
credentials = { access_token = { file = "mastodon-token" } }
"""


def test_file_credentials_are_looked_for_where_systemd_puts_them(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, accounts=FILE_ACCOUNT)
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        reconcile(load_config(ws.config), catalog, "archiver")
        _beat(catalog)
    credentials = tmp_path / "credentials"
    credentials.mkdir()

    code, report, err = _check(ws, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert code == 1 and "mastodon-token" in err and "does not exist" in err

    (credentials / "mastodon-token").write_text("a-token-nobody-may-see\n")
    code, report, err = _check(ws, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert (code, report["problems"]) == (0, [])
    assert "a-token-nobody-may-see" not in json.dumps(report)


def test_outside_the_service_the_services_credentials_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path, accounts=FILE_ACCOUNT)
    ws.ok("catalog", "upgrade")
    service = tmp_path / "run-credentials-archiver.service"
    service.mkdir()
    (service / "mastodon-token").write_text("a-token\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = load_config(ws.config)
    with ws.open_catalog() as catalog:
        reconcile(config, catalog, "archiver")
        _beat(catalog)
        assert health.check(config, catalog, service_credentials=service) == []
        missing = health.check(config, catalog, service_credentials=tmp_path / "absent")
    assert [p.kind for p in missing] == ["credential"]
    assert "CREDENTIALS_DIRECTORY" not in os.environ


@pytest.mark.parametrize(
    ("reason", "refused"),
    [
        ("GET https://x/api/v1/accounts/1 answered HTTP 403: This action is not allowed", True),
        ("app.bsky.feed.getAuthorFeed answered HTTP 400 ExpiredToken Token has expired", True),
        ("answered HTTP 401 AuthenticationRequired", True),
        ("the access token is invalid", True),
        ("secret SecretRef(env=TOKEN): environment variable TOKEN is not set", True),
        ("rate limited: HTTP 429 for 900 s", False),
        ("account unavailable: account suspended (HTTP 410)", False),
        ("GET https://x/4013/statuses answered HTTP 500", False),
        (None, False),
    ],
)
def test_which_run_reasons_mean_a_refused_credential(reason: str | None, refused: bool) -> None:
    assert health.auth_failure(reason) is refused


def test_status_table_shows_each_accounts_schedule_from_the_heartbeat(
    workspace: Workspace,
) -> None:
    _healthy(workspace)
    with workspace.open_catalog() as catalog:
        _beat(
            catalog,
            detail={
                "accounts": {
                    "mke-facebook": {
                        "next_run": "2026-11-23T20:00:00+00:00",
                        "last_status": "incomplete",
                        "last_error": "rate limited",
                        "last_run_at": "2026-11-23T19:00:00+00:00",
                    }
                },
                "store": {"ok": True, "error": None},
            },
        )

    out = workspace.ok("status").stdout

    assert "schedule" in out and "mke-facebook" in out
    assert "2026-11-23 14:00 CST" in out  # next run, in the configured zone
    assert "incomplete" in out and "rate limited" in out
