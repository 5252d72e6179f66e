"""``archiver show ITEM``: an item with its thread, versions, media and history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from archiver.catalog.models import Item
from tests.commands.clitools import describe
from tests.commands.test_restore_cmd import captured_workspace, item_ids
from tests.commands.test_search_cmd import _install
from tests.connectors.fake_bluesky import FakeBluesky
from tests.test_restore import new_fake


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


def test_show_json_gives_the_thread_versions_media_and_deletion_history(
    tmp_path: Path,
    fake: FakeBluesky,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Snow emergency", images=[("Map", "image/jpeg"), ("Sign", "image/jpeg")])
    thanks = fake.reply(post, "Thanks")
    wrong = fake.reply(post, "The ban starts at 6")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch, catalog_url=catalog_url)
    fake.delete(wrong)
    again = ws.in_process(capsys, monkeypatch, "capture", "mke-bluesky", "--full")
    assert again.returncode == 0, describe(again)
    ids = item_ids(ws)

    shown = ws.archiver("show", f"mke-bluesky/{post}", "--json")
    gone = ws.in_process(capsys, monkeypatch, "show", str(ids[wrong]), "--json")

    assert shown.returncode == 0, describe(shown)
    doc = json.loads(shown.stdout)
    assert doc["item"]["id"] == ids[post] and doc["item"]["platform_item_id"] == post
    assert [(n["item"]["id"], n["depth"]) for n in doc["thread"]] == [
        (ids[post], 0),
        (ids[thanks], 1),
        (ids[wrong], 1),
    ]
    assert [r["id"] for r in doc["replies"]] == [ids[thanks], ids[wrong]]
    assert [(v["version_no"], v["change"]) for v in doc["versions"]] == [(1, "new")]
    assert len(doc["versions"][0]["content_sha256"]) == 64 and doc["versions"][0]["captured_at"]
    assert [m["alt_text"] for m in doc["media"]] == ["Map", "Sign"]
    assert doc["history"] == []
    assert gone.returncode == 0, describe(gone)
    deleted = json.loads(gone.stdout)
    assert deleted["item"]["state"] == "deleted"
    assert deleted["parent"]["id"] == ids[post]
    (event,) = deleted["history"]
    assert event["change"] == "deleted" and event["evidence"] and "not-found" in event["note"]


def test_show_prints_a_readable_tree_and_tables_without_reading_markup_in_posts(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = fake.post("Council [bold red]meeting[/] tonight", images=[("[link]Map", "image/jpeg")])
    reply = fake.reply(post, "Where is it?")
    spam = fake.reply(post, "spam spam")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)
    fake.hide_reply(spam)
    assert ws.in_process(capsys, monkeypatch, "capture", "mke-bluesky").returncode == 0
    ids = item_ids(ws)

    shown = ws.in_process(capsys, monkeypatch, "show", str(ids[post]))
    hidden = ws.in_process(capsys, monkeypatch, "show", str(ids[spam]))

    assert shown.returncode == 0, describe(shown)
    out = shown.stdout
    assert "Council [bold red]meeting[/] tonight" in out  # as posted, not styled
    assert "[link]Map" in out
    assert f"#{ids[post]} " in out and "◀ this item" in out
    assert f"#{ids[reply]} comment by resident.bsky.social" in out
    assert "thread" in out and "versions" in out and "media" in out
    assert "no moderation or deletion recorded" in out
    assert hidden.returncode == 0, describe(hidden)
    assert "[hidden]" in hidden.stdout
    assert "moderation and deletion" in hidden.stdout and "hidden or removed" in hidden.stdout


def test_show_of_an_unknown_item_exits_2_saying_what_to_give(
    tmp_path: Path,
    fake: FakeBluesky,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.post("Library hours")
    ws = captured_workspace(tmp_path, fake, capsys, monkeypatch)

    outcome = ws.in_process(capsys, monkeypatch, "show", "mke-bluesky/../../x")

    assert outcome.returncode == 2
    assert "account mke-bluesky has no item with platform id '../../x'" in outcome.stderr
    assert "ACCOUNT/PLATFORM_ITEM_ID" in outcome.stderr and "Traceback" not in outcome.stderr


def test_show_has_a_retention_section_with_series_rule_decision_and_covering_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = _install(tmp_path)
    ws, corpus = installed.ws, installed.corpus
    placed = ws.in_process(
        capsys, monkeypatch, "hold", "create", "--case", "LIT-1", "--reason", "claim",
        "--account", corpus.mastodon_account,
    )  # fmt: skip
    assert placed.returncode == 0, describe(placed)

    held = ws.in_process(capsys, monkeypatch, "show", str(corpus.edited_post.id))
    free = ws.in_process(capsys, monkeypatch, "show", str(corpus.cafe_reply.id), "--json")

    assert held.returncode == 0, describe(held)
    out = held.stdout
    assert "retention" in out
    assert "social-media, assigned by default (the account's series)" in out
    assert "decision     held" in out and "then         destroy" in out
    assert "eligible on  2033-01-20 03:00:00 CST" in out  # 7 years after 2026-01-20 09:00 UTC
    assert "LIT-1 (legal hold 1)" in out
    assert "held by legal hold 1 (case LIT-1)" in out
    assert free.returncode == 0, describe(free)
    retention = json.loads(free.stdout)["retention"]
    assert retention == {
        "series": "social-media",
        "rule": "default",
        "outcome": "retained",
        "eligible_on": "2033-01-12T15:03:00+00:00",
        "action": "destroy",
        "reason": retention["reason"],
        "holds": [],
        "disposed_at": None,
        "certificate": None,
    }
    assert retention["reason"].startswith("social-media: 7 years after creation")


def test_show_of_a_destroyed_items_stub_gives_when_and_the_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = _install(tmp_path)
    ws, stub = installed.ws, installed.corpus.deleted_reply
    with ws.open_catalog() as catalog, catalog.session() as s:
        # What a disposition leaves: the row as a stub pointing at its certificate.
        row = s.get(Item, stub.id)
        assert row is not None
        row.disposed_at = datetime(2034, 3, 1, 15, 0, tzinfo=UTC)
        row.certificate_id = "01J0CERTIFICATE0000000000A"

    shown = ws.in_process(capsys, monkeypatch, "show", str(stub.id))
    as_json = ws.in_process(capsys, monkeypatch, "show", str(stub.id), "--json")

    assert shown.returncode == 0, describe(shown)
    assert "disposed     2034-03-01 09:00:00 CST" in shown.stdout
    assert "certificate  01J0CERTIFICATE0000000000A" in shown.stdout
    retention = json.loads(as_json.stdout)["retention"]
    assert (retention["outcome"], retention["certificate"], retention["disposed_at"]) == (
        "disposed",
        "01J0CERTIFICATE0000000000A",
        "2034-03-01T15:00:00+00:00",
    )
