"""Bluesky connector: an account's posts, reposts, thread replies and profile via the AppView.

Unauthenticated XRPC GETs on the public AppView (``account.api_base`` or
``https://public.api.bsky.app``). What it relies on, from the lexicons and the AppView source
(bluesky-social/atproto ``lexicons/app/bsky/``, ``packages/bsky/src/``):

- ``app.bsky.actor.getProfile``: an unknown actor answers HTTP 400 ``InvalidRequest``
  "Profile not found", a suspended one ``AccountTakedown``, a deactivated one
  ``AccountDeactivated`` (``api/app/bsky/actor/getProfile.ts``).
- ``app.bsky.feed.getAuthorFeed`` (``limit`` 1-100, opaque ``cursor``,
  ``filter=posts_with_replies``): posts, replies and reposts, newest first by sort time (the
  earlier of a post's ``createdAt`` and ``indexedAt``; a repost's ``reason.indexedAt``). A
  repost's ``reason`` is ``#reasonRepost``, with the repost record's ``uri`` where given.
- ``app.bsky.feed.getPostThread`` (``depth``, ``parentHeight`` 0-1000): a missing anchor is
  HTTP 400 ``NotFound`` (``getPostThread.ts``; the lexicon also allows a ``#notFoundPost``
  thread, read the same way). Replies hidden by the root's threadgate are still returned;
  only ``getPostThreadV2`` leaves them out (``views/index.ts``, ``threadReplies`` against
  ``threadV2Replies``). The root's threadgate view is the answer's ``threadgate``, and its
  record's ``hiddenReplies`` lists the replies the root's author hid. A node at the depth
  limit has no ``replies`` key: one with ``replyCount > 0`` is fetched again as an anchor.
- Posts of suspended authors also answer ``NotFound``, so :meth:`check_item` asks
  ``getProfile`` about the author before it says a post is gone.
- Rate limits: ``RateLimit-Limit/-Remaining/-Reset`` (epoch seconds)/``-Policy`` headers and
  HTTP 429 ``RateLimitExceeded`` (``xrpc-server/src/rate-limiter.ts``).

Checkpoint state, version 1: ``did``; ``newest_uri``/``newest_indexed_at``, the newest feed
entry (and its sort time) below which everything was captured except the ``gaps``: ranges
still to walk, ``{cursor, after_uri, after_indexed_at, stop_uri, stop_indexed_at}`` (request
from ``cursor``, skip through ``after``, stop before ``stop``). A walk cut short leaves its
remainder as a gap, so a checkpoint never claims more than was yielded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from archiver.connector import (
    AccountInfo,
    AccountState,
    AccountStatus,
    CapturePlan,
    Checkpoint,
    HttpClient,
    Item,
    ItemCheck,
    ItemKind,
    ItemStatus,
    MediaRef,
    Moderation,
    Response,
    parse_time,
)
from archiver.errors import (
    CaptureError,
    MalformedResponseError,
    PlatformUnavailableError,
    RateLimitedError,
)

DEFAULT_APPVIEW = "https://public.api.bsky.app"
DEFAULT_PAGE_SIZE = 100  # getAuthorFeed's maximum
DEFAULT_THREAD_DEPTH = 1000  # getPostThread's maximum; the AppView may cap it lower
GET_PROFILE = "app.bsky.actor.getProfile"
GET_AUTHOR_FEED = "app.bsky.feed.getAuthorFeed"
GET_POST_THREAD = "app.bsky.feed.getPostThread"
_THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
_REPOST = "app.bsky.feed.defs#reasonRepost"
_POST_PATH = "/app.bsky.feed.post/"
_UNAVAILABLE = {"AccountTakedown": "suspended", "AccountDeactivated": "deactivated"}

JSON = dict[str, Any]
Key = tuple[str, str]  # a feed entry: (uri, sort time)
Params = Mapping[str, str | int | bool]


@dataclass
class _Run:
    """One capture's progress: what its next checkpoint says, and what it yielded."""

    did: str
    head: Key | None
    gaps: list[JSON]  # {"cursor", "after", "stop"}
    max_items: int | None
    count: int = 0
    seen: set[str] = field(default_factory=set)
    threads: set[str] = field(default_factory=set)

    def drop(self, gap: JSON) -> None:
        self.gaps = [g for g in self.gaps if g is not gap]

    def checkpoint(self) -> Checkpoint:
        def flat(name: str, key: Key | None) -> JSON:
            return {f"{name}_uri": key and key[0], f"{name}_indexed_at": key and key[1]}

        gaps = [
            {"cursor": g["cursor"], **flat("after", g["after"]), **flat("stop", g["stop"])}
            for g in self.gaps
        ]
        state = {"did": self.did, **flat("newest", self.head), "gaps": gaps}
        return Checkpoint(version=BlueskyConnector.checkpoint_version, state=state)


