"""Who may run what: ``[roles]`` maps OS groups to roles, and refusals are audited.

Tests run as root, which acting directly is the service itself (admin), so the role
checks are exercised in-process with an explicit :class:`~archiver.identity.Actor`;
``tests/test_cli.py`` checks the same refusal end to end through ``SUDO_USER``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.app import App
from archiver.catalog import upgrade
from archiver.catalog.models import AuditEntry
from archiver.errors import PermissionDenied
from archiver.identity import Actor
from tests.commands.clitools import Workspace, make_workspace

ROLES = '\n[roles]\nrecords = "officer"\nlegal-dept = "legal"\nit-ops = "admin"\n'

#: ``make_app(actor, migrate=True)``: an App acting as ``actor``.
MakeApp = Callable[..., App]

ALICE_STAFF = Actor(user="alice", uid=1000, groups=("staff",))
ALICE_RECORDS = Actor(user="alice", uid=1000, groups=("records", "staff"))


@pytest.fixture
def roles_workspace(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = make_workspace(tmp_path, catalog_url=catalog_url, extra=ROLES)
    for name, value in ws.env.items():
        monkeypatch.setenv(name, value)
    return ws


@pytest.fixture
def make_app(roles_workspace: Workspace) -> Iterator[MakeApp]:
    """``make_app(actor)``: an App on the workspace's (upgraded) catalog, closed afterwards."""
    apps: list[App] = []

    def build(actor: Actor, *, migrate: bool = True) -> App:
        app = App(roles_workspace.config, actor=actor)
        apps.append(app)
        if migrate:
            upgrade(app.catalog)
        return app

    yield build
    for app in apps:
        app.close()


def _denials(app: App) -> list[AuditEntry]:
    with app.catalog.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == "permission.denied")))


def test_a_user_without_the_role_is_refused_and_the_refusal_is_audited(make_app: MakeApp) -> None:
    app = make_app(ALICE_STAFF)

    with pytest.raises(PermissionDenied) as refused:
        app.require("officer", command="status")

    assert refused.value.exit_code == 8
    assert "alice may not run `archiver status`: it needs the role officer" in str(refused.value)
    (entry,) = _denials(app)
    assert entry.actor == "alice"
    assert entry.subject == "status"
    assert entry.detail == {"needs": ["officer"], "holds": [], "groups": ["staff"]}


def test_a_member_of_a_mapped_group_may_act_and_nothing_is_audited(make_app: MakeApp) -> None:
    app = make_app(ALICE_RECORDS)
    app.require("officer", command="status")
    app.require("officer", "legal", command="audit verify")
    assert _denials(app) == []


def test_admin_may_run_everything(make_app: MakeApp) -> None:
    app = make_app(Actor(user="carol", uid=1002, groups=("it-ops",)))
    app.require("officer", command="status")
    app.require("legal", command="bundle")
    app.require("admin", command="catalog upgrade")


def test_a_role_is_not_another_role(make_app: MakeApp) -> None:
    app = make_app(Actor(user="dave", uid=1003, groups=("legal-dept",)))
    app.require("legal", command="search")
    with pytest.raises(PermissionDenied, match="needs the role admin"):
        app.require("admin", command="catalog upgrade")


def test_root_and_the_service_account_acting_directly_are_admin(make_app: MakeApp) -> None:
    make_app(Actor(user="root", uid=0)).require("admin", command="catalog upgrade")
    make_app(Actor(user="archiver", uid=998)).require("officer", command="status")


def test_staff_through_sudo_as_the_service_account_keep_their_own_roles(make_app: MakeApp) -> None:
    app = make_app(
        Actor(user="bob", uid=1001, via_sudo=True, sudo_user="archiver", groups=("staff",))
    )
    with pytest.raises(PermissionDenied, match=r"bob \(via sudo as archiver\) may not run"):
        app.require("officer", command="status")
    (entry,) = _denials(app)
    assert entry.actor == "bob (via sudo as archiver)"


def test_the_refusal_stands_even_when_the_catalog_cannot_record_it(make_app: MakeApp) -> None:
    app = make_app(ALICE_STAFF, migrate=False)  # no schema: the audit entry cannot be written
    with pytest.raises(PermissionDenied):
        app.require("officer", command="status")


def test_without_roles_configured_everyone_may_act(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    app = App(ws.config, actor=ALICE_STAFF)
    try:
        app.require("admin", command="catalog upgrade")
        assert "catalog" not in app.__dict__  # nothing was opened to decide
    finally:
        app.close()
