"""The Mastodon connector against the fake Mastodon server, through a plain httpx client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from pytest_httpserver import HTTPServer

from archiver.connector import (
    AccountState,
    CapturePlan,
    Checkpoint,
    Item,
    ItemKind,
    ItemStatus,
)
from archiver.errors import (
    CaptureError,
    ConfigError,
    MalformedResponseError,
    PlatformUnavailableError,
    RateLimitedError,
)
from connectors.mastodon import MastodonConnector
from tests.connectors.fake_mastodon import FakeAccount, FakeMastodon
from tests.connectors.harness import PlainClient, account, run


@dataclass
class Secret:
    value: str

    def resolve(self) -> str:
        return self.value


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeMastodon:
    return FakeMastodon(httpserver)


@pytest.fixture
def city(fake: FakeMastodon) -> FakeAccount:
    return fake.add_account(
        "city",
        display_name="City of Milwaukee",
        note='<p>Official account. <a href="https://city.milwaukee.gov">city.milwaukee.gov</a></p>',
        fields=[("Website", '<a href="https://city.milwaukee.gov/">city.milwaukee.gov</a>')],
    )


def connect(
    fake: FakeMastodon, *, handle: str = "city", token: str | None = None, **options: bool
) -> tuple[MastodonConnector, PlainClient]:
    client = PlainClient()
    creds = {"access_token": Secret(token)} if token else {}
    info = account(
        "mastodon", handle=handle, api_base=fake.base_url, options=options, credentials=creds
    )
    return MastodonConnector(info, client), client


def drain(
    connector: MastodonConnector,
    checkpoint: Checkpoint | None = None,
    plan: CapturePlan | None = None,
) -> tuple[list[Item], list[Checkpoint], CaptureError | None]:
    """Like ``harness.run`` but keeps what was yielded before a ``CaptureError``."""
    items: list[Item] = []
    checkpoints: list[Checkpoint] = []
    out: Iterator[Item | Checkpoint] = connector.capture(checkpoint, plan or CapturePlan())
    try:
        for x in out:
            (checkpoints if isinstance(x, Checkpoint) else items).append(x)
    except CaptureError as exc:
        return items, checkpoints, exc
    return items, checkpoints, None


def ids(items: list[Item], kind: ItemKind | None = None) -> list[str]:
    return [i.item_id for i in items if kind is None or i.kind is kind]


# -- paging and the forward cursor ---------------------------------------------------------


def test_first_run_walks_back_through_pages_and_later_runs_go_forward(fake, city):
    old = [fake.post(city, f"Notice {n}") for n in range(95)]
    conn, _ = connect(fake)
    items, checkpoints = run(conn, None, CapturePlan(full_walk=True))
    assert sorted(ids(items, ItemKind.POST)) == sorted(s.id for s in old)
    pages = fake.requests_to(r"/accounts/\d+/statuses$")
    assert len(pages) == 3  # 40 + 40 + 15: no "next" link after a short page
    assert pages[0].query == {"limit": "40"}
    assert pages[1].query == {"limit": "40", "max_id": old[55].id}
    assert len(checkpoints) == 4  # one per page, one when the walk is done
    assert checkpoints[0].state["newest_id"] == old[-1].id
    assert checkpoints[0].state["backfill_max_id"] == old[55].id
    assert checkpoints[-1].state == {
        "account_id": city.id,
        "newest_id": old[-1].id,
        "backfill_max_id": None,
        "dm_newest_id": None,
    }

    new = [fake.post(city, f"Update {n}") for n in range(50)]
    fake.requests.clear()
    conn, _ = connect(fake)
    items2, checkpoints2 = run(conn, checkpoints[-1], CapturePlan())
    assert ids(items2, ItemKind.POST) == [s.id for s in new]  # only the new ones, oldest first
    forward = fake.requests_to(r"/accounts/\d+/statuses$")
    assert [r.query.get("min_id") for r in forward] == [old[-1].id, new[39].id, new[-1].id]
    assert checkpoints2[-1].state["newest_id"] == new[-1].id
    assert [c.state["newest_id"] for c in checkpoints2] == [new[39].id, new[-1].id]

    conn, _ = connect(fake)
    items3, checkpoints3 = run(conn, checkpoints2[-1], CapturePlan())
    assert items3 == [] and checkpoints3 == []


def test_an_interrupted_first_walk_resumes_below_where_it_stopped(fake, city):
    old = [fake.post(city, f"Notice {n}") for n in range(100)]
    conn, _ = connect(fake)
    items: list[Item] = []
    checkpoints: list[Checkpoint] = []
    err = None
    try:
        for x in conn.capture(None, CapturePlan(full_walk=True)):
            if isinstance(x, Checkpoint):
                checkpoints.append(x)
                if len(checkpoints) == 1:  # the next page's request fails (no retries here)
                    fake.fail_next(1, status=503, path=r"^/api/v1/accounts/\d+/statuses$")
            else:
                items.append(x)
    except PlatformUnavailableError as exc:
        err = exc
    assert err is not None and "answered HTTP 503" in str(err)
    assert checkpoints[-1].state["backfill_max_id"] == old[60].id
    new = fake.post(city, "Fresh news")
    conn, _ = connect(fake)
    items2, checkpoints2 = run(conn, checkpoints[-1], CapturePlan())
    assert ids(items2, ItemKind.POST)[0] == new.id  # forward first
    got = set(ids(items, ItemKind.POST)) | set(ids(items2, ItemKind.POST))
    assert got == {s.id for s in old} | {new.id}
    assert checkpoints2[-1].state["backfill_max_id"] is None


def test_replies_and_boosts_by_the_account_are_posts_too(fake, city):
    resident = fake.add_account("resident")
    theirs = fake.post(resident, "Is the library open Monday?")
    answer = fake.reply(city, theirs, "Yes, 9 to 5.")
    boost = fake.boost(city, theirs)
    conn, _ = connect(fake)
    items, _ = run(conn, None, CapturePlan(full_walk=True))
    by_id = {i.item_id: i for i in items}
    assert by_id[answer.id].kind is ItemKind.POST
    assert by_id[answer.id].parent_id == theirs.id
    assert by_id[answer.id].thread_id == theirs.id
    assert by_id[theirs.id].kind is ItemKind.COMMENT  # the ancestor, for context
    assert by_id[boost.id].kind is ItemKind.POST
    assert by_id[boost.id].text == "Is the library open Monday?"
    assert by_id[boost.id].raw["reblog"]["id"] == theirs.id
    assert by_id[boost.id].permalink.endswith(f"/statuses/{boost.id}/activity")


# -- items: content, media, profile ---------------------------------------------------------


def test_status_fields_media_and_content_warning(fake, city):
    post = fake.post(
        city,
        html_content='<p>Snow plan &amp; routes</p><p>See <a href="https://city.example/snow">'
        '<span class="invisible">https://</span>city.example/snow</a><br>Stay safe</p>',
        spoiler_text="Weather",
        media=[
            {"type": "image", "description": "Map of plow routes"},
            {"type": "video"},
            {"type": "gifv", "description": "Plow animation"},
        ],
        card_url="https://city.example/snow",
        language="en",
    )
    conn, _ = connect(fake)
    (item,), _ = run(conn, None, CapturePlan(full_walk=True))
    assert item.item_id == post.id and item.kind is ItemKind.POST
    assert (
        item.text == "CW: Weather\nSnow plan & routes\n\nSee https://city.example/snow\nStay safe"
    )
    assert item.html.startswith("<p>Snow plan &amp; routes")
    assert item.links == ("https://city.example/snow",)
    assert item.permalink == f"{fake.base_url}/@city/{post.id}"
    assert item.author_id == city.id and item.author_handle == "city"
    assert item.author_name == "City of Milwaukee"
    assert item.visibility == "public" and item.language == "en"
    assert item.created_at.isoformat() == post.created_at.isoformat()
    assert item.edited_at is None
    assert [(m.kind, m.alt_text, m.mime_type) for m in item.media] == [
        ("image", "Map of plow routes", "image/png"),
        ("video", None, "video/mp4"),
        ("gifv", "Plow animation", "video/mp4"),
    ]
    assert all(m.url and m.url.startswith(fake.base_url) for m in item.media)
    assert item.raw["spoiler_text"] == "Weather"


def test_check_account_gives_the_profile(fake, city):
    conn, _ = connect(fake, handle=f"city@{fake.host}")
    status = conn.check_account()
    assert status.state is AccountState.REACHABLE
    profile = status.profile
    assert profile is not None and profile.kind is ItemKind.PROFILE
    assert profile.item_id == f"account:{city.id}"
    assert profile.author_name == "City of Milwaukee"
    assert profile.text == "Official account. city.milwaukee.gov\nWebsite: city.milwaukee.gov"
    assert set(profile.links) == {"https://city.milwaukee.gov", "https://city.milwaukee.gov/"}
    assert [m.media_id.split(":")[0] for m in profile.media] == ["avatar", "header"]
    assert fake.requests_to("lookup")[0].query == {"acct": "city"}


# -- threads, edits, rescans -----------------------------------------------------------------


def test_new_posts_bring_their_replies_with_parents_and_thread(fake, city):
    resident, other = fake.add_account("resident"), fake.add_account("other")
    post = fake.post(city, "Budget hearing tonight")
    r1 = fake.reply(resident, post, "What time?")
    r2 = fake.reply(city, r1, "7pm")
    r3 = fake.reply(other, r2, "Thanks")
    conn, _ = connect(fake)
    items, _ = run(conn, None, CapturePlan(full_walk=True))
    by_id = {i.item_id: i for i in items}
    assert ids(items) == [post.id, r1.id, r2.id, r3.id]  # parents before children, once each
    assert by_id[r1.id].kind is ItemKind.COMMENT and by_id[r1.id].parent_id == post.id
    assert by_id[r2.id].kind is ItemKind.POST and by_id[r2.id].parent_id == r1.id
    assert by_id[r3.id].kind is ItemKind.COMMENT and by_id[r3.id].parent_id == r2.id
    assert {i.thread_id for i in items} == {post.id}


def test_a_new_reply_on_an_old_post_is_found_only_when_rescanned(fake, city):
    post = fake.post(city, "Pothole reporting is open")
    conn, _ = connect(fake)
    _, checkpoints = run(conn, None, CapturePlan(full_walk=True))
    late = fake.reply(fake.add_account("resident"), post, "Reported one on 5th St")

    conn, _ = connect(fake)
    items, _ = run(conn, checkpoints[-1], CapturePlan())
    assert items == []

    conn, _ = connect(fake)
    items, _ = run(conn, checkpoints[-1], CapturePlan(rescan_threads=(post.id,)))
    assert ids(items) == [post.id, late.id]
    assert items[1].kind is ItemKind.COMMENT and items[1].thread_id == post.id


def test_an_edit_is_a_new_content_hash_with_history_and_reruns_are_stable(fake, city):
    post = fake.post(city, "Pool opens at 9", media=[{"type": "image", "description": "Pool"}])
    reply = fake.reply(fake.add_account("resident"), post, "Great!")
    conn, _ = connect(fake)
    first, cps = run(conn, None, CapturePlan(full_walk=True))
    conn, _ = connect(fake)
    again, _ = run(conn, cps[-1], CapturePlan(rescan_threads=(post.id,)))
    assert [i.content_sha256() for i in again] == [i.content_sha256() for i in first]
    assert not fake.requests_to("/history")

    fake.edit(post, "Pool opens at 10", media_descriptions=["Outdoor pool"])
    conn, _ = connect(fake)
    edited, _ = run(conn, cps[-1], CapturePlan(rescan_threads=(post.id,)))
    by_id = {i.item_id: i for i in edited}
    new, old = by_id[post.id], {i.item_id: i for i in first}[post.id]
    assert new.content_sha256() != old.content_sha256()
    assert (
        by_id[reply.id].content_sha256() == {i.item_id: i for i in first}[reply.id].content_sha256()
    )
    assert new.edited_at is not None and new.text == "Pool opens at 10"
    assert new.media[0].alt_text == "Outdoor pool"
    history = new.raw["_history"]
    assert [h["content"] for h in history] == ["<p>Pool opens at 9</p>", "<p>Pool opens at 10</p>"]
    assert len(fake.requests_to(rf"/statuses/{post.id}/history$")) == 1


def test_context_capped_for_anonymous_callers_is_an_incomplete_run(fake, city):
    post = fake.post(city, "Snow emergency declared")
    people = [fake.add_account(f"resident{n}") for n in range(3)]
    replies = [fake.reply(people[n % 3], post, f"Question {n}") for n in range(61)]
    conn, _ = connect(fake)
    items, checkpoints, err = drain(conn, None, CapturePlan(full_walk=True))
    assert err is not None and "capped" in str(err) and post.id in str(err)
    assert len(ids(items, ItemKind.COMMENT)) == 60  # all that was shown is kept
    assert checkpoints[-1].state["newest_id"] == post.id

    token = fake.issue_token(city)
    conn, _ = connect(fake, token=token)
    items, _, err = drain(conn, None, CapturePlan(full_walk=True))
    assert err is None
    assert set(ids(items, ItemKind.COMMENT)) == {r.id for r in replies}


def test_the_item_cap_stops_after_a_checkpoint_and_the_next_run_continues(fake, city):
    posts = [fake.post(city, f"Item {n}") for n in range(30)]
    conn, _ = connect(fake)
    items, checkpoints, err = drain(conn, None, CapturePlan(full_walk=True, max_items=12))
    assert err is not None and "cap of 12" in str(err)
    assert len(items) == 12
    assert checkpoints[-1].state["backfill_max_id"] == posts[-12].id
    conn, _ = connect(fake)
    rest, _ = run(conn, checkpoints[-1], CapturePlan())
    assert set(ids(items)) | set(ids(rest)) == {p.id for p in posts}
    assert not set(ids(items)) & set(ids(rest))


# -- item checks ------------------------------------------------------------------------------


def test_check_item_only_says_not_found_on_the_documented_404(fake, city):
    post = fake.post(city, "Temporary notice")
    conn, _ = connect(fake)
    assert conn.check_item(post.id, ItemKind.POST).status is ItemStatus.EXISTS
    fake.delete(post)
    gone = conn.check_item(post.id, ItemKind.POST)
    assert gone.status is ItemStatus.NOT_FOUND and gone.evidence
    assert gone.detail == "HTTP 404: Record not found"

    other = fake.post(city, "Still here")
    for status in (403, 500, 502, 401):
        fake.fail_next(1, status=status)
        check = conn.check_item(other.id, ItemKind.POST)
        assert check.status is ItemStatus.UNKNOWN and check.detail.startswith(f"HTTP {status}")
    fake.fail_next(1, status=404, body=b"<html>not here</html>")  # a proxy, not Mastodon
    assert conn.check_item(other.id, ItemKind.POST).status is ItemStatus.UNKNOWN
    fake.rate_limit_next(1, retry_after=30)
    assert conn.check_item(other.id, ItemKind.POST).status is ItemStatus.UNKNOWN
    fake.malformed_next(1)
    assert conn.check_item(other.id, ItemKind.POST).status is ItemStatus.UNKNOWN
    assert conn.check_item(f"account:{city.id}", ItemKind.PROFILE).status is ItemStatus.EXISTS


# -- account states ---------------------------------------------------------------------------


def test_suspended_unknown_removed_and_moved_accounts_are_unavailable(fake, city):
    conn, _ = connect(fake, handle="nobody")
    status = conn.check_account()
    assert status.state is AccountState.UNAVAILABLE and "HTTP 404" in status.reason
    assert status.evidence

    fake.suspend(city)
    conn, _ = connect(fake)
    status = conn.check_account()
    assert status.state is AccountState.UNAVAILABLE and status.reason == "account suspended"

    fake.suspend(city, legacy_410=True)
    conn, _ = connect(fake)
    assert "410" in conn.check_account().reason

    newer = fake.add_account("city2")
    moving = fake.add_account("oldcity")
    fake.move(moving, newer)
    conn, _ = connect(fake, handle="oldcity")
    assert conn.check_account().reason == "account moved to city2"

    gone = fake.add_account("gone")
    fake.remove_account(gone)
    info = account("mastodon", platform_id=gone.id, api_base=fake.base_url)
    status = MastodonConnector(info, PlainClient()).check_account()
    assert status.state is AccountState.UNAVAILABLE and "404" in status.reason


def test_other_account_failures_propagate(fake, city):
    conn, _ = connect(fake)
    fake.fail_next(1, status=500)
    with pytest.raises(PlatformUnavailableError):
        conn.check_account()


def test_a_handle_or_api_base_is_required():
    with pytest.raises(ConfigError):
        MastodonConnector(account("mastodon", handle="city"), PlainClient())


# -- malformed answers ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncate", "not_json", "drop_id"])
def test_malformed_bodies_raise_naming_the_endpoint(fake, city, how):
    fake.post(city, "Hello")
    conn, _ = connect(fake, token=fake.issue_token(city))
    fake.malformed_next(1, path=r"/statuses$", how=how)
    with pytest.raises(MalformedResponseError) as caught:
        run(conn, None, CapturePlan(full_walk=True))
    assert f"GET /api/v1/accounts/{city.id}/statuses" in str(caught.value)
    assert "tok-" not in str(caught.value)


def test_a_timeline_that_pages_backwards_is_malformed(fake, city):
    posts = [fake.post(city, f"n{n}") for n in range(3)]
    conn, _ = connect(fake)
    start = Checkpoint(1, {"account_id": city.id, "newest_id": posts[0].id})
    fake.fail_next(1, status=200, path=r"/statuses$", body=[{"id": "1", "created_at": "x"}])
    with pytest.raises(MalformedResponseError, match="backwards"):
        run(conn, start, CapturePlan())


# -- direct messages --------------------------------------------------------------------------


def test_direct_conversations_with_a_token(fake, city):
    resident = fake.add_account("resident")
    dm = fake.direct(resident, [city], "My water bill is wrong")
    answer = fake.direct(city, [resident], "We'll look into it", in_reply_to=dm)
    public = fake.post(city, "Public note")
    token = fake.issue_token(city)

    conn, _ = connect(fake, token=token)  # conversations option off: not asked for
    items, _ = run(conn, None, CapturePlan(full_walk=True))
    assert not fake.requests_to("/conversations")
    assert {i.item_id: i.kind for i in items}[answer.id] is ItemKind.MESSAGE  # own, via timeline

    conn, _ = connect(fake, token=token, conversations=True)
    items, checkpoints = run(conn, None, CapturePlan(full_walk=True))
    kinds = {i.item_id: i.kind for i in items}
    assert kinds == {public.id: ItemKind.POST, dm.id: ItemKind.MESSAGE, answer.id: ItemKind.MESSAGE}
    assert {i.thread_id for i in items if i.kind is ItemKind.MESSAGE} == {dm.id}
    assert checkpoints[-1].state["dm_newest_id"] == answer.id
    assert all(r.authorization == f"Bearer {token}" for r in fake.requests)

    later = fake.direct(resident, [city], "Thanks!", in_reply_to=answer)
    conn, _ = connect(fake, token=token, conversations=True)
    items, checkpoints = run(conn, checkpoints[-1], CapturePlan())
    assert ids(items) == [dm.id, answer.id, later.id]  # the new message, with its context
    assert checkpoints[-1].state["dm_newest_id"] == later.id
    conn, _ = connect(fake, token=token, conversations=True)
    assert run(conn, checkpoints[-1], CapturePlan())[0] == []

    fake.fail_next(1, status=403, path="/conversations$")  # e.g. a proxy or policy refusing
    conn, _ = connect(fake, token=token, conversations=True)
    items, checkpoints = run(conn, None, CapturePlan(full_walk=True))  # skipped, run completes
    assert checkpoints[-1].state["dm_newest_id"] is None
    assert [r.path for r in fake.requests_to("/conversations")][-1] == "/api/v1/conversations"


def test_token_scopes_are_enforced_like_mastodon(fake, city):
    fake.post(city, "Hello")
    conn, _ = connect(fake, token=fake.issue_token(city, scopes=("read:accounts",)))
    assert conn.check_account().state is AccountState.REACHABLE
    with pytest.raises(CaptureError, match="HTTP 403: This action is outside the authorized"):
        run(conn, None, CapturePlan(full_walk=True))
    conn, _ = connect(fake, token="not-a-token-we-issued")
    with pytest.raises(CaptureError, match="HTTP 401"):
        conn.check_account()


def test_anonymous_callers_never_see_direct_messages(fake, city):
    dm = fake.direct(fake.add_account("resident"), [city], "private")
    conn, _ = connect(fake, conversations=True)
    items, _ = run(conn, None, CapturePlan(full_walk=True))
    assert dm.id not in ids(items)
    assert not fake.requests_to("/conversations")
    assert all(r.authorization is None for r in fake.requests)


# -- limits the platform sets -----------------------------------------------------------------


def test_deep_threads_past_the_anonymous_depth_are_an_incomplete_run(fake, city):
    post = fake.post(city, "Thread")
    people = [fake.add_account("a"), fake.add_account("b")]
    chain = [post]
    for n in range(25):
        chain.append(fake.reply(people[n % 2], chain[-1], f"reply {n}"))
    conn, _ = connect(fake)
    items, _, err = drain(conn, None, CapturePlan(full_walk=True))
    assert err is not None and "capped" in str(err)
    assert ids(items, ItemKind.COMMENT) == [s.id for s in chain[1:21]]
    conn, _ = connect(fake, token=fake.issue_token(city))
    items, _, err = drain(conn, None, CapturePlan(full_walk=True))
    assert err is None and ids(items, ItemKind.COMMENT) == [s.id for s in chain[1:]]


def test_a_429_the_client_passes_on_is_a_rate_limit_error(fake, city):
    fake.post(city, "Hello")
    fake.rate_limit_next(1, retry_after=30, path=r"/statuses$")
    conn, _ = connect(fake)
    with pytest.raises(RateLimitedError) as caught:
        run(conn, None, CapturePlan(full_walk=True))
    assert caught.value.retry_after == 30


def test_options_and_handles(fake, city):
    fake.boost(city, fake.post(fake.add_account("resident"), "Boost me"))
    conn, _ = connect(fake, exclude_reblogs=True)
    assert run(conn, None, CapturePlan(full_walk=True))[0] == []
    assert fake.requests_to(r"/statuses$")[0].query == {"exclude_reblogs": "true", "limit": "40"}
    conn, _ = connect(fake, handle="city@elsewhere.example")  # a remote account, looked up here
    assert conn.check_account().state is AccountState.UNAVAILABLE
    assert fake.requests_to("lookup")[-1].query == {"acct": "city@elsewhere.example"}
    info = account("mastodon", handle="@city@mastodon.example")
    assert MastodonConnector(info, PlainClient()).base == "https://mastodon.example"


# -- the fake itself speaks Mastodon --------------------------------------------------------


def test_the_fake_answers_with_mastodons_headers_and_shapes(fake, city):
    posts = [fake.post(city, f"n{n}") for n in range(3)]
    with httpx.Client(base_url=fake.base_url) as http:
        r = http.get(f"/api/v1/accounts/{city.id}/statuses", params={"limit": 2})
        assert r.status_code == 200 and [s["id"] for s in r.json()] == [posts[2].id, posts[1].id]
        assert r.headers["Link"] == (
            f"<{fake.base_url}/api/v1/accounts/{city.id}/statuses?limit=2&max_id={posts[1].id}>; "
            f'rel="next", <{fake.base_url}/api/v1/accounts/{city.id}/statuses?limit=2&'
            f'min_id={posts[2].id}>; rel="prev"'
        )
        assert r.headers["X-RateLimit-Limit"] == "300"
        assert int(r.headers["X-RateLimit-Remaining"]) < 300
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r.headers["X-RateLimit-Reset"]
        )
        r = http.get(
            f"/api/v1/accounts/{city.id}/statuses", params={"min_id": posts[0].id, "limit": 1}
        )
        assert [s["id"] for s in r.json()] == [posts[1].id]  # immediately newer, not newest
        assert r.json()[0]["created_at"].endswith(".000Z")
        fake.delete(posts[0])
        r = http.get(f"/api/v1/statuses/{posts[0].id}")
        assert (r.status_code, r.json()) == (404, {"error": "Record not found"})
        fake.rate_limit_next(1, retry_after=12)
        r = http.get(f"/api/v1/statuses/{posts[1].id}")
        assert r.status_code == 429 and r.json() == {"error": "Too many requests"}
        assert r.headers["Retry-After"] == "12" and r.headers["X-RateLimit-Remaining"] == "0"
        r = http.get("/api/v1/conversations")
        assert (r.status_code, r.json()) == (401, {"error": "The access token is invalid"})


def test_an_older_servers_since_id_prev_link_still_pages_without_gaps(fake, city, monkeypatch):
    start = fake.post(city, "seen")
    conn, _ = connect(fake)
    _, checkpoints = run(conn, None, CapturePlan(full_walk=True))
    new = [fake.post(city, f"new {n}") for n in range(90)]
    real = fake._timeline

    def since_id_links(request, acct, viewer):
        status, body, links = real(request, acct, viewer)
        return status, body, links.replace("min_id=", "since_id=") if links else links

    monkeypatch.setattr(fake, "_timeline", since_id_links)
    conn, _ = connect(fake)
    items, _ = run(conn, checkpoints[-1], CapturePlan())
    assert ids(items) == [s.id for s in new] and start.id not in ids(items)
    assert [r.query.get("min_id") for r in fake.requests_to(r"/statuses$")][-3:] == [
        new[39].id,
        new[79].id,
        new[89].id,
    ]
