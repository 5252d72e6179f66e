"""The connector contract: everything a platform plugin may see and must produce.

A connector knows one platform and nothing else. It is handed its account's settings, its
last checkpoint and a client (an :class:`HttpClient` for platform APIs, an
:class:`ExportSource` for a platform's data-export archive), and it yields normalized
:class:`Item` objects and, between pages, :class:`Checkpoint` objects. It never writes
files or touches the catalog: every byte it reads reached it through the client, which
archived it first, and everything it yields is written by the core.

Connectors are found through the ``archiver.connectors`` entry-point group (see
``archiver/plugins.py``); the project's own connectors register there the same way a
third-party package would::

    [project.entry-points."archiver.connectors"]
    mastodon = "connectors.mastodon:MastodonConnector"

The contract, in order of a capture run:

1. ``check_account()``: is the account reachable? An unreachable account ends the run as
   ``unavailable`` and nothing is ever marked deleted because of it.
2. ``capture(checkpoint, plan)``: yield items; yield a checkpoint after each page. The core
   commits everything yielded since the previous checkpoint, with the new checkpoint, in
   one transaction, so an interrupted run resumes from its last page. ``plan`` says which
   old threads to re-walk and whether this is a full walk.
3. ``check_item(item_id, kind)`` for each item the run expected but did not see: only the
   platform's documented item-level not-found answers :attr:`ItemStatus.NOT_FOUND`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

#: Version of the normalized item document written in ``conversion`` records.
ITEM_SCHEMA_VERSION = 1


class ItemKind(StrEnum):
    POST = "post"
    COMMENT = "comment"  # comments and replies at any depth; ``parent_id`` says to what
    MESSAGE = "message"  # direct or private messages where the API gives them
    MEDIA = "media"
    PROFILE = "profile"


class Moderation(StrEnum):
    """What the platform says about an item's visibility, where it exposes it."""

    VISIBLE = "visible"
    HIDDEN = "hidden"  # hidden by the account (e.g. a Bluesky thread-gate's hidden reply)
    REMOVED = "removed"  # removed by the platform or a moderator, still answerable
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media object an item carries: where to get it, and what it says about itself.

    ``url`` is fetched by the core through the archiving client (never by the connector);
    for an export archive, ``archive_path`` names the entry holding the bytes instead.
    """

    media_id: str | None
    url: str | None = None
    archive_path: str | None = None
    mime_type: str | None = None
    kind: str = "unknown"  # "image", "video", "audio", "gifv", "unknown"
    alt_text: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One normalized post, comment/reply, message, media object or profile.

    ``evidence`` is the opaque id the client gave the response (or export entry) the item
    was read from (:attr:`Response.evidence`); the core makes it the ``WARC-Refers-To`` of
    the item's record. ``raw`` is the platform's own object for the item, as received.
    """

    platform: str
    item_id: str
    kind: ItemKind
    evidence: str
    permalink: str | None = None
    parent_id: str | None = None  # the post or comment this one answers
    thread_id: str | None = None  # the root post of the thread
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    created_at: datetime | None = None
    edited_at: datetime | None = None
    text: str | None = None  # plain text
    html: str | None = None  # the platform's markup, where it has one
    language: str | None = None
    visibility: str | None = None  # "public", "unlisted", "private", "direct", ...
    moderation: Moderation = Moderation.VISIBLE
    links: tuple[str, ...] = ()
    media: tuple[MediaRef, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        """What counts as the item's content: a change here is a new version.

        Counters (likes, reposts, reply counts) and media URLs (CDNs sign and rotate them)
        are left out, so re-capturing an unchanged post does not make a new version.
        """
        return {
            "kind": self.kind.value,
            "item_id": self.item_id,
            "parent_id": self.parent_id,
            "thread_id": self.thread_id,
            "author_id": self.author_id,
            "author_handle": self.author_handle,
            "author_name": self.author_name,
            "created_at": _iso(self.created_at),
            "edited_at": _iso(self.edited_at),
            "text": self.text,
            "html": self.html,
            "language": self.language,
            "visibility": self.visibility,
            "moderation": self.moderation.value,
            "links": list(self.links),
            "media": [
                {
                    "media_id": m.media_id,
                    "kind": m.kind,
                    "mime_type": m.mime_type,
                    "alt_text": m.alt_text,
                }
                for m in self.media
            ],
        }

    def content_sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()

    def document(self, *, captured_at: datetime, account: str, version_no: int) -> dict[str, Any]:
        """The normalized JSON written as the item version's ``conversion`` record."""
        return {
            "version": ITEM_SCHEMA_VERSION,
            "platform": self.platform,
            "account": account,
            "permalink": self.permalink,
            "captured_at": _iso(captured_at),
            "version_no": version_no,
            "content_sha256": self.content_sha256(),
            **self.content(),
            "media": [asdict(m) for m in self.media],
            "raw": dict(self.raw),
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A connector's resume point, committed with the page it follows.

    ``version`` is the connector's own format number for ``state``: a connector reading a
    checkpoint of a version it does not know starts over rather than misread it.
    """

    version: int
    state: Mapping[str, Any]
    stream: str = "main"


@dataclass(frozen=True, slots=True)
class CapturePlan:
    """What the core asks of one run, beyond new items from the forward cursor."""

    #: Root posts whose threads (replies, edits) to walk again: posts younger than the
    #: account's ``rescan_days``, as the catalog knows them.
    rescan_threads: Sequence[str] = ()
    #: Walk the whole account, not only what is new since the checkpoint.
    full_walk: bool = False
    #: Most items a run may yield before stopping incomplete (``None``: no cap).
    max_items: int | None = None


class AccountState(StrEnum):
    REACHABLE = "reachable"
    UNAVAILABLE = "unavailable"  # suspended, deleted, private, blocked, moved: not "empty"


@dataclass(frozen=True, slots=True)
class AccountStatus:
    state: AccountState
    reason: str | None = None
    evidence: str | None = None
    profile: Item | None = None


class ItemStatus(StrEnum):
    EXISTS = "exists"
    NOT_FOUND = "not_found"  # only on the platform's documented item-level not-found
    UNKNOWN = "unknown"  # anything else: a 403, a 5xx, a malformed answer


@dataclass(frozen=True, slots=True)
class ItemCheck:
    status: ItemStatus
    evidence: str | None = None
    detail: str | None = None


# -- what connectors are handed ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """The account's settings a connector may see (secrets resolved lazily, by name)."""

    id: str
    platform: str
    handle: str | None
    platform_id: str | None
    api_base: str | None
    options: Mapping[str, str | int | bool]
    credentials: Mapping[str, Any]  # name -> object with .resolve() -> str

    def credential(self, name: str) -> str | None:
        """The secret ``name``, read now; None when the account has no such credential."""
        ref = self.credentials.get(name)
        return None if ref is None else str(ref.resolve())


class Response(Protocol):
    """An HTTP response, already archived when the connector sees it."""

    @property
    def status_code(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...  # case-insensitive
    @property
    def content(self) -> bytes: ...  # decoded per Content-Encoding
    @property
    def evidence(self) -> str: ...  # opaque id of the archived response
    @property
    def links(self) -> Mapping[str, str]: ...  # RFC 8288 Link header: rel -> URL

    def json(self) -> Any:
        """The body as JSON; raises ``MalformedResponseError`` when it is not."""
        ...


@runtime_checkable
class HttpClient(Protocol):
    """How a connector reaches its platform. Every exchange is archived before it returns.

    Transient failures (429, 5xx, dropped connections) are retried inside the client under
    the platform's rate-limit policy; when it gives up it raises ``RateLimitedError`` or
    ``PlatformUnavailableError``, which end the run incomplete. Other statuses (4xx) are
    returned for the connector to judge.
    """

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response: ...


class ExportSource(Protocol):
    """A platform export archive, opened and checked by the core (zip slip, links, bombs)."""

    def names(self) -> Sequence[str]:
        """Every regular-file entry, in archive order."""
        ...

    def read(self, name: str) -> tuple[bytes, str]:
        """The entry's bytes and the evidence id of its ``resource`` record."""
        ...


class Connector(Protocol):
    """A platform plugin. Construct with ``(account, client)``; see the module docstring."""

    platform: ClassVar[str]
    #: "api" connectors get an :class:`HttpClient`; "export" ones an :class:`ExportSource`.
    source: ClassVar[str]
    #: The checkpoint format this connector writes.
    checkpoint_version: ClassVar[int]
    #: Name of the rate-limit policy in ``archiver/ratelimit.py`` its platform needs.
    rate_limit: ClassVar[str]

    def check_account(self) -> AccountStatus: ...

    def capture(
        self, checkpoint: Checkpoint | None, plan: CapturePlan
    ) -> Iterator[Item | Checkpoint]: ...

    def check_item(self, item_id: str, kind: ItemKind) -> ItemCheck: ...


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the bytes content hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("connectors must give timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | None) -> datetime | None:
    """Parse a platform's ISO 8601 timestamp (``Z`` or offset) into an aware UTC datetime."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
