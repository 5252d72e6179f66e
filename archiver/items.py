"""Finding one item in the catalog and loading what is known about it.

An ITEM reference on the command line is one of (tried in this order):

1. **a catalog id**, all digits, as ``archiver search`` shows it (``1234``);
2. **ACCOUNT/PLATFORM_ITEM_ID**: a configured account id, a ``/``, and the platform's own id
   for the item. The reference is split at the *first* ``/`` only, because platform ids may
   contain ``/`` themselves: a Bluesky post is
   ``mke-bluesky/at://did:plc:abc/app.bsky.feed.post/3kq2``;
3. **a permalink** (``https://…``), as the platform shows the item (``items.permalink``);
4. **a bare platform item id** (an ``at://`` URI, a status URL of an export), looked up in
   every account; it must name one item only.

Digits are a catalog id first: a Mastodon status id (also digits) that is not a catalog id is
then tried as a platform id, but ``ACCOUNT/STATUS_ID`` is the unambiguous way to name it.
A reference that matches nothing, or more than one item, is refused with a message saying
what to give instead. Every lookup is an indexed query (primary keys, the unique
``(account_id, platform_item_id)`` index, ``parent_id``/``thread_id``/``item_id`` indexes),
except a permalink, which the catalog does not index (see :func:`resolve`).

The loaders are pure reads in reader sessions: they never wait for, nor block, a capture.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, Item, ItemMedia, ItemVersion, Media
from archiver.errors import ArchiverError
from archiver.store.base import Store

#: Most items :func:`load` lists in a thread (the rest are counted, not listed).
MAX_THREAD = 500
#: Largest catalog id (the ``items.id`` column is a 32-bit integer on PostgreSQL).
_MAX_ID = 2**31 - 1
_CATALOG_ID = re.compile(r"[0-9]{1,10}")
#: What each kind of version means, for the history a records officer reads.
CHANGES = {
    "new": "first captured",
    "edited": "captured again with changed content",
    "hidden": "the platform reported it hidden or removed (moderation)",
    "unhidden": "the platform shows it again after it was hidden",
    "reappeared": "the platform shows it again after it was recorded deleted",
    "deleted": "the platform answered item-level not-found: recorded deleted",
}
#: Version changes that are moderation or deletion events.
HISTORY_CHANGES = frozenset({"hidden", "unhidden", "reappeared", "deleted"})


@dataclass(frozen=True, slots=True)
class ItemSummary:
    """An item as the catalog has it now (its latest text and state)."""

    id: int
    account_id: str
    platform: str | None
    platform_item_id: str
    kind: str
    permalink: str | None
    author: str | None
    created_at: datetime | None
    state: str
    state_changed_at: datetime | None
    text: str | None
    versions: int
    parent_id: int | None
    platform_parent_id: str | None
    thread_id: str | None
    partition: str
    series: str
    first_captured_at: datetime
    last_seen_at: datetime
    # The assignment rule behind ``series``, and for a destroyed item's stub, when and by
    # which certificate of destruction.
    series_rule: str | None = None
    disposed_at: datetime | None = None
    certificate_id: str | None = None


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One captured version and where its record lies."""

    id: int
    version_no: int
    captured_at: datetime
    change: str
    content_sha256: str
    record_id: str
    file_id: str
    offset: int
    length: int
    text: str | None

    @property
    def has_content(self) -> bool:
        """Whether the record is the item's content (a deletion's is a ``metadata`` note)."""
        return self.change != "deleted"


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """One media object a version carries, and where its bytes lie (None when missing)."""

    version_no: int
    position: int
    status: str
    platform_media_id: str | None
    alt_text: str | None
    detail: str | None
    media_id: int | None
    sha256: str | None
    size: int | None
    mime_type: str | None
    source_url: str | None
    record_id: str | None
    file_id: str | None
    offset: int | None
    length: int | None


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """A moderation or deletion event, from the item's versions (and deletion notes)."""

    at: datetime
    change: str
    version_no: int
    what: str
    record_id: str
    evidence: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """An item of the thread, with its depth under the thread's root (0)."""

    item: ItemSummary
    depth: int


@dataclass(frozen=True, slots=True)
class ItemDetail:
    """Everything ``archiver show`` tells about one item."""

    item: ItemSummary
    parent: ItemSummary | None
    replies: list[ItemSummary]
    thread: list[ThreadNode]
    thread_truncated: int
    versions: list[VersionInfo]
    media: list[MediaInfo]
    history: list[HistoryEvent] = field(default_factory=list)


# -- resolving a reference ----------------------------------------------------------------


