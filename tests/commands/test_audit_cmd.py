"""``archiver audit verify``: exit 0 when the chain is intact, 1 naming the first break."""

from __future__ import annotations

import json
import sqlite3

from sqlalchemy import select, text, update

from archiver import audit
from archiver.catalog.models import AuditEntry
from tests.commands.clitools import Workspace, describe


def _entries(ws: Workspace, n: int) -> None:
    """An upgraded catalog holding ``n`` entries after the upgrade's own."""
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        for i in range(n):
            with catalog.session() as s:
                audit.append(
                    s, actor="alice", action="hold.place", subject=f"item:{i}", detail={"n": i}
                )


def test_an_intact_log_verifies_with_exit_0(any_workspace: Workspace) -> None:
    _entries(any_workspace, 3)
    result = any_workspace.ok("audit", "verify")
    assert result.stdout.strip() == "audit log intact: 4 entries, 0 anchored heads agree"


def test_an_edited_entry_exits_1_and_is_named(any_workspace: Workspace) -> None:
    ws = any_workspace
    _entries(ws, 4)
    with ws.open_catalog() as catalog, catalog.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))

    result = ws.archiver("audit", "verify")

    assert result.returncode == 1, describe(result)
    assert "audit log BROKEN at entry 3: entry 3 was altered" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_edited_entry_in_a_sqlite_file_is_caught_by_the_json_report(
    workspace: Workspace,
) -> None:
    _entries(workspace, 2)
    db = sqlite3.connect(workspace.var / "catalog.sqlite3")
    with db:
        db.execute("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 2")
    db.close()

    result = workspace.archiver("audit", "verify", "--json")

    assert result.returncode == 1, describe(result)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["first_break"] == 2
    assert report["problems"][0] == "entry 2 was altered: its hash does not match its content"


def test_a_deleted_entry_exits_1(workspace: Workspace) -> None:
    _entries(workspace, 3)
    with workspace.open_catalog() as catalog, catalog.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    result = workspace.archiver("audit", "verify")
    assert result.returncode == 1, describe(result)
    assert "BROKEN at entry 2: entry 2 is missing" in result.stderr


def test_a_rewritten_chain_is_caught_by_the_head_anchored_in_the_store(
    workspace: Workspace,
) -> None:
    """What a careful forger does: edit a row and rehash every later one."""
    _entries(workspace, 3)
    with workspace.open_catalog() as catalog:
        key = audit.anchor_head(catalog, workspace.store(), node="node-a")
        assert key == "control/audit/000000000004.json"
        with catalog.session() as s:
            prev = audit.GENESIS
            for row in s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all():
                if row.seq == 2:
                    row.actor = "mallory"
                row.prev_hash = prev
                row.hash = audit.entry_hash(row)
                prev = row.hash

    result = workspace.archiver("audit", "verify")

    assert result.returncode == 1, describe(result)
    assert "entries 1..4 were rewritten" in result.stderr
    assert key in result.stderr


def test_an_unreadable_anchor_is_an_integrity_error_exit_90(workspace: Workspace) -> None:
    _entries(workspace, 1)
    workspace.put_object("control/audit/000000000002.json", b"not json")
    result = workspace.archiver("audit", "verify")
    assert result.returncode == 90, describe(result)
    assert "audit anchor control/audit/000000000002.json is unreadable" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_verification_is_itself_audited(workspace: Workspace) -> None:
    _entries(workspace, 0)
    workspace.ok("audit", "verify")
    with workspace.open_catalog() as catalog, catalog.session() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert last is not None
        assert last.action == "audit.verify"
        assert last.detail == {"entries": 1, "anchors": 0, "first_break": None}
