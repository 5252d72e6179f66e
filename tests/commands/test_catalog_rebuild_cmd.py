"""``archiver catalog rebuild`` and ``archiver catalog compare``, run as the real command."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from archiver.catalog import Catalog
from archiver.catalog.models import AuditEntry, Item
from archiver.store import LocalStore
from tests.commands.clitools import Workspace, describe, make_workspace
from tests.corpus import Corpus, capture_corpus
from tests.rebuild.databases import another_database

ACCOUNTS = """
[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "city.example.gov"
department = "Office of the Mayor"
series = "social-media"

[[accounts]]
id = "mke-dpw-mastodon"
platform = "mastodon"
handle = "city@mastodon.example"
department = "Department of Public Works"
series = "social-media"
"""


def _installed(tmp_path: Path, catalog_url: str | None) -> tuple[Workspace, Corpus]:
    ws = make_workspace(tmp_path / "install", catalog_url=catalog_url, accounts=ACCOUNTS)
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        corpus = capture_corpus(catalog, LocalStore(ws.store_root), tmp_path / "corpus")
    return ws, corpus


@pytest.fixture
def captured(tmp_path: Path, catalog_url: str) -> tuple[Workspace, Corpus]:
    """An installation whose catalog (each supported database) and store hold the corpus."""
    return _installed(tmp_path, catalog_url)


@pytest.fixture
def captured_sqlite(tmp_path: Path) -> tuple[Workspace, Corpus]:
    """The same with the default SQLite catalog, for what does not depend on the database."""
    return _installed(tmp_path, None)


@pytest.fixture
def into(tmp_path: Path, catalog_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database beside the live one (on PostgreSQL, its URL holds a password)."""
    with another_database(catalog_url, tmp_path, request) as url:
        yield url


@contextmanager
def opened(url: str) -> Iterator[Catalog]:
    catalog = Catalog.open(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


def _secrets(ws: Workspace, *urls: str) -> list[str]:
    passwords = [make_url(u).password for u in urls]
    return [*ws.secrets, *(str(p) for p in passwords if p)]


def _last_entry(ws: Workspace) -> AuditEntry:
    with ws.open_catalog() as live, live.reader() as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None
    return entry


def test_rebuild_into_an_empty_database_then_compare_with_the_live_catalog_finds_no_difference(
    captured: tuple[Workspace, Corpus], into: str
) -> None:
    ws, corpus = captured

    result = ws.archiver("catalog", "rebuild", "--into", into, "--compare")

    assert result.returncode == 0, describe(result)
    out = result.stdout
    assert "rebuilt the catalog at" in out and "no differences between" in out
    assert "orphan" not in out and "LEFT OUT" not in out and "problem" not in out
    with opened(into) as rebuilt, rebuilt.reader() as s:
        states = dict(s.execute(select(Item.platform_item_id, Item.state)).all())
        (first,) = s.scalars(select(AuditEntry)).all()
    assert states[corpus.hidden_reply.platform_item_id] == "hidden"
    assert states[corpus.deleted_reply.platform_item_id] == "deleted"
    assert first.action == "catalog.rebuild"
    # The live catalog's audit log records who rebuilt what, and never a password.
    entry = _last_entry(ws)
    assert entry.action == "catalog.rebuild" and entry.actor
    assert entry.detail["outcome"] == "rebuilt" and entry.detail["differences"] == 0
    assert entry.detail["items"] == len(states)
    for secret in _secrets(ws, into):
        assert secret not in out + result.stderr
        assert secret not in json.dumps([entry.subject, entry.detail])


def test_compare_names_each_difference_exits_1_and_gives_them_all_as_json(
    captured_sqlite: tuple[Workspace, Corpus], tmp_path: Path
) -> None:
    ws, corpus = captured_sqlite
    into = f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"
    ws.ok("catalog", "rebuild", "--into", into)
    with opened(into) as rebuilt, rebuilt.session() as s:
        s.execute(
            update(Item)
            .where(Item.platform_item_id == corpus.hidden_reply.platform_item_id)
            .values(state="present")
        )

    text = ws.archiver("catalog", "compare", into)
    as_json = ws.archiver("catalog", "compare", into, "--json")

    assert text.returncode == 1, describe(text)
    key = f"items {corpus.bluesky_account} {corpus.hidden_reply.platform_item_id}"
    assert f"differs:         {key} state: hidden → present" in text.stdout
    assert "items: 0 only in live, 0 only in rebuilt, 1 differing row(s)" in text.stdout
    assert as_json.returncode == 1, describe(as_json)
    report = json.loads(as_json.stdout)
    assert report["clean"] is False
    assert report["differences"] == [
        {
            "table": "items",
            "key": [corpus.bluesky_account, corpus.hidden_reply.platform_item_id],
            "kind": "differs",
            "column": "state",
            "live": "hidden",
            "rebuilt": "present",
        }
    ]
    assert "last_seen_at" in report["excluded"]["items"]
    entry = _last_entry(ws)
    assert entry.action == "catalog.compare" and entry.detail["differences"] == 1
    for secret in _secrets(ws, into):
        assert secret not in text.stdout + text.stderr + as_json.stdout + as_json.stderr


def test_rebuild_refuses_a_database_that_is_not_empty_and_names_it_without_its_password(
    any_workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = any_workspace
    upgraded = ws.in_process(capsys, monkeypatch, "catalog", "upgrade")
    assert upgraded.returncode == 0, describe(upgraded)  # the live catalog: one audit entry

    result = ws.in_process(capsys, monkeypatch, "catalog", "rebuild", "--into", ws.direct_url)

    assert result.returncode == 4, describe(result)
    assert "is not empty" in result.stderr and "Traceback" not in result.stderr
    for secret in _secrets(ws, ws.direct_url):
        assert secret not in result.stdout + result.stderr


def test_a_damaged_file_stops_the_rebuild_with_exit_90_unless_it_is_skipped_with_exit_1(
    captured_sqlite: tuple[Workspace, Corpus], tmp_path: Path
) -> None:
    ws, _ = captured_sqlite
    into = f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"
    path = max(ws.store_root.glob("warc/**/*.warc.gz"), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    key = path.relative_to(ws.store_root).as_posix()

    refused = ws.archiver("catalog", "rebuild", "--into", into)
    skipped = ws.archiver("catalog", "rebuild", "--into", into, "--skip-damaged", "--json")

    assert refused.returncode == 90, describe(refused)
    assert key in refused.stderr and "nothing was written" in refused.stderr
    assert skipped.returncode == 1, describe(skipped)
    report = json.loads(skipped.stdout)["rebuild"]
    assert [d["key"] for d in report["damaged"]] == [key]
    with ws.open_catalog() as live, live.reader() as s:
        outcomes = [
            e.detail.get("outcome")
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "catalog.rebuild"))
        ]
    assert outcomes == ["refused", "rebuilt"]
    with opened(into) as rebuilt, rebuilt.reader() as s:
        assert int(s.scalar(select(func.count()).select_from(Item)) or 0) > 0
