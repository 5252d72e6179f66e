"""Mastodon: an account's statuses with their threads and edits, its profile, its DMs.

Built to the public REST API as documented at docs.joinmastodon.org:

- ``GET /api/v1/accounts/lookup?acct=`` (3.4+) finds the account id; ``GET
  /api/v1/accounts/:id`` is the profile: 404 when it does not exist, 410 when suspended
  (2.4-3.3), later an Account with ``suspended: true``; ``moved`` when it moved away.
- ``GET /api/v1/accounts/:id/statuses`` pages newest first, ``limit`` at most 40. The
  ``Link`` header's ``rel="next"`` (``max_id``) goes back in time, ``rel="prev"``
  (``min_id``: the page *immediately* newer than the cursor, still newest first) forward.
  Replies and boosts by the account are included (no ``exclude_*``; option
  ``exclude_reblogs = true`` leaves boosts out).
- ``GET /api/v1/statuses/:id/context``: ancestors and descendants. Anonymous callers get
  at most 40 ancestors, 60 descendants and depth 20 (4.0+); a token ``read:statuses`` up
  to 4,096 each. Hitting a limit may hide replies: the run yields what it got and ends
  with :class:`CaptureError` (incomplete). 4.5+ may add ``Mastodon-Async-Refresh`` while
  it fetches remote replies; that is logged, the next rescan picks them up.
- ``GET /api/v1/statuses/:id/history`` (3.5+): every version of an edited status, kept in
  the item's ``raw["_history"]``. ``GET /api/v1/statuses/:id``: 404 ``{"error": "Record
  not found"}`` is the item-level not-found. ``GET /api/v1/conversations`` (token with
  ``read:statuses``; option ``conversations = true``) gives direct messages.

Checkpoint state (version 1): ``account_id``; ``newest_id``, the newest status captured
(the next run asks for what is newer); ``backfill_max_id``, set while a backwards walk
(first run, full walk) is unfinished: the next run resumes it below that id;
``dm_newest_id``, the newest direct message captured. Item ids are status ids; the
profile is ``account:<account id>``. A status by the account is a POST (replies and
boosts too), one by anyone else in its threads a COMMENT, a ``direct`` one a MESSAGE.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

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
    Response,
    parse_time,
)
from archiver.errors import (
    CaptureError,
    ConfigError,
    MalformedResponseError,
    PlatformUnavailableError,
    RateLimitedError,
)
from archiver.logging import get_logger
from archiver.redact import register_secret

log = get_logger(__name__)

PAGE = 40  # documented maximum ``limit`` for account statuses and conversations
ANONYMOUS_CONTEXT = (40, 60, 20)  # ancestors, descendants, depth shown without a token
AUTHORIZED_CONTEXT = (4096, 4096, 0)  # with a token; depth unlimited
_MEDIA_KINDS = frozenset({"image", "video", "gifv", "audio"})
_STATE_KEYS = ("newest_id", "backfill_max_id", "dm_newest_id")
Params = Mapping[str, str | int | bool]


class _CapReached(Exception):
    """``plan.max_items`` items were yielded."""


class MastodonConnector:
    """The Mastodon connector; see the module docstring for the API it relies on."""

    platform: ClassVar[str] = "mastodon"
    source: ClassVar[str] = "api"
    checkpoint_version: ClassVar[int] = 1
    rate_limit: ClassVar[str] = "mastodon"

    def __init__(self, account: AccountInfo, client: HttpClient) -> None:
        self.account = account
        self.client = client
        handle = (account.handle or "").strip().lstrip("@")
        user, _, domain = handle.partition("@")
        base = account.api_base or (f"https://{domain}" if domain else "")
        if not base or not (user or account.platform_id):
            raise ConfigError(
                f"account {account.id!r}: Mastodon needs a handle like user@instance, or "
                "`api_base` with a handle or `platform_id`"
            )
        self.base = base.rstrip("/")
        self._acct = user if not domain or domain == urlsplit(self.base).hostname else handle
        token = account.credential("access_token")
        if token:
            register_secret(token)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._account_id = account.platform_id
        self._seen: set[str] = set()
        self._walked: set[str] = set()
        self._capped: list[str] = []
        self._count = 0
        self._max: int | None = None

    # -- the contract -------------------------------------------------------------------

    def check_account(self) -> AccountStatus:
        unavailable = AccountState.UNAVAILABLE
        if self._account_id is None:
            resp = self._get("/api/v1/accounts/lookup", {"acct": self._acct})
            if resp.status_code in (404, 410):
                reason = f"no account {self._acct!r} on {self.base} (HTTP {resp.status_code})"
                return AccountStatus(unavailable, reason, resp.evidence)
            self._account_id = _str(_obj(self._ok(resp), resp), "id", resp)
        resp = self._get(f"/api/v1/accounts/{_q(self._account_id)}")
        if resp.status_code == 404:
            return AccountStatus(unavailable, "account not found (HTTP 404)", resp.evidence)
        if resp.status_code == 410:
            return AccountStatus(unavailable, "account suspended (HTTP 410)", resp.evidence)
        body = _obj(self._ok(resp), resp)
        if body.get("suspended") is True:
            return AccountStatus(unavailable, "account suspended", resp.evidence)
        moved = body.get("moved")
        if isinstance(moved, dict):
            return AccountStatus(
                unavailable, f"account moved to {moved.get('acct')}", resp.evidence
            )
        return AccountStatus(AccountState.REACHABLE, None, resp.evidence, self._profile(body, resp))

    def capture(
        self, checkpoint: Checkpoint | None, plan: CapturePlan
    ) -> Iterator[Item | Checkpoint]:
        account_id = self._resolve()
        state: dict[str, Any] = {"account_id": account_id, **dict.fromkeys(_STATE_KEYS)}
        if (
            checkpoint is not None
            and checkpoint.version == self.checkpoint_version
            and checkpoint.state.get("account_id") == account_id
        ):
            state.update(
                {k: v for k in _STATE_KEYS if isinstance(v := checkpoint.state.get(k), str)}
            )
        self._seen, self._walked, self._capped = set(), set(), []
        self._count, self._max = 0, plan.max_items
        try:
            yield from self._timeline(state, plan.full_walk)
            for thread in plan.rescan_threads:
                yield from self._rescan(thread, state)
            if self._headers and _flag(self.account.options.get("conversations")):
                yield from self._conversations(state, plan.full_walk)
        except _CapReached:
            yield Checkpoint(self.checkpoint_version, dict(state))
            raise CaptureError(
                f"stopped at the cap of {plan.max_items} items; the next run continues from here"
            ) from None
        if self._capped:
            shown = ", ".join(self._capped[:5]) + (" ..." if len(self._capped) > 5 else "")
            raise CaptureError(
                f"thread context capped for {len(self._capped)} status(es) ({shown}): Mastodon "
                "shows at most 40 ancestors, 60 replies and depth 20 without a token (4,096 with "
                "one), so replies may be missing; give the account an access_token"
            )

    def check_item(self, item_id: str, kind: ItemKind) -> ItemCheck:
        if kind is ItemKind.PROFILE:
            resp = self._get(f"/api/v1/accounts/{_q(item_id.removeprefix('account:'))}")
        else:
            resp = self._get(f"/api/v1/statuses/{_q(item_id)}")
        if resp.status_code == 200:
            try:
                body = resp.json()
            except (MalformedResponseError, ValueError):
                return ItemCheck(
                    ItemStatus.UNKNOWN, resp.evidence, "HTTP 200 with a body that is not JSON"
                )
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                return ItemCheck(ItemStatus.EXISTS, resp.evidence)
            return ItemCheck(ItemStatus.UNKNOWN, resp.evidence, "HTTP 200 without an id")
        error = _error_text(resp)
        if resp.status_code == 404 and error:
            return ItemCheck(ItemStatus.NOT_FOUND, resp.evidence, f"HTTP 404: {error}")
        detail = f"HTTP {resp.status_code}" + (f": {error}" if error else "")
        return ItemCheck(ItemStatus.UNKNOWN, resp.evidence, detail)

    # -- walking --------------------------------------------------------------------------

    def _timeline(self, state: dict[str, Any], full_walk: bool) -> Iterator[Item | Checkpoint]:
        params: dict[str, str | int | bool] = {"limit": PAGE}
        if _flag(self.account.options.get("exclude_reblogs")):
            params["exclude_reblogs"] = "true"
        newest, backfill = state["newest_id"], state["backfill_max_id"]
        if full_walk or newest is None:
            state["backfill_max_id"] = None  # a walk from the top replaces any pending one
            yield from self._pages(params, state, forward=False)
        else:
            yield from self._pages({**params, "min_id": newest}, state, forward=True)
            if backfill is not None:
                yield from self._pages({**params, "max_id": backfill}, state, forward=False)
        if state["backfill_max_id"] is not None:
            state["backfill_max_id"] = None
            yield Checkpoint(self.checkpoint_version, dict(state))

    def _pages(self, params: Params, state: dict[str, Any], *, forward: bool) -> Iterator[Any]:
        """Forward: ``min_id`` pages, oldest first, ``rel="prev"``; else back, ``rel="next"``."""
        url = f"/api/v1/accounts/{_q(state['account_id'])}/statuses"
        for resp, statuses in self._paged(url, params, "prev" if forward else "next"):
            for status in reversed(statuses) if forward else statuses:
                sid = _str(status, "id", resp)
                bound = state["newest_id"] if forward else state["backfill_max_id"]
                if bound is not None and not (
                    _newer(sid, bound) if forward else _newer(bound, sid)
                ):
                    raise MalformedResponseError(f"{_ep(resp)}: paging went backwards at {sid}")
                yield from self._emit(self._thread(status, resp))
                if forward or state["newest_id"] is None or _newer(sid, state["newest_id"]):
                    state["newest_id"] = sid
                if not forward:
                    state["backfill_max_id"] = sid
            yield Checkpoint(self.checkpoint_version, dict(state))

    def _rescan(self, thread: str, state: dict[str, Any]) -> Iterator[Item | Checkpoint]:
        if thread in self._walked:
            return
        resp = self._get(f"/api/v1/statuses/{_q(thread)}")
        if resp.status_code == 404:
            log.info("mastodon rescan: status not found", status=thread)
            return
        yield from self._emit(self._thread(_obj(self._ok(resp), resp), resp))
        yield Checkpoint(self.checkpoint_version, dict(state))

    def _conversations(self, state: dict[str, Any], full_walk: bool) -> Iterator[Any]:
        """Direct messages, newest conversation first, down to the last run's newest."""
        cursor = None if full_walk else state["dm_newest_id"]
        newest = state["dm_newest_id"]
        pages = self._paged("/api/v1/conversations", {"limit": PAGE}, "next", skip=(401, 403))
        for resp, conversations in pages:
            if resp.status_code != 200:
                log.warning("mastodon: token may not read conversations; skipped",
                            account=self.account.id, status=resp.status_code)  # fmt: skip
                return
            done = False
            for conv in conversations:
                if not conv.get("last_status"):
                    continue
                last = _obj(conv["last_status"], resp)
                lid = _str(last, "id", resp)
                if cursor is not None and not _newer(lid, cursor):
                    done = True
                    break
                yield from self._emit(self._thread(last, resp))
                newest = lid if newest is None or _newer(lid, newest) else newest
            yield Checkpoint(self.checkpoint_version, dict(state))
            if done:
                break
        state["dm_newest_id"] = newest
        yield Checkpoint(self.checkpoint_version, dict(state))

    def _paged(
        self, url: str, query: Params | None, rel: str, skip: tuple[int, ...] = ()
    ) -> Iterator[tuple[Response, list[dict[str, Any]]]]:
        """The pages of a list, following the ``Link`` header's ``rel`` until a page is
        empty or has no such link; a status in ``skip`` is handed over with no items."""
        while True:
            resp = self._get(url, query)
            if resp.status_code in skip:
                yield resp, []
                return
            page = _objects(self._ok(resp), resp)
            if not page:
                return
            yield resp, page
            link = resp.links.get(rel)
            if not link:
                return
            url, query = self._follow(link, resp), None

    def _thread(self, status: dict[str, Any], resp: Response) -> list[Item]:
        """The status's item and, for a status not a boost, its context: ancestors first."""
        sid = _str(status, "id", resp)
        if sid in self._walked:
            return []
        self._walked.add(sid)
        if isinstance(status.get("reblog"), dict):
            return [self._item(status, resp, sid)]
        context = self._context(sid)
        if context is None:
            return [self._item(status, resp, None if status.get("in_reply_to_id") else sid)]
        ancestors, descendants, cresp = context
        root = _str(ancestors[0], "id", cresp) if ancestors else sid
        items = [self._item(a, cresp, root) for a in ancestors if a.get("id") not in self._seen]
        items.append(self._item(status, resp, root))
        items += [self._item(d, cresp, root) for d in descendants if d.get("id") not in self._seen]
        if sid not in self._capped:
            self._walked.update(_str(d, "id", cresp) for d in descendants)
        return items

    def _context(
        self, sid: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Response] | None:
        resp = self._get(f"/api/v1/statuses/{_q(sid)}/context")
        if resp.status_code == 404:
            log.info("mastodon: context not found", status=sid)
            return None
        body = _obj(self._ok(resp), resp)
        ancestors = _objects(body.get("ancestors"), resp)
        descendants = _objects(body.get("descendants"), resp)
        max_anc, max_desc, max_depth = AUTHORIZED_CONTEXT if self._headers else ANONYMOUS_CONTEXT
        depth = _depth(sid, descendants)
        if len(ancestors) >= max_anc or len(descendants) >= max_desc or 0 < max_depth <= depth:
            self._capped.append(sid)
        if resp.headers.get("Mastodon-Async-Refresh"):
            log.info("mastodon: server still fetching replies", status=sid)
        return ancestors, descendants, resp

    def _emit(self, items: Sequence[Item]) -> Iterator[Item]:
        for item in items:
            if item.item_id in self._seen:
                continue
            if self._max is not None and self._count >= self._max:
                raise _CapReached
            self._seen.add(item.item_id)
            self._count += 1
            yield item

    # -- normalizing ----------------------------------------------------------------------

    def _item(self, status: dict[str, Any], resp: Response, thread_id: str | None) -> Item:
        sid = _str(status, "id", resp)
        author = _obj(status.get("account"), resp)
        author_id = _str(author, "id", resp)
        reblog = status.get("reblog")
        body = _obj(reblog, resp) if reblog is not None else status
        content = _str(body, "content", resp, empty=True)
        text, links = _html_text(content)
        spoiler = _opt(body, "spoiler_text", resp)
        if spoiler:
            text = f"CW: {spoiler}\n{text}"
        card = body.get("card")
        if isinstance(card, dict) and isinstance(card.get("url"), str) and card["url"] not in links:
            links.append(card["url"])
        visibility = _opt(status, "visibility", resp)
        if visibility == "direct":
            kind = ItemKind.MESSAGE
        else:
            kind = ItemKind.POST if author_id == self._account_id else ItemKind.COMMENT
        raw = dict(status)
        if body.get("edited_at") and sid not in self._seen:
            raw["_history"] = self._history(_str(body, "id", resp))
        return Item(
            platform=self.platform,
            item_id=sid,
            kind=kind,
            evidence=resp.evidence,
            permalink=_opt(status, "url", resp) or _opt(status, "uri", resp),
            parent_id=_opt(status, "in_reply_to_id", resp),
            thread_id=thread_id,
            author_id=author_id,
            author_handle=_opt(author, "acct", resp),
            author_name=_opt(author, "display_name", resp),
            created_at=_time(status, "created_at", resp, required=True),
            edited_at=_time(body, "edited_at", resp),
            text=text,
            html=content,
            language=_opt(body, "language", resp),
            visibility=visibility,
            links=tuple(links),
            media=tuple(
                _media(m, resp) for m in _objects(body.get("media_attachments") or [], resp)
            ),
            raw=raw,
        )

    def _history(self, sid: str) -> list[dict[str, Any]] | None:
        resp = self._get(f"/api/v1/statuses/{_q(sid)}/history")
        if resp.status_code == 404:
            return None
        return _objects(self._ok(resp), resp)

    def _profile(self, account: dict[str, Any], resp: Response) -> Item:
        account_id = _str(account, "id", resp)
        note = _opt(account, "note", resp) or ""
        text, links = _html_text(note)
        lines = [text]
        for f in _objects(account.get("fields") or [], resp):
            value, hrefs = _html_text(_opt(f, "value", resp) or "")
            lines.append(f"{_opt(f, 'name', resp) or ''}: {value}")
            links += [h for h in hrefs if h not in links]
        media = []
        for key in ("avatar", "header"):
            url = _opt(account, key, resp)
            if url:
                name = urlsplit(url).path.rsplit("/", 1)[-1]
                media.append(MediaRef(f"{key}:{name}", url, mime_type=_mime(url), kind="image"))
        return Item(
            platform=self.platform,
            item_id=f"account:{account_id}",
            kind=ItemKind.PROFILE,
            evidence=resp.evidence,
            permalink=_opt(account, "url", resp),
            author_id=account_id,
            author_handle=_opt(account, "acct", resp),
            author_name=_opt(account, "display_name", resp),
            created_at=_time(account, "created_at", resp),
            text="\n".join(lines).strip(),
            html=note,
            links=tuple(links),
            media=tuple(media),
            raw=dict(account),
        )

    # -- HTTP -----------------------------------------------------------------------------

    def _get(self, url: str, params: Params | None = None) -> Response:
        full = url if url.startswith(("http://", "https://")) else self.base + url
        return self.client.get(full, params=params, headers=self._headers or None)

    def _ok(self, resp: Response) -> Any:
        code = resp.status_code
        if code == 200:
            try:
                return resp.json()
            except (MalformedResponseError, ValueError):
                raise MalformedResponseError(
                    f"{_ep(resp)} answered a body that is not JSON"
                ) from None
        detail = f"{_ep(resp)} answered HTTP {code}" + (
            f": {e}" if (e := _error_text(resp)) else ""
        )
        if code == 429:
            raise RateLimitedError(detail, retry_after=_seconds(resp.headers.get("Retry-After")))
        if code >= 500:
            raise PlatformUnavailableError(detail)
        raise CaptureError(detail)

    def _follow(self, link: str, resp: Response) -> str:
        """A Link target, re-rooted on our own base so the token never goes elsewhere.

        Older servers' ``rel="prev"`` carries ``since_id`` (the newest page above it: a gap
        when more than a page is new); it becomes ``min_id`` (the page right above it)."""
        parts = urlsplit(link)
        if not parts.path.startswith("/api/"):
            raise MalformedResponseError(f"{_ep(resp)} sent a Link outside the API: {parts.path}")
        query = parse_qsl(parts.query)
        if not any(k == "min_id" for k, _ in query):
            query = [("min_id" if k == "since_id" else k, v) for k, v in query]
        return f"{self.base}{parts.path}" + (f"?{urlencode(query)}" if query else "")

    def _resolve(self) -> str:
        if self._account_id is None:
            resp = self._get("/api/v1/accounts/lookup", {"acct": self._acct})
            self._account_id = _str(_obj(self._ok(resp), resp), "id", resp)
        return self._account_id


