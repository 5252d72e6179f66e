"""Importing a Mastodon account archive ("Import and export → Request your archive").

What the archive holds (Mastodon's ``app/services/backup_service.rb``; a zip since Mastodon
4.2, a ``.tar.gz`` before, which the core does not accept):

- ``outbox.json``: an ActivityPub ``OrderedCollection`` of the account's statuses, oldest
  first, in ``orderedItems``. An original status is a ``Create`` activity whose ``object``
  is a ``Note`` (``Question`` for a poll): ``id`` (``https://host/users/NAME/statuses/ID``),
  ``url``, ``published``, ``updated`` (if edited), ``content`` (HTML), ``contentMap``
  (language → HTML), ``summary`` (the content warning), ``sensitive``, ``inReplyTo``,
  ``to``/``cc`` (the audience, from which the visibility follows), ``tag`` (mentions,
  hashtags, emoji) and ``attachment``: ``Document`` objects with ``mediaType``, ``name``
  (the alt text) and ``url``, which the export rewrote to the *path* of the media file
  (``media_attachments/files/…/original/….png``, or with a leading ``/`` when the server
  kept media in object storage), plus a ``Link`` for a preview card. A boost is an
  ``Announce`` whose ``object`` is the boosted status's URI.
- ``actor.json``: the profile (``Person``), with ``icon``/``image`` rewritten to
  ``avatar.EXT``/``header.EXT``, which are entries of the archive too.
- ``likes.json``, ``bookmarks.json``: collections of *other* people's status URIs; not
  items of this account, so not imported as items.
- ``media_attachments/files/…``: the media, as stored on the server.

Every status in the outbox is the account's own, so each is a ``post`` (a reply has the
status it answers as ``parent_id``: the status id when that status is in the archive, its
URI otherwise) except direct-visibility statuses ("private mentions"), which are
``message`` items; a boost is a ``post`` whose one link is the boosted status. Item ids are
the Mastodon status ids (from the status URI), as the ``mastodon`` API connector has them;
``thread_id`` is the thread's root status (a root's own id), None when the root is not in
the archive; a content warning leads the text as ``CW: <warning>``. The profile (item id:
the actor URI) comes with ``check_account``, with the avatar and header as media.

An archive is a snapshot: ``check_item`` cannot tell whether a status still exists, so it
always answers ``unknown``. Checkpoints (version 1) hold ``archive_sha256`` (the
archive's SHA-256), ``position`` (the next index in ``orderedItems``) and ``entries`` (how
many it has); a checkpoint of another archive (a newer export) starts over, and a finished
walk of the same archive ends the next run at once, without reading ``outbox.json`` again
(a full walk reads it all again).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from archiver.connector import (
    AccountInfo,
    AccountState,
    AccountStatus,
    CapturePlan,
    Checkpoint,
    ExportSource,
    Item,
    ItemCheck,
    ItemKind,
    ItemStatus,
    MediaRef,
    parse_time,
)
from archiver.errors import CaptureError, MalformedResponseError

__all__ = ["CHECKPOINT_EVERY", "MastodonExportConnector"]

#: Outbox entries between two checkpoints.
CHECKPOINT_EVERY = 200

OUTBOX = "outbox.json"
ACTOR = "actor.json"
_PUBLIC = frozenset({"https://www.w3.org/ns/activitystreams#Public", "as:Public", "Public"})
_NOTE_TYPES = frozenset({"Note", "Question", "Article", "Page"})
_STATUS_ID = re.compile(r"/statuses/([0-9]+)(?:/activity)?/?$")
_MEDIA_ID = re.compile(r"media_attachments/files/((?:[0-9]+/)+)[a-z_]+/")
_MEDIA_DIR = "media_attachments/"


class MastodonExportConnector:
    """Reads a Mastodon account archive handed over as an ``ExportSource``."""

    platform: ClassVar[str] = "mastodon_export"
    source: ClassVar[str] = "export"
    checkpoint_version: ClassVar[int] = 1
    rate_limit: ClassVar[str] = "default"

    def __init__(self, account: AccountInfo, client: ExportSource) -> None:
        self.account = account
        self.client = client
        self._names: frozenset[str] | None = None
        self._media_index: dict[str, str] | None = None
        self._actor: tuple[dict[str, Any], str] | None = None

    # -- the connector contract --------------------------------------------------------------

    def check_account(self) -> AccountStatus:
        """Reachable with the profile from ``actor.json``; unavailable if there is none.

        An archive of another account than the configured handle is also unavailable: its
        statuses must not be filed under this account.
        """
        if ACTOR not in self._entry_names():
            return AccountStatus(AccountState.UNAVAILABLE, reason="archive has no actor.json")
        actor, evidence = self._load_actor()
        handle = _handle_of(actor)
        wanted = (self.account.handle or "").strip().lstrip("@").lower()
        if wanted and wanted != handle.lower() and wanted != handle.split("@")[0].lower():
            return AccountStatus(
                AccountState.UNAVAILABLE,
                reason=f"archive is of @{handle}, not of the configured account @{wanted}",
                evidence=evidence,
            )
        return AccountStatus(
            AccountState.REACHABLE, evidence=evidence, profile=self._profile(actor, evidence)
        )

    def capture(
        self, checkpoint: Checkpoint | None, plan: CapturePlan
    ) -> Iterator[Item | Checkpoint]:
        """The outbox's statuses in order, a checkpoint every ``CHECKPOINT_EVERY`` entries.

        The profile is not yielded here: it comes with :meth:`check_account`. A run that
        reaches ``plan.max_items`` yields its checkpoint and raises ``CaptureError``.
        """
        if OUTBOX not in self._entry_names():
            raise MalformedResponseError("the export archive has no outbox.json")
        if not plan.full_walk and checkpoint is not None and self._finished(checkpoint):
            # Nothing new in an archive already walked: not even outbox.json is read again.
            yield checkpoint
            return
        data, evidence = self.client.read(OUTBOX)
        activities = _ordered_items(data)
        archive_id = self._archive_id(data)
        start = 0 if plan.full_walk else _resume_at(checkpoint, archive_id, len(activities))
        index = _Index(activities)
        budget = plan.max_items
        yielded = 0

        def mark(position: int) -> Checkpoint:
            return Checkpoint(
                version=self.checkpoint_version,
                state={
                    "archive_sha256": archive_id,
                    "position": position,
                    "entries": len(activities),
                },
            )

        for position in range(start, len(activities)):
            if budget is not None and yielded >= budget:
                yield mark(position)
                raise CaptureError(
                    f"stopped at the cap of {budget} items; the next run continues from "
                    f"entry {position} of {OUTBOX}"
                )
            item = self._item(activities[position], position, evidence, index)
            if item is not None:
                yield item
                yielded += 1
            if (position + 1) % CHECKPOINT_EVERY == 0:
                yield mark(position + 1)
        if len(activities) % CHECKPOINT_EVERY != 0 or start >= len(activities):
            yield mark(len(activities))

    def check_item(self, item_id: str, kind: ItemKind) -> ItemCheck:
        """Always unknown: an archive is a snapshot and cannot say what still exists."""
        return ItemCheck(
            ItemStatus.UNKNOWN,
            detail="an export archive cannot tell whether an item still exists on the platform",
        )

    # -- the archive -------------------------------------------------------------------------

    def _entry_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(self.client.names())
        return self._names

    def _finished(self, checkpoint: Checkpoint) -> bool:
        """Whether the checkpoint is the end of a walk of this very archive."""
        state = checkpoint.state
        position, entries = state.get("position"), state.get("entries")
        return (
            checkpoint.version == self.checkpoint_version
            and isinstance(position, int)
            and isinstance(entries, int)
            and position >= entries
            and state.get("archive_sha256") == self._source_sha256()
        )

    def _source_sha256(self) -> str | None:
        digest = getattr(self.client, "sha256", None)
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest):
            return digest
        return None

    def _archive_id(self, outbox: bytes) -> str:
        """The archive's SHA-256 if the source offers it, else the outbox's."""
        return self._source_sha256() or hashlib.sha256(outbox).hexdigest()

    def _load_actor(self) -> tuple[dict[str, Any], str]:
        if self._actor is None:
            data, evidence = self.client.read(ACTOR)
            actor = _json(data, ACTOR)
            if not isinstance(actor, dict):
                raise MalformedResponseError(f"{ACTOR} in the export archive is not an object")
            for key in ("id", "preferredUsername"):
                if not isinstance(actor.get(key), str) or not actor[key]:
                    raise MalformedResponseError(f"{ACTOR} in the export archive has no {key}")
            self._actor = (actor, evidence)
        return self._actor

    def _resolve_media(self, url: str | None) -> str | None:
        """The archive entry holding an attachment whose URL the export turned into a path."""
        if not url:
            return None
        if self._media_index is None:
            self._media_index = {}
            for name in sorted(self._entry_names()):
                at = name.find(_MEDIA_DIR)
                self._media_index.setdefault(name[at:] if at >= 0 else name, name)
        names = self._entry_names()
        path = urlsplit(url).path if "://" in url else url
        for candidate in (path, unquote(path)):
            bare = candidate.lstrip("/").removeprefix("system/")
            if bare in names:
                return bare
            at = bare.find(_MEDIA_DIR)
            key = bare[at:] if at >= 0 else bare
            if key in self._media_index:
                return self._media_index[key]
        return None

    # -- items -------------------------------------------------------------------------------

    def _profile(self, actor: Mapping[str, Any], evidence: str) -> Item:
        handle = _handle_of(actor)
        bio = _str(actor.get("summary"))
        lines = [_html_text(bio)] if bio else []
        links: list[str] = _hrefs(bio, skip_mentions=True) if bio else []
        for field in _objects(actor.get("attachment")):
            if field.get("type") == "PropertyValue":
                value = _str(field.get("value")) or ""
                lines.append(f"{_str(field.get('name')) or ''}: {_html_text(value)}")
                links += _hrefs(value, skip_mentions=True)
        media = []
        for key, role in (("icon", "avatar"), ("image", "header")):
            image = actor.get(key)
            if isinstance(image, dict):
                url = _str(image.get("url"))
                name = (url or "").rsplit("/", 1)[-1]
                media.append(
                    MediaRef(
                        media_id=f"{role}:{name}",
                        archive_path=self._resolve_media(url),
                        mime_type=_str(image.get("mediaType")),
                        kind="image",
                    )
                )
        return Item(
            platform=self.platform,
            item_id=actor["id"],
            kind=ItemKind.PROFILE,
            evidence=evidence,
            permalink=_str(actor.get("url")) or actor["id"],
            author_id=actor["id"],
            author_handle=handle,
            author_name=_str(actor.get("name")),
            created_at=_time(actor.get("published"), ACTOR),
            text="\n".join(line for line in lines if line) or None,
            html=bio,
            links=tuple(dict.fromkeys(links)),
            media=tuple(media),
            raw=dict(actor),
        )

    def _item(self, activity: Any, position: int, evidence: str, index: _Index) -> Item | None:
        where = f"{OUTBOX} item {position}"
        if not isinstance(activity, dict):
            raise MalformedResponseError(f"{where} in the export archive is not an object")
        kind = activity.get("type")
        if kind == "Create":
            note = activity.get("object")
            if not isinstance(note, dict):
                raise MalformedResponseError(f"{where}: a Create without an inline object")
            if note.get("type") not in _NOTE_TYPES:
                return None
            return self._note(activity, note, where, evidence, index)
        if kind == "Announce":
            return self._boost(activity, where, evidence)
        return None  # nothing else is a status of the account

    def _note(
        self,
        activity: Mapping[str, Any],
        note: Mapping[str, Any],
        where: str,
        evidence: str,
        index: _Index,
    ) -> Item:
        uri = _required_str(note, "id", where)
        status_id = _status_id(uri)
        html = _str(note.get("content")) or ""
        body = _html_text(html)
        options = [
            _str(o.get("name")) or "" for key in ("oneOf", "anyOf") for o in _objects(note.get(key))
        ]
        if options:
            body = "\n".join([body, "", "Poll:", *(f"- {o}" for o in options)]).strip()
        warning = _str(note.get("summary"))
        text = f"CW: {warning}\n{body}" if warning else body  # as connectors.mastodon has it
        links = _hrefs(html, skip_mentions=True)
        media = []
        for attachment in _objects(note.get("attachment")):
            if attachment.get("type") == "Link":
                href = _str(attachment.get("href"))
                if href:
                    links.append(href)
                continue
            media.append(self._media(attachment))
        parent_uri = _str(note.get("inReplyTo"))
        visibility = self._visibility(note if "to" in note else activity)
        content_map = note.get("contentMap")
        language = next(iter(content_map), None) if isinstance(content_map, dict) else None
        return Item(
            platform=self.platform,
            item_id=status_id,
            kind=ItemKind.MESSAGE if visibility == "direct" else ItemKind.POST,
            evidence=evidence,
            permalink=_str(note.get("url")) or uri,
            parent_id=index.id_of(parent_uri) if parent_uri else None,
            thread_id=index.root_of(uri),
            author_id=_str(note.get("attributedTo")) or _str(activity.get("actor")),
            author_handle=self._account_handle(),
            author_name=self._account_name(),
            created_at=_time(note.get("published") or activity.get("published"), where),
            edited_at=_time(note.get("updated"), where),
            text=text or None,
            html=html or None,
            language=language if isinstance(language, str) else None,
            visibility=visibility,
            links=tuple(dict.fromkeys(links)),
            media=tuple(media),
            raw=dict(activity),
        )

    def _boost(self, activity: Mapping[str, Any], where: str, evidence: str) -> Item:
        uri = _required_str(activity, "id", where)
        target = activity.get("object")
        if isinstance(target, dict):
            target = target.get("id")
        if not isinstance(target, str) or not target:
            raise MalformedResponseError(f"{where}: an Announce without the boosted status")
        return Item(
            platform=self.platform,
            item_id=_status_id(uri),
            kind=ItemKind.POST,
            evidence=evidence,
            permalink=uri,
            thread_id=_status_id(uri),
            author_id=_str(activity.get("actor")),
            author_handle=self._account_handle(),
            author_name=self._account_name(),
            created_at=_time(activity.get("published"), where),
            visibility=self._visibility(activity),
            links=(target,),
            raw=dict(activity),
        )

    def _media(self, attachment: Mapping[str, Any]) -> MediaRef:
        url = _str(attachment.get("url"))
        path = self._resolve_media(url)
        mime = _str(attachment.get("mediaType"))
        found = _MEDIA_ID.search(path or url or "")
        media_id = found.group(1).replace("/", "") if found else (path or url)
        return MediaRef(
            media_id=media_id,
            archive_path=path,
            mime_type=mime,
            kind=_media_kind(mime, _str(attachment.get("type"))),
            alt_text=_str(attachment.get("name")) or None,
        )

    def _visibility(self, obj: Mapping[str, Any]) -> str:
        """Mastodon's visibility from the audience (ActivityPub::TagManager#to and #cc)."""
        to, cc = _uris(obj.get("to")), _uris(obj.get("cc"))
        if to & _PUBLIC:
            return "public"
        if cc & _PUBLIC:
            return "unlisted"
        followers = self._followers()
        if followers and followers in to:
            return "private"
        return "direct"

    def _followers(self) -> str | None:
        if ACTOR not in self._entry_names():
            return None
        return _str(self._load_actor()[0].get("followers"))

    def _account_handle(self) -> str | None:
        if ACTOR not in self._entry_names():
            return self.account.handle
        return _handle_of(self._load_actor()[0])

    def _account_name(self) -> str | None:
        if ACTOR not in self._entry_names():
            return None
        return _str(self._load_actor()[0].get("name"))


