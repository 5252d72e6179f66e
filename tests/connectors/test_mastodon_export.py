"""The Mastodon archive connector, run over ``examples/mastodon-export.zip`` and variants.

The sample archive is opened through the real reader (``archiver.exports``) with a sink
that keeps the ``resource`` records, so the evidence every item carries is checked too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.connector import (
    AccountState,
    CapturePlan,
    Checkpoint,
    Item,
    ItemKind,
    ItemStatus,
    canonical_json,
)
from archiver.errors import CaptureError, MalformedResponseError
from archiver.exports import ExportArchive, open_export
from connectors.mastodon_export import CHECKPOINT_EVERY, MastodonExportConnector
from tests.connectors.harness import account, run
from tests.test_exports import RecordingSink

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "mastodon-export.zip"
ACTOR = "https://mastodon.example/users/mkedpw"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def sample(sink: RecordingSink) -> Iterator[ExportArchive]:
    with open_export(SAMPLE, sink=sink) as archive:
        yield archive


def connector(archive: ExportArchive, handle: str | None = "mkedpw@mastodon.example") -> Any:
    return MastodonExportConnector(account("mastodon_export", handle=handle), archive)


def by_text(items: list[Item], words: str) -> Item:
    (found,) = [i for i in items if i.text and words in i.text]
    return found


def evidence_uri(sink: RecordingSink, evidence: str) -> str:
    (uri,) = [r.target_uri for r in sink.records if r.record_id == evidence]
    assert uri is not None
    return uri


# -- the sample archive ------------------------------------------------------------------------


def test_sample_is_what_the_script_builds(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make", ROOT / "examples" / "make_mastodon_export.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path / "again.zip")
    assert (tmp_path / "again.zip").read_bytes() == SAMPLE.read_bytes()
    assert SAMPLE.stat().st_size < 100_000


def test_class_contract() -> None:
    assert MastodonExportConnector.platform == "mastodon_export"
    assert MastodonExportConnector.source == "export"
    assert MastodonExportConnector.checkpoint_version == 1
    assert MastodonExportConnector.rate_limit == "default"


def test_check_account_gives_the_profile(sample: ExportArchive, sink: RecordingSink) -> None:
    status = connector(sample).check_account()
    assert status.state is AccountState.REACHABLE
    profile = status.profile
    assert profile is not None
    assert profile.kind is ItemKind.PROFILE
    assert profile.item_id == ACTOR
    assert profile.author_handle == "mkedpw@mastodon.example"
    assert profile.author_name == "City of Milwaukee DPW"
    assert profile.permalink == "https://mastodon.example/@mkedpw"
    assert profile.created_at == datetime(2022, 11, 14, tzinfo=UTC)
    assert profile.text is not None
    assert "Department of Public Works" in profile.text
    assert "Website: https://city.milwaukee.gov/dpw" in profile.text
    assert profile.links == ("https://city.milwaukee.gov/dpw",)
    assert [(m.media_id, m.archive_path, m.mime_type) for m in profile.media] == [
        ("avatar:avatar.png", "avatar.png", "image/png"),
        ("header:header.png", "header.png", "image/png"),
    ]
    assert status.evidence == profile.evidence
    assert evidence_uri(sink, profile.evidence).endswith(f"{sample.sha256}/actor.json")


def test_check_account_refuses_another_accounts_archive(sample: ExportArchive) -> None:
    status = connector(sample, handle="@cityofmilwaukee@mastodon.social").check_account()
    assert status.state is AccountState.UNAVAILABLE
    assert status.reason is not None
    assert "archive is of @mkedpw@mastodon.example" in status.reason
    assert connector(sample, handle="mkedpw").check_account().state is AccountState.REACHABLE
    assert connector(sample, handle=None).check_account().state is AccountState.REACHABLE


def test_archive_without_actor_is_unavailable(tmp_path: Path, sink: RecordingSink) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("outbox.json", json.dumps(outbox([])))
    with open_export(path, sink=sink) as archive:
        status = connector(archive).check_account()
    assert status.state is AccountState.UNAVAILABLE
    assert status.reason == "archive has no actor.json"
    assert status.profile is None


def test_capture_yields_every_status(sample: ExportArchive, sink: RecordingSink) -> None:
    statuses, checkpoints = run(connector(sample))
    assert ItemKind.PROFILE not in {i.kind for i in statuses}  # it comes with check_account
    assert len(statuses) == 12
    assert checkpoints == [
        Checkpoint(1, {"archive_sha256": sample.sha256, "position": 12, "entries": 12}),
    ]
    outbox_evidence = {i.evidence for i in statuses}
    assert len(outbox_evidence) == 1
    assert evidence_uri(sink, outbox_evidence.pop()).endswith("/outbox.json")
    for item in statuses:
        assert item.platform == "mastodon_export"
        assert item.item_id.isdigit()
        assert item.author_id == ACTOR
        assert item.author_handle == "mkedpw@mastodon.example"
        assert item.created_at is not None and item.created_at.tzinfo is not None
        assert item.created_at.year == 2024 and 1 <= item.created_at.month <= 3
        doc = item.document(captured_at=datetime.now(UTC), account="mke-mastodon", version_no=1)
        canonical_json(doc)  # the normalized document serializes
    assert [i.created_at for i in statuses] == sorted(i.created_at for i in statuses)  # type: ignore[type-var]


def test_reply_thread(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    snow = by_text(items, "A snow emergency is in effect")
    plows = by_text(items, "plows are out")
    lifted = by_text(items, "snow emergency has ended")
    assert snow.parent_id is None
    assert snow.thread_id == snow.item_id  # a root is its own thread, as the API connector has it
    assert plows.kind is ItemKind.POST
    assert plows.parent_id == snow.item_id
    assert lifted.parent_id == plows.item_id
    assert plows.thread_id == lifted.thread_id == snow.item_id
    assert snow.permalink == f"https://mastodon.example/@mkedpw/{snow.item_id}"
    assert snow.links == ("https://city.milwaukee.gov/snow",)  # hashtags are not links
    assert "#SnowEmergency" in (snow.text or "")
    assert "https://city.milwaukee.gov/snow" in (snow.text or "")
    assert snow.html is not None and snow.html.startswith("<p>")
    assert snow.language == "en"
    assert snow.visibility == "public"


def test_reply_to_someone_elses_post(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    reply = by_text(items, "A crew will check the streetlight")
    assert reply.kind is ItemKind.POST
    assert reply.parent_id is not None
    assert reply.parent_id.startswith("https://social.example.net/users/riverwest_resident/")
    assert reply.thread_id is None  # its root is not in the archive
    assert reply.visibility == "unlisted"
    assert reply.links == ()  # the mention is not a link
    assert (reply.text or "").startswith("@riverwest_resident Thanks")


def test_content_warnings(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    cold = by_text(items, "garbage and recycling collection is running one day behind")
    assert cold.text is not None
    assert cold.text.startswith("CW: Service delay: garbage and recycling\nBecause of the")
    flood = by_text(items, "water main break")
    assert (flood.text or "").startswith("CW: Road closure, photo of flooded street\nN. 27th")
    assert flood.raw["object"]["sensitive"] is True


def test_media_with_alt_text(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    potholes = by_text(items, "Pothole season")
    assert len(potholes.media) == 2
    first, second = potholes.media
    assert first.alt_text is not None and first.alt_text.startswith("A DPW crew member")
    assert second.alt_text == (
        "Close-up of a freshly patched pothole next to a curb and a storm drain."
    )
    for media in potholes.media:
        assert media.kind == "image"
        assert media.mime_type == "image/png"
        assert media.url is None
        assert media.archive_path is not None
        assert media.archive_path.startswith("media_attachments/files/")
        assert media.archive_path in sample.names()
        assert media.media_id is not None and media.media_id.isdigit()
        assert media.archive_path.replace("/", "").find(media.media_id) > 0
        assert b"".join(sample.stream(media.archive_path)).startswith(b"\x89PNG\r\n\x1a\n")
    assert potholes.links == ("https://city.milwaukee.gov/ClickForAction",)


def test_boost_references_the_boosted_post(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    (boost,) = [i for i in items if i.raw.get("type") == "Announce"]
    assert boost.kind is ItemKind.POST
    assert boost.text is None
    assert boost.links == (boost.raw["object"],)
    assert boost.links[0].startswith("https://health.example.org/users/MKEHealth/statuses/")
    assert boost.permalink == f"{ACTOR}/statuses/{boost.item_id}/activity"
    assert boost.thread_id == boost.item_id
    assert boost.visibility == "public"


def test_direct_message_edit_poll_and_card(sample: ExportArchive) -> None:
    items, _ = run(connector(sample))
    dm = by_text(items, "was repaired this morning")
    assert dm.kind is ItemKind.MESSAGE
    assert dm.visibility == "direct"
    sweeping = by_text(items, "Street sweeping starts April 1")
    assert sweeping.edited_at == datetime(2024, 3, 5, 13, 41, 27, tzinfo=UTC)
    poll = by_text(items, "service alerts")
    assert poll.text is not None
    assert poll.text.endswith("Poll:\n- Text message\n- Email\n- This account\n- The MKE app")
    cleanup = by_text(items, "Spring cleanup")
    assert cleanup.links == ("https://city.milwaukee.gov/sanitation/DropOffCenters",)
    assert cleanup.media == ()  # a preview card is a link, not media


def test_check_item_is_always_unknown(sample: ExportArchive) -> None:
    check = connector(sample).check_item("111720459862016000", ItemKind.POST)
    assert check.status is ItemStatus.UNKNOWN
    assert check.detail is not None


# -- checkpoints -------------------------------------------------------------------------------


def create(n: int, *, reply_to: str | None = None, media: str | None = None) -> dict[str, Any]:
    uri = f"{ACTOR}/statuses/{100000 + n}"
    note: dict[str, Any] = {
        "id": uri,
        "type": "Note",
        "published": f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "url": f"https://mastodon.example/@mkedpw/{100000 + n}",
        "content": f"<p>status {n}</p>",
        "inReplyTo": reply_to,
        "to": [PUBLIC],
        "cc": [f"{ACTOR}/followers"],
        "attachment": [],
    }
    if media is not None:
        note["attachment"] = [{"type": "Document", "mediaType": "image/png", "url": media}]
    return {"id": f"{uri}/activity", "type": "Create", "actor": ACTOR, "object": note}


def outbox(items: list[Any]) -> dict[str, Any]:
    return {"id": "outbox.json", "type": "OrderedCollection", "orderedItems": items}


def archive_of(
    tmp_path: Path, sink: RecordingSink, entries: dict[str, bytes], name: str = "x.zip"
) -> ExportArchive:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    return open_export(path, sink=sink)


def actor_json() -> bytes:
    return json.dumps(
        {
            "id": ACTOR,
            "type": "Person",
            "preferredUsername": "mkedpw",
            "followers": f"{ACTOR}/followers",
        }
    ).encode()


@pytest.fixture
def big(tmp_path: Path, sink: RecordingSink) -> Iterator[ExportArchive]:
    entries = {
        "outbox.json": json.dumps(outbox([create(n) for n in range(450)])).encode(),
        "actor.json": actor_json(),
    }
    with archive_of(tmp_path, sink, entries) as archive:
        yield archive


def positions(checkpoints: list[Checkpoint]) -> list[int]:
    return [c.state["position"] for c in checkpoints]


def test_checkpoint_every_200_outbox_entries(big: ExportArchive) -> None:
    items, checkpoints = run(connector(big))
    assert len(items) == 450
    assert positions(checkpoints) == [CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY, 450]
    assert {c.state["archive_sha256"] for c in checkpoints} == {big.sha256}
    assert {c.version for c in checkpoints} == {1}


def test_resume_from_a_checkpoint_of_the_same_archive(big: ExportArchive) -> None:
    resume = Checkpoint(1, {"archive_sha256": big.sha256, "position": 200, "entries": 450})
    items, checkpoints = run(connector(big), resume)
    assert [i.item_id for i in items] == [str(100000 + n) for n in range(200, 450)]
    assert positions(checkpoints) == [400, 450]
    assert checkpoints[-1].state["entries"] == 450


def test_a_finished_archive_is_not_read_again(tmp_path: Path, sink: RecordingSink) -> None:
    entries = {
        "outbox.json": json.dumps(outbox([create(n) for n in range(3)])).encode(),
        "actor.json": actor_json(),
    }
    with archive_of(tmp_path, sink, entries) as archive:
        _, (done,) = run(connector(archive))
    with open_export(archive.path, sink=sink) as same:  # the next run opens it anew
        sink.records.clear()
        assert run(connector(same), done) == ([], [done])
        assert sink.records == []  # outbox.json was not read (archived) again
        items, _ = run(connector(same), done, CapturePlan(full_walk=True))
        assert len(items) == 3


@pytest.mark.parametrize(
    "stale",
    [
        Checkpoint(1, {"archive_sha256": "0" * 64, "position": 200}),  # another archive
        Checkpoint(2, {"position": 200}),  # a format this connector does not know
        Checkpoint(1, {"archive_sha256": "x", "position": "200"}),
    ],
)
def test_other_checkpoints_start_over(big: ExportArchive, stale: Checkpoint) -> None:
    items, _ = run(connector(big), stale)
    assert len(items) == 450


def test_full_walk_ignores_the_checkpoint(big: ExportArchive) -> None:
    resume = Checkpoint(1, {"archive_sha256": big.sha256, "position": 400})
    items, _ = run(connector(big), resume, CapturePlan(full_walk=True))
    assert len(items) == 450


def test_max_items_stops_incomplete_with_a_checkpoint(big: ExportArchive) -> None:
    out = list_until_error(connector(big).capture(None, CapturePlan(max_items=50)))
    items = [x for x in out if isinstance(x, Item)]
    assert len(items) == 50
    assert out[-1] == Checkpoint(1, {"archive_sha256": big.sha256, "position": 50, "entries": 450})
    assert isinstance(out[-2], Item)
    rest, _ = run(connector(big), out[-1])
    assert rest[0].item_id == str(100000 + 50)


def list_until_error(out: Iterator[Item | Checkpoint]) -> list[Item | Checkpoint]:
    """Drain a capture that must end with ``CaptureError`` (a run that stopped early)."""
    got: list[Item | Checkpoint] = []
    with pytest.raises(CaptureError, match="stopped at the cap of 50 items"):
        got.extend(out)
    return got


# -- other archives ----------------------------------------------------------------------------


def test_media_paths_of_a_server_with_local_storage(tmp_path: Path, sink: RecordingSink) -> None:
    path = "media_attachments/files/110/000/000/000/000/001/original/abc.png"
    entries = {
        "outbox.json": json.dumps(
            outbox(
                [
                    create(1, media=path),  # local storage: "/system/" stripped
                    create(2, media="/system/" + path),  # as a URL path
                    create(3, media="https://cdn.example/bucket/" + path),  # a CDN URL
                    create(4, media="media_attachments/files/missing.png"),
                ]
            )
        ).encode(),
        "actor.json": actor_json(),
        path: b"\x89PNG\r\n\x1a\n",
    }
    with archive_of(tmp_path, sink, entries) as archive:
        items, _ = run(connector(archive))
    refs = [i.media[0] for i in items if i.kind is ItemKind.POST]
    assert [r.archive_path for r in refs] == [path, path, path, None]
    assert [r.media_id for r in refs[:3]] == ["110000000000000001"] * 3
    assert refs[3].media_id == "media_attachments/files/missing.png"


def test_reply_chain_inside_the_archive(tmp_path: Path, sink: RecordingSink) -> None:
    first = create(1)
    second = create(2, reply_to=first["object"]["id"])
    third = create(3, reply_to=second["object"]["id"])
    entries = {
        "outbox.json": json.dumps(outbox([first, second, third])).encode(),
        "actor.json": actor_json(),
    }
    with archive_of(tmp_path, sink, entries) as archive:
        items, _ = run(connector(archive))
    posts = {i.item_id: i for i in items if i.kind is ItemKind.POST}
    assert posts["100003"].parent_id == "100002"
    assert posts["100003"].thread_id == "100001"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "outbox.json in the export archive is not JSON"),
        (b"[]", "outbox.json in the export archive is not an object"),
        (b'{"type": "OrderedCollection"}', "has no orderedItems list"),
        (json.dumps(outbox(["just a string"])).encode(), "outbox.json item 0"),
        (
            json.dumps(outbox([{"type": "Create", "object": "https://x/1"}])).encode(),
            "outbox.json item 0: a Create without an inline object",
        ),
        (
            json.dumps(outbox([{"type": "Create", "object": {"type": "Note"}}])).encode(),
            "outbox.json item 0 in the export archive has no id",
        ),
        (
            json.dumps(
                outbox(
                    [
                        create(0),
                        {**create(1), "object": {**create(1)["object"], "published": "soon"}},
                    ]
                )
            ).encode(),
            "outbox.json item 1: bad timestamp 'soon'",
        ),
        (
            json.dumps(
                outbox([{"id": f"{ACTOR}/statuses/1/activity", "type": "Announce"}])
            ).encode(),
            "an Announce without the boosted status",
        ),
    ],
)
def test_malformed_outbox(tmp_path: Path, sink: RecordingSink, content: bytes, why: str) -> None:
    entries = {"outbox.json": content, "actor.json": actor_json()}
    with (
        archive_of(tmp_path, sink, entries) as archive,
        pytest.raises(MalformedResponseError) as caught,
    ):
        run(connector(archive))
    assert why in str(caught.value)


def test_archive_without_outbox_is_malformed(tmp_path: Path, sink: RecordingSink) -> None:
    with (
        archive_of(tmp_path, sink, {"actor.json": actor_json()}) as archive,
        pytest.raises(MalformedResponseError, match=r"has no outbox\.json"),
    ):
        run(connector(archive))


def test_malformed_actor(tmp_path: Path, sink: RecordingSink) -> None:
    entries = {"outbox.json": json.dumps(outbox([])).encode(), "actor.json": b'{"id": 5}'}
    with (
        archive_of(tmp_path, sink, entries) as archive,
        pytest.raises(MalformedResponseError, match=r"actor\.json in the export archive has no id"),
    ):
        connector(archive).check_account()


# -- through the capture pipeline ----------------------------------------------------------------


def test_sample_through_the_capture_pipeline(tmp_path: Path) -> None:
    """``archive = ...`` in the config → resource records, items, media, all ``warcio check``-ed."""
    # Imported here, so the connector's own tests above do not depend on the whole pipeline.
    from archiver.capture import CaptureRunner
    from archiver.catalog import Catalog, upgrade
    from archiver.catalog.models import ItemVersion
    from archiver.config import load_config
    from archiver.retrieve import read_record
    from archiver.store import LocalStore
    from archiver.warc import WarcInfo
    from tests.warctools import assert_all_digests_pass

    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "dpw.zip").write_bytes(SAMPLE.read_bytes())
    (tmp_path / "config.toml").write_text(
        """
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[[accounts]]
id = "mke-dpw-export"
platform = "mastodon_export"
handle = "mkedpw@mastodon.example"
department = "Department of Public Works"
series = "social-media"
archive = "exports/dpw.zip"
"""
    )
    config = load_config(tmp_path / "config.toml")
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    upgrade(catalog)
    store = LocalStore(tmp_path / "store")
    runner = CaptureRunner(config, catalog, store, WarcInfo("test", {}, "City", "node-1"))
    try:
        first = runner.capture("mke-dpw-export")
        assert first.status == "complete", first.reason
        assert first.stats["new"] == 13  # the profile and 12 statuses
        assert first.stats["media_stored"] == 5  # avatar, header, three images
        again = runner.capture("mke-dpw-export")
        assert again.status == "complete", again.reason
        assert again.stats["new"] == 0 and again.stats["items_seen"] == 1  # the profile
        warcs = sorted(store.root.glob("warc/**/*.warc.gz"))
        assert assert_all_digests_pass(warcs) > 20
        with catalog.session() as s:
            versions = s.scalars(select(ItemVersion)).all()
        sha = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
        for version in versions:
            item = read_record(catalog, store, version.warc_record_id)
            source = read_record(catalog, store, item.headers["WARC-Refers-To"])
            assert source.headers["WARC-Type"] == "resource"
            assert source.headers["WARC-Target-URI"].startswith(f"urn:archiver:export:{sha}/")
    finally:
        catalog.dispose()
