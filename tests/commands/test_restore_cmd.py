"""``archiver restore``: items exactly as captured, into a directory, every restore audited."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.catalog.models import AuditEntry, Item, StoredFile, WarcRecord
from archiver.errors import IntegrityError, PermissionDenied
from tests.commands.clitools import ARCHIVER, Workspace, describe, make_workspace
from tests.connectors.fake_bluesky import FakeBluesky
from tests.test_restore import bluesky_account, flip_byte, new_fake

NOBODY_UID = 65534


def captured_workspace(
    root: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    catalog_url: str | None = None,
    extra: str = "",
) -> Workspace:
    """An installation whose ``mke-bluesky`` account was captured from ``fake`` (in-process)."""
    ws = make_workspace(root, catalog_url=catalog_url, accounts=bluesky_account(fake), extra=extra)
    for command in (("catalog", "upgrade"), ("capture", "mke-bluesky")):
        outcome = ws.in_process(capsys, monkeypatch, *command)
        assert outcome.returncode == 0, describe(outcome)
    return ws


def item_ids(ws: Workspace) -> dict[str, int]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        return {p: int(i) for p, i in s.execute(select(Item.platform_item_id, Item.id))}


def restores(ws: Workspace) -> list[AuditEntry]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        query = select(AuditEntry).where(AuditEntry.action == "item.restore")
        return list(s.scalars(query.order_by(AuditEntry.seq)))


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


def test_restore_writes_the_item_prints_where_and_audits_files_and_hashes(
    tmp_path: Path,
    fake: FakeBluesky,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Road closed", images=[("Map", "image/jpeg"), ("Detour", "image/jpeg")])
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch, catalog_url=catalog_url)
    item_id = item_ids(ws)[post]
    out = tmp_path / "restored"

    result = ws.archiver("restore", f"mke-bluesky/{post}", "--to", str(out))

    assert result.returncode == 0, describe(result)
    folder = out / f"item-{item_id}-v1"
    assert f"restored item {item_id} version 1 to {folder}" in result.stdout
    manifest = json.loads((folder / "manifest.json").read_bytes())
    (entry,) = restores(ws)
    assert entry.subject == f"item:{item_id}" and entry.actor == "root"
    assert entry.detail["outcome"] == "restored" and entry.detail["version"] == 1
    assert entry.detail["target"] == str(folder)
    assert (
        entry.detail["manifest_sha256"]
        == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    )
    assert entry.detail["files"] == [
        {"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in manifest["files"]
    ]
    for f in entry.detail["files"]:
        assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["restored_by"] == "root"


def test_restoring_several_items_restores_and_audits_each_and_reports_json(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posts = [fake.post(f"Notice {n}", images=[("Sign", "image/jpeg")]) for n in range(3)]
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    ids = item_ids(ws)
    refs = [str(ids[posts[0]]), f"mke-bluesky/{posts[1]}", posts[2], str(ids[posts[0]])]

    outcome = ws.in_process(
        capsys, monkeypatch, "restore", *refs, "--to", str(tmp_path / "out"), "--json"
    )

    assert outcome.returncode == 0, describe(outcome)
    report = json.loads(outcome.stdout)
    assert [r["item"] for r in report["restored"]] == [ids[p] for p in posts]  # once each
    assert report["failed"] == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"item-{ids[p]}-v1" for p in posts
    )
    assert [e.subject for e in restores(ws)] == [f"item:{ids[p]}" for p in posts]


def test_a_damaged_record_exits_90_naming_file_and_offset_writes_nothing_and_is_audited(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Road closed", images=[("Map", "image/jpeg")])
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    item_id = item_ids(ws)[post]
    with ws.open_catalog() as catalog, catalog.reader() as s:
        rec, key = s.execute(
            select(WarcRecord, StoredFile.key)
            .join(StoredFile, StoredFile.id == WarcRecord.file_id)
            .where(WarcRecord.warc_type == "conversion", WarcRecord.target_uri.like("%/post/%"))
        ).one()
    flip_byte(ws.store(), key, rec.offset + rec.length // 2)
    out = tmp_path / "out"

    outcome = ws.in_process(capsys, monkeypatch, "restore", str(item_id), "--to", str(out))

    assert outcome.returncode == IntegrityError.exit_code == 90, describe(outcome)
    assert key in outcome.stderr and f"at offset {rec.offset}" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert not out.exists()
    (entry,) = restores(ws)
    assert entry.detail["outcome"] == "failed" and entry.detail["exit_code"] == 90
    assert key in entry.detail["error"]


def test_an_existing_item_folder_is_refused_unless_overwrite(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Road closed")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    item_id = str(item_ids(ws)[post])
    out = str(tmp_path / "out")
    assert ws.in_process(capsys, monkeypatch, "restore", item_id, "--to", out).returncode == 0

    refused = ws.in_process(capsys, monkeypatch, "restore", item_id, "--to", out)
    replaced = ws.in_process(capsys, monkeypatch, "restore", item_id, "--to", out, "--overwrite")

    assert refused.returncode == 2 and "already exists; nothing was written" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert replaced.returncode == 0 and "replaced the earlier restore" in replaced.stdout
    assert [e.detail["outcome"] for e in restores(ws)] == ["restored", "failed", "restored"]


def test_version_and_as_of_together_are_a_usage_error(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Road closed")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    args = ("restore", str(item_ids(ws)[post]), "--to", str(tmp_path / "o"))

    both = ws.in_process(capsys, monkeypatch, *args, "--version", "1", "--as-of", "2024-01-01")
    unknown = ws.in_process(capsys, monkeypatch, "restore", "mke-bluesky/nope", "--to", "o")

    assert both.returncode == 2 and "--version or --as-of, not both" in both.stderr
    assert unknown.returncode == 2 and "account mke-bluesky has no item" in unknown.stderr
    assert restores(ws) == []


def _nobody_exists() -> bool:
    try:
        return pwd.getpwnam("nobody").pw_uid == NOBODY_UID
    except KeyError:
        return False


@pytest.mark.skipif(
    not (os.getuid() == 0 and _nobody_exists()),
    reason="needs to run as root with a 'nobody' user (uid 65534), to act as sudo does",
)
def test_only_officers_and_legal_staff_may_restore_and_a_refusal_is_audited(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Road closed")
    roles = '\n[roles]\nrecords = "officer"\n'
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch, extra=roles)
    sudo = {"SUDO_USER": "nobody", "SUDO_UID": str(NOBODY_UID), "SUDO_GID": str(NOBODY_UID)}
    as_nobody = replace(ws, env={**ws.env, **sudo})
    args = ("restore", str(item_ids(ws)[post]), "--to", str(tmp_path / "out"))

    refused = as_nobody.in_process(capsys, monkeypatch, *args)

    assert refused.returncode == PermissionDenied.exit_code == 8, describe(refused)
    assert "may not run `archiver restore`" in refused.stderr
    assert not (tmp_path / "out").exists()
    with ws.open_catalog() as catalog, catalog.reader() as s:
        denied = s.scalars(select(AuditEntry).where(AuditEntry.action == "permission.denied")).one()
    assert denied.subject == "restore" and denied.detail["needs"] == ["legal", "officer"]
    # The same person, once their group is mapped to the legal role, may restore.
    config = ws.config.read_text()
    ws.config.write_text(config.replace(roles, roles + 'nogroup = "legal"\n'))
    allowed = as_nobody.in_process(capsys, monkeypatch, *args)
    assert allowed.returncode == 0, describe(allowed)
    (entry,) = restores(ws)
    assert entry.actor == "nobody (via sudo as root)"


def test_query_restores_every_matching_item_and_nothing_else(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plows = [fake.post("The snow plow is on Elm Street"), fake.post("Plow drivers needed")]
    other = fake.post("Library hours")
    reply = fake.reply(other, "Is the plow coming?")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    ids = item_ids(ws)
    out = str(tmp_path / "out")

    outcome = ws.in_process(capsys, monkeypatch, "restore", "--query", "plow", "--to", out)
    blank = ws.in_process(capsys, monkeypatch, "restore", "--query", "  ", "--to", out)
    bad = ws.in_process(capsys, monkeypatch, "restore", "--query", "NOT plow", "--to", out)

    assert outcome.returncode == 0, describe(outcome)
    expected = {ids[p] for p in [*plows, reply]}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"item-{i}-v1" for i in expected}
    assert {e.subject for e in restores(ws)} == {f"item:{i}" for i in expected}
    assert blank.returncode == 2 and "--query needs words" in blank.stderr
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(restores(ws)) == 3


def test_many_items_show_a_progress_bar_on_a_terminal(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        fake.post(f"Notice {n}")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    main, terminal = os.openpty()
    try:
        result = subprocess.run(
            [str(ARCHIVER), "--config", str(ws.config), "restore",
             "--query", "notice", "--to", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=terminal, env={**ws.env, "TERM": "xterm"},
            cwd=ws.cwd, timeout=60, check=False,
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert result.returncode == 0, result.stdout
    assert b"restoring" in shown and b"3/3" in shown
    assert result.stdout.count(b"restored item") == 3


@pytest.mark.parametrize("command", [("show", "1"), ("restore", "1", "--to", "out")])
def test_show_and_restore_refuse_a_catalog_that_needs_an_upgrade(
    tmp_path: Path,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = make_workspace(tmp_path)

    outcome = ws.in_process(capsys, monkeypatch, *command)

    assert outcome.returncode == 5, describe(outcome)
    assert "archiver catalog upgrade" in outcome.stderr
    assert not (ws.cwd / "out").exists()
