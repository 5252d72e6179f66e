"""``archiver retention schedules | reassign | event record|list | notice record|list``.

The commands run as the real ``archiver`` (a child process, or its entry point in-process
where that is enough) on an archive captured from the fake Bluesky AppView. Every change
must reach the catalog, the store (a control fact) and the audit log; refusals say why.
"""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.catalog.models import (
    AuditEntry,
    Item,
    RetentionEvent,
    RetentionNotice,
    StoredFile,
)
from archiver.control import Fact, read_facts
from archiver.errors import PermissionDenied
from tests.commands.clitools import Workspace, describe, make_workspace
from tests.commands.test_restore_cmd import captured_workspace
from tests.connectors.fake_bluesky import FakeBluesky
from tests.test_restore import bluesky_account, new_fake

ACCOUNT = "mke-bluesky"
RULES = """
[[retention.rules]]
name = "city-posts"
series = "EXAMPLE-POSTS"
kinds = ["post"]

[[retention.rules]]
name = "public-comments"
series = "EXAMPLE-COMMENTS"
kinds = ["comment"]
"""
PROFILE_RULE = """
[[retention.rules]]
name = "account-records"
series = "EXAMPLE-ACCOUNT-RECORDS"
kinds = ["profile"]
"""
NOBODY_UID = 65534
SUDO_NOBODY = {"SUDO_USER": "nobody", "SUDO_UID": str(NOBODY_UID), "SUDO_GID": str(NOBODY_UID)}


def _nobody_exists() -> bool:
    try:
        return pwd.getpwnam("nobody").pw_uid == NOBODY_UID
    except KeyError:
        return False


needs_root_and_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or not _nobody_exists(),
    reason="acting as another user through SUDO_USER needs root and the user nobody",
)


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


def series_of(ws: Workspace) -> dict[str, tuple[str, str | None]]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        rows = s.execute(select(Item.platform_item_id, Item.series, Item.series_rule)).all()
    return {r.platform_item_id: (r.series, r.series_rule) for r in rows}


def audited(ws: Workspace, action: str) -> list[AuditEntry]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        return list(s.scalars(query))


def facts(ws: Workspace, kind: str) -> list[Fact]:
    return [f for f in read_facts(ws.store()) if f.kind == kind]


# --- schedules ------------------------------------------------------------------------------------


def test_schedules_lists_every_shipped_series_with_its_rules_and_example_markers(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = workspace.in_process(capsys, monkeypatch, "retention", "schedules")
    as_json = workspace.in_process(capsys, monkeypatch, "retention", "schedules", "--json")

    assert shown.returncode == 0, describe(shown)
    out = shown.stdout
    assert "wisconsin-municipal.toml" in out.splitlines()[0]
    assert "social-media  City social-media records not otherwise scheduled  [default]" in out
    assert "7 years after creation (first capture when unknown)" in out
    assert "60 days' written notice to the Wisconsin Historical Society, or its waiver" in out
    assert "Wis. Stat. § 19.21(4)(b)" in out
    assert "used by:     account mke-facebook, account mke-mastodon" in out
    for code in (
        "EXAMPLE-POSTS",
        "EXAMPLE-COMMENTS",
        "EXAMPLE-MODERATED",
        "EXAMPLE-TRANSITORY",
        "EXAMPLE-ACCOUNT-RECORDS",
    ):
        (header,) = [line for line in out.splitlines() if line.startswith(f"{code}  ")]
        assert header.endswith("[EXAMPLE: confirm before use]"), header
    assert "7 years after the end of the fiscal year of creation" in out
    assert "7 years after event 'account-closed'" in out
    assert out.count("EXAMPLE:     Confirm with the City's records officer") == 5
    assert "5 EXAMPLE series are illustrations only; none is in use." in out

    assert as_json.returncode == 0, describe(as_json)
    doc = json.loads(as_json.stdout)
    assert [Path(f).name for f in doc["files"]] == ["wisconsin-municipal.toml"]
    by_code = {s["code"]: s for s in doc["series"]}
    assert len(by_code) == 6
    assert [c for c, s in by_code.items() if s["default"]] == ["social-media"]
    assert {c for c, s in by_code.items() if s["example"]} == set(by_code) - {"social-media"}
    assert by_code["social-media"]["period"] == {"years": 7, "months": 0, "days": 0}
    assert by_code["social-media"]["notice"] == {
        "required": True,
        "days": 60,
        "to": "Wisconsin Historical Society",
    }
    assert by_code["EXAMPLE-POSTS"]["disposition"] == "transfer"
    assert by_code["EXAMPLE-ACCOUNT-RECORDS"]["event"] == "account-closed"
    assert by_code["social-media"]["accounts"] == ["mke-facebook", "mke-mastodon"]


def test_schedules_warns_when_the_configuration_uses_an_example_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path, extra=RULES)

    shown = ws.in_process(capsys, monkeypatch, "retention", "schedules")

    assert shown.returncode == 0, describe(shown)
    assert "used by:     rule city-posts" in shown.stdout
    assert "warning: the configuration uses EXAMPLE series (EXAMPLE-POSTS, EXAMPLE-COMMENTS)" in (
        shown.stdout
    )


