"""A fake Mastodon server: an in-memory instance served over HTTP by pytest-httpserver.

Built to the public API documentation (docs.joinmastodon.org, source in the
``mastodon/documentation`` repository) so connector and pipeline tests talk to something
that answers like a real instance, not like the connector expects. Usage::

    def test_x(httpserver):
        fake = FakeMastodon(httpserver)
        city = fake.add_account("city", display_name="City of Milwaukee")
        post = fake.post(city, "Road closures this weekend")
        fake.reply(fake.add_account("resident"), post, "Which roads?")
        # point a connector at fake.base_url (``api_base``), handle "city"

What it serves (GET only), with the documented shapes and errors:

- ``/api/v1/accounts/lookup?acct=`` and ``/api/v1/accounts/:id``: an Account; 404
  ``{"error": "Record not found"}`` for unknown or removed accounts; a suspended account
  answers the blanked Account with ``"suspended": true`` (Mastodon >= 3.3), or 410 when
  suspended with ``legacy_410=True`` (2.4-3.3); a moved account carries ``moved``.
- ``/api/v1/accounts/:id/statuses``: newest first; ``max_id``, ``since_id``, ``min_id``
  (the page immediately newer than it, still newest first), ``limit`` (default 20, max
  40), ``exclude_replies`` (keeps self-replies), ``exclude_reblogs``, ``only_media``;
  a ``Link`` header like Mastodon's: ``rel="next"`` (``max_id`` = oldest on the page, only
  when the page is full) and ``rel="prev"`` (``min_id`` = newest, when not empty). A
  suspended account's timeline is empty.
- ``/api/v1/statuses/:id``, ``/context`` (ancestors nearest-first capped then root-first;
  descendants depth-first; anonymous callers get at most 40 ancestors, 60 descendants and
  depth 20, token holders 4,096: see :attr:`FakeMastodon.anonymous_context_limits`),
  ``/history`` (StatusEdit list: every version, or the current one if never edited).
- ``/api/v1/conversations``: a token required (401 without); Link paging by
  ``last_status`` id.

Tokens (:meth:`FakeMastodon.issue_token`) carry OAuth scopes: status endpoints need
``read`` or ``read:statuses``, account endpoints ``read`` or ``read:accounts``, else 403
``{"error": "This action is outside the authorized scopes"}``; an unknown token is 401
``{"error": "The access token is invalid"}`` everywhere.

Visibility: anonymous callers see ``public`` and ``unlisted`` statuses; a token's account
also sees its own and those that mention it. Deleting a status cuts its subtree out of
contexts, as the real server's reply walk does.

Every response carries ``X-RateLimit-Limit: 300``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (ISO 8601 with microseconds, the next 5-minute boundary) as
Mastodon's rack-attack setup sends them. ``Remaining`` counts down from 299 and wraps
before 0, so a client that waits for the reset when the quota is used up never stalls a
test; exhaustion is what :meth:`FakeMastodon.rate_limit_next` is for.

Knobs for failure paths, each for the next ``n`` requests whose path matches the optional
``path`` regex: :meth:`FakeMastodon.rate_limit_next` (429 ``{"error": "Too many
requests"}``), :meth:`FakeMastodon.fail_next` (any status and body),
:meth:`FakeMastodon.malformed_next` (a 200 with a broken body). Every request is recorded
in :attr:`FakeMastodon.requests` (:meth:`FakeMastodon.requests_to` filters by path).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

__all__ = ["FakeAccount", "FakeMastodon", "FakeStatus", "SeenRequest", "iso"]

_FALSE = {"0", "f", "false", "off", "no", ""}
_STATUS_PAGE_PARAMS = ("exclude_reblogs", "exclude_replies", "limit", "only_media", "pinned")


def iso(moment: datetime) -> str:
    """Mastodon's datetime format: UTC with milliseconds, ``2026-11-01T12:00:00.000Z``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass
class FakeAccount:
    id: str
    username: str
    display_name: str
    note: str
    fields: list[tuple[str, str]]
    avatar: str
    header: str
    created_at: datetime
    suspended: bool = False
    legacy_410: bool = False
    removed: bool = False
    moved_to: str | None = None