class BlueskyConnector:
    """A Bluesky account through the public AppView; see the module docstring."""

    platform: ClassVar[str] = "bluesky"
    source: ClassVar[str] = "api"
    checkpoint_version: ClassVar[int] = 1
    rate_limit: ClassVar[str] = "bluesky"

    def __init__(self, account: AccountInfo, client: HttpClient) -> None:
        actor = account.platform_id or account.handle
        if not actor:
            raise CaptureError(f"bluesky account {account.id} has neither a DID nor a handle")
        self._client, self._actor = client, actor
        self._base = (account.api_base or DEFAULT_APPVIEW).rstrip("/")
        self._did = actor if actor.startswith("did:") else None
        self._page_size = _int_option(account, "page_size", DEFAULT_PAGE_SIZE, 100)
        self._depth = _int_option(account, "thread_depth", DEFAULT_THREAD_DEPTH, 1000)

    # -- the contract ----------------------------------------------------------------

    def check_account(self) -> AccountStatus:
        resp, body = self._get(GET_PROFILE, {"actor": self._actor})
        if body is None:
            error, message = _xrpc_error(resp)
            if resp.status_code == 400 and error in _UNAVAILABLE:
                reason = f"account {_UNAVAILABLE[error]}: {message}"
            elif resp.status_code == 400 and "not found" in message.lower():
                reason = f"account not found: {message}"
            else:
                raise _failure(GET_PROFILE, resp)
            return AccountStatus(AccountState.UNAVAILABLE, reason=reason, evidence=resp.evidence)
        profile = self._profile_item(body, resp.evidence)
        self._did = profile.item_id
        return AccountStatus(AccountState.REACHABLE, evidence=resp.evidence, profile=profile)

    def capture(
        self, checkpoint: Checkpoint | None, plan: CapturePlan
    ) -> Iterator[Item | Checkpoint]:
        """New feed entries (and their threads) down to the checkpoint, its gaps, rescans."""
        did = self._resolve_did()
        head, gaps = _load(checkpoint, did, self.checkpoint_version)
        run = _Run(did, head, gaps, plan.max_items)
        fresh: JSON = {"cursor": None, "after": None, "stop": head}
        run.gaps.insert(0, fresh)
        yield from self._walk(run, fresh, stop_at_boundary=not plan.full_walk, sets_head=True)
        if plan.full_walk:
            run.gaps = []  # the whole feed was walked
        for gap in list(run.gaps):
            yield from self._walk(run, gap, stop_at_boundary=True, sets_head=False)
        for uri in plan.rescan_threads:
            if _POST_PATH in uri and uri not in run.threads:
                yield from self._capped(run, self._thread(run, uri))
                yield run.checkpoint()
        yield run.checkpoint()

    def check_item(self, item_id: str, kind: ItemKind) -> ItemCheck:
        try:
            if kind is ItemKind.PROFILE:
                resp, body = self._get(GET_PROFILE, {"actor": item_id})
                found = ItemStatus.EXISTS if body is not None else ItemStatus.UNKNOWN
                return ItemCheck(found, resp.evidence, f"HTTP {resp.status_code}")
            if _POST_PATH not in item_id:
                return ItemCheck(ItemStatus.UNKNOWN, None, "the AppView has no lookup for this")
            params: Params = {"uri": item_id, "depth": 0, "parentHeight": 0}
            resp, body = self._get(GET_POST_THREAD, params)
        except MalformedResponseError as exc:
            return ItemCheck(ItemStatus.UNKNOWN, None, str(exc))
        if body is not None:
            thread = _obj(body.get("thread"))
            if thread.get("$type") == _THREAD_VIEW and isinstance(thread.get("post"), dict):
                return ItemCheck(ItemStatus.EXISTS, resp.evidence)
            if thread.get("notFound") is True:
                return self._confirm_not_found(item_id, resp.evidence, "#notFoundPost")
            return ItemCheck(ItemStatus.UNKNOWN, resp.evidence, f"thread {thread.get('$type')}")
        error, message = _xrpc_error(resp)
        if resp.status_code == 400 and error == "NotFound":
            return self._confirm_not_found(item_id, resp.evidence, message)
        return ItemCheck(ItemStatus.UNKNOWN, resp.evidence, f"HTTP {resp.status_code} {error}")

    # -- walking ---------------------------------------------------------------------

    def _walk(
        self, run: _Run, gap: JSON, *, stop_at_boundary: bool, sets_head: bool
    ) -> Iterator[Item | Checkpoint]:
        """Walk one gap page by page, yielding a checkpoint after each page as it shrinks."""
        while True:
            params: dict[str, str | int | bool] = {"actor": run.did, "limit": self._page_size}
            params["filter"] = "posts_with_replies"
            if gap["cursor"]:
                params["cursor"] = gap["cursor"]
            resp, body = self._ok(GET_AUTHOR_FEED, params)
            feed, cursor = body.get("feed"), body.get("cursor")
            if not isinstance(feed, list) or not isinstance(cursor, str | None):
                raise MalformedResponseError(f"{GET_AUTHOR_FEED}: no feed list or a bad cursor")
            if feed and cursor and cursor == gap["cursor"]:
                raise MalformedResponseError(f"{GET_AUTHOR_FEED}: the cursor did not move")
            entries = [e for e in map(_entry, feed) if e is not None]
            if sets_head and entries:
                run.head = entries[0][0]
            sets_head, skip, done = False, gap["after"], False
            for key, raw in entries:
                if skip is not None:  # resuming inside a page: skip what was done
                    if key[0] == skip[0]:
                        skip = None
                        continue
                    if _older(skip, key):
                        continue
                    skip = None
                if gap["stop"] is not None and _older(key, gap["stop"], or_same=True):
                    if stop_at_boundary:
                        done = True
                        break
                    run.drop(gap)  # a full walk went past the old boundary
                yield from self._capped(run, self._entry_items(run, raw, resp.evidence))
                gap["after"] = key
            if done or not cursor or not feed:
                run.drop(gap)
                yield run.checkpoint()
                return
            gap.update(cursor=cursor, after=None)
            yield run.checkpoint()

    def _capped(self, run: _Run, items: Iterator[Item]) -> Iterator[Item | Checkpoint]:
        """Items not yet yielded in this run, up to the run's cap."""
        for item in items:
            if item.item_id in run.seen:
                continue
            if run.max_items is not None and run.count >= run.max_items:
                yield run.checkpoint()
                raise CaptureError(f"stopped after {run.count} items (the run's max_items)")
            run.seen.add(item.item_id)
            run.count += 1
            yield item

    def _entry_items(self, run: _Run, raw: JSON, evidence: str) -> Iterator[Item]:
        post = raw["post"]
        if _reason(raw) == _REPOST:
            yield self._repost_item(raw, evidence)
            return
        yield self._post_item(post, evidence, GET_AUTHOR_FEED)
        if post["author"]["did"] == run.did:
            yield from self._thread(run, post["uri"])

    def _thread(self, run: _Run, uri: str) -> Iterator[Item]:
        """The post at ``uri`` and every reply under it, at every depth."""
        run.threads.add(uri)
        anchors, asked = [uri], {uri}
        while anchors:
            params: Params = {"uri": anchors.pop(0), "depth": self._depth, "parentHeight": 0}
            resp, body = self._get(GET_POST_THREAD, params)
            if body is None:
                if resp.status_code == 400 and _xrpc_error(resp)[0] == "NotFound":
                    continue  # gone meanwhile; check_item decides what that means
                raise _failure(GET_POST_THREAD, resp)
            thread = body.get("thread")
            if not isinstance(thread, dict):
                raise MalformedResponseError(f"{GET_POST_THREAD}: no thread object")
            if thread.get("$type") != _THREAD_VIEW:
                continue  # notFoundPost or blockedPost: nothing to read
            hidden = _hidden(body, thread, run.did)
            stack: list[JSON] = [thread]
            while stack:
                node = stack.pop()
                post = _obj(node.get("post"))
                item = self._post_item(post, resp.evidence, GET_POST_THREAD, hidden=hidden)
                yield item
                replies = node.get("replies")
                if replies is None and post.get("replyCount") and item.item_id not in asked:
                    anchors.append(item.item_id)  # cut off at the depth limit
                    asked.add(item.item_id)
                for child in reversed(replies if isinstance(replies, list) else []):
                    if isinstance(child, dict) and child.get("$type") == _THREAD_VIEW:
                        stack.append(child)

    # -- normalizing -----------------------------------------------------------------

    def _post_item(
        self, view: JSON, evidence: str, method: str, *, hidden: frozenset[str] = frozenset()
    ) -> Item:
        uri, author, record = view.get("uri"), view.get("author"), view.get("record")
        if not (isinstance(uri, str) and isinstance(author, dict) and isinstance(record, dict)):
            raise MalformedResponseError(f"{method}: a post without uri, author or record")
        did = author.get("did")
        if not isinstance(did, str):
            raise MalformedResponseError(f"{method}: post {uri} has no author did")
        reply = _obj(record.get("reply"))
        langs = record.get("langs") if isinstance(record.get("langs"), list) else []
        return Item(
            platform=self.platform,
            item_id=uri,
            kind=ItemKind.POST if did == self._did else ItemKind.COMMENT,
            evidence=evidence,
            permalink=_permalink(uri),
            parent_id=_ref_uri(reply.get("parent")),
            thread_id=_ref_uri(reply.get("root")),
            author_id=did,
            author_handle=_str(author.get("handle")),
            author_name=_str(author.get("displayName")),
            created_at=_time(record.get("createdAt")) or _time(view.get("indexedAt")),
            text=_str(record.get("text")),
            language=_str(langs[0]) if langs else None,
            visibility="public",
            moderation=Moderation.HIDDEN if uri in hidden else Moderation.VISIBLE,
            links=_links(record.get("embed"), record.get("facets")),
            media=_media(record.get("embed"), view.get("embed")),
            raw=view,
        )

    def _repost_item(self, entry: JSON, evidence: str) -> Item:
        """A repost: its own record, pointing at the reposted post (kept whole in ``raw``)."""
        reason, subject = entry["reason"], entry["post"]["uri"]
        by = _obj(reason.get("by"))
        return Item(
            platform=self.platform,
            item_id=_repost_id(reason, subject),
            kind=ItemKind.POST,
            evidence=evidence,
            permalink=_permalink(subject),
            author_id=_str(by.get("did")) or self._did,
            author_handle=_str(by.get("handle")),
            author_name=_str(by.get("displayName")),
            created_at=_time(reason.get("indexedAt")),
            visibility="public",
            links=(subject, _permalink(subject)),
            raw=entry,
        )

    def _profile_item(self, body: JSON, evidence: str) -> Item:
        did, handle = body.get("did"), body.get("handle")
        if not (isinstance(did, str) and isinstance(handle, str)):
            raise MalformedResponseError(f"{GET_PROFILE}: a profile without did or handle")
        media = tuple(
            MediaRef(media_id=url.rsplit("/", 1)[-1].split("@")[0], url=url, kind="image")
            for url in (body.get("avatar"), body.get("banner"))
            if isinstance(url, str) and url
        )
        return Item(
            platform=self.platform,
            item_id=did,
            kind=ItemKind.PROFILE,
            evidence=evidence,
            permalink=f"https://bsky.app/profile/{did}",
            author_id=did,
            author_handle=handle,
            author_name=_str(body.get("displayName")),
            created_at=_time(body.get("createdAt")),
            text=_str(body.get("description")),
            visibility="public",
            media=media,
            raw=body,
        )

    # -- HTTP ------------------------------------------------------------------------

    def _get(self, method: str, params: Params) -> tuple[Response, JSON | None]:
        """GET an XRPC method: a 200's body (an object, else Malformed), None otherwise."""
        resp = self._client.get(f"{self._base}/xrpc/{method}", params=params)
        if resp.status_code != 200:
            return resp, None
        try:
            body = resp.json()
        except (MalformedResponseError, ValueError) as exc:
            raise MalformedResponseError(f"{method} did not answer JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedResponseError(f"{method} answered {type(body).__name__}, no object")
        return resp, body

    def _ok(self, method: str, params: Params) -> tuple[Response, JSON]:
        resp, body = self._get(method, params)
        if body is None:
            raise _failure(method, resp)
        return resp, body

    def _resolve_did(self) -> str:
        if self._did is None:
            status = self.check_account()
            if status.state is AccountState.UNAVAILABLE:
                raise CaptureError(f"bluesky account {self._actor} unavailable: {status.reason}")
        assert self._did is not None
        return self._did

    def _confirm_not_found(self, uri: str, evidence: str, detail: str) -> ItemCheck:
        """A post not found is gone, unless its author's account is suspended or deactivated."""
        resp, body = self._get(GET_PROFILE, {"actor": uri.removeprefix("at://").split("/")[0]})
        error, message = ("", "") if body is not None else _xrpc_error(resp)
        if body is not None or (resp.status_code == 400 and "not found" in message.lower()):
            return ItemCheck(ItemStatus.NOT_FOUND, evidence, detail)
        return ItemCheck(ItemStatus.UNKNOWN, evidence, f"author unavailable: {error} {message}")


# -- helpers -------------------------------------------------------------------------


def _load(checkpoint: Checkpoint | None, did: str, version: int) -> tuple[Key | None, list[JSON]]:
    """The checkpoint's head and gaps; nothing (walk everything) if it is not ours."""
    if checkpoint is None or checkpoint.version != version or checkpoint.state.get("did") != did:
        return None, []

    def key(g: Mapping[str, Any], name: str) -> Key | None:
        uri, at = g.get(f"{name}_uri"), g.get(f"{name}_indexed_at")
        if uri is None and at is None:
            return None
        if not isinstance(uri, str) or not isinstance(at, str) or parse_time(at) is None:
            raise ValueError(name)
        return uri, at

    try:
        gaps = [
            {"cursor": g.get("cursor") or None, "after": key(g, "after"), "stop": key(g, "stop")}
            for g in checkpoint.state.get("gaps") or []
        ]
        return key(checkpoint.state, "newest"), gaps
    except (ValueError, AttributeError, TypeError):
        return None, []


def _entry(raw: Any) -> tuple[Key, JSON] | None:
    """A feed entry's (uri, sort time) key and the entry; None for a pinned-post entry."""
    post, record = _obj(_obj(raw).get("post")), _obj(_obj(raw).get("post")).get("record")
    if not isinstance(post.get("uri"), str) or not isinstance(record, dict):
        raise MalformedResponseError(f"{GET_AUTHOR_FEED}: a feed entry without post uri/record")
    if _reason(raw) == "app.bsky.feed.defs#reasonPin":
        return None  # only sent with includePins, which we never ask for
    if _reason(raw) == _REPOST:
        at, uri = _time(raw["reason"].get("indexedAt")), _repost_id(raw["reason"], post["uri"])
    else:
        times = [t for t in (_time(record.get("createdAt")), _time(post.get("indexedAt"))) if t]
        at, uri = (min(times) if times else None), post["uri"]
    if at is None:
        raise MalformedResponseError(f"{GET_AUTHOR_FEED}: entry {uri} has no time")
    return (uri, at.isoformat().replace("+00:00", "Z")), raw


def _older(key: Key, than: Key, *, or_same: bool = False) -> bool:
    """Whether feed entry ``key`` sorts below ``than`` (or is it, with ``or_same``)."""
    if or_same and key[0] == than[0]:
        return True
    a, b = parse_time(key[1]), parse_time(than[1])
    return a is not None and b is not None and a < b


def _hidden(body: JSON, thread: JSON, did: str) -> frozenset[str]:
    """Replies hidden by the root's threadgate, when the root is the account's own."""
    gate = body.get("threadgate")
    if not isinstance(gate, dict) and isinstance(thread.get("post"), dict):
        gate = thread["post"].get("threadgate")
    record = gate.get("record") if isinstance(gate, dict) else None
    if not isinstance(gate, dict) or not isinstance(record, dict):
        return frozenset()
    uris, owner = record.get("hiddenReplies"), str(gate.get("uri") or record.get("post"))
    if not isinstance(uris, list) or not owner.startswith(f"at://{did}/"):
        return frozenset()
    return frozenset(u for u in uris if isinstance(u, str))


def _repost_id(reason: JSON, subject: str) -> str:
    """The repost record's URI; older AppViews omit it, so one is made from the subject."""
    by = reason.get("by")
    return _str(reason.get("uri")) or f"{subject}#repost-by-{by.get('did') if by else None}"


def _reason(entry: JSON) -> str | None:
    reason = entry.get("reason")
    return _str(reason.get("$type")) if isinstance(reason, dict) else None


def _links(embed: Any, facets: Any) -> tuple[str, ...]:
    """Link facets, an external embed's URL, a quoted post's permalink (from the record)."""
    out: list[str | None] = []
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feat in features if isinstance(features, list) else []:
            if isinstance(feat, dict) and feat.get("$type") == "app.bsky.richtext.facet#link":
                out.append(_str(feat.get("uri")))
    while isinstance(embed, dict):
        kind, nested = embed.get("$type"), None
        if kind == "app.bsky.embed.external" and isinstance(embed.get("external"), dict):
            out.append(_str(embed["external"].get("uri")))
        elif kind == "app.bsky.embed.record" and (ref := _ref_uri(embed.get("record"))):
            out.append(_permalink(ref))
        elif kind == "app.bsky.embed.recordWithMedia":
            out.extend(_links(embed.get("record"), None))
            nested = embed.get("media")
        embed = nested
    return tuple(link for link in dict.fromkeys(out) if link)


def _media(embed: Any, view: Any) -> tuple[MediaRef, ...]:
    """Images and video: blob CID and alt text from the record, URLs from the view."""
    if isinstance(embed, dict) and embed.get("$type") == "app.bsky.embed.recordWithMedia":
        embed, view = embed.get("media"), view.get("media") if isinstance(view, dict) else None
    view = _obj(view)
    kind = embed.get("$type") if isinstance(embed, dict) else None
    if kind == "app.bsky.embed.video":
        blob = _obj(embed.get("video"))
        return (_ref(blob, _str(view.get("playlist")), "video", embed.get("alt")),)
    if kind != "app.bsky.embed.images" or not isinstance(embed.get("images"), list):
        return ()
    views = view.get("images") if isinstance(view.get("images"), list) else []
    out = []
    for i, img in enumerate(x for x in embed["images"] if isinstance(x, dict)):
        v = views[i] if i < len(views) and isinstance(views[i], dict) else {}
        blob = _obj(img.get("image"))
        out.append(_ref(blob, _str(v.get("fullsize")), "image", img.get("alt")))
    return tuple(out)


def _ref(blob: JSON, url: str | None, kind: str, alt: Any) -> MediaRef:
    """A blob (``{"ref": {"$link": cid}, "mimeType"}``, or legacy ``{"cid"}``) as a MediaRef."""
    link = blob.get("ref")
    cid = _str(link.get("$link")) if isinstance(link, dict) else _str(blob.get("cid"))
    mime = _str(blob.get("mimeType"))
    return MediaRef(media_id=cid, url=url, mime_type=mime, kind=kind, alt_text=_str(alt))


def _permalink(uri: str) -> str:
    """``at://<did>/app.bsky.feed.post/<rkey>`` → its bsky.app page (by DID: handles change)."""
    did, _, rkey = uri.removeprefix("at://").partition(_POST_PATH)
    return f"https://bsky.app/profile/{did}/post/{rkey}" if rkey else uri


def _obj(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _ref_uri(ref: Any) -> str | None:
    return _str(ref.get("uri")) if isinstance(ref, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _xrpc_error(resp: Response) -> tuple[str, str]:
    """The ``{"error", "message"}`` of an XRPC error answer ("" where absent)."""
    try:
        body = resp.json()
    except (MalformedResponseError, ValueError):
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("message") or "")


def _failure(method: str, resp: Response) -> CaptureError:
    """What a capture ends with when ``method`` did not answer 200."""
    error, message = _xrpc_error(resp)
    what = f"{method} answered HTTP {resp.status_code} {error} {message}".strip()
    if resp.status_code == 429:
        return RateLimitedError(what, retry_after=_retry_after(resp.headers))
    if resp.status_code >= 500:
        return PlatformUnavailableError(what)
    return CaptureError(what)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``Retry-After``, else until ``RateLimit-Reset`` (epoch seconds)."""
    for name, base in (("Retry-After", 0.0), ("RateLimit-Reset", time.time())):
        try:
            return max(0.0, float(headers.get(name) or "") - base)
        except ValueError:
            continue
    return None


def _int_option(account: AccountInfo, name: str, default: int, high: int) -> int:
    value = account.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise CaptureError(f"bluesky option {name} must be an integer 1-{high}, not {value!r}")
    return value