# --- reassign -------------------------------------------------------------------------------------


def test_reassign_after_a_rule_change_moves_the_right_items_and_a_dry_run_changes_nothing(
    tmp_path: Path,
    fake: FakeBluesky,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Leaf collection routes for this week")
    comment = fake.reply(post, "What about Bay View?")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch, catalog_url=catalog_url)
    before = series_of(ws)
    assert {s for s, _ in before.values()} == {"social-media"}
    # The City adopts rules for posts and public comments.
    ws = make_workspace(
        tmp_path, catalog_url=catalog_url, accounts=bluesky_account(fake), extra=RULES
    )

    dry = ws.in_process(capsys, monkeypatch, "retention", "reassign", "--dry-run", "--json")

    assert dry.returncode == 0, describe(dry)
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["evaluated"] == 3 and planned["moved"] == 2
    assert sorted((g["from"], g["to"], g["rule"], g["count"]) for g in planned["groups"]) == [
        ("social-media", "EXAMPLE-COMMENTS", "public-comments", 1),
        ("social-media", "EXAMPLE-POSTS", "city-posts", 1),
    ]
    assert planned["facts"] == []
    assert series_of(ws) == before
    assert facts(ws, "assignment.changed") == [] and audited(ws, "retention.reassign") == []

    applied = ws.archiver("retention", "reassign")

    assert applied.returncode == 0, describe(applied)
    assert "3 items re-evaluated against 2 rule(s): 2 moved" in applied.stdout
    assert "social-media → EXAMPLE-POSTS by rule 'city-posts': 1" in applied.stdout
    after = series_of(ws)
    assert after[post] == ("EXAMPLE-POSTS", "city-posts")
    assert after[comment] == ("EXAMPLE-COMMENTS", "public-comments")
    assert {k: v for k, v in after.items() if k not in (post, comment)} == {
        k: v for k, v in before.items() if k not in (post, comment)
    }
    (fact,) = facts(ws, "assignment.changed")
    assert fact.body["cause"] == "reassign"
    assert sorted(
        (c["item"], c["from"], c["to"], c["rule"]) for c in fact.body["changes"]
    ) == sorted(
        [
            (post, "social-media", "EXAMPLE-POSTS", "city-posts"),
            (comment, "social-media", "EXAMPLE-COMMENTS", "public-comments"),
        ]
    )
    assert fact.key in applied.stdout
    (entry,) = audited(ws, "retention.reassign")
    assert entry.actor == fact.actor == pwd.getpwuid(os.geteuid()).pw_name
    assert entry.detail["cause"] == "reassign" and entry.detail["moved"] == 2
    assert entry.detail["evaluated"] == 3 and entry.detail["facts"] == [fact.key]
    assert len(entry.detail["groups"]) == 2
    with ws.open_catalog() as catalog, catalog.reader() as s:
        assert s.scalar(select(StoredFile.kind).where(StoredFile.key == fact.key)) == "control"

    again = ws.in_process(capsys, monkeypatch, "retention", "reassign", "--json")
    assert again.returncode == 0, describe(again)
    assert json.loads(again.stdout)["moved"] == 0
    assert len(facts(ws, "assignment.changed")) == 1  # nothing moved: no fact
    assert len(audited(ws, "retention.reassign")) == 2  # but the officer's run is audited
    assert ws.archiver("audit", "verify").returncode == 0