def resolve(catalog: Catalog, ref: str) -> int:
    """The catalog id of the item ``ref`` names (see the module docstring for the forms).

    Raises :class:`~archiver.errors.ArchiverError` when nothing, or more than one item,
    matches. A permalink is matched with an equality query on ``items.permalink``, which has
    no index in the catalog schema: on a very large catalog prefer the other forms.
    """
    text = ref.strip()
    if not text or any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise ArchiverError(f"{_shown(ref)} is not an item reference: {_FORMS}")
    with catalog.reader() as s:
        is_id = _CATALOG_ID.fullmatch(text) is not None and int(text) <= _MAX_ID
        if is_id and s.get(Item, int(text)) is not None:
            return int(text)
        account, sep, platform_id = text.partition("/")
        if sep and platform_id and s.get(Account, account) is not None:
            found = s.scalar(
                select(Item.id).where(
                    Item.account_id == account, Item.platform_item_id == platform_id
                )
            )
            if found is None:
                raise ArchiverError(
                    f"account {account} has no item with platform id {_shown(platform_id)}: "
                    f"{_FORMS}"
                )
            return int(found)
        if text.startswith(("http://", "https://")):
            rows = s.execute(
                select(Item.id, Item.account_id, Item.kind, Item.platform_item_id)
                .where(Item.permalink == text)
                .limit(10)
            ).all()
            if rows:
                return _one(text, rows)
        accounts = list(s.scalars(select(Account.id)))
        rows = s.execute(
            select(Item.id, Item.account_id, Item.kind, Item.platform_item_id).where(
                Item.account_id.in_(accounts), Item.platform_item_id == text
            )
        ).all()
    if not rows:
        raise ArchiverError(f"no item matches {_shown(ref)}: {_FORMS}")
    return _one(text, rows)


_FORMS = (
    "give the catalog id shown by `archiver search` (e.g. 1234), ACCOUNT/PLATFORM_ITEM_ID "
    "(split at the first '/'), or the item's permalink"
)


def _shown(value: str) -> str:
    """``value`` quoted for a message: control characters escaped, at most 120 characters."""
    shown = repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _one(ref: str, rows: Any) -> int:
    if len(rows) == 1:
        return int(rows[0][0])
    rows = sorted(rows, key=lambda r: int(r[0]))
    listed = ", ".join(f"{r[0]} ({r[1]} {r[2]} {r[3]})" for r in rows)
    raise ArchiverError(
        f"{_shown(ref)} names {len(rows)} items: {listed}; give one of these catalog ids"
    )


# -- loading ------------------------------------------------------------------------------


def summary(session: Session, item_id: int) -> ItemSummary:
    """The item ``item_id`` (``ArchiverError`` when the catalog has no such id)."""
    row = session.execute(
        select(Item, Account.platform)
        .outerjoin(Account, Account.id == Item.account_id)
        .where(Item.id == item_id)
    ).first()
    if row is None:
        raise ArchiverError(f"the catalog has no item {item_id}: {_FORMS}")
    return _summary(row[0], row[1])


def _summary(item: Item, platform: str | None) -> ItemSummary:
    return ItemSummary(
        id=item.id,
        account_id=item.account_id,
        platform=platform,
        platform_item_id=item.platform_item_id,
        kind=item.kind,
        permalink=item.permalink,
        author=item.author,
        created_at=item.created_at,
        state=item.state,
        state_changed_at=item.state_changed_at,
        text=item.text,
        versions=item.versions,
        parent_id=item.parent_id,
        platform_parent_id=item.platform_parent_id,
        thread_id=item.thread_id,
        partition=item.partition,
        series=item.series,
        first_captured_at=item.first_captured_at,
        last_seen_at=item.last_seen_at,
        series_rule=item.series_rule,
        disposed_at=item.disposed_at,
        certificate_id=item.certificate_id,
    )


def versions(session: Session, item_id: int) -> list[VersionInfo]:
    """Every version of the item, oldest first."""
    rows = session.scalars(
        select(ItemVersion).where(ItemVersion.item_id == item_id).order_by(ItemVersion.version_no)
    ).all()
    return [
        VersionInfo(
            id=v.id,
            version_no=v.version_no,
            captured_at=v.captured_at,
            change=v.change,
            content_sha256=v.content_sha256,
            record_id=v.warc_record_id,
            file_id=v.warc_file_id,
            offset=v.warc_offset,
            length=v.warc_length,
            text=v.text,
        )
        for v in rows
    ]


def media_of(session: Session, version: VersionInfo) -> list[MediaInfo]:
    """The media ``version`` carries, in order, with their stored bytes' pointers."""
    rows = session.execute(
        select(ItemMedia, Media)
        .outerjoin(Media, Media.id == ItemMedia.media_id)
        .where(ItemMedia.version_id == version.id)
        .order_by(ItemMedia.position)
    ).all()
    out = []
    for link, media in rows:
        out.append(
            MediaInfo(
                version_no=version.version_no,
                position=link.position,
                status=link.status,
                platform_media_id=link.platform_media_id,
                alt_text=link.alt_text,
                detail=link.detail,
                media_id=link.media_id,
                sha256=media.sha256 if media is not None else None,
                size=media.size if media is not None else None,
                mime_type=media.mime_type if media is not None else None,
                source_url=media.source_url if media is not None else None,
                record_id=media.warc_record_id if media is not None else None,
                file_id=media.warc_file_id if media is not None else None,
                offset=media.warc_offset if media is not None else None,
                length=media.warc_length if media is not None else None,
            )
        )
    return out


