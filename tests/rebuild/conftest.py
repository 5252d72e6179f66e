"""A live archive to rebuild: the shared corpus plus what it lacks (revisits, an export, Parquet).

:func:`capture_archive` captures, into the ``catalog`` fixture's database and a local store:

- the shared corpus (``tests/corpus.py``): Bluesky with replies, a hidden reply and a
  deletion found by a second full walk, two images; Mastodon with an edit (two versions);
- ``mke-parks`` (Bluesky): a post with an image and a resident's reply with a photo, which
  the City hides before the second capture, so the reply's ``hidden`` version carries the
  same photo again: a media ``revisit``;
- ``mke-dpw-archive``: an import of ``examples/mastodon-export.zip`` (``mastodon_export``);

then rolls every partition into Parquet.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.config import AccountSettings, Config, load_config
from archiver.parquet import roll
from archiver.store import LocalStore, ensure_layout
from tests.connectors.fake_bluesky import FakeBluesky
from tests.corpus import INFO, Corpus, capture_corpus
from tests.rebuild.databases import another_database

REPO = Path(__file__).resolve().parents[2]
SAMPLE_EXPORT = REPO / "examples" / "mastodon-export.zip"
PARKS = "mke-parks"
EXPORT = "mke-dpw-archive"


@dataclass(frozen=True)
class Archive:
    """A live catalog and the store it indexes."""

    catalog: Catalog
    store: LocalStore
    #: Every configured account, as a records officer's configuration would list them.
    accounts: tuple[AccountSettings, ...]
    corpus: Corpus
    work: Path

    @property
    def root(self) -> Path:
        return self.store.root


def _config(work: Path, fake: FakeBluesky) -> Config:
    shutil.copy(SAMPLE_EXPORT, work / "mastodon-export.zip")
    (work / "extra.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[spool]
path = "spool"

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "{PARKS}"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Milwaukee County Parks"
series = "social-media"

[[accounts]]
id = "{EXPORT}"
platform = "mastodon_export"
handle = "mkedpw@mastodon.example"
department = "Department of Public Works"
series = "social-media"
archive = "mastodon-export.zip"
""",
        encoding="utf-8",
    )
    return load_config(work / "extra.toml")


def capture_archive(catalog: Catalog, root: Path, httpserver: HTTPServer) -> Archive:
    """Capture the whole archive described in the module docstring."""
    store = LocalStore(root / "store")
    ensure_layout(store, create=True)
    corpus = capture_corpus(catalog, store, root / "corpus")
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    fake = FakeBluesky(httpserver)
    fake.now = datetime.now(UTC) - timedelta(days=2)
    config = _config(work, fake)
    runner = CaptureRunner(config, catalog, store, INFO)
    post = fake.post("Lake Park beach opens Saturday", images=[("Lifeguard stand", "image/png")])
    photo = fake.reply(post, "Seaweed everywhere already", images=[("Seaweed", "image/jpeg")])
    assert runner.capture(PARKS).status == "complete"
    fake.hide_reply(photo)
    second = runner.capture(PARKS, full_walk=True)
    assert second.status == "complete" and second.stats["media_revisits"] >= 1, second.stats
    imported = runner.capture(EXPORT)
    assert imported.status == "complete", imported.reason
    roll(
        catalog,
        store,
        config.spool.path,
        min_rows=1,
        max_age=timedelta(0),
        force=True,
    )
    accounts = (*corpus.config.accounts, *config.accounts)
    return Archive(catalog, store, accounts, corpus, root)


@pytest.fixture
def archive(catalog: Catalog, tmp_path: Path, httpserver: HTTPServer) -> Iterator[Archive]:
    """The live archive, its catalog on each supported database."""
    yield capture_archive(catalog, tmp_path / "live", httpserver)


@pytest.fixture
def target_url(tmp_path: Path, request: pytest.FixtureRequest, catalog_url: str) -> Iterator[str]:
    """A second empty database, of the same kind as the live catalog's, to rebuild into."""
    with another_database(catalog_url, tmp_path, request) as url:
        yield url


@pytest.fixture
def target(target_url: str) -> Iterator[Catalog]:
    """A catalog on :func:`target_url`, not yet migrated."""
    cat = Catalog.open(target_url)
    yield cat
    cat.dispose()


@dataclass(frozen=True)
class Small:
    """One Bluesky account captured page by page (one post a page): quick to build on."""

    catalog: Catalog
    store: LocalStore
    runner: CaptureRunner
    fake: FakeBluesky

    @property
    def accounts(self) -> tuple[AccountSettings, ...]:
        return tuple(self.runner.config.accounts)


def _three_posts(fake: FakeBluesky) -> None:
    fake.post("Street sweeping Monday", images=[("Sweeper truck", "image/png")])
    fake.post("Street sweeping Tuesday")
    fake.post("Street sweeping Wednesday")


def small_capture(
    catalog: Catalog,
    root: Path,
    httpserver: HTTPServer,
    populate: Callable[[FakeBluesky], None] = _three_posts,
) -> Small:
    """``mke-small``: three posts, one with an image, captured once, one post per page.

    ``populate`` may put other posts on the fake platform before the capture.
    """
    store = LocalStore(root / "store")
    ensure_layout(store, create=True)
    fake = FakeBluesky(httpserver)
    fake.now = datetime.now(UTC) - timedelta(days=2)
    root.mkdir(parents=True, exist_ok=True)
    (root / "small.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[spool]
path = "spool"

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "mke-small"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Department of Public Works"
series = "social-media"
options = {{ page_size = 1 }}
""",
        encoding="utf-8",
    )
    runner = CaptureRunner(load_config(root / "small.toml"), catalog, store, INFO)
    populate(fake)
    assert runner.capture("mke-small").status == "complete"
    return Small(catalog, store, runner, fake)


@pytest.fixture
def small(catalog: Catalog, tmp_path: Path, httpserver: HTTPServer) -> Small:
    return small_capture(catalog, tmp_path / "small", httpserver)
