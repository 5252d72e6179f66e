"""A small, realistic archive captured through the real pipeline, shared by the CLI tests.

:func:`capture_corpus` starts its own fake Bluesky and fake Mastodon servers, captures two
accounts into the catalog and store it is given (the real :class:`CaptureRunner`: WARC
records in the store, catalog rows, search index), and returns a :class:`Corpus` naming
the notable items, so a test can assert exact id sets::

    corpus = capture_corpus(catalog, LocalStore(tmp_path / "store"), tmp_path / "corpus")
    corpus.plow_reply.id                   # catalog items.id of the reply with the phrase
    corpus.ids("plow_reply", "cafe_reply")  # {items.id, ...}

What it holds (creation times are fixed, UTC; the capture times are the real clock):

``mke-bluesky`` (platform ``bluesky``, series ``social-media``), two captures: a full one, then,
after a reply was hidden and another deleted on the platform, a second full walk.

- ``bluesky_profile``: the account's profile ("Official account of the City of Example.").
- ``snow_post`` (post, 2026-01-12 15:01): "Snow emergency declared: park on the odd side of
  the street tonight."
- ``plow_reply`` (comment on ``snow_post``, by ``resident.bsky.social``): "Thanks! But the
  plow missed Elm Street again this morning."
- ``cafe_reply`` (comment on ``snow_post``, by ``maria.bsky.social``, display name "María
  Peña"): "Free coffee for plow drivers at the Café on Main Street."
- ``hidden_reply`` (comment on ``snow_post``, by ``deals4u.bsky.social``): "Cheap
  followers at bestdeals dot example", hidden by the City (thread-gate) before the second
  capture: state ``hidden``, two versions (``new``, ``hidden``).
- ``images_post`` (post, 2026-02-03 10:01): "Leaf collection routes for this week" with two
  images, alt texts "Map of the north side leaf collection route" and "Truck unloading
  leaves at the compost site".
- ``deleted_reply`` (comment on ``images_post``, by ``resident.bsky.social``): "Wrong
  street listed for Oak Avenue, please fix", deleted on the platform and detected by the
  second capture: state ``deleted``, two versions (``new``, ``deleted``).

``mke-dpw-mastodon`` (platform ``mastodon``, series ``social-media``), two captures around an
edit.

- ``mastodon_profile``: the account's profile ("Official account.").
- ``edited_post`` (post, 2026-01-20 09:00): version 1 "Brush pickup starts May 1 in
  Riverwest", version 2 (edited 2026-01-21 08:00) "Brush pickup starts May 8 in Harambee":
  state ``edited``; "Riverwest" is only in version 1.
- ``mastodon_reply`` (comment on ``edited_post``, by ``jalvarez``, display name "José
  Álvarez", 2026-01-20 12:00): "Will the brush crew come to Bay View too?"

The API is stable: other tests build on the names above. :attr:`Corpus.config` is the
configuration the captures ran with (both accounts, the spool under ``work``), should a
test want to capture again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import Item
from archiver.config import Config, load_config
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import PUBLIC_DID, FakeBluesky
from tests.connectors.fake_mastodon import FakeMastodon

BLUESKY_ACCOUNT = "mke-bluesky"
MASTODON_ACCOUNT = "mke-dpw-mastodon"
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")

PLOW_PHRASE = "the plow missed Elm Street"


@dataclass(frozen=True)
class CorpusItem:
    """One notable item: its catalog id and what the platform calls it."""

    id: int
    platform_item_id: str
    account: str
    kind: str


@dataclass(frozen=True)
class Corpus:
    """The captured archive's notable items (see the module docstring for their content)."""

    config: Config
    bluesky_profile: CorpusItem
    snow_post: CorpusItem
    plow_reply: CorpusItem
    cafe_reply: CorpusItem
    hidden_reply: CorpusItem
    images_post: CorpusItem
    deleted_reply: CorpusItem
    mastodon_profile: CorpusItem
    edited_post: CorpusItem
    mastodon_reply: CorpusItem
    bluesky_account: str = BLUESKY_ACCOUNT
    mastodon_account: str = MASTODON_ACCOUNT

    @property
    def names(self) -> tuple[str, ...]:
        """The names of every notable item, in the order of the fields above."""
        return tuple(f.name for f in fields(self) if f.type in ("CorpusItem", CorpusItem))

    def item(self, name: str) -> CorpusItem:
        found = getattr(self, name)
        assert isinstance(found, CorpusItem), name
        return found

    def ids(self, *names: str) -> set[int]:
        """The catalog ids of the named items (every notable item when none is named)."""
        return {self.item(n).id for n in (names or self.names)}


@contextmanager
def _server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def _write_config(work: Path, bluesky: FakeBluesky, mastodon: FakeMastodon) -> Config:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "corpus.toml"
    path.write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[catalog]
