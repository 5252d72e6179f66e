"""Restoring an item version exactly as captured: verified first, written safely.

The archives here are real captures from the fake platform servers (tests/connectors), into
a real local store and a real catalog (SQLite and PostgreSQL); "what the platform sent" is
read from the fake server's own log of the responses it served.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import event, select, update

from archiver import __version__
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import (
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.config import Config, load_config
from archiver.errors import ArchiverError, IntegrityError
from archiver.items import resolve
from archiver.redact import clear_registered_secrets
from archiver.restore import parse_as_of, restore_item
from archiver.retrieve import read_record
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import FakeBluesky
from tests.connectors.fake_mastodon import FakeMastodon

INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
MASTODON_TOKEN = "CityToken-restore-5e1f0a2b9c-X"
#: The fixed pattern of every name a restore writes inside its item folder.
RESTORED_NAME = re.compile(
    r"item\.json|manifest\.json|source/response\.http|source/response-body\.[a-z0-9.]+"
    r"|source/resource\.[a-z0-9]+|media/\d{2,}-[0-9a-f]{16}\.[a-z0-9]+"
)


def bluesky_account(fake: FakeBluesky, account_id: str = "mke-bluesky") -> str:
    """The ``[[accounts]]`` table of a Bluesky account on the fake AppView."""
    return f"""
[[accounts]]
id = "{account_id}"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
rescan_days = 14
full_walk_days = 30
"""


def write_config(root: Path, accounts: str, extra: str = "") -> Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(
        '[archiver]\noperator = "City of Milwaukee"\nnode = "node-1"\n\n'
        f'[http]\nmax_retries = 1\nmax_wait = "2s"\n{extra}\n{accounts}'
    )
    return load_config(root / "config.toml")


@dataclass
class Archive:
    """A capture of a fake platform: the runner, its store, and the catalog it wrote."""

    runner: CaptureRunner
    catalog: Catalog
    server: HTTPServer

    @property
    def store(self) -> LocalStore:
        store = self.runner.store
        assert isinstance(store, LocalStore)
        return store

    def capture(self, account: str, **kw: Any) -> None:
        result = self.runner.capture(account, **kw)
        assert result.status == "complete", result.reason

    def item_id(self, platform_item_id: str) -> int:
        with self.catalog.reader() as s:
            return int(
                s.scalars(select(Item.id).where(Item.platform_item_id == platform_item_id)).one()
            )

    def served(self, url: str) -> bytes:
        """The body the fake server sent for the last request to ``url``."""
        return bytes(self.served_response(url).get_data())

    def served_response(self, url: str) -> Any:
        """The response the fake server sent for the last request to ``url``."""
        answers = [resp for req, resp in self.server.log if unquote(req.url) == unquote(url)]
        assert answers, f"the server never answered {url}"
        return answers[-1]


def new_fake(httpserver: HTTPServer) -> FakeBluesky:
    """A fake Bluesky AppView whose posts are recent (inside the rescan window)."""
    f = FakeBluesky(httpserver)
    f.now = datetime.now(UTC) - timedelta(days=3)
    return f


def bluesky_archive(root: Path, fake: FakeBluesky, catalog: Catalog) -> Archive:
    """An archive of the fake's City account ``mke-bluesky``, stored under ``root``."""
    config = write_config(root / "cfg", bluesky_account(fake))
    runner = CaptureRunner(config, catalog, LocalStore(root / "store"), INFO)
    return Archive(runner, catalog, fake.server)


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return new_fake(httpserver)


@pytest.fixture
def archive(tmp_path: Path, fake: FakeBluesky, catalog: Catalog) -> Archive:
    return bluesky_archive(tmp_path, fake, catalog)


def two_image_post(fake: FakeBluesky) -> str:
    post = fake.post(
        "Snow emergency declared",
        images=[("Map of snow routes", "image/jpeg"), ("Parking ban sign", "image/png")],
    )
    fake.reply(post, "Thanks for the update")
    return post


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def flip_byte(store: LocalStore, key: str, position: int) -> None:
    """Bit rot: one byte of a stored (read-only) object changes."""
    path = store.root / key
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[position] ^= 0x20
    path.write_bytes(bytes(data))
    path.chmod(0o444)