@needs_root_and_nobody
@pytest.mark.parametrize(
    "command",
    [
        ("retention", "reassign"),
        ("retention", "event", "record", "--kind", "account-closed", "--on", "2026-01-01"),
        (
            "retention",
            "notice",
            "record",
            "--series",
            "social-media",
            "--sent-on",
            "2026-01-01",
            "--reference",
            "WHS-1",
        ),
    ],
)
def test_someone_without_the_officer_role_is_refused_with_exit_8_and_audited(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    ws = make_workspace(tmp_path, extra='\n[roles]\nrecords = "officer"\n')
    ws.ok("catalog", "upgrade")

    result = ws.archiver(*command, env=SUDO_NOBODY)

    assert result.returncode == PermissionDenied.exit_code == 8, describe(result)
    name = " ".join(command[:3]) if command[1] != "reassign" else "retention reassign"
    assert f"nobody (via sudo as root) may not run `archiver {name}`" in result.stderr
    (entry,) = audited(ws, "permission.denied")
    assert entry.subject == name and entry.detail["needs"] == ["officer"]
    with ws.open_catalog() as catalog, catalog.reader() as s:
        assert s.scalars(select(RetentionEvent)).all() == []
        assert s.scalars(select(RetentionNotice)).all() == []
    assert list(read_facts(ws.store())) == []


# --- events ---------------------------------------------------------------------------------------


def test_an_account_closure_is_recorded_and_extends_the_locks_of_its_event_series_files(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.post("Welcome to the City's account")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch, extra=PROFILE_RULE)
    with ws.open_catalog() as catalog, catalog.reader() as s:
        files = list(s.scalars(select(StoredFile).where(StoredFile.kind == "warc")))
    event_files = [f for f in files if f.key.startswith("warc/EXAMPLE-ACCOUNT-RECORDS/")]
    other = {f.key: f.retain_until for f in files if f not in event_files}
    assert event_files and other
    later = {"ARCHIVER_NOW": "2027-07-01T12:00:00+00:00"}

    recorded = ws.archiver(
        "retention",
        "event",
        "record",
        "--kind",
        "account-closed",
        "--account",
        ACCOUNT,
        "--on",
        "2027-06-30",
        "--note",
        "account retired by the Mayor's Office",
        env=later,
    )

    assert recorded.returncode == 0, describe(recorded)
    assert "event account-closed of account mke-bluesky on 2027-06-30 00:00 CDT" in recorded.stdout
    assert f"object locks of {len(event_files)} stored file(s) extended" in recorded.stdout
    # Closed at local midnight in Chicago (CDT): 05:00 UTC; kept 7 years from then.
    until = datetime(2034, 6, 30, 5, 0, tzinfo=UTC)
    store = ws.store()
    with ws.open_catalog() as catalog, catalog.reader() as s:
        rows = {f.key: f for f in s.scalars(select(StoredFile).where(StoredFile.kind == "warc"))}
        (event,) = s.scalars(select(RetentionEvent)).all()
    for f in event_files:
        assert rows[f.key].retain_until == until == store.head(f.key).retain_until
    for key, held in other.items():
        assert rows[key].retain_until == held  # the account series' files are not extended
    assert (event.kind, event.account_id, event.occurred_at) == (
        "account-closed",
        ACCOUNT,
        datetime(2027, 6, 30, 5, 0, tzinfo=UTC),
    )
    assert event.note == "account retired by the Mayor's Office"
    (fact,) = facts(ws, "event.recorded")
    assert fact.body == {
        "event": event.id,
        "kind": "account-closed",
        "account": ACCOUNT,
        "occurred_at": "2027-06-30T05:00:00+00:00",
        "note": "account retired by the Mayor's Office",
    }
    assert fact.at == datetime(2027, 7, 1, 12, 0, tzinfo=UTC)
    (entry,) = audited(ws, "retention.event")
    assert entry.detail["fact"] == fact.key and entry.detail["event"] == event.id
    (extension,) = audited(ws, "retention.lock.extend")
    assert extension.detail["files"] == len(event_files)
    assert extension.detail["until"] == [until.isoformat()]

    # The same event again is not a second event; the locks are already extended.
    ws.env.update(later)
    again = ws.in_process(
        capsys,
        monkeypatch,
        "retention",
        "event",
        "record",
        "--kind=account-closed",
        f"--account={ACCOUNT}",
        "--on=2027-06-30",
    )
    assert again.returncode == 0, describe(again)
    assert "was already recorded as event" in again.stdout
    assert "no stored file needed a longer lock" in again.stdout
    assert len(facts(ws, "event.recorded")) == 1

    listed = ws.in_process(capsys, monkeypatch, "retention", "event", "list", "--json")
    assert listed.returncode == 0, describe(listed)
    (doc,) = json.loads(listed.stdout)
    assert doc["kind"] == "account-closed" and doc["account"] == ACCOUNT
    assert doc["occurred_at"] == "2027-06-30T05:00:00+00:00"
    table = ws.in_process(capsys, monkeypatch, "retention", "event", "list")
    assert "account-closed" in table.stdout and "2027-06-30 00:00 CDT" in table.stdout
    assert ws.archiver("audit", "verify").returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--kind", "account-deleted", "--on", "2026-01-01"),
            "no series in the retention schedules starts on event 'account-deleted'; "
            "the events they use: account-closed",
        ),
        (("--kind", "account-closed", "--on", "2999-01-01"), "is in the future"),
        (("--kind", "account-closed", "--on", "yesterday"), "is neither a date"),
        (
            ("--kind", "account-closed", "--account", "mke-nowhere", "--on", "2026-01-01"),
            "no account 'mke-nowhere' in the configuration or the catalog",
        ),
    ],
)
def test_an_event_that_cannot_be_right_is_refused_and_nothing_is_recorded(
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    says: str,
) -> None:
    assert workspace.in_process(capsys, monkeypatch, "catalog", "upgrade").returncode == 0

    refused = workspace.in_process(capsys, monkeypatch, "retention", "event", "record", *args)

    assert refused.returncode == 2, describe(refused)
    assert says in refused.stderr
    with workspace.open_catalog() as catalog, catalog.reader() as s:
        assert s.scalars(select(RetentionEvent)).all() == []