class _Index:
    """Which statuses the outbox holds, so replies can name parents and thread roots."""

    def __init__(self, activities: Sequence[Any]) -> None:
        self._ids: dict[str, str] = {}
        self._parents: dict[str, str] = {}
        for activity in activities:
            note = activity.get("object") if isinstance(activity, dict) else None
            if (
                isinstance(activity, dict)
                and activity.get("type") == "Create"
                and isinstance(note, dict)
            ):
                uri = note.get("id")
                if isinstance(uri, str):
                    self._ids[uri] = _status_id(uri)
                    parent = note.get("inReplyTo")
                    if isinstance(parent, str) and parent:
                        self._parents[uri] = parent

    def id_of(self, uri: str) -> str:
        """The status id of an archived status; the URI itself for one elsewhere."""
        return self._ids.get(uri, uri)

    def root_of(self, uri: str) -> str | None:
        """The id of the thread's root post (a root post's own); None if not in the archive."""
        seen = {uri}
        at = uri
        while at in self._parents:
            at = self._parents[at]
            if at in seen or at not in self._ids:
                return None
            seen.add(at)
        return self._ids.get(at)


# -- parsing helpers ------------------------------------------------------------------------


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponseError(f"{name} in the export archive is not JSON: {exc}") from exc


def _ordered_items(data: bytes) -> list[Any]:
    outbox = _json(data, OUTBOX)
    if not isinstance(outbox, dict):
        raise MalformedResponseError(f"{OUTBOX} in the export archive is not an object")
    items = outbox.get("orderedItems")
    if not isinstance(items, list):
        raise MalformedResponseError(
            f"{OUTBOX} in the export archive has no orderedItems list (is it an OrderedCollection?)"
        )
    return items