# -- byte-identical -------------------------------------------------------------------------


def test_a_restored_post_with_two_images_is_byte_identical_to_what_the_platform_sent(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)

    result = restore_item(
        archive.catalog, archive.store, item_id, tmp_path / "out", restored_by="alice"
    )

    folder = tmp_path / "out" / f"item-{item_id}-v1"
    assert result.directory == folder
    written = files_under(folder)
    assert all(RESTORED_NAME.fullmatch(name) for name in written), sorted(written)
    media_names = sorted(n for n in written if n.startswith("media/"))
    assert len(media_names) == 2
    with archive.catalog.reader() as s:
        rows = s.execute(
            select(Media.source_url, Media.sha256)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id == item_id)
            .order_by(ItemMedia.position)
        ).all()
    for name, (url, sha256) in zip(media_names, rows, strict=True):
        assert written[name] == archive.served(url)  # the image bytes the server sent
        assert name.endswith(f"-{sha256[:16]}.jpg")  # the server sent image/jpeg
    with archive.catalog.reader() as s:
        version = s.scalars(select(ItemVersion).where(ItemVersion.item_id == item_id)).one()
    conversion = read_record(archive.catalog, archive.store, version.warc_record_id)
    assert written["item.json"] == conversion.block
    assert json.loads(written["item.json"])["item_id"] == post
    source = read_record(archive.catalog, archive.store, conversion.headers["WARC-Refers-To"])
    sent = archive.served_response(source.headers["WARC-Target-URI"])
    assert written["source/response-body.json"] == sent.get_data()
    http = written["source/response.http"]
    assert http == source.block
    assert re.match(rb"HTTP/1\.[01] 200 OK\r\n", http)
    assert http.endswith(b"\r\n\r\n" + sent.get_data())
    for name, value in sent.headers.items():
        assert f"{name}: {value}".encode() in http


