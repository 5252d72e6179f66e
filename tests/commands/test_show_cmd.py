"""``archiver show ITEM``: an item with its thread, versions, media and history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.commands.clitools import describe
from tests.commands.test_restore_cmd import captured_workspace, item_ids
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
