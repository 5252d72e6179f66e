"""Accounts in step with the configuration (``reconcile``) and ``archiver accounts``.

``reconcile`` runs against the ``catalog`` fixture, so on SQLite and on PostgreSQL; the
command runs as a child process on both as well.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from archiver.accounts import INACTIVE, reconcile
from archiver.catalog import Catalog
from archiver.catalog.models import Account, AuditEntry, CaptureRun, Item
from archiver.config import Config, load_config
from tests.commands.clitools import ACCOUNTS, Workspace, make_workspace

#: 2026-11-23 05:00 UTC is still the 22nd in Chicago: the reason uses the configured zone.
NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
ACTOR = "archiver"

OLD_ACCOUNT = """
[[accounts]]
id = "mke-old"
platform = "mastodon"
handle = "oldcity@mastodon.social"
department = "Department of Public Works"
series = "social-media"
"""


def config_with(tmp_path: Path, accounts: str, name: str = "config.toml") -> Config:
    path = tmp_path / name
    path.write_text(f'[archiver]\noperator = "City of Testing"\nnode = "node-a"\n{accounts}')
    return load_config(path)


def audit_actions(catalog: Catalog) -> list[tuple[str, str | None]]:
    with catalog.reader() as s:
        rows = s.execute(select(AuditEntry.action, AuditEntry.subject).order_by(AuditEntry.seq))
        return [(action, subject) for action, subject in rows]


def add_run(
    catalog: Catalog,
    account: str,
    status: str,
    *,
    at: datetime = NOW,
    reason: str | None = None,
    items: int = 0,
) -> None:
    with catalog.session() as s:
        run = CaptureRun(
            account_id=account,
            node="node-a",
            started_at=at - timedelta(minutes=5),
            finished_at=at,
            status=status,
            reason=reason,
            stats={},
        )
        s.add(run)
        row = s.get(Account, account)
        assert row is not None
        if status == "complete":
            row.last_success_at = at
        for n in range(items):
            s.add(
                Item(
                    account_id=account,
                    platform_item_id=f"{account}-{n}",
                    kind="post",
                    series=row.series,
                    first_captured_at=at,
                    last_seen_at=at,
                )
            )


# --- reconcile -----------------------------------------------------------------------------


def test_reconcile_registers_configured_accounts_once(catalog: Catalog, tmp_path: Path) -> None:
    config = config_with(tmp_path, ACCOUNTS)

    changes = reconcile(config, catalog, ACTOR, clock=lambda: NOW)

    assert [(c.account, c.action) for c in changes] == [
        ("mke-facebook", "registered"),
        ("mke-mastodon", "registered"),
    ]
    with catalog.reader() as s:
        rows = {a.id: a for a in s.scalars(select(Account))}
    assert rows["mke-facebook"].enabled is True and rows["mke-mastodon"].enabled is False
    assert rows["mke-facebook"].status == "unknown" and rows["mke-facebook"].created_at == NOW
    assert rows["mke-facebook"].platform_id == "123456789012345"
    assert audit_actions(catalog) == [
        ("account.registered", "mke-facebook"),
        ("account.registered", "mke-mastodon"),
    ]
    # Again with the same configuration: nothing to do, nothing audited.
    assert reconcile(config, catalog, ACTOR, clock=lambda: NOW) == []
    assert len(audit_actions(catalog)) == 2


def test_an_account_left_out_of_the_configuration_becomes_inactive_with_its_records(
    catalog: Catalog, tmp_path: Path
) -> None:
    before = config_with(tmp_path, ACCOUNTS + OLD_ACCOUNT, "before.toml")
    after = config_with(tmp_path, ACCOUNTS, "after.toml")
    reconcile(before, catalog, ACTOR, clock=lambda: NOW - timedelta(days=30))
    add_run(catalog, "mke-old", "complete", at=NOW - timedelta(days=2), items=3)

    changes = reconcile(after, catalog, ACTOR, clock=lambda: NOW)

    assert [(c.account, c.action) for c in changes] == [("mke-old", "deactivated")]
    with catalog.reader() as s:
        old = s.get(Account, "mke-old")
        assert old is not None
        kept_items = s.scalar(
            select(func.count()).select_from(Item).where(Item.account_id == "mke-old")
        )
        kept_runs = s.scalar(
            select(func.count()).select_from(CaptureRun).where(CaptureRun.account_id == "mke-old")
        )
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "account.deactivated")
        ).one()
    assert old.enabled is False and old.status == INACTIVE
    assert old.status_reason == "removed from the configuration on 2026-11-22"
    assert old.last_success_at == NOW - timedelta(days=2)  # history untouched
    assert kept_items == 3 and kept_runs == 1
    assert entry.subject == "mke-old" and entry.actor == ACTOR
    assert entry.detail == {
        "previous_status": "unknown",
        "previous_enabled": True,
        "reason": "removed from the configuration on 2026-11-22",
    }
    # Still out: no second deactivation.
    assert reconcile(after, catalog, ACTOR, clock=lambda: NOW + timedelta(days=1)) == []


def test_an_account_put_back_in_the_configuration_is_reactivated(
    catalog: Catalog, tmp_path: Path
) -> None:
    with_old = config_with(tmp_path, ACCOUNTS + OLD_ACCOUNT, "with.toml")
    without = config_with(tmp_path, ACCOUNTS, "without.toml")
    reconcile(with_old, catalog, ACTOR, clock=lambda: NOW - timedelta(days=30))
    reconcile(without, catalog, ACTOR, clock=lambda: NOW - timedelta(days=10))

    changes = reconcile(with_old, catalog, ACTOR, clock=lambda: NOW)

    assert [(c.account, c.action) for c in changes] == [("mke-old", "reactivated")]
    with catalog.reader() as s:
        old = s.get(Account, "mke-old")
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "account.reactivated")
        ).one()
    assert old is not None and old.enabled is True and old.status == "unknown"
    assert old.status_reason is None
    assert old.created_at == NOW - timedelta(days=30)
    assert entry.detail == {
        "inactive_since": "removed from the configuration on 2026-11-12",
        "reason": "back in the configuration on 2026-11-22",
    }
    assert [a for a, _ in audit_actions(catalog)][-2:] == [
        "account.deactivated",
        "account.reactivated",
    ]


def test_changed_settings_are_copied_and_audited(catalog: Catalog, tmp_path: Path) -> None:
    reconcile(config_with(tmp_path, ACCOUNTS, "a.toml"), catalog, ACTOR, clock=lambda: NOW)
    edited = ACCOUNTS.replace('department = "Office of the Mayor"', 'department = "City Clerk"')
    edited = edited.replace("enabled = false", "enabled = true")

    changes = reconcile(config_with(tmp_path, edited, "b.toml"), catalog, ACTOR, clock=lambda: NOW)

    assert {(c.account, c.action): dict(c.detail) for c in changes} == {
        ("mke-facebook", "updated"): {
            "changed": {"department": ["Office of the Mayor", "City Clerk"]}
        },
        ("mke-mastodon", "updated"): {"changed": {"enabled": [False, True]}},
    }
    with catalog.reader() as s:
        assert s.get(Account, "mke-mastodon").enabled is True  # type: ignore[union-attr]


# --- archiver accounts ---------------------------------------------------------------------


def prepared(ws: Workspace) -> None:
    """A catalog that once knew ``mke-old`` (now gone from the config) and has runs."""
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        old_config = config_with(ws.root, ACCOUNTS + OLD_ACCOUNT, "earlier.toml")
        reconcile(old_config, catalog, ACTOR, clock=lambda: NOW - timedelta(days=30))
        add_run(catalog, "mke-old", "complete", at=NOW - timedelta(days=20), items=2)
        reconcile(load_config(ws.config), catalog, ACTOR, clock=lambda: NOW - timedelta(days=9))
        add_run(catalog, "mke-facebook", "complete", at=NOW - timedelta(hours=3), items=5)
        add_run(
            catalog,
            "mke-facebook",
            "incomplete",
            at=NOW - timedelta(hours=1),
            reason="rate limited for longer than [http] max_wait",
        )


def test_accounts_json_lists_configured_then_inactive_accounts(any_workspace: Workspace) -> None:
    ws = any_workspace
    prepared(ws)

    result = ws.ok("accounts", "--json")

    listed = {a["id"]: a for a in json.loads(result.stdout)["accounts"]}
    assert list(listed) == ["mke-facebook", "mke-mastodon", "mke-old"]
    fb = listed["mke-facebook"]
    assert fb["platform"] == "facebook" and fb["handle"] == "CityofMilwaukee"
    assert fb["series"] == "social-media" and fb["configured"] and fb["enabled"]
    assert fb["status"] == "unknown" and fb["items"] == 5
    assert fb["last_run"]["status"] == "incomplete"
    assert fb["last_run"]["reason"] == "rate limited for longer than [http] max_wait"
    assert datetime.fromisoformat(fb["last_run"]["finished_at"]) == NOW - timedelta(hours=1)
    assert datetime.fromisoformat(fb["last_success_at"]) == NOW - timedelta(hours=3)
    mastodon = listed["mke-mastodon"]
    assert mastodon["enabled"] is False and mastodon["last_run"] is None
    assert mastodon["last_success_at"] is None and mastodon["items"] == 0
    old = listed["mke-old"]
    assert old["configured"] is False and old["enabled"] is False
    assert old["status"] == "inactive" and old["items"] == 2
    assert old["status_reason"] == "removed from the configuration on 2026-11-13"
    assert old["last_run"]["status"] == "complete"
    for secret in ws.secrets:
        assert secret not in result.stdout + result.stderr


def test_accounts_table_and_read_only(workspace: Workspace) -> None:
    prepared(workspace)
    with workspace.open_catalog() as catalog:
        before = audit_actions(catalog)

    out = workspace.ok("accounts").stdout

    for expected in ("mke-facebook", "mke-mastodon", "mke-old", "inactive", "incomplete"):
        assert expected in out
    assert "removed from" in out  # the reason, wrapped in its cell
    with workspace.open_catalog() as catalog:
        assert audit_actions(catalog) == before


def test_an_account_not_yet_reconciled_is_shown_as_it_will_be(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        reconcile(config_with(ws.root, ACCOUNTS + OLD_ACCOUNT, "earlier.toml"), catalog, ACTOR)

    listed = {a["id"]: a for a in json.loads(ws.ok("accounts", "--json").stdout)["accounts"]}

    # The daemon has not restarted since mke-old left the configuration.
    assert listed["mke-old"]["status"] == "inactive" and not listed["mke-old"]["configured"]
    assert "next start" in listed["mke-old"]["status_reason"]


def test_accounts_with_nothing_configured_or_known(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, accounts="")
    ws.ok("catalog", "upgrade")
    assert "no accounts" in ws.ok("accounts").stdout
    assert json.loads(ws.ok("accounts", "--json").stdout) == {"accounts": []}