def test_the_manifest_names_every_file_its_stored_source_and_correct_hashes(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    now = datetime(2026, 5, 1, 15, 30, tzinfo=UTC)

    result = restore_item(
        archive.catalog,
        archive.store,
        archive.item_id(post),
        tmp_path / "out",
        restored_by="alice (via sudo as archiver)",
        clock=lambda: now,
    )

    manifest_bytes = (result.directory / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert result.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert manifest["archiver_version"] == __version__
    assert manifest["restored_at"] == "2026-05-01T15:30:00+00:00"
    assert manifest["restored_by"] == "alice (via sudo as archiver)"
    assert manifest["item"]["platform_item_id"] == post
    assert manifest["version"]["version_no"] == 1 and manifest["selected_by"]["latest"]
    assert [m["alt_text"] for m in manifest["media"]] == ["Map of snow routes", "Parking ban sign"]
    listed = {f["path"] for f in manifest["files"]}
    assert listed | {"manifest.json"} == set(files_under(result.directory))
    with archive.catalog.reader() as s:
        for entry in manifest["files"]:
            data = (result.directory / entry["path"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            assert entry["size"] == len(data)
            src = entry["source"]
            rec, key = s.execute(
                select(WarcRecord, StoredFile.key)
                .join(StoredFile, StoredFile.id == WarcRecord.file_id)
                .where(WarcRecord.record_id == src["record_id"])
            ).one()
            assert (src["file_id"], src["key"], src["offset"], src["length"]) == (
                rec.file_id,
                key,
                rec.offset,
                rec.length,
            )
            assert src["block_digest"] == rec.block_digest
            assert src["payload_digest"] == rec.payload_digest
    roles = sorted(f["role"] for f in manifest["files"])
    assert roles == ["item", "media", "media", "source-body", "source-http"]


def test_an_item_imported_from_an_export_restores_the_archive_entries_as_found(
    tmp_path: Path, catalog: Catalog
) -> None:
    sample = Path(__file__).parent.parent / "examples" / "mastodon-export.zip"
    (tmp_path / "dpw.zip").write_bytes(sample.read_bytes())
    config = write_config(
        tmp_path / "cfg",
        f"""
[[accounts]]
id = "mke-dpw-export"
platform = "mastodon_export"
handle = "mkedpw@mastodon.example"
department = "Department of Public Works"
series = "social-media"
archive = "{tmp_path / "dpw.zip"}"
""",
    )
    runner = CaptureRunner(config, catalog, LocalStore(tmp_path / "store"), INFO)
    assert runner.capture("mke-dpw-export").status == "complete"
    with catalog.reader() as s:
        version_id, item_id = s.execute(
            select(ItemVersion.id, ItemVersion.item_id)
            .join(ItemMedia, ItemMedia.version_id == ItemVersion.id)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.kind == "post", ItemMedia.status == "stored")
            .limit(1)
        ).one()
        urls = dict(
            s.execute(
                select(ItemMedia.position, Media.source_url)
                .join(Media, Media.id == ItemMedia.media_id)
                .where(ItemMedia.version_id == version_id)
            ).all()
        )

    result = restore_item(catalog, runner.store, item_id, tmp_path / "out", restored_by="a")

    written = files_under(result.directory)
    assert all(RESTORED_NAME.fullmatch(name) for name in written), sorted(written)
    with zipfile.ZipFile(sample) as export:
        assert written["source/resource.json"] == export.read("outbox.json")
        for f in result.files:
            if f.role == "media":  # an entry URI is urn:archiver:export:<sha256>/<entry name>
                entry = str(urls[f.source["position"]]).split("/", 1)[1]
                assert written[f.path] == export.read(entry)
        assert len([f for f in result.files if f.role == "media"]) == len(urls) >= 1
    roles = {f.role for f in result.files}
    assert roles == {"item", "source-resource", "media"}


# -- choosing the version -------------------------------------------------------------------


@pytest.fixture
def mastodon(
    tmp_path: Path, httpserver: HTTPServer, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Archive, FakeMastodon]]:
    fake = FakeMastodon(httpserver, start=datetime.now(UTC) - timedelta(days=2))
    monkeypatch.setenv("ARCHIVER_TEST_MASTODON_TOKEN", MASTODON_TOKEN)
    config = write_config(
        tmp_path / "cfg",
        f"""
[[accounts]]
id = "mke-mastodon"
platform = "mastodon"
handle = "city"
api_base = "{fake.base_url}"
department = "Department of Public Works"
series = "social-media"
credentials = {{ access_token = {{ env = "ARCHIVER_TEST_MASTODON_TOKEN" }} }}
""",
    )
    runner = CaptureRunner(config, catalog, LocalStore(tmp_path / "store"), INFO)
    yield Archive(runner, catalog, httpserver), fake
    clear_registered_secrets()


def _edited_post(archive: Archive, fake: FakeMastodon) -> tuple[int, list[ItemVersion]]:
    city = fake.add_account("city", display_name="City of Milwaukee")
    fake.tokens[MASTODON_TOKEN] = (city.id, ("read",))
    post = fake.post(city, "Brush pickup starts May 1", media=[{"type": "image"}])
    archive.capture("mke-mastodon")
    fake.edit(post, "Brush pickup starts May 8")
    archive.capture("mke-mastodon", full_walk=False)
    item_id = archive.item_id(post.id)
    with archive.catalog.reader() as s:
        versions = list(
            s.scalars(
                select(ItemVersion)
                .where(ItemVersion.item_id == item_id)
                .order_by(ItemVersion.version_no)
            )
        )
    assert [v.change for v in versions] == ["new", "edited"]
    return item_id, versions


def _text(result_dir: Path) -> str:
    return str(json.loads((result_dir / "item.json").read_bytes())["text"])


def test_version_and_as_of_pick_the_version_that_was_captured_then(
    mastodon: tuple[Archive, FakeMastodon], tmp_path: Path
) -> None:
    archive, fake = mastodon
    item_id, (first, second) = _edited_post(archive, fake)

    def restored(**kw: Any) -> Path:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        return restore_item(
            archive.catalog, archive.store, item_id, out, restored_by="alice", **kw
        ).directory

    latest = restored()
    assert latest.name == f"item-{item_id}-v2" and "May 8" in _text(latest)
    assert "May 1" in _text(restored(version=1))
    assert "May 1" in _text(restored(as_of=first.captured_at))
    assert "May 1" in _text(restored(as_of=second.captured_at - timedelta(microseconds=1)))
    assert "May 8" in _text(restored(as_of=second.captured_at))
    manifest = json.loads((restored(version=1) / "manifest.json").read_bytes())
    assert manifest["selected_by"] == {"version": 1, "as_of": None, "latest": False}
    assert [h["change"] for h in manifest["history"]] == ["new", "edited"]
    # The image the platform would not serve is listed as missing, not silently dropped.
    assert [(m["status"], m["file"]) for m in manifest["media"]] == [("failed", None)]
    with pytest.raises(ArchiverError, match="was not captured at or before"):
        restored(as_of=first.captured_at - timedelta(seconds=1))
    with pytest.raises(ArchiverError, match="has no version 3; its versions with content: 1, 2"):
        restored(version=3)


def test_a_deletion_is_never_restored_as_content(
    mastodon: tuple[Archive, FakeMastodon], tmp_path: Path
) -> None:
    archive, fake = mastodon
    city = fake.add_account("city", display_name="City of Milwaukee")
    fake.tokens[MASTODON_TOKEN] = (city.id, ("read",))
    post = fake.post(city, "Wrong date, sorry")
    archive.capture("mke-mastodon")
    fake.delete(post)
    archive.capture("mke-mastodon", full_walk=True)
    item_id = archive.item_id(post.id)

    result = restore_item(archive.catalog, archive.store, item_id, tmp_path, restored_by="a")

    assert result.version_no == 1 and "Wrong date" in _text(result.directory)
    manifest = json.loads((result.directory / "manifest.json").read_bytes())
    assert manifest["item"]["state"] == "deleted"
    assert [h["change"] for h in manifest["history"]] == ["new", "deleted"]
    with pytest.raises(ArchiverError, match="records its deletion and has no content"):
        restore_item(archive.catalog, archive.store, item_id, tmp_path, restored_by="a", version=2)


def test_as_of_reads_a_date_as_the_end_of_that_day_in_the_configured_zone() -> None:
    chicago = load_config_zone()
    assert parse_as_of("2024-05-01", chicago) == datetime(2024, 5, 2, 4, 59, 59, 999999, UTC)
    assert parse_as_of("2024-05-01T14:30", chicago) == datetime(2024, 5, 1, 19, 30, tzinfo=UTC)
    assert parse_as_of("2024-05-01T14:30Z", chicago) == datetime(2024, 5, 1, 14, 30, tzinfo=UTC)
    with pytest.raises(ArchiverError, match="is not a date or time"):
        parse_as_of("last tuesday", chicago)


def load_config_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/Chicago")


# -- integrity -------------------------------------------------------------------------------


def _records_of(archive: Archive, item_id: int) -> dict[str, tuple[str, int, int]]:
    """(key, offset, length) of the item's conversion record, its source, its second image."""
    with archive.catalog.reader() as s:
        version = s.scalars(select(ItemVersion).where(ItemVersion.item_id == item_id)).one()
        media = s.scalars(
            select(Media)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .where(ItemMedia.version_id == version.id, ItemMedia.position == 1)
        ).one()
    source = read_record(archive.catalog, archive.store, version.warc_record_id).headers[
        "WARC-Refers-To"
    ]
    ids = {"item": version.warc_record_id, "source": source, "media": media.warc_record_id}
    out = {}
    with archive.catalog.reader() as s:
        for name, record_id in ids.items():
            rec, key = s.execute(
                select(WarcRecord, StoredFile.key)
                .join(StoredFile, StoredFile.id == WarcRecord.file_id)
                .where(WarcRecord.record_id == record_id)
            ).one()
            out[name] = (key, rec.offset, rec.length)
    return out


@pytest.mark.parametrize("damaged", ["item", "source", "media"])
def test_a_flipped_byte_in_a_needed_record_fails_naming_file_and_offset_and_writes_nothing(
    archive: Archive, fake: FakeBluesky, tmp_path: Path, damaged: str
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)
    key, offset, length = _records_of(archive, item_id)[damaged]
    flip_byte(archive.store, key, offset + length // 2)
    target = tmp_path / "out"
    target.mkdir()

    with pytest.raises(IntegrityError) as failed:
        restore_item(archive.catalog, archive.store, item_id, target, restored_by="alice")

    assert key in str(failed.value) and f"at offset {offset}" in str(failed.value)
    assert failed.value.exit_code == 90
    assert list(target.iterdir()) == []
    # Without a target directory, none is created either.
    with pytest.raises(IntegrityError):
        restore_item(archive.catalog, archive.store, item_id, tmp_path / "new", restored_by="a")
    assert not (tmp_path / "new").exists()


class CountingStore(LocalStore):
    """The local store, noting every read it serves."""

    reads: list[tuple[str, int, int | None]]

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self.reads.append((key, offset, length))
        return super().get(key, offset, length)


def test_a_restore_reads_exactly_its_records_so_damage_elsewhere_does_not_matter(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    other = fake.post("Leaf pickup schedule", images=[("Leaf truck", "image/jpeg")])
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)
    needed = _records_of(archive, item_id)
    other_key, other_offset, other_length = _records_of_first_version(archive, other)
    flip_byte(archive.store, other_key, other_offset + other_length // 2)
    store = CountingStore(archive.store.root)
    store.reads = []

    result = restore_item(archive.catalog, store, item_id, tmp_path / "out", restored_by="a")

    assert len(result.files) == 5
    assert len(store.reads) == 4  # the item record, its source, two images: ranged reads
    assert all(length is not None for _, _, length in store.reads)
    assert {(k, o, n) for k, o, n in store.reads} >= {needed["item"], needed["media"]}
    with pytest.raises(IntegrityError):
        restore_item(archive.catalog, store, archive.item_id(other), tmp_path, restored_by="a")


def _records_of_first_version(archive: Archive, platform_item_id: str) -> tuple[str, int, int]:
    with archive.catalog.reader() as s:
        version = s.scalars(
            select(ItemVersion)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(Item.platform_item_id == platform_item_id)
        ).one()
        key = s.scalars(select(StoredFile.key).where(StoredFile.id == version.warc_file_id)).one()
        return key, version.warc_offset, version.warc_length


def test_every_catalog_lookup_of_a_restore_is_an_indexed_search_never_a_scan(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    event.listen(archive.catalog.engine, "before_cursor_execute", seen)
    try:
        item_id = resolve(archive.catalog, f"mke-bluesky/{post}")
        restore_item(archive.catalog, archive.store, item_id, tmp_path / "out", restored_by="a")
    finally:
        event.remove(archive.catalog.engine, "before_cursor_execute", seen)

    assert len(statements) >= 5
    for statement, plan in query_plans(archive.catalog, statements):
        # The accounts table (one row per configured account) is the only one read whole.
        scans = [line for line in plan if re.search(r"\bSCAN\b|Seq Scan", line)]
        assert all("accounts" in line for line in scans), (statement, plan)


def query_plans(catalog: Catalog, statements: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    """Each statement's query plan. PostgreSQL is told to avoid sequential scans, so a
    ``Seq Scan`` left in its plan is a table no index can serve (tiny test tables would
    otherwise be scanned by choice)."""
    out = []
    with catalog.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        if catalog.dialect == "postgresql":
            cursor.execute("SET enable_seqscan = off")
        for statement, params in statements:
            prefix = "EXPLAIN QUERY PLAN" if catalog.dialect == "sqlite" else "EXPLAIN"
            cursor.execute(f"{prefix} {statement}", params)
            rows = cursor.fetchall()
            out.append((statement, [str(row[-1]) for row in rows]))
        cursor.close()
    return out


# -- where it writes -------------------------------------------------------------------------


def test_hostile_ids_and_media_names_never_escape_the_target(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = fake.post(
        "Hostile names",
        images=[("../../alt", "../../../escaped"), ("/etc/passwd", "image/../../x")],
    )
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)
    sqlite = archive.catalog.dialect == "sqlite"
    hostile_id = "../" * 80 + "x"  # 241 characters of climbing
    with archive.catalog.session() as s:
        s.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(platform_item_id=hostile_id, permalink="/etc/passwd", author="../../x")
        )
        s.execute(
            update(ItemMedia).values(
                platform_media_id="/tmp/x\x00y" if sqlite else "/tmp/x", alt_text="../../x"
            )
        )
        s.execute(update(Media).values(mime_type="../../" + "a" * 200, source_url="../../x"))
    target = tmp_path / "out" / "deep"
    before = {p for p in files_under(tmp_path) if not p.startswith(("out/", "catalog"))}

    assert resolve(archive.catalog, f"mke-bluesky/{hostile_id}") == item_id
    result = restore_item(archive.catalog, archive.store, item_id, target, restored_by="alice")

    after = {p for p in files_under(tmp_path) if not p.startswith(("out/", "catalog"))}
    assert after == before  # nothing written outside the target
    assert result.directory == target / f"item-{item_id}-v1"
    assert [p.name for p in target.iterdir()] == [f"item-{item_id}-v1"]
    written = files_under(result.directory)
    assert all(RESTORED_NAME.fullmatch(name) for name in written), sorted(written)
    assert len([n for n in written if n.startswith("media/")]) == 2
    manifest = json.loads(written["manifest.json"])
    assert manifest["item"]["platform_item_id"] == hostile_id  # kept as data, never as a path
    with pytest.raises(ArchiverError, match="cannot create the target directory"):
        restore_item(archive.catalog, archive.store, item_id, tmp_path / "a\x00b", restored_by="a")


def test_an_existing_target_is_refused_unless_overwrite_is_asked(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)
    first = restore_item(archive.catalog, archive.store, item_id, tmp_path, restored_by="a")
    (first.directory / "item.json").chmod(0o644)
    (first.directory / "item.json").write_bytes(b"edited by someone")

    with pytest.raises(ArchiverError, match="already exists; nothing was written"):
        restore_item(archive.catalog, archive.store, item_id, tmp_path, restored_by="a")
    assert (first.directory / "item.json").read_bytes() == b"edited by someone"

    again = restore_item(
        archive.catalog,
        archive.store,
        item_id,
        tmp_path,
        restored_by="a",
        overwrite=True,
        durable=True,  # every file and directory fsynced
    )
    assert again.overwrote and again.directory == first.directory
    assert json.loads((again.directory / "item.json").read_bytes())["item_id"] == post
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_link_planted_where_the_item_folder_goes_is_never_followed(
    archive: Archive, fake: FakeBluesky, tmp_path: Path
) -> None:
    post = two_image_post(fake)
    archive.capture("mke-bluesky")
    item_id = archive.item_id(post)
    outside, target = tmp_path / "outside", tmp_path / "target"
    outside.mkdir()
    target.mkdir()
    os.symlink(outside, target / f"item-{item_id}-v1")

    for overwrite in (False, True):
        with pytest.raises(ArchiverError):
            restore_item(
                archive.catalog,
                archive.store,
                item_id,
                target,
                restored_by="a",
                overwrite=overwrite,
            )
    assert list(outside.iterdir()) == []
    assert (target / f"item-{item_id}-v1").is_symlink()