url = "sqlite:///var/unused.sqlite3"

[spool]
path = "spool"

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "{BLUESKY_ACCOUNT}"
platform = "bluesky"
handle = "{bluesky.handle}"
api_base = "{bluesky.base_url}"
department = "Office of the Mayor"
series = "social-media"

[[accounts]]
id = "{MASTODON_ACCOUNT}"
platform = "mastodon"
handle = "city"
api_base = "{mastodon.base_url}"
department = "Department of Public Works"
series = "social-media"
""",
        encoding="utf-8",
    )
    return load_config(path)


def capture_corpus(catalog: Catalog, store: LocalStore, work: Path) -> Corpus:
    """Capture the corpus into ``catalog`` and ``store``; ``work`` holds config and spool."""
    with _server() as bsky_server, _server() as masto_server:
        bsky = FakeBluesky(bsky_server)
        masto = FakeMastodon(masto_server, start=datetime(2026, 1, 20, 8, 0, tzinfo=UTC))
        config = _write_config(work, bsky, masto)
        runner = CaptureRunner(config, catalog, store, INFO)

        maria = bsky.add_actor("maria.bsky.social", display_name="María Peña")
        spammer = bsky.add_actor("deals4u.bsky.social", display_name="Best Deals")
        bsky.now = datetime(2026, 1, 12, 15, 0, tzinfo=UTC)
        snow = bsky.post("Snow emergency declared: park on the odd side of the street tonight.")
        plow = bsky.reply(snow, "Thanks! But the plow missed Elm Street again this morning.")
        cafe = bsky.reply(
            snow, "Free coffee for plow drivers at the Café on Main Street.", author=maria
        )
        spam = bsky.reply(snow, "Cheap followers at bestdeals dot example", author=spammer)
        bsky.now = datetime(2026, 2, 3, 10, 0, tzinfo=UTC)
        leaves = bsky.post(
            "Leaf collection routes for this week",
            images=[
                ("Map of the north side leaf collection route", "image/png"),
                ("Truck unloading leaves at the compost site", "image/jpeg"),
            ],
        )
        wrong = bsky.reply(
            leaves, "Wrong street listed for Oak Avenue, please fix", author=PUBLIC_DID
        )

        city = masto.add_account("city", display_name="City of Milwaukee DPW")
        jose = masto.add_account("jalvarez", display_name="José Álvarez")
        brush = masto.post(
            city,
            "Brush pickup starts May 1 in Riverwest",
            at=datetime(2026, 1, 20, 9, 0, tzinfo=UTC),
        )
        question = masto.reply(
            jose,
            brush,
            "Will the brush crew come to Bay View too?",
            at=datetime(2026, 1, 20, 12, 0, tzinfo=UTC),
        )

        for account in (BLUESKY_ACCOUNT, MASTODON_ACCOUNT):
            result = runner.capture(account)
            assert result.status == "complete", (account, result.reason)

        bsky.hide_reply(spam)
        bsky.delete(wrong)
        masto.edit(
            brush,
            "Brush pickup starts May 8 in Harambee",
            at=datetime(2026, 1, 21, 8, 0, tzinfo=UTC),
        )
        for account in (BLUESKY_ACCOUNT, MASTODON_ACCOUNT):
            result = runner.capture(account, full_walk=True)
            assert result.status == "complete", (account, result.reason)
        assert result.stats["edited"] == 1, result.stats

    with catalog.reader() as s:
        rows = s.execute(select(Item.id, Item.account_id, Item.platform_item_id, Item.kind)).all()
    by_platform_id = {(r.account_id, r.platform_item_id): r for r in rows}

    def named(account: str, platform_item_id: str) -> CorpusItem:
        row = by_platform_id[(account, platform_item_id)]
        return CorpusItem(row.id, row.platform_item_id, row.account_id, row.kind)

    def profile(account: str) -> CorpusItem:
        row = next(r for r in rows if r.account_id == account and r.kind == "profile")
        return CorpusItem(row.id, row.platform_item_id, row.account_id, row.kind)

    return Corpus(
        config=config,
        bluesky_profile=profile(BLUESKY_ACCOUNT),
        snow_post=named(BLUESKY_ACCOUNT, snow),
        plow_reply=named(BLUESKY_ACCOUNT, plow),
        cafe_reply=named(BLUESKY_ACCOUNT, cafe),
        hidden_reply=named(BLUESKY_ACCOUNT, spam),
        images_post=named(BLUESKY_ACCOUNT, leaves),
        deleted_reply=named(BLUESKY_ACCOUNT, wrong),
        mastodon_profile=profile(MASTODON_ACCOUNT),
        edited_post=named(MASTODON_ACCOUNT, brush.id),
        mastodon_reply=named(MASTODON_ACCOUNT, question.id),
    )