# -- helpers --------------------------------------------------------------------------------


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a" and (href := dict(attrs).get("href")) and href not in self.hrefs:
            self.hrefs.append(href)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(markup: str) -> tuple[str, list[str]]:
    """Plain text (paragraphs and line breaks kept) and the link targets of Mastodon HTML."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts).strip(), parser.hrefs


def _media(m: dict[str, Any], resp: Response) -> MediaRef:
    url = _opt(m, "url", resp) or _opt(m, "remote_url", resp)
    kind = _opt(m, "type", resp)
    return MediaRef(
        media_id=_str(m, "id", resp),
        url=url,
        mime_type=_mime(url),
        kind=kind if kind in _MEDIA_KINDS else "unknown",
        alt_text=_opt(m, "description", resp),
    )


def _mime(url: str | None) -> str | None:
    return mimetypes.guess_type(urlsplit(url).path)[0] if url else None


def _depth(root: str, descendants: list[dict[str, Any]]) -> int:
    """How deep the reply tree under ``root`` goes, as far as the descendants show it."""
    parents = {d.get("id"): d.get("in_reply_to_id") for d in descendants}
    deepest = 0
    for node in parents:
        depth, cursor = 0, node
        while cursor in parents and cursor != root and depth <= len(parents):
            depth, cursor = depth + 1, parents[cursor]
        deepest = max(deepest, depth)
    return deepest


def _newer(a: str, b: str | None) -> bool:
    """Mastodon ids are numeric strings: longer is newer, then lexically higher."""
    return b is None or (len(a), a) > (len(b), b)


def _ep(resp: Response) -> str:
    return f"GET {urlsplit(resp.url).path}"


def _q(value: str) -> str:
    return quote(value, safe="")


def _flag(value: object) -> bool:
    return value is True or (
        isinstance(value, str) and value.strip().lower() in {"1", "true", "yes"}
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error_text(resp: Response) -> str | None:
    """Mastodon's ``{"error": "..."}`` message, if the body is one."""
    try:
        body = resp.json()
    except (MalformedResponseError, ValueError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error[:200] if isinstance(error, str) else None


def _obj(value: Any, resp: Response) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponseError(
            f"{_ep(resp)}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def _objects(value: Any, resp: Response) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise MalformedResponseError(
            f"{_ep(resp)}: expected a JSON array, got {type(value).__name__}"
        )
    return [_obj(v, resp) for v in value]


def _str(obj: Mapping[str, Any], key: str, resp: Response, *, empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not (value or empty):
        raise MalformedResponseError(f"{_ep(resp)}: missing or invalid {key!r}")
    return value


def _opt(obj: Mapping[str, Any], key: str, resp: Response) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedResponseError(f"{_ep(resp)}: {key!r} is not a string")
    return value


def _time(
    obj: Mapping[str, Any], key: str, resp: Response, *, required: bool = False
) -> datetime | None:
    value = _str(obj, key, resp) if required else _opt(obj, key, resp)
    try:
        return parse_time(value)
    except ValueError:
        raise MalformedResponseError(f"{_ep(resp)}: {key!r} is not a datetime") from None
