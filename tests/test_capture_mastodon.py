"""Capturing a Mastodon account with a token: edits kept as versions, the token kept nowhere."""

from __future__ import annotations

import base64
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import inspect, select, text

from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import Item, ItemVersion
from archiver.config import load_config
from archiver.logging import configure_logging
from archiver.parquet import roll
from archiver.redact import clear_registered_secrets
from archiver.retrieve import read_record
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_mastodon import FakeMastodon
from tests.warctools import assert_all_digests_pass

TOKEN = "CityToken-7f3a9c1e5b2d4a60-X"
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeMastodon:
    return FakeMastodon(httpserver, start=datetime.now(UTC) - timedelta(days=2))


@pytest.fixture
def runner(
    tmp_path: Path, fake: FakeMastodon, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> CaptureRunner:
    monkeypatch.setenv("ARCHIVER_TEST_MASTODON_TOKEN", TOKEN)
    (tmp_path / "config.toml").write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "mke-mastodon"
platform = "mastodon"
handle = "city"
api_base = "{fake.base_url}"
department = "Department of Public Works"
series = "social-media"
credentials = {{ access_token = {{ env = "ARCHIVER_TEST_MASTODON_TOKEN" }} }}
options = {{ conversations = true }}
"""
    )
    config = load_config(tmp_path / "config.toml")
    yield CaptureRunner(config, catalog, LocalStore(tmp_path / "var" / "store"), INFO)
    clear_registered_secrets()


def test_an_edited_post_gets_a_second_version_and_the_first_is_kept(
    runner: CaptureRunner, fake: FakeMastodon, catalog: Catalog
) -> None:
    city = fake.add_account("city", display_name="City of Milwaukee")
    fake.tokens[TOKEN] = (city.id, ("read",))
    post = fake.post(
        city, "Brush pickup starts May 1", media=[{"type": "image", "description": "truck"}]
    )
    fake.reply(fake.add_account("resident"), post, "What about my street?")
    assert runner.capture("mke-mastodon").status == "complete"
    fake.edit(post, "Brush pickup starts May 8")

    result = runner.capture("mke-mastodon", full_walk=False)

    assert result.status == "complete", result.reason
    assert result.stats["edited"] == 1
    with catalog.session() as s:
        item = s.scalars(select(Item).where(Item.platform_item_id == post.id)).one()
        versions = s.scalars(
            select(ItemVersion)
            .where(ItemVersion.item_id == item.id)
            .order_by(ItemVersion.version_no)
        ).all()
    assert item.state == "edited" and [v.change for v in versions] == ["new", "edited"]
    first, second = (
        json.loads(read_record(catalog, runner.store, v.warc_record_id).block) for v in versions
    )
    assert "May 1" in first["text"] and "May 8" in second["text"]
    store = runner.store
    assert isinstance(store, LocalStore)
    assert_all_digests_pass(sorted(store.root.glob("warc/**/*.warc.gz")))


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [
        raw,
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        base64.b64encode(b"Bearer " + raw),
    ]


def _all_bytes(root: Path, catalog: Catalog) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith((".warc.gz", ".warc.gz.open")) and data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif path.suffix == ".parquet" and data[:4] == b"PAR1":
            query = f"SELECT COLUMNS(*)::VARCHAR FROM read_parquet('{path}')"
            data = str(duckdb.sql(query).fetchall()).encode()
        found[str(path)] = data
    # The catalog, whatever database it is on: every row of every table, as text.
    with catalog.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).fetchall()
            found[f"catalog:{table}"] = repr(rows).encode()
    return found


def test_a_recognisable_token_is_left_nowhere(
    runner: CaptureRunner, fake: FakeMastodon, catalog: Catalog, tmp_path: Path
) -> None:
    city = fake.add_account("city", display_name="City of Milwaukee")
    resident = fake.add_account("resident")
    fake.tokens[TOKEN] = (city.id, ("read",))
    post = fake.post(
        city, "Polling places open 7am-8pm", media=[{"type": "image", "description": "map"}]
    )
    fake.reply(resident, post, "Thanks!")
    fake.direct(resident, [city], "Is my polling place accessible?")
    logs = io.StringIO()
    configure_logging("DEBUG", "json", stream=logs)

    result = runner.capture("mke-mastodon")
    roll(
        catalog,
        runner.store,
        runner.config.spool.path,
        min_rows=1,
        max_age=timedelta(0),
        force=True,
    )

    assert result.status == "complete", result.reason
    # The token was really used: the server saw it, and the direct message came back.
    assert any(r.authorization == f"Bearer {TOKEN}" for r in fake.requests)
    with catalog.session() as s:
        kinds = set(s.scalars(select(Item.kind)))
    assert "message" in kinds
    haystacks = _all_bytes(tmp_path, catalog)
    haystacks["logs"] = logs.getvalue().encode()
    assert any(name.endswith(".warc.gz") for name in haystacks)
    for name, data in haystacks.items():
        for form in _forms(TOKEN):
            assert form not in data, f"{form!r} found in {name}"
