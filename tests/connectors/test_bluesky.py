"""The Bluesky connector against the fake AppView (tests/connectors/fake_bluesky.py)."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import pytest
from pytest_httpserver import HTTPServer

from archiver.connector import (
    AccountState,
    CapturePlan,
    Checkpoint,
    Item,
    ItemKind,
    ItemStatus,
    Moderation,
)
from archiver.errors import (
    CaptureError,
    MalformedResponseError,
    PlatformUnavailableError,
    RateLimitedError,
)
from connectors.bluesky import GET_AUTHOR_FEED, GET_POST_THREAD, BlueskyConnector
from tests.connectors.fake_bluesky import CITY_DID, PUBLIC_DID, FakeBluesky
from tests.connectors.harness import PlainClient, account, run


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    return FakeBluesky(httpserver)


def connector(fake: FakeBluesky, **options: str | int | bool) -> BlueskyConnector:
    info = account("bluesky", handle=fake.handle, api_base=fake.base_url, options=options)
    return BlueskyConnector(info, PlainClient())


def capture(
    fake: FakeBluesky, checkpoint: Checkpoint | None = None, plan: CapturePlan | None = None
) -> tuple[list[Item], list[Checkpoint]]:
    return run(connector(fake), checkpoint, plan)


def by_id(items: list[Item]) -> dict[str, Item]:
    return {i.item_id: i for i in items}


# -- the account ---------------------------------------------------------------------


def test_check_account_gives_the_profile(fake: FakeBluesky) -> None:
    status = connector(fake).check_account()
    assert status.state is AccountState.REACHABLE and status.evidence
    profile = status.profile
    assert profile is not None and profile.kind is ItemKind.PROFILE
    assert (profile.item_id, profile.author_handle) == (CITY_DID, fake.handle)
    assert profile.author_name == "City of Example"
    assert profile.text == "Official account of the City of Example."
    assert [m.url.split("/")[4] for m in profile.media if m.url] == ["avatar", "banner"]
    assert all(m.media_id and m.media_id.startswith("bafkrei") for m in profile.media)


@pytest.mark.parametrize(
    ("change", "reason"),
    [("takedown", "suspended"), ("deactivate", "deactivated"), ("unknown", "not found")],
)
def test_unreachable_account_is_unavailable(fake: FakeBluesky, change: str, reason: str) -> None:
    if change == "unknown":
        fake.actors.pop(CITY_DID)
    else:
        getattr(fake, change)()
    status = connector(fake).check_account()
    assert status.state is AccountState.UNAVAILABLE
    assert status.reason and reason in status.reason and status.evidence
    with pytest.raises(CaptureError, match="unavailable"):
        capture(fake)


# -- walking the feed ----------------------------------------------------------------


def test_pages_through_more_than_100_posts(fake: FakeBluesky) -> None:
    uris = [fake.post(f"Notice {n}") for n in range(230)]
    items, checkpoints = capture(fake)
    posts = [i for i in items if i.kind is ItemKind.POST]
    assert [p.item_id for p in posts] == uris[::-1]  # newest first, each once
    feed_calls = fake.calls(GET_AUTHOR_FEED)
    assert [c.get("cursor") is None for c in feed_calls] == [True, False, False, False]
    assert {(c["limit"], c["filter"]) for c in feed_calls} == {("100", "posts_with_replies")}
    assert len(fake.calls(GET_POST_THREAD)) == 230  # every new post's thread
    assert len(checkpoints) >= 4
    final = checkpoints[-1].state
    assert (final["did"], final["newest_uri"], final["gaps"]) == (CITY_DID, uris[-1], [])
    first = posts[-1]
    assert first.permalink == (
        f"https://bsky.app/profile/{CITY_DID}/post/{uris[0].rsplit('/', 1)[1]}"
    )
    assert first.text == "Notice 0" and first.language == "en" and first.created_at


def test_resumes_from_the_checkpoint_without_rewalking(fake: FakeBluesky) -> None:
    for n in range(150):
        fake.post(f"Old {n}")
    _, checkpoints = capture(fake)
    new = [fake.post(f"New {n}") for n in range(3)]
    fake.log.clear()
    items, checkpoints2 = capture(fake, checkpoints[-1])
    assert [i.item_id for i in items] == new[::-1]
    assert len(fake.calls(GET_AUTHOR_FEED)) == 1  # stopped at the old newest post
    assert checkpoints2[-1].state["newest_uri"] == new[-1]
    fake.log.clear()
    items, _ = capture(fake, checkpoints2[-1])
    assert items == [] and len(fake.calls(GET_AUTHOR_FEED)) == 1


def test_a_deleted_newest_post_still_bounds_the_walk(fake: FakeBluesky) -> None:
    old = [fake.post(f"Old {n}") for n in range(5)]
    _, checkpoints = capture(fake)
    fake.delete(old[-1])
    new = fake.post("New")
    items, _ = capture(fake, checkpoints[-1])
    assert [i.item_id for i in items] == [new]


def committed_run(
    conn: BlueskyConnector, checkpoint: Checkpoint | None, plan: CapturePlan
) -> tuple[list[str], Checkpoint | None, bool]:
    """One capture as the core commits it: items count once a checkpoint follows them."""
    committed: list[str] = []
    pending: list[str] = []
    try:
        for x in conn.capture(checkpoint, plan):
            if isinstance(x, Checkpoint):
                committed, pending, checkpoint = committed + pending, [], x
            else:
                pending.append(x.item_id)
    except CaptureError as exc:
        assert "max_items" in str(exc)
        return committed, checkpoint, False
    return committed, checkpoint, True


def test_a_run_cut_short_resumes_where_it_stopped(fake: FakeBluesky) -> None:
    uris = [fake.post(f"Notice {n}") for n in range(250)]
    conn = connector(fake, page_size=40)
    seen, checkpoint, complete = committed_run(conn, None, CapturePlan(max_items=70))
    assert not complete and len(seen) == 70
    uris.append(fake.post("Posted between runs"))
    for _ in range(10):
        more, checkpoint, complete = committed_run(conn, checkpoint, CapturePlan(max_items=70))
        seen += more
        if complete:
            break
    assert complete and sorted(seen) == sorted(uris)  # everything, each once
    assert checkpoint is not None and checkpoint.state["gaps"] == []
    assert checkpoint.state["newest_uri"] == uris[-1]


def test_a_stop_at_the_cap_checkpoints_first(fake: FakeBluesky) -> None:
    for n in range(10):
        fake.post(f"Notice {n}")
    out = list_until_error(connector(fake), CapturePlan(max_items=4))
    assert isinstance(out[-1], Checkpoint)
    assert sum(isinstance(x, Item) for x in out) == 4
    gap = out[-1].state["gaps"][0]
    assert gap["after_uri"] and gap["cursor"] is None and gap["stop_uri"] is None


def list_until_error(conn: BlueskyConnector, plan: CapturePlan) -> list[Item | Checkpoint]:
    out: list[Item | Checkpoint] = []
    with pytest.raises(CaptureError):
        for x in conn.capture(None, plan):
            out.append(x)
    return out


def test_a_checkpoint_of_another_version_starts_over(fake: FakeBluesky) -> None:
    for n in range(3):
        fake.post(f"Notice {n}")
    _, checkpoints = capture(fake)
    items, _ = capture(fake, replace(checkpoints[-1], version=99))
    assert len(items) == 3


def test_reposts_are_posts_pointing_at_the_reposted_post(fake: FakeBluesky) -> None:
    theirs = fake.post("County news", author=PUBLIC_DID)
    repost = fake.repost(theirs)
    items = by_id(capture(fake)[0])
    item = items[repost]
    assert item.kind is ItemKind.POST and item.author_id == CITY_DID
    assert theirs in item.links and item.text is None
    assert item.raw["post"]["uri"] == theirs
    assert theirs not in items  # someone else's post: kept inside the repost's raw


# -- threads -------------------------------------------------------------------------


def test_replies_at_every_depth_are_comments(fake: FakeBluesky) -> None:
    root = fake.post("Budget hearing tonight")
    chain = [root]
    for n in range(5):
        chain.append(fake.reply(chain[-1], f"Reply {n}"))
    own = fake.reply(chain[1], "Thanks, see agenda", author=CITY_DID)
    fake.max_thread_depth = 2  # the AppView's cap: deeper replies need another call
    items = by_id(capture(fake)[0])
    for parent, uri in itertools.pairwise(chain):
        reply = items[uri]
        assert reply.kind is ItemKind.COMMENT and reply.author_id == PUBLIC_DID
        assert (reply.parent_id, reply.thread_id) == (parent, root)
    assert items[own].kind is ItemKind.POST and items[own].parent_id == chain[1]
    assert len(items) == 7
    anchors = [c["uri"] for c in fake.calls(GET_POST_THREAD)]
    assert anchors[:3] == [own, root, chain[2]] and anchors[-1] == chain[4]


def test_a_new_reply_on_an_old_post_comes_only_from_a_rescan(fake: FakeBluesky) -> None:
    old = fake.post("Snow emergency declared")
    for n in range(3):
        fake.post(f"Later {n}")
    _, checkpoints = capture(fake)
    late = fake.reply(old, "Is my street plowed?")
    items, _ = capture(fake, checkpoints[-1])
    assert late not in by_id(items)
    gone = fake.post("Deleted later")
    fake.delete(gone)  # a rescan of a deleted post's thread finds nothing, and goes on
    plan = CapturePlan(rescan_threads=[gone, old])
    items, checkpoints2 = capture(fake, checkpoints[-1], plan)
    assert by_id(items)[late].parent_id == old
    assert checkpoints2[-1].state == checkpoints[-1].state


def test_replies_the_account_hid_are_marked_hidden(fake: FakeBluesky) -> None:
    root = fake.post("Park reopening")
    rude = fake.reply(root, "rude")
    fine = fake.reply(root, "Great news")
    deep = fake.reply(fine, "also rude")
    fake.hide_reply(rude)
    fake.hide_reply(deep)
    items = by_id(capture(fake)[0])
    assert items[rude].moderation is Moderation.HIDDEN
    assert items[deep].moderation is Moderation.HIDDEN
    assert items[fine].moderation is Moderation.VISIBLE
    assert items[root].moderation is Moderation.VISIBLE


def test_hidden_replies_in_someone_elses_thread_are_not_the_accounts(fake: FakeBluesky) -> None:
    theirs = fake.post("Question for the City", author=PUBLIC_DID)
    answer = fake.reply(theirs, "Here is the answer", author=CITY_DID)
    under = fake.reply(answer, "thanks")
    fake.hide_reply(under)  # hidden by the root's author, not by the City
    items = by_id(capture(fake)[0])
    assert items[answer].kind is ItemKind.POST and items[answer].thread_id == theirs
    assert items[under].moderation is Moderation.VISIBLE


# -- media, links, hashes ------------------------------------------------------------


def test_images_with_alt_text_video_and_links(fake: FakeBluesky) -> None:
    pics = fake.post(
        "Closure map",
        images=[("Map of the closure", "image/png"), ("", "image/jpeg")],
        links=["https://example.gov/closures"],
    )
    film = fake.post("Watch", video=("Mayor's address", "video/mp4"))
    card = fake.post("Read", external="https://example.gov/news")
    quote = fake.post("See this", quote=pics, images=[("Photo", "image/jpeg")])
    items = by_id(capture(fake)[0])
    first, second = items[pics].media
    assert (first.kind, first.alt_text, first.mime_type) == (
        "image",
        "Map of the closure",
        "image/png",
    )
    assert second.alt_text is None and first.media_id != second.media_id
    assert (
        first.url and first.url.endswith(f"{first.media_id}@jpeg") and "feed_fullsize" in first.url
    )
    assert items[pics].links == ("https://example.gov/closures",)
    (video,) = items[film].media
    assert (video.kind, video.alt_text, video.mime_type) == (
        "video",
        "Mayor's address",
        "video/mp4",
    )
    assert video.url and video.url.endswith("/playlist.m3u8")
    assert items[card].links == ("https://example.gov/news",)
    assert items[quote].links == (items[pics].permalink,)
    assert [m.alt_text for m in items[quote].media] == ["Photo"]


def test_an_unchanged_recapture_has_identical_hashes(fake: FakeBluesky) -> None:
    root = fake.post("Hello", images=[("Alt", "image/png")])
    fake.reply(root, "Hi")
    fake.repost(fake.post("Theirs", author=PUBLIC_DID))
    first = by_id(capture(fake)[0])
    fake.like(root, 40)  # counters change; content does not
    second = by_id(capture(fake, None, CapturePlan(full_walk=True))[0])
    assert first.keys() == second.keys()
    assert all(first[k].content_sha256() == second[k].content_sha256() for k in first)


def test_a_full_walk_rewalks_every_thread(fake: FakeBluesky) -> None:
    posts = [fake.post(f"Notice {n}") for n in range(5)]
    _, checkpoints = capture(fake)
    late = fake.reply(posts[0], "late reply")
    fake.log.clear()
    items, checkpoints2 = capture(fake, checkpoints[-1], CapturePlan(full_walk=True))
    assert late in by_id(items)
    assert len(fake.calls(GET_POST_THREAD)) == 5
    assert checkpoints2[-1].state["newest_uri"] == posts[-1]


# -- check_item ----------------------------------------------------------------------


def test_check_item_exists_and_deleted(fake: FakeBluesky) -> None:
    post = fake.post("Temporary notice")
    reply = fake.reply(post, "ok")
    conn = connector(fake)
    assert conn.check_item(post, ItemKind.POST).status is ItemStatus.EXISTS
    fake.delete(reply)
    check = conn.check_item(reply, ItemKind.COMMENT)
    assert check.status is ItemStatus.NOT_FOUND and check.evidence
    assert check.detail and "not found" in check.detail.lower()
    assert conn.check_item(CITY_DID, ItemKind.PROFILE).status is ItemStatus.EXISTS


def test_check_item_unknown_unless_documented_not_found(fake: FakeBluesky) -> None:
    post = fake.post("Notice")
    reply = fake.reply(post, "hello")
    conn = connector(fake)
    fake.block(post)
    assert conn.check_item(post, ItemKind.POST).status is ItemStatus.UNKNOWN
    for status in (502, 401, 500):
        fake.fail_next(status=status)
        assert conn.check_item(reply, ItemKind.COMMENT).status is ItemStatus.UNKNOWN
    fake.malformed_next()
    assert conn.check_item(reply, ItemKind.COMMENT).status is ItemStatus.UNKNOWN
    fake.takedown(PUBLIC_DID)  # the author is suspended: their posts answer NotFound too
    check = conn.check_item(reply, ItemKind.COMMENT)
    assert check.status is ItemStatus.UNKNOWN and check.detail and "AccountTakedown" in check.detail
    repost = fake.repost(post)
    assert conn.check_item(repost, ItemKind.POST).status is ItemStatus.UNKNOWN


# -- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "shape"])
def test_a_malformed_body_names_the_endpoint(fake: FakeBluesky, how: str) -> None:
    fake.post("Notice")
    fake.malformed_next(how=how, endpoint=GET_AUTHOR_FEED)
    with pytest.raises(MalformedResponseError, match=GET_AUTHOR_FEED):
        capture(fake)


def test_rate_limit_and_server_errors_end_the_run(fake: FakeBluesky) -> None:
    fake.post("Notice")
    conn = connector(fake)
    conn.check_account()
    fake.rate_limit_next(reset_in=120, endpoint=GET_AUTHOR_FEED)
    with pytest.raises(RateLimitedError) as info:
        run(conn)
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120
    fake.fail_next(status=503, endpoint=GET_POST_THREAD)
    with pytest.raises(PlatformUnavailableError, match=GET_POST_THREAD):
        run(conn)


def test_every_answer_carries_rate_limit_headers(fake: FakeBluesky) -> None:
    client = PlainClient()
    resp = client.get(f"{fake.base_url}/xrpc/app.bsky.actor.getProfile", params={"actor": "x"})
    assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"
    assert int(resp.headers["RateLimit-Reset"]) >= int(time.time())
    assert resp.headers["RateLimit-Policy"] == "3000;w=300"
    assert int(resp.headers["RateLimit-Remaining"]) < int(resp.headers["RateLimit-Limit"])
