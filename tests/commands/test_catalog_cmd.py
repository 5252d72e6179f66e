"""``archiver catalog upgrade``: creates or migrates the schema and initialises the store."""

from __future__ import annotations

import json

from sqlalchemy import select

from archiver.catalog.models import AuditEntry
from archiver.catalog.schema import head_revision, schema_state
from archiver.store.base import LAYOUT_KEY, LAYOUT_VERSION
from tests.commands.clitools import Workspace, describe


def test_upgrade_creates_the_schema_and_the_store_layout_then_finds_nothing_to_do(
    any_workspace: Workspace,
) -> None:
    ws = any_workspace
    head = head_revision()

    first = ws.ok("catalog", "upgrade")

    assert first.stdout.strip() == f"catalog upgraded from empty to {head}"
    with ws.open_catalog() as catalog:
        assert schema_state(catalog).up_to_date
    layout = ws.store_root / LAYOUT_KEY
    assert json.loads(layout.read_text())["layout"] == LAYOUT_VERSION
    written = layout.stat()

    second = ws.ok("catalog", "upgrade")

    assert second.stdout.strip() == f"catalog already at schema revision {head}"
    again = layout.stat()  # the same object, written once
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    for secret in ws.secrets:
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr


def test_each_upgrade_is_audited_with_the_url_but_never_the_password(
    any_workspace: Workspace,
) -> None:
    ws = any_workspace
    ws.ok("catalog", "upgrade")
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog, catalog.session() as s:
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [e.action for e in entries] == ["catalog.upgrade", "catalog.upgrade"]
        assert entries[0].detail == {"from": None, "to": head_revision()}
        assert entries[1].detail == {"from": head_revision(), "to": head_revision()}
        assert entries[0].actor  # the OS user who ran it
        for entry in entries:
            assert entry.subject is not None
            assert entry.subject.split("://")[0] in ("sqlite", "postgresql+psycopg")
            for secret in ws.secrets:
                assert secret not in json.dumps([entry.subject, entry.detail])
    assert ws.archiver("audit", "verify").returncode == 0


def test_upgrade_refuses_a_store_of_an_unknown_layout_version(workspace: Workspace) -> None:
    workspace.put_object(LAYOUT_KEY, json.dumps({"layout": LAYOUT_VERSION + 98}).encode())

    result = workspace.archiver("catalog", "upgrade")

    assert result.returncode == 6, describe(result)
    assert str(LAYOUT_VERSION + 98) in result.stderr
    assert "Traceback" not in result.stderr