def load(catalog: Catalog, item_id: int, *, store: Store | None = None) -> ItemDetail:
    """The item with its thread, versions, media and moderation/deletion history.

    With ``store``, each deletion's ``metadata`` note is read (one ranged read each) for why
    and for the evidence it refers to; an unreadable note is reported in the event, not
    raised, so a damaged record never hides the rest.
    """
    with catalog.reader() as s:
        item = summary(s, item_id)
        parent = summary(s, item.parent_id) if item.parent_id is not None else None
        # Sorted here, not in SQL: an ORDER BY could lead the planner to walk the
        # created_at index instead of looking up the parent_id one.
        replies = sorted(
            (_summary(row, item.platform) for row in s.scalars(_replies(item.id))),
            key=_oldest_first,
        )
        thread, truncated = _thread(s, item)
        found = versions(s, item.id)
        media = [m for v in found if v.has_content for m in media_of(s, v)]
    history = [_event(v, catalog, store) for v in found if v.change in HISTORY_CHANGES]
    return ItemDetail(item, parent, replies, thread, truncated, found, media, history)


def _thread(s: Session, item: ItemSummary) -> tuple[list[ThreadNode], int]:
    """The items of ``item``'s thread, depth-first from the root, oldest replies first."""
    root = item.thread_id or item.platform_item_id
    # Two lookups on two indexes (thread_id; the unique account + platform id), the account
    # checked here: one query with an OR could make the planner walk the account's items.
    rows = [
        r
        for r in s.scalars(select(Item).where(Item.thread_id == root).limit(MAX_THREAD + 1))
        if r.account_id == item.account_id
    ]
    truncated = max(0, len(rows) - MAX_THREAD)
    members = [_summary(r, item.platform) for r in rows[:MAX_THREAD]]
    top = s.scalar(
        select(Item).where(Item.account_id == item.account_id, Item.platform_item_id == root)
    )
    for extra in (_summary(top, item.platform) if top is not None else None, item):
        if extra is not None and all(m.id != extra.id for m in members):
            members.append(extra)
    members.sort(key=_oldest_first)
    by_platform_id = {m.platform_item_id: m for m in members}
    children: dict[str | None, list[ItemSummary]] = {}
    for m in members:
        parent = m.platform_parent_id if m.platform_parent_id in by_platform_id else None
        if m.platform_item_id == root:
            parent = None
        children.setdefault(parent, []).append(m)
    nodes: list[ThreadNode] = []
    seen: set[int] = set()

    def walk(m: ItemSummary, depth: int) -> None:
        if m.id in seen:  # a cycle in what the platform said must not loop forever
            return
        seen.add(m.id)
        nodes.append(ThreadNode(m, depth))
        for child in children.get(m.platform_item_id, []):
            walk(child, depth + 1)

    for first in children.get(None, []):
        walk(first, 0)
    return nodes, truncated


def _replies(item_id: int) -> Any:
    return select(Item).where(Item.parent_id == item_id)


def _oldest_first(m: ItemSummary) -> tuple[float, int]:
    return (m.created_at.timestamp() if m.created_at is not None else float("inf"), m.id)


def _event(version: VersionInfo, catalog: Catalog, store: Store | None) -> HistoryEvent:
    what = CHANGES.get(version.change, version.change)
    event = HistoryEvent(
        version.captured_at, version.change, version.version_no, what, version.record_id
    )
    if version.change != "deleted" or store is None:
        return event
    # Imported here: only a deletion needs the store, and retrieve pulls in zlib and the store.
    from archiver.retrieve import read_record

    try:
        record = read_record(catalog, store, version.record_id)
        doc = json.loads(record.block)
    except ArchiverError as exc:
        return dataclasses.replace(event, note=f"the deletion note cannot be read: {exc}")
    except ValueError:
        return dataclasses.replace(event, note="the deletion note is not JSON")
    why = doc.get("why") if isinstance(doc, dict) else None
    detail = doc.get("detail") if isinstance(doc, dict) else None
    note = "; ".join(str(x) for x in (why, detail) if x)
    return dataclasses.replace(
        event, evidence=record.headers.get("WARC-Refers-To") or None, note=note or None
    )


def jsonable(value: Any) -> Any:
    """Dataclasses, lists and datetimes as plain JSON values (datetimes ISO 8601)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
