"""``archiver status``: counts, spool and daemons, as a table or as stable JSON."""

from __future__ import annotations

import json

from archiver.catalog.schema import head_revision
from tests.commands.clitools import Workspace

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