def _resume_at(checkpoint: Checkpoint | None, archive_id: str, total: int) -> int:
    """Where a checkpoint of this archive left off; 0 for none, another archive or version."""
    if checkpoint is None or checkpoint.version != MastodonExportConnector.checkpoint_version:
        return 0
    state = checkpoint.state
    position = state.get("position")
    if state.get("archive_sha256") != archive_id or not isinstance(position, int):
        return 0
    return max(0, min(position, total))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _required_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedResponseError(f"{where} in the export archive has no {key}")
    return value


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedResponseError(f"{where}: a timestamp that is not a string: {value!r}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise MalformedResponseError(f"{where}: bad timestamp {value!r}") from exc


def _objects(value: Any) -> list[dict[str, Any]]:
    """A JSON-LD property that may be one object or a list of them, as a list."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def _uris(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _status_id(uri: str) -> str:
    found = _STATUS_ID.search(urlsplit(uri).path)
    return found.group(1) if found else uri


def _handle_of(actor: Mapping[str, Any]) -> str:
    host = urlsplit(str(actor["id"])).hostname or ""
    user = str(actor["preferredUsername"])
    return f"{user}@{host}" if host else user


def _media_kind(mime: str | None, ap_type: str | None) -> str:
    major = (mime or "").split("/")[0]
    if major in ("image", "video", "audio"):
        return major
    return {"Image": "image", "Video": "video", "Audio": "audio"}.get(ap_type or "", "unknown")


class _Text(HTMLParser):
    """Mastodon's status HTML (p, br, a, span) as plain text; collects link targets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, class)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a":
            attr = dict(attrs)
            href = attr.get("href")
            if href:
                self.links.append((href, attr.get("class") or ""))

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _parse_html(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return parser


def _html_text(html: str) -> str:
    text = "".join(_parse_html(html).parts)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _hrefs(html: str, *, skip_mentions: bool) -> list[str]:
    """Link targets in the HTML; mentions and hashtags (class ``mention``) left out."""
    return [
        href
        for href, cls in _parse_html(html).links
        if not (skip_mentions and "mention" in cls.split())
    ]
