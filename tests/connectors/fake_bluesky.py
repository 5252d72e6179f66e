"""A fake Bluesky AppView on pytest-httpserver, for connector and pipeline tests.

It keeps an in-memory model (actors, posts, reposts, threadgates) and computes every answer
from it the way the public AppView (bluesky-social/atproto ``packages/bsky``) does, in the
JSON shapes of the ``app.bsky.*`` lexicons::

    fake = FakeBluesky(httpserver)                 # the City's account, on a fresh server
    root = fake.post("Road closed", images=[("Map of the closure", "image/png")])
    bad = fake.reply(root, "spam")                 # by a member of the public
    fake.hide_reply(bad)                           # the root's threadgate lists it as hidden
    fake.delete(root)                              # getPostThread answers 400 NotFound after
    acct = account("bluesky", handle=fake.handle, api_base=fake.base_url)

XRPC methods served under ``/xrpc/``: ``app.bsky.actor.getProfile``,
``app.bsky.feed.getAuthorFeed``, ``app.bsky.feed.getPostThread``, ``app.bsky.feed.getPosts``.
Errors are ``{"error", "message"}`` JSON with the AppView's status and names: unknown actor
400 ``InvalidRequest`` "Profile not found"; suspended 400 ``AccountTakedown``; deactivated 400
``AccountDeactivated``; missing post 400 ``NotFound``; unknown method 501.
Every answer carries ``RateLimit-Limit/-Remaining/-Reset`` (epoch seconds)/``-Policy``.

Behaviour worth knowing:

- Time is a fake clock (:attr:`now`) that each new post or repost advances by a minute.
  Record keys are TIDs from that clock; CIDs are sha256-derived look-alikes.
- ``getAuthorFeed`` lists the account's posts, replies and reposts newest first by sort time,
  with a keyset cursor (``<sortAt ms>::<cid>``, opaque to clients) whenever the page is not
  empty, so the last page is an empty one without a cursor (as the AppView does).
- ``getPostThread`` returns hidden replies like any other (v1 does; the root's threadgate
  view lists them in ``hiddenReplies``); :attr:`max_thread_depth` caps ``depth`` as the
  AppView's ``maxThreadDepth`` does. Replies under a deleted post, and posts by suspended or
  deactivated authors, are left out, and such a post as anchor is ``NotFound``.
- Image and video URLs in views point back at this server (``/img/...``, ``/watch/...``),
  which serves small deterministic bytes for them, so a pipeline can download media.
- Faults for the next requests: :meth:`rate_limit_next`, :meth:`fail_next`,
  :meth:`malformed_next`; each can be limited to one XRPC method.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

JSON = dict[str, Any]
CITY_DID = "did:plc:cityofexample4y2bqfzkx7ml"
CITY_HANDLE = "city.example.gov"
PUBLIC_DID = "did:plc:resident5bq2c3d4e5f6g7h8i"
PUBLIC_HANDLE = "resident.bsky.social"
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
_S32 = "234567abcdefghijklmnopqrstuvwxyz"


def tid(moment: datetime, clock_id: int = 0) -> str:
    """An atproto TID: microseconds since the epoch and a 10-bit clock id, base32-sortable."""
    n = (int(moment.timestamp() * 1_000_000) << 10) | (clock_id & 0x3FF)
    return "".join(_S32[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def fake_cid(data: bytes, prefix: str = "bafyrei") -> str:
    """A CID look-alike (``bafyrei…`` for records, ``bafkrei…`` for blobs) from sha256."""
    digest = base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")
    return prefix + digest[:52]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeActor:
    did: str
    handle: str
    display_name: str | None = None
    description: str | None = None
    avatar: str | None = None  # blob CID
    banner: str | None = None
    status: str = "active"  # "active", "takendown" or "deactivated"
    created_at: str = "2023-06-01T09:00:00.000Z"


@dataclass
class FakePost:
    uri: str
    cid: str
    author: str
    record: JSON
    indexed_at: datetime
    deleted: bool = False
    blocked: bool = False  # answer getPostThread with a blockedPost (as for a blocking viewer)
    like_count: int = 0

    @property
    def sort_at(self) -> datetime:
        """The AppView's sortAt for a post: the earlier of createdAt and indexedAt."""
        return min(datetime.fromisoformat(self.record["createdAt"]), self.indexed_at)