@dataclass
class FakeStatus:
    id: str
    account_id: str
    created_at: datetime
    content: str
    visibility: str = "public"
    spoiler_text: str = ""
    sensitive: bool = False
    language: str | None = "en"
    in_reply_to_id: str | None = None
    reblog_of: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    card_url: str | None = None
    mentions: list[str] = field(default_factory=list)  # account ids
    edited_at: datetime | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)  # snapshots, oldest first
    deleted: bool = False


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class _Knob:
    remaining: int
    path: re.Pattern[str] | None
    kind: str
    status: int = 500
    body: bytes | None = None
    retry_after: float | None = None
    reset_in: float = 1.0
    how: str = "truncate"


class FakeMastodon:
    """An in-memory Mastodon instance on ``httpserver``; see the module docstring."""

    #: (ancestors, descendants, depth) shown to anonymous callers (Mastodon >= 4.0).
    anonymous_context_limits: tuple[int, int, int | None] = (40, 60, 20)
    #: The same for callers with a token.
    authorized_context_limits: tuple[int, int, int | None] = (4096, 4096, None)

    def __init__(
        self,
        httpserver: HTTPServer,
        *,
        start: datetime = datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        step: timedelta = timedelta(minutes=1),
    ) -> None:
        self.server = httpserver
        self.base_url = httpserver.url_for("/").rstrip("/")
        self.host = urlsplit(self.base_url).hostname or "localhost"
        self.clock = start
        self.step = step
        self.accounts: dict[str, FakeAccount] = {}
        self.statuses: dict[str, FakeStatus] = {}
        self.tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.requests: list[SeenRequest] = []
        self._knobs: list[_Knob] = []
        self._last_id = 0
        self._seq = 0
        self._served = 0
        httpserver.expect_request(re.compile(r"^/"), method="GET").respond_with_handler(
            self._handle
        )

    # -- building the model ------------------------------------------------------------

    def _tick(self, at: datetime | None) -> datetime:
        if at is None:
            self.clock += self.step
            return self.clock
        self.clock = max(self.clock, at)
        return at

    def _snowflake(self, at: datetime) -> str:
        self._seq = (self._seq + 1) % 65536
        value = max(int(at.timestamp() * 1000) << 16 | self._seq, self._last_id + 1)
        self._last_id = value
        return str(value)

    def add_account(
        self,
        username: str,
        *,
        display_name: str | None = None,
        note: str = "<p>Official account.</p>",
        fields: Iterable[tuple[str, str]] = (),
    ) -> FakeAccount:
        created = self._tick(None)
        account_id = self._snowflake(created)
        acct = FakeAccount(
            id=account_id,
            username=username,
            display_name=display_name if display_name is not None else username.title(),
            note=note,
            fields=list(fields),
            avatar=f"{self.base_url}/system/accounts/avatars/{account_id}/original/a{account_id[-6:]}.png",
            header=f"{self.base_url}/system/accounts/headers/{account_id}/original/h{account_id[-6:]}.jpg",
            created_at=created,
        )
        self.accounts[account_id] = acct
        return acct

    def issue_token(self, account: FakeAccount, *, scopes: Sequence[str] = ("read",)) -> str:
        """A bearer token acting as ``account`` with the given OAuth scopes."""
        token = f"tok-{account.username}-{len(self.tokens) + 1:04d}-secret"
        self.tokens[token] = (account.id, tuple(scopes))
        return token

    def post(
        self,
        account: FakeAccount,
        text: str | None = None,
        *,
        html_content: str | None = None,
        in_reply_to: FakeStatus | str | None = None,
        visibility: str = "public",
        spoiler_text: str = "",
        media: Iterable[Mapping[str, Any]] = (),
        card_url: str | None = None,
        language: str | None = "en",
        mentions: Iterable[FakeAccount] = (),
        at: datetime | None = None,
    ) -> FakeStatus:
        """A new status. ``text`` becomes ``<p>text</p>``; ``media`` items are dicts with
        ``type`` (image, video, gifv, audio) and optional ``description`` (alt text)."""
        created = self._tick(at)
        status_id = self._snowflake(created)
        parent = in_reply_to.id if isinstance(in_reply_to, FakeStatus) else in_reply_to
        status = FakeStatus(
            id=status_id,
            account_id=account.id,
            created_at=created,
            content=html_content if html_content is not None else _para(text or ""),
            visibility=visibility,
            spoiler_text=spoiler_text,
            sensitive=bool(spoiler_text),
            language=language,
            in_reply_to_id=parent,
            media=[self._attachment(m, status_id, i) for i, m in enumerate(media)],
            card_url=card_url,
            mentions=[m.id for m in mentions],
        )
        self.statuses[status_id] = status
        return status

    def reply(self, account: FakeAccount, to: FakeStatus, text: str, **kw: Any) -> FakeStatus:
        return self.post(account, text, in_reply_to=to, **kw)

    def boost(self, account: FakeAccount, status: FakeStatus) -> FakeStatus:
        created = self._tick(None)
        wrapper = FakeStatus(
            id=self._snowflake(created),
            account_id=account.id,
            created_at=created,
            content="",
            reblog_of=status.id,
            language=None,
        )
        self.statuses[wrapper.id] = wrapper
        return wrapper

    def direct(
        self,
        sender: FakeAccount,
        to: Iterable[FakeAccount],
        text: str,
        *,
        in_reply_to: FakeStatus | None = None,
    ) -> FakeStatus:
        """A direct message (``visibility: direct``) mentioning ``to``."""
        to = list(to)
        body = " ".join(f"@{a.username}" for a in to) + " " + text
        return self.post(sender, body, visibility="direct", mentions=to, in_reply_to=in_reply_to)

    def edit(
        self,
        status: FakeStatus,
        text: str | None = None,
        *,
        html_content: str | None = None,
        spoiler_text: str | None = None,
        media_descriptions: Sequence[str | None] | None = None,
        at: datetime | None = None,
    ) -> FakeStatus:
        """Edit a status: the first edit also snapshots the original, as Mastodon does."""
        if not status.edits:
            status.edits.append(self._snapshot(status, status.created_at))
        if text is not None or html_content is not None:
            status.content = html_content if html_content is not None else _para(text or "")
        if spoiler_text is not None:
            status.spoiler_text = spoiler_text
            status.sensitive = bool(spoiler_text)
        if media_descriptions is not None:
            for media, description in zip(status.media, media_descriptions, strict=False):
                media["description"] = description
        status.edited_at = self._tick(at)
        status.edits.append(self._snapshot(status, status.edited_at))
        return status

    def delete(self, status: FakeStatus) -> None:
        status.deleted = True

    def suspend(self, account: FakeAccount, *, legacy_410: bool = False) -> None:
        account.suspended = True
        account.legacy_410 = legacy_410

    def remove_account(self, account: FakeAccount) -> None:
        """The account is gone: 404 everywhere afterwards."""
        account.removed = True

    def move(self, account: FakeAccount, to: FakeAccount) -> None:
        account.moved_to = to.id

    # -- knobs ---------------------------------------------------------------------------

    def rate_limit_next(
        self,
        n: int = 1,
        *,
        retry_after: float | None = None,
        reset_in: float | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests (matching ``path``) with 429 as rack-attack does:
        ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` ``reset_in`` seconds ahead
        (default ``retry_after``, else 1 s: the real server's reset is the end of its
        5-minute window, too long for tests); ``Retry-After`` only when ``retry_after`` is
        given (Mastodon does not send one; proxies may)."""
        reset = (
            reset_in if reset_in is not None else retry_after if retry_after is not None else 1.0
        )
        self._knobs.append(
            _Knob(n, _rx(path), "ratelimit", status=429, retry_after=retry_after, reset_in=reset)
        )

    def fail_next(
        self, n: int = 1, *, status: int = 500, path: str | None = None, body: Any = None
    ) -> None:
        """Answer the next ``n`` requests (matching ``path``) with ``status`` and ``body``
        (bytes as they are, anything else as JSON; default ``{"error": <reason phrase>}``)."""
        if body is None:
            body = {"error": HTTPStatus(status).phrase}
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self._knobs.append(_Knob(n, _rx(path), "fail", status=status, body=body))

    def malformed_next(self, n: int = 1, *, path: str | None = None, how: str = "truncate") -> None:
        """A 200 whose body is broken: ``truncate`` (half the JSON), ``not_json`` (an HTML
        page) or ``drop_id`` (valid JSON, every object's ``id`` removed)."""
        if how not in {"truncate", "not_json", "drop_id"}:
            raise ValueError(how)
        self._knobs.append(_Knob(n, _rx(path), "malformed", how=how))

    def requests_to(self, pattern: str) -> list[SeenRequest]:
        """Recorded requests whose path matches the regex ``pattern``."""
        rx = re.compile(pattern)
        return [r for r in self.requests if rx.search(r.path)]

    # -- serving ------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        self._served += 1
        auth = request.headers.get("Authorization")
        self.requests.append(SeenRequest(request.method, request.path, dict(request.args), auth))
        knob = self._take_knob(request.path)
        if knob is not None and knob.kind == "ratelimit":
            return self._rate_limited(knob)
        if knob is not None and knob.kind == "fail":
            return self._respond(knob.status, knob.body or b"{}")
        viewer: tuple[str, tuple[str, ...]] | None = None
        if auth is not None:
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if token not in self.tokens:
                return self._error(401, "The access token is invalid")
            viewer = self.tokens[token]
        status, body, links = self._route(request, viewer)
        raw = json.dumps(body).encode()
        if knob is not None and status == 200:
            raw = _mangle(body, raw, knob.how)
        return self._respond(status, raw, links)

    def _take_knob(self, path: str) -> _Knob | None:
        for knob in self._knobs:
            if knob.remaining > 0 and (knob.path is None or knob.path.search(path)):
                knob.remaining -= 1
                return knob
        return None

    def _rate_headers(self, remaining: int, reset: datetime | None = None) -> dict[str, str]:
        now = datetime.now(UTC)
        if reset is None:
            period = 300
            reset = now + timedelta(seconds=period - int(now.timestamp()) % period)
        return {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def _respond(self, status: int, raw: bytes, links: str | None = None) -> Response:
        headers = self._rate_headers(299 - (self._served - 1) % 299)  # never 0 on its own
        if links:
            headers["Link"] = links
        return Response(
            raw, status=status, headers=headers, content_type="application/json; charset=utf-8"
        )

    def _rate_limited(self, knob: _Knob) -> Response:
        headers = self._rate_headers(0, datetime.now(UTC) + timedelta(seconds=knob.reset_in))
        if knob.retry_after is not None:
            headers["Retry-After"] = str(int(knob.retry_after))
        body = json.dumps({"error": "Too many requests"}).encode()
        return Response(body, status=429, headers=headers, content_type="application/json")

    def _error(self, status: int, message: str) -> Response:
        return self._respond(status, json.dumps({"error": message}).encode())

    def _route(
        self, request: Request, viewer: tuple[str, tuple[str, ...]] | None
    ) -> tuple[int, Any, str | None]:
        path, args = request.path, request.args
        viewer_id = viewer[0] if viewer else None
        not_found = (404, {"error": "Record not found"}, None)
        needed = "read:statuses" if re.search("statuses|conversations", path) else "read:accounts"
        if viewer is not None and not {"read", needed} & set(viewer[1]):
            return 403, {"error": "This action is outside the authorized scopes"}, None
        if path == "/api/v1/accounts/lookup":
            acct = args.get("acct", "")
            user, _, domain = acct.lstrip("@").partition("@")
            found = next((a for a in self.accounts.values() if a.username == user), None)
            if found is None or found.removed or (domain and domain != self.host):
                return not_found
            return self._account_response(found)
        if m := re.fullmatch(r"/api/v1/accounts/([^/]+)", path):
            found = self.accounts.get(m[1])
            return not_found if found is None or found.removed else self._account_response(found)
        if m := re.fullmatch(r"/api/v1/accounts/([^/]+)/statuses", path):
            found = self.accounts.get(m[1])
            if found is None or found.removed:
                return not_found
            if found.suspended and found.legacy_410:
                return 410, {"error": "Gone"}, None
            return self._timeline(request, found, viewer_id)
        if m := re.fullmatch(r"/api/v1/statuses/([^/]+)(/context|/history)?", path):
            status = self.statuses.get(m[1])
            if status is None or not self._visible(status, viewer_id):
                return not_found
            if m[2] == "/context":
                return 200, self._context(status, viewer_id), None
            if m[2] == "/history":
                snaps = status.edits or [self._snapshot(status, status.created_at)]
                return 200, snaps, None
            return 200, self._status_json(status, viewer_id), None
        if path == "/api/v1/conversations":
            if viewer is None:
                return 401, {"error": "The access token is invalid"}, None
            return self._conversations(request, viewer[0])
        return 404, {"error": "Not Found"}, None

    # -- views ---------------------------------------------------------------------------

    def _visible(self, status: FakeStatus, viewer_id: str | None) -> bool:
        author = self.accounts[status.account_id]
        if status.deleted or author.removed or author.suspended:
            return False
        if status.reblog_of is not None:
            target = self.statuses.get(status.reblog_of)
            if target is None or not self._visible(target, viewer_id):
                return False
        if status.visibility in ("public", "unlisted"):
            return True
        return viewer_id is not None and (
            viewer_id == status.account_id or viewer_id in status.mentions
        )

    def _timeline(
        self, request: Request, account: FakeAccount, viewer_id: str | None
    ) -> tuple[int, Any, str | None]:
        args = request.args
        limit = _limit(args.get("limit"), 20, 40)
        rows = [
            s
            for s in self.statuses.values()
            if s.account_id == account.id and self._visible(s, viewer_id)
        ]
        if account.suspended:
            rows = []
        if _truthy(args.get("exclude_replies")):
            rows = [
                s for s in rows if s.in_reply_to_id is None or self._parent_author(s) == account.id
            ]
        if _truthy(args.get("exclude_reblogs")):
            rows = [s for s in rows if s.reblog_of is None]
        if _truthy(args.get("only_media")):
            rows = [s for s in rows if s.media]
        page = _paginate(rows, args, limit, key=lambda s: int(s.id))
        kept = {k: args[k] for k in _STATUS_PAGE_PARAMS if k in args}
        url = f"{self.base_url}/api/v1/accounts/{account.id}/statuses"
        links = _link_header(url, kept, [s.id for s in page], full=len(page) == limit)
        return 200, [self._status_json(s, viewer_id) for s in page], links

    def _parent_author(self, status: FakeStatus) -> str | None:
        parent = self.statuses.get(status.in_reply_to_id or "")
        return parent.account_id if parent else None

    def _context(self, status: FakeStatus, viewer_id: str | None) -> dict[str, Any]:
        max_anc, max_desc, max_depth = (
            self.authorized_context_limits if viewer_id else self.anonymous_context_limits
        )
        ancestors: list[FakeStatus] = []
        cursor = self.statuses.get(status.in_reply_to_id or "")
        while cursor is not None and not cursor.deleted and len(ancestors) < max_anc:
            if self._visible(cursor, viewer_id):
                ancestors.append(cursor)
            cursor = self.statuses.get(cursor.in_reply_to_id or "")
        children: dict[str, list[FakeStatus]] = {}
        for s in sorted(self.statuses.values(), key=lambda s: int(s.id)):
            if s.in_reply_to_id and not s.deleted:
                children.setdefault(s.in_reply_to_id, []).append(s)
        descendants: list[FakeStatus] = []

        def walk(node: str, depth: int) -> None:
            for child in children.get(node, []):
                if len(descendants) >= max_desc or (max_depth is not None and depth > max_depth):
                    return
                if self._visible(child, viewer_id):
                    descendants.append(child)
                walk(child.id, depth + 1)

        walk(status.id, 1)
        return {
            "ancestors": [self._status_json(s, viewer_id) for s in reversed(ancestors)],
            "descendants": [self._status_json(s, viewer_id) for s in descendants],
        }

    def _conversations(self, request: Request, viewer_id: str) -> tuple[int, Any, str | None]:
        threads: dict[str, list[FakeStatus]] = {}
        for s in self.statuses.values():
            if s.visibility == "direct" and self._visible(s, viewer_id):
                threads.setdefault(self._root(s).id, []).append(s)
        convs = []
        for root_id, members in threads.items():
            last = max(members, key=lambda s: int(s.id))
            people = {s.account_id for s in members} | {m for s in members for m in s.mentions}
            convs.append((root_id, last, sorted(people - {viewer_id})))
        limit = _limit(request.args.get("limit"), 20, 40)
        page = _paginate(convs, request.args, limit, key=lambda c: int(c[1].id))
        kept = {"limit": request.args["limit"]} if "limit" in request.args else {}
        links = _link_header(
            f"{self.base_url}/api/v1/conversations",
            kept,
            [c[1].id for c in page],
            full=len(page) == limit,
        )
        body = [
            {
                "id": root_id,
                "unread": False,
                "accounts": [self._account_json(self.accounts[a]) for a in people],
                "last_status": self._status_json(last, viewer_id),
            }
            for root_id, last, people in page
        ]
        return 200, body, links

    def _root(self, status: FakeStatus) -> FakeStatus:
        while status.in_reply_to_id and status.in_reply_to_id in self.statuses:
            status = self.statuses[status.in_reply_to_id]
        return status

    # -- JSON shapes ---------------------------------------------------------------------

    def _account_response(self, account: FakeAccount) -> tuple[int, Any, str | None]:
        if account.suspended and account.legacy_410:
            return 410, {"error": "Gone"}, None
        return 200, self._account_json(account), None

    def _account_json(self, a: FakeAccount) -> dict[str, Any]:
        day = a.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        statuses = [s for s in self.statuses.values() if s.account_id == a.id and not s.deleted]
        last = max((s.created_at for s in statuses), default=None)
        body: dict[str, Any] = {
            "id": a.id,
            "username": a.username,
            "acct": a.username,
            "display_name": a.display_name,
            "locked": False,
            "bot": False,
            "discoverable": True,
            "group": False,
            "created_at": iso(day),
            "note": a.note,
            "url": f"{self.base_url}/@{a.username}",
            "uri": f"{self.base_url}/users/{a.username}",
            "avatar": a.avatar,
            "avatar_static": a.avatar,
            "header": a.header,
            "header_static": a.header,
            "followers_count": 1200,
            "following_count": 12,
            "statuses_count": len(statuses),
            "last_status_at": last.date().isoformat() if last else None,
            "emojis": [],
            "fields": [{"name": n, "value": v, "verified_at": None} for n, v in a.fields],
        }
        if a.suspended:
            missing = f"{self.base_url}/avatars/original/missing.png"
            body.update(
                display_name="",
                note="",
                fields=[],
                avatar=missing,
                avatar_static=missing,
                header=f"{self.base_url}/headers/original/missing.png",
                suspended=True,
                followers_count=0,
                following_count=0,
                statuses_count=0,
                last_status_at=None,
            )
            body["header_static"] = body["header"]
        if a.moved_to is not None:
            body["moved"] = self._account_json(self.accounts[a.moved_to])
        return body

    def _attachment(self, spec: Mapping[str, Any], status_id: str, index: int) -> dict[str, Any]:
        kind = str(spec.get("type", "image"))
        ext = {"image": "png", "video": "mp4", "gifv": "mp4", "audio": "mp3"}.get(kind, "bin")
        media_id = f"{status_id[-8:]}{index}"
        path = f"/system/media_attachments/files/{media_id}"
        return {
            "id": media_id,
            "type": kind,
            "url": f"{self.base_url}{path}/original/{media_id}.{ext}",
            "preview_url": f"{self.base_url}{path}/small/{media_id}.png",
            "remote_url": None,
            "preview_remote_url": None,
            "meta": {},
            "description": spec.get("description"),
            "blurhash": None,
        }

    def _snapshot(self, status: FakeStatus, at: datetime) -> dict[str, Any]:
        return {
            "content": status.content,
            "spoiler_text": status.spoiler_text,
            "sensitive": status.sensitive,
            "created_at": iso(at),
            "account": self._account_json(self.accounts[status.account_id]),
            "media_attachments": [dict(m) for m in status.media],
            "emojis": [],
        }

    def _status_json(self, s: FakeStatus, viewer_id: str | None) -> dict[str, Any]:
        author = self.accounts[s.account_id]
        uri = f"{self.base_url}/users/{author.username}/statuses/{s.id}"
        url: str | None = f"{self.base_url}/@{author.username}/{s.id}"
        reblog = None
        if s.reblog_of is not None:
            uri = url = f"{uri}/activity"
            reblog = self._status_json(self.statuses[s.reblog_of], viewer_id)
        replies = [r for r in self.statuses.values() if r.in_reply_to_id == s.id and not r.deleted]
        body: dict[str, Any] = {
            "id": s.id,
            "created_at": iso(s.created_at),
            "in_reply_to_id": s.in_reply_to_id,
            "in_reply_to_account_id": self._parent_author(s),
            "sensitive": s.sensitive,
            "spoiler_text": s.spoiler_text,
            "visibility": s.visibility,
            "language": s.language,
            "uri": uri,
            "url": url,
            "replies_count": len(replies),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": iso(s.edited_at) if s.edited_at else None,
            "content": s.content,
            "reblog": reblog,
            "application": {"name": "Web", "website": None},
            "account": self._account_json(author),
            "media_attachments": [dict(m) for m in s.media],
            "mentions": [
                {
                    "id": a,
                    "username": self.accounts[a].username,
                    "acct": self.accounts[a].username,
                    "url": f"{self.base_url}/@{self.accounts[a].username}",
                }
                for a in s.mentions
            ],
            "tags": [],
            "emojis": [],
            "card": _card(s.card_url),
            "poll": None,
        }
        if viewer_id is not None:
            body.update(favourited=False, reblogged=False, muted=False, bookmarked=False)
            if viewer_id == s.account_id:
                body["pinned"] = False
        return body


# -- helpers ------------------------------------------------------------------------------


def _para(text: str) -> str:
    return f"<p>{html.escape(text, quote=False)}</p>"


def _rx(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE


def _limit(value: str | None, default: int, maximum: int) -> int:
    try:
        n = int(value) if value else default
    except ValueError:
        n = default
    return max(1, min(n, maximum))


def _paginate(rows: list[Any], args: Mapping[str, str], limit: int, key: Any) -> list[Any]:
    """Mastodon's ``paginate_by_id``: with ``min_id`` the oldest page above it, else the
    newest page under ``max_id`` / above ``since_id``; always returned newest first."""
    max_id, since_id, min_id = (_int(args.get(k)) for k in ("max_id", "since_id", "min_id"))
    rows = [r for r in rows if max_id is None or key(r) < max_id]
    rows = [r for r in rows if since_id is None or key(r) > since_id]
    if min_id is not None:
        above = sorted((r for r in rows if key(r) > min_id), key=key)[:limit]
        return list(reversed(above))
    return sorted(rows, key=key, reverse=True)[:limit]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _link_header(
    url: str, kept: Mapping[str, str], ids: Sequence[str], *, full: bool
) -> str | None:
    links = []
    if ids and full:
        links.append(
            f'<{url}?{urlencode(sorted({**kept, "max_id": ids[-1]}.items()))}>; rel="next"'
        )
    if ids:
        links.append(f'<{url}?{urlencode(sorted({**kept, "min_id": ids[0]}.items()))}>; rel="prev"')
    return ", ".join(links) or None


def _card(url: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    return {
        "url": url,
        "title": "Linked page",
        "description": "",
        "type": "link",
        "author_name": "",
        "author_url": "",
        "provider_name": "",
        "provider_url": "",
        "html": "",
        "width": 0,
        "height": 0,
        "image": None,
        "embed_url": "",
        "blurhash": None,
    }


def _mangle(body: Any, raw: bytes, how: str) -> bytes:
    if how == "truncate":
        return raw[: max(1, len(raw) // 2)]
    if how == "not_json":
        return b"<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(body)).encode()