# --- notices --------------------------------------------------------------------------------------


def test_a_notice_and_a_waiver_are_recorded_in_catalog_store_and_audit_and_listed(
    any_workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = any_workspace
    ws.ok("catalog", "upgrade")

    sent = ws.archiver(
        "retention",
        "notice",
        "record",
        "--series",
        "social-media",
        "--sent-on",
        "2026-09-01",
        "--reference",
        "WHS letter 2026-17",
        "--note",
        "items created before 2019-09",
    )
    waiver = ws.in_process(
        capsys,
        monkeypatch,
        "retention",
        "notice",
        "record",
        "--series=EXAMPLE-COMMENTS",
        "--waiver-on=2026-10-15",
        "--reference=WHS waiver 88",
    )

    assert sent.returncode == 0, describe(sent)
    assert "recorded notice 1: notice sent 2026-09-01 00:00 CDT (WHS letter 2026-17)" in sent.stdout
    assert "may be disposed of from 2026-10-31 00:00 CDT (60 days after the notice)" in sent.stdout
    assert waiver.returncode == 0, describe(waiver)
    assert "may be disposed of now" in waiver.stdout
    listed = ws.in_process(capsys, monkeypatch, "retention", "notice", "list", "--json")
    assert listed.returncode == 0, describe(listed)
    docs = json.loads(listed.stdout)
    assert [(d["series"], d["kind"], d["reference"]) for d in docs] == [
        ("social-media", "sent", "WHS letter 2026-17"),
        ("EXAMPLE-COMMENTS", "waiver", "WHS waiver 88"),
    ]
    assert docs[0]["on"] == "2026-09-01T05:00:00+00:00"
    assert docs[0]["effective_from"] == "2026-10-31T05:00:00+00:00"
    assert docs[1]["effective_from"] == docs[1]["on"] == "2026-10-15T05:00:00+00:00"
    only = ws.in_process(
        capsys, monkeypatch, "retention", "notice", "list", "--series", "EXAMPLE-COMMENTS"
    )
    assert "WHS waiver 88" in only.stdout and "WHS letter" not in only.stdout
    recorded = facts(ws, "notice.recorded")
    assert [f.body["reference"] for f in recorded] == ["WHS letter 2026-17", "WHS waiver 88"]
    assert recorded[0].body == {
        "notice": docs[0]["id"],
        "series": "social-media",
        "kind": "sent",
        "on": "2026-09-01T05:00:00+00:00",
        "reference": "WHS letter 2026-17",
        "note": "items created before 2019-09",
    }
    entries = audited(ws, "retention.notice")
    assert [e.subject for e in entries] == ["social-media", "EXAMPLE-COMMENTS"]
    assert [e.detail["fact"] for e in entries] == [f.key for f in recorded]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--series", "EXAMPLE-POSTS", "--sent-on", "2026-09-01"),
            "series EXAMPLE-POSTS does not require notice to the historical society",
        ),
        (("--series", "general", "--sent-on", "2026-09-01"), "no series 'general'"),
        (
            ("--series", "social-media", "--sent-on", "2026-09-01", "--waiver-on", "2026-09-02"),
            "exactly one of --sent-on DATE or --waiver-on DATE",
        ),
        (("--series", "social-media"), "exactly one of --sent-on DATE or --waiver-on DATE"),
        (("--series", "social-media", "--waiver-on", "2999-01-01"), "is in the future"),
    ],
)
def test_a_notice_that_cannot_be_right_is_refused_and_nothing_is_recorded(
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    says: str,
) -> None:
    assert workspace.in_process(capsys, monkeypatch, "catalog", "upgrade").returncode == 0

    refused = workspace.in_process(
        capsys, monkeypatch, "retention", "notice", "record", *args, "--reference", "WHS-1"
    )

    assert refused.returncode == 2, describe(refused)
    assert says in refused.stderr
    with workspace.open_catalog() as catalog, catalog.reader() as s:
        assert s.scalars(select(RetentionNotice)).all() == []
    assert facts(workspace, "notice.recorded") == []