@dataclass
class FakeRepost:
    uri: str
    cid: str
    by: str
    subject: str
    indexed_at: datetime
    deleted: bool = False

    @property
    def sort_at(self) -> datetime:
        return self.indexed_at


@dataclass
class _Fault:
    kind: str  # "rate_limit", "fail", "malformed"
    endpoint: str | None
    status: int = 502
    reset_in: int = 60
    retry_after: int | None = None
    how: str = "truncated"


@dataclass
class FakeBluesky:
    """The fake AppView's model and its knobs; see the module docstring."""

    server: HTTPServer
    handle: str = CITY_HANDLE
    did: str = CITY_DID
    display_name: str = "City of Example"
    description: str = "Official account of the City of Example."
    now: datetime = field(default_factory=lambda: datetime(2024, 3, 1, 12, tzinfo=UTC))
    #: The AppView's cap on getPostThread ``depth`` (its ``maxThreadDepth``); None: no cap.
    max_thread_depth: int | None = None
    rate_limit: int = 3000
    rate_window: int = 300
    actors: dict[str, FakeActor] = field(default_factory=dict)
    posts: dict[str, FakePost] = field(default_factory=dict)
    reposts: dict[str, FakeRepost] = field(default_factory=dict)
    hidden: dict[str, list[str]] = field(default_factory=dict)  # root uri -> hidden replies
    #: Every XRPC request: (method, its query parameters; lists for repeated ones).
    log: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _remaining: int = 0
    _window_end: float = 0.0
    _clock_id: int = 0

    def __post_init__(self) -> None:
        self.add_actor(
            self.handle,
            did=self.did,
            display_name=self.display_name,
            description=self.description,
            avatar=fake_cid(b"avatar", "bafkrei"),
            banner=fake_cid(b"banner", "bafkrei"),
        )
        self.add_actor(PUBLIC_HANDLE, did=PUBLIC_DID, display_name="A Resident")
        self.server.expect_request(re.compile(r"^/xrpc/")).respond_with_handler(self._xrpc)
        self.server.expect_request(re.compile(r"^/(img|watch)/")).respond_with_handler(self._media)

    # -- the model ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the connector as ``api_base``."""
        return self.server.url_for("").rstrip("/")

    def add_actor(self, handle: str, *, did: str | None = None, **fields: Any) -> str:
        """A user (``display_name``, ``description``, ``avatar``/``banner`` CIDs); its DID."""
        did = did or "did:plc:" + fake_cid(handle.encode(), "")[:24]
        self.actors[did] = FakeActor(did=did, handle=handle, **fields)
        return did

    def post(
        self,
        text: str = "",
        *,
        author: str | None = None,
        reply_to: str | None = None,
        images: Sequence[tuple[str, str]] = (),
        video: tuple[str, str] | None = None,
        links: Sequence[str] = (),
        external: str | None = None,
        quote: str | None = None,
        langs: Sequence[str] = ("en",),
        created_at: datetime | None = None,
    ) -> str:
        """Create a post (by the account unless ``author``, a DID); its at:// URI.

        ``images`` are (alt text, MIME type); ``video`` likewise; ``links`` are appended to
        the text with link facets; ``external`` is a link-card URL; ``quote`` a post URI.
        """
        self.now += timedelta(minutes=1)
        author = author or self.did
        created = created_at or self.now
        record: JSON = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(created)}
        if langs:
            record["langs"] = list(langs)
        if reply_to is not None:
            parent = self.posts[reply_to]
            root = parent.record.get("reply", {}).get("root") or _ref(parent)
            record["reply"] = {"root": root, "parent": _ref(parent)}
        facets = []
        for link in links:
            start = len(record["text"].encode()) + 1
            record["text"] += " " + link
            end = start + len(link.encode())
            feature = {"$type": "app.bsky.richtext.facet#link", "uri": link}
            facets.append({"index": {"byteStart": start, "byteEnd": end}, "features": [feature]})
        if facets:
            record["facets"] = facets
        media = self._media_embed(images, video, text)
        if quote is not None:
            quoted = {"$type": "app.bsky.embed.record", "record": _ref(self.posts[quote])}
            record["embed"] = (
                {"$type": "app.bsky.embed.recordWithMedia", "record": quoted, "media": media}
                if media
                else quoted
            )
        elif media:
            record["embed"] = media
        elif external is not None:
            card = {"uri": external, "title": f"Page at {external}", "description": ""}
            record["embed"] = {"$type": "app.bsky.embed.external", "external": card}
        return self._store_post(author, record)

    def reply(self, parent: str, text: str, *, author: str | None = None, **kw: Any) -> str:
        """A reply to ``parent`` by ``author`` (default: a member of the public)."""
        return self.post(text, author=author or PUBLIC_DID, reply_to=parent, **kw)

    def repost(self, subject: str, *, by: str | None = None) -> str:
        """The account (or ``by``) reposts ``subject``; the repost record's URI."""
        self.now += timedelta(minutes=1)
        by = by or self.did
        uri = f"at://{by}/app.bsky.feed.repost/{self._tid()}"
        self.reposts[uri] = FakeRepost(uri, fake_cid(uri.encode()), by, subject, self.now)
        return uri

    def hide_reply(self, reply: str) -> None:
        """The root's author hides ``reply``: its threadgate's ``hiddenReplies`` lists it."""
        root = self.posts[reply].record["reply"]["root"]["uri"]
        self.hidden.setdefault(root, []).append(reply)

    def delete(self, uri: str) -> None:
        """Delete a post or repost: gone from feeds, NotFound from getPostThread."""
        (self.posts.get(uri) or self.reposts[uri]).deleted = True

    def block(self, uri: str) -> None:
        """getPostThread on ``uri`` answers a ``#blockedPost`` (as for a blocked viewer)."""
        self.posts[uri].blocked = True

    def like(self, uri: str, n: int = 1) -> None:
        """Bump a post's like counter (a change that is not a new version)."""
        self.posts[uri].like_count += n

    def takedown(self, did: str | None = None) -> None:
        self.actors[did or self.did].status = "takendown"

    def deactivate(self, did: str | None = None) -> None:
        self.actors[did or self.did].status = "deactivated"

    def calls(self, method: str) -> list[dict[str, str]]:
        """The query parameters (first values) of every request to XRPC ``method``."""
        return [{k: v[0] for k, v in p.items()} for m, p in self.log if m == method]

    # -- faults ------------------------------------------------------------------------

    def rate_limit_next(
        self,
        n: int = 1,
        *,
        reset_in: int = 60,
        retry_after: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests 429 ``RateLimitExceeded``, ``RateLimit-Reset`` in
        ``reset_in`` seconds (and ``Retry-After`` if given; the AppView sends none)."""
        self._faults += [_Fault("rate_limit", endpoint, 429, reset_in, retry_after)] * n

    def fail_next(self, n: int = 1, *, status: int = 502, endpoint: str | None = None) -> None:
        """Answer the next ``n`` requests ``status`` with an XRPC error body."""
        self._faults += [_Fault("fail", endpoint, status)] * n

    def malformed_next(
        self, n: int = 1, *, how: str = "truncated", endpoint: str | None = None
    ) -> None:
        """Answer the next ``n`` requests 200 with a body that is not JSON (``truncated``) or
        JSON of the wrong shape (``shape``)."""
        self._faults += [_Fault("malformed", endpoint, how=how)] * n

    # -- serving -----------------------------------------------------------------------

    def _xrpc(self, request: Request) -> Response:
        method = request.path.removeprefix("/xrpc/")
        self.log.append((method, {k: request.args.getlist(k) for k in request.args}))
        fault = next((f for f in self._faults if f.endpoint in (None, method)), None)
        if fault is not None:
            self._faults.remove(fault)
            return self._fault(fault)
        handler = {
            "app.bsky.actor.getProfile": self._get_profile,
            "app.bsky.feed.getAuthorFeed": self._get_author_feed,
            "app.bsky.feed.getPostThread": self._get_post_thread,
            "app.bsky.feed.getPosts": self._get_posts,
        }.get(method)
        if handler is None:
            return self._answer(501, _error("MethodNotImplemented", "Method Not Implemented"))
        try:
            return self._answer(200, handler(request.args))
        except _XrpcError as exc:
            return self._answer(400, _error(exc.name, exc.message))

    def _answer(self, status: int, body: JSON, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body),
            status=status,
            headers={**self._rate_headers(), **(headers or {})},
            content_type="application/json; charset=utf-8",
        )

    def _rate_headers(self, *, exhausted_for: int | None = None) -> dict[str, str]:
        now = time.time()
        if now >= self._window_end:
            self._window_end, self._remaining = now + self.rate_window, self.rate_limit
        self._remaining = max(0, self._remaining - 1)
        reset = self._window_end if exhausted_for is None else now + exhausted_for
        return {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": "0" if exhausted_for is not None else str(self._remaining),
            "RateLimit-Reset": str(int(reset)),
            "RateLimit-Policy": f"{self.rate_limit};w={self.rate_window}",
        }

    def _fault(self, fault: _Fault) -> Response:
        if fault.kind == "rate_limit":
            headers = self._rate_headers(exhausted_for=fault.reset_in)
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            body = _error("RateLimitExceeded", "Rate Limit Exceeded")
            return Response(json.dumps(body), 429, headers, content_type="application/json")
        if fault.kind == "fail":
            return self._answer(fault.status, _error("UpstreamFailure", "Upstream Failure"))
        text = '{"feed": [{"post": ' if fault.how == "truncated" else '{"feed": "nope"}'
        return Response(text, 200, self._rate_headers(), content_type="application/json")

    def _media(self, request: Request) -> Response:
        kind = "application/vnd.apple.mpegurl" if request.path.endswith(".m3u8") else "image/jpeg"
        data = b"\xff\xd8\xff\xe0fake-jpeg:" + request.path.encode()
        if kind != "image/jpeg":
            data = b"#EXTM3U\n#EXT-X-ENDLIST\n"
        return Response(data, 200, self._rate_headers(), content_type=kind)

    # -- XRPC methods --------------------------------------------------------------------

    def _get_profile(self, args: Any) -> JSON:
        actor = self._actor(_required(args, "actor"))
        if actor.status == "takendown":
            raise _XrpcError("AccountTakedown", "Account has been suspended")
        if actor.status == "deactivated":
            raise _XrpcError("AccountDeactivated", "Account is deactivated")
        mine = [p for p in self.posts.values() if p.author == actor.did and not p.deleted]
        extra = {
            "description": actor.description,
            "banner": self._img("banner", actor.did, actor.banner),
        }
        return {
            **self._basic(actor),
            **{k: v for k, v in extra.items() if v},
            "followersCount": 1234,
            "followsCount": 56,
            "postsCount": len(mine),
            "indexedAt": actor.created_at,
            "associated": {"lists": 0, "feedgens": 0, "starterPacks": 0, "labeler": False},
        }

    def _get_author_feed(self, args: Any) -> JSON:
        actor = self._actor(_required(args, "actor"))
        if actor.status != "active":
            raise _XrpcError("InvalidRequest", "Profile not found")
        limit = _int_param(args, "limit", 50, 1, 100)
        replies = args.get("filter", "posts_with_replies") != "posts_no_replies"
        entries: list[FakePost | FakeRepost] = [
            p
            for p in self.posts.values()
            if p.author == actor.did and not p.deleted and (replies or "reply" not in p.record)
        ]
        entries += [r for r in self.reposts.values() if r.by == actor.did and not r.deleted]
        entries = [e for e in entries if isinstance(e, FakePost) or self._visible(e.subject)]
        entries.sort(key=lambda e: (e.sort_at, e.cid), reverse=True)
        if cursor := args.get("cursor"):
            ms, _, cid = cursor.partition("::")
            mark = (datetime.fromtimestamp(int(ms) / 1000, UTC), cid)
            entries = [e for e in entries if (e.sort_at, e.cid) < mark]
        page = entries[:limit]
        body: JSON = {"feed": [self._feed_item(e) for e in page]}
        if page:
            body["cursor"] = f"{int(page[-1].sort_at.timestamp() * 1000)}::{page[-1].cid}"
        return body

    def _get_post_thread(self, args: Any) -> JSON:
        uri = _required(args, "uri")
        depth = _int_param(args, "depth", 6, 0, 1000)
        height = _int_param(args, "parentHeight", 80, 0, 1000)
        if self.max_thread_depth is not None:
            depth = min(depth, self.max_thread_depth)
        if not self._visible(uri):
            raise _XrpcError("NotFound", f"Post not found: {uri}")
        post = self.posts[uri]
        if post.blocked:
            thread = {
                "$type": "app.bsky.feed.defs#blockedPost",
                "uri": uri,
                "blocked": True,
                "author": {"did": post.author, "viewer": {"blockedBy": True}},
            }
            return {"thread": thread}
        body: JSON = {"thread": self._thread(post, depth, height)}
        root = post.record.get("reply", {}).get("root", {}).get("uri", uri)
        if (gate := self._threadgate(root)) is not None:
            body["threadgate"] = gate
        return body

    def _get_posts(self, args: Any) -> JSON:
        uris = args.getlist("uris")
        if len(uris) > 25:
            raise _XrpcError("InvalidRequest", "Error: uris must not have more than 25 elements")
        return {"posts": [self._post_view(self.posts[u]) for u in uris if self._visible(u)]}

    # -- views -------------------------------------------------------------------------

    def _actor(self, actor: str) -> FakeActor:
        found = self.actors.get(actor) or next(
            (a for a in self.actors.values() if a.handle == actor), None
        )
        if found is None:
            raise _XrpcError("InvalidRequest", "Profile not found")
        return found

    def _visible(self, uri: str) -> bool:
        post = self.posts.get(uri)
        return post is not None and not post.deleted and self.actors[post.author].status == "active"

    def _basic(self, actor: FakeActor) -> JSON:
        view: JSON = {"did": actor.did, "handle": actor.handle, "labels": []}
        if actor.display_name:
            view["displayName"] = actor.display_name
        if actor.avatar:
            view["avatar"] = self._img("avatar", actor.did, actor.avatar)
        view["createdAt"] = actor.created_at
        return view

    def _img(self, preset: str, did: str, cid: str | None) -> str | None:
        return f"{self.base_url}/img/{preset}/plain/{did}/{cid}@jpeg" if cid else None

    def _post_view(self, post: FakePost) -> JSON:
        replies = [c for c in self._children(post.uri)]
        reposts = [r for r in self.reposts.values() if r.subject == post.uri and not r.deleted]
        view: JSON = {
            "uri": post.uri,
            "cid": post.cid,
            "author": self._basic(self.actors[post.author]),
            "record": post.record,
        }
        if (embed := self._embed_view(post)) is not None:
            view["embed"] = embed
        view |= {
            "replyCount": len(replies),
            "repostCount": len(reposts),
            "likeCount": post.like_count,
            "quoteCount": 0,
            "indexedAt": iso(post.indexed_at),
            "labels": [],
        }
        if "reply" not in post.record and (gate := self._threadgate(post.uri)) is not None:
            view["threadgate"] = gate
        return view

    def _embed_view(self, post: FakePost) -> JSON | None:
        embed = post.record.get("embed")
        if embed is None:
            return None
        kind = embed["$type"]
        if kind == "app.bsky.embed.images":
            images = [
                {
                    "thumb": self._img("feed_thumbnail", post.author, _blob(i["image"])),
                    "fullsize": self._img("feed_fullsize", post.author, _blob(i["image"])),
                    "alt": i["alt"],
                    "aspectRatio": i["aspectRatio"],
                }
                for i in embed["images"]
            ]
            return {"$type": "app.bsky.embed.images#view", "images": images}
        if kind == "app.bsky.embed.video":
            cid = _blob(embed["video"])
            watch = f"{self.base_url}/watch/{post.author}/{cid}"
            view = {"$type": "app.bsky.embed.video#view", "cid": cid}
            view |= {"playlist": f"{watch}/playlist.m3u8", "thumbnail": f"{watch}/thumbnail.jpg"}
            return view | ({"alt": embed["alt"]} if embed.get("alt") else {})
        if kind == "app.bsky.embed.external":
            return {"$type": "app.bsky.embed.external#view", "external": embed["external"]}
        if kind == "app.bsky.embed.record":
            uri = embed["record"]["uri"]
            if not self._visible(uri):
                found = {"$type": "app.bsky.embed.record#viewNotFound", "uri": uri}
                return {"$type": "app.bsky.embed.record#view", "record": found | {"notFound": True}}
            quoted = self.posts[uri]
            record = {
                "$type": "app.bsky.embed.record#viewRecord",
                "uri": uri,
                "cid": quoted.cid,
                "author": self._basic(self.actors[quoted.author]),
                "value": quoted.record,
                "indexedAt": iso(quoted.indexed_at),
            }
            return {"$type": "app.bsky.embed.record#view", "record": record}
        if kind == "app.bsky.embed.recordWithMedia":
            inner = FakePost("", "", post.author, {"embed": embed["record"]}, post.indexed_at)
            media = FakePost("", "", post.author, {"embed": embed["media"]}, post.indexed_at)
            return {
                "$type": "app.bsky.embed.recordWithMedia#view",
                "record": self._embed_view(inner),
                "media": self._embed_view(media),
            }
        return None

    def _feed_item(self, entry: FakePost | FakeRepost) -> JSON:
        if isinstance(entry, FakeRepost):
            reason = {
                "$type": "app.bsky.feed.defs#reasonRepost",
                "by": self._basic(self.actors[entry.by]),
                "uri": entry.uri,
                "cid": entry.cid,
                "indexedAt": iso(entry.indexed_at),
            }
            return {"post": self._post_view(self.posts[entry.subject]), "reason": reason}
        item: JSON = {"post": self._post_view(entry)}
        if ref := entry.record.get("reply"):
            item["reply"] = {"root": self._maybe(ref["root"]["uri"])}
            item["reply"]["parent"] = self._maybe(ref["parent"]["uri"])
        return item

    def _maybe(self, uri: str) -> JSON:
        if not self._visible(uri):
            return {"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": True}
        return {"$type": "app.bsky.feed.defs#postView", **self._post_view(self.posts[uri])}

    def _thread(self, post: FakePost, depth: int, height: int) -> JSON:
        node: JSON = {"$type": THREAD_VIEW, "post": self._post_view(post)}
        parent_ref = post.record.get("reply", {}).get("parent")
        if height > 0 and parent_ref is not None:
            parent = parent_ref["uri"]
            node["parent"] = (
                self._thread(self.posts[parent], 0, height - 1)
                if self._visible(parent)
                else {"$type": "app.bsky.feed.defs#notFoundPost", "uri": parent, "notFound": True}
            )
        if depth > 0:
            node["replies"] = [self._thread(c, depth - 1, 0) for c in self._children(post.uri)]
        return node

    def _children(self, uri: str) -> Iterable[FakePost]:
        return [
            p
            for p in self.posts.values()
            if p.record.get("reply", {}).get("parent", {}).get("uri") == uri
            and self._visible(p.uri)
        ]

    def _threadgate(self, root: str) -> JSON | None:
        if root not in self.hidden or not self._visible(root):
            return None
        did, _, rkey = root.removeprefix("at://").partition("/app.bsky.feed.post/")
        record = {
            "$type": "app.bsky.feed.threadgate",
            "post": root,
            "createdAt": iso(self.posts[root].indexed_at),
            "hiddenReplies": list(self.hidden[root]),
        }
        uri = f"at://{did}/app.bsky.feed.threadgate/{rkey}"
        cid = fake_cid(json.dumps(record).encode())
        return {"uri": uri, "cid": cid, "record": record, "lists": []}

    # -- building records ----------------------------------------------------------------

    def _tid(self) -> str:
        self._clock_id += 1
        return tid(self.now, self._clock_id)

    def _store_post(self, author: str, record: JSON) -> str:
        uri = f"at://{author}/app.bsky.feed.post/{self._tid()}"
        cid = fake_cid(json.dumps(record, sort_keys=True).encode() + uri.encode())
        self.posts[uri] = FakePost(uri, cid, author, record, self.now + timedelta(seconds=1))
        return uri

    def _media_embed(
        self, images: Sequence[tuple[str, str]], video: tuple[str, str] | None, seed: str
    ) -> JSON | None:
        def blob(n: int, mime: str) -> JSON:
            cid = fake_cid(f"{seed}:{n}:{self.now.isoformat()}".encode(), "bafkrei")
            return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": 1000 + n}

        if video is not None:
            return {"$type": "app.bsky.embed.video", "video": blob(0, video[1]), "alt": video[0]}
        if not images:
            return None
        return {
            "$type": "app.bsky.embed.images",
            "images": [
                {"alt": alt, "image": blob(n, mime), "aspectRatio": {"width": 4, "height": 3}}
                for n, (alt, mime) in enumerate(images)
            ],
        }


class _XrpcError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _error(name: str, message: str) -> JSON:
    return {"error": name, "message": message}


def _ref(post: FakePost) -> JSON:
    return {"uri": post.uri, "cid": post.cid}


def _blob(blob: JSON) -> str:
    return str(blob["ref"]["$link"])


def _required(args: Any, name: str) -> str:
    value = args.get(name)
    if not value:
        raise _XrpcError("InvalidRequest", f'Error: Params must have the property "{name}"')
    return str(value)


def _int_param(args: Any, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise _XrpcError("InvalidRequest", f"Error: {name} must be an integer") from None
    if not low <= value <= high:
        raise _XrpcError("InvalidRequest", f"Error: {name} must be in [{low}, {high}]")
    return value
