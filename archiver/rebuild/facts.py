"""One account's verified records turned into catalog facts: items, versions, media, states.

What each fact is rebuilt from:

- an **item version** is a ``conversion`` record (the normalized item document: version
  number, change, content hash, capture time, text, media and their hashes), or a deletion
  note (a ``metadata`` record ``{"change": "deleted", "item": …}``), whose version number is
  the next after the item's previous version, as capture numbered it;
- an **item** is the latest of its versions, its state replayed through
  :func:`archiver.changes.state_after` over every version in order;
- a **media** row is the first full copy (``response`` or ``resource``) of its bytes in its
  partition that a kept version carries; later versions carrying the same bytes get the
  status ``revisit``, as capture gave them.

Orphans. Capture writes a page's records, syncs them, then commits the page's rows; a crash
(or a lost lease) in between leaves records that no row points to, and the next run writes
that page again. Version numbers are assigned from the *committed* catalog, so the redone
page writes the same ``(account, item, version_no)`` again, normally with the same content
hash. The rule, applied per item to its versions sorted by capture time and then by write
position (file opened, file id, offset):

1. a conversion drops every earlier version whose number is the same or higher: those were
   written and never committed (the later write is the committed one, because nothing
   re-uses a committed number);
2. a deletion note directly after another deletion note drops the earlier one (capture
   writes a deletion only for an item the catalog does not hold as deleted);
3. a ``metadata`` state note (hidden, unhidden, reappeared) goes with the conversion it
   refers to (``WARC-Refers-To``).

Dropped records are reported and are not indexed in ``warc_records``. The exchanges and media
responses of an uncommitted page cannot be told from committed ones by the store alone: they
are indexed, so a comparison with the live catalog lists them as "only in rebuilt".
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.changes import Change, state_after
from archiver.connector import ITEM_SCHEMA_VERSION, Moderation, parse_time
from archiver.rebuild.scan import ScannedRecord, ScannedWarc
from archiver.warc_records import RecordPointer

#: Why media bytes are missing when the store does not say (see the module docstring).
UNKNOWN_MEDIA = "unknown"
_ORDER = tuple[datetime, str, int]


@dataclass(slots=True)
class MediaFact:
    sha256: str
    partition: str
    size: int
    mime_type: str | None
    source_url: str | None
    pointer: RecordPointer
    first_captured_at: datetime


@dataclass(slots=True)
class ItemMediaFact:
    position: int
    media: tuple[str, str] | None  # (sha256, partition) of the media row
    platform_media_id: str | None
    alt_text: str | None
    status: str
    detail: str | None


@dataclass(slots=True)
class VersionFact:
    version_no: int
    content_sha256: str
    captured_at: datetime
    change: str
    pointer: RecordPointer
    partition: str
    text: str | None
    media: list[ItemMediaFact] = field(default_factory=list)
    parquet_file_id: str | None = None


@dataclass(slots=True)
class ItemFact:
    platform_item_id: str
    kind: str
    platform_parent_id: str | None
    thread_id: str | None
    partition: str
    series: str
    permalink: str | None
    author: str | None
    created_at: datetime | None
    edited_at: datetime | None
    first_captured_at: datetime
    last_seen_at: datetime
    state: str
    state_changed_at: datetime | None
    text: str | None
    content_sha256: str | None
    versions: list[VersionFact]


@dataclass(frozen=True, slots=True)
class Orphan:
    """A record dropped by the orphan rule."""

    record_id: str
    warc_type: str
    item: str | None
    why: str


@dataclass(slots=True)
class AccountFacts:
    account: str
    platform: str | None = None
    series: str | None = None
    first_record_at: datetime | None = None
    status: str = "unknown"
    status_reason: str | None = None
    items: list[ItemFact] = field(default_factory=list)
    media: list[MediaFact] = field(default_factory=list)
    records: list[RecordPointer] = field(default_factory=list)  # for warc_records
    orphans: list[Orphan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: ``metadata`` records of kinds this code does not turn into rows (indexed only).
    other_metadata: int = 0


@dataclass(slots=True)
class _Event:
    """A conversion or a deletion note of one item."""

    record: ScannedRecord
    doc: dict[str, Any]
    captured_at: datetime
    version_no: int
    deletion: bool

    @property
    def key(self) -> tuple[datetime, _ORDER]:
        return (self.captured_at, self.record.order)


def build(account: str, warcs: list[ScannedWarc], parquet_of: Mapping[str, str]) -> AccountFacts:
    """The catalog facts of one account, from its verified WARC files.

    ``parquet_of`` maps a version's record id to the Parquet file holding its row.
    """
    facts = AccountFacts(account)
    records = [r for w in warcs for r in w.records]
    if warcs:
        facts.first_record_at = min(w.created_at for w in warcs)
        # The series the account's files were written under most recently.
        latest = max(warcs, key=lambda w: (w.opened_at, w.obj.key))
        facts.series = latest.obj.partition.series if latest.obj.partition else None
    events: dict[str, list[_Event]] = defaultdict(list)
    notes: list[ScannedRecord] = []
    for rec in records:
        _classify(facts, rec, events, notes)
    kept_items = [(item_id, _resolve(facts, item_id, evs)) for item_id, evs in events.items()]
    dropped = {o.record_id for o in facts.orphans}
    for note in notes:
        if note.refers_to in dropped:
            facts.orphans.append(
                Orphan(
                    note.pointer.record_id,
                    "metadata",
                    str((note.doc or {}).get("item")),
                    "a state note of a dropped conversion",
                )
            )
            dropped.add(note.pointer.record_id)
    facts.records = [r.pointer for r in records if r.pointer.record_id not in dropped]
    media = _MediaIndex(records, dropped)
    conversions: list[tuple[_Event, VersionFact]] = []
    for item_id, kept in kept_items:
        item = _item(facts, item_id, kept, parquet_of) if kept else None
        if item is None:
            continue
        facts.items.append(item)
        conversions += [
            (ev, v) for ev, v in zip(kept, item.versions, strict=True) if not ev.deletion
        ]
    conversions.sort(key=lambda pair: pair[0].key)
    for ev, version in conversions:
        version.media = media.attach(facts, ev)
    facts.media = media.rows
    _account_status(facts, records)
    return facts


def _classify(
    facts: AccountFacts,
    rec: ScannedRecord,
    events: dict[str, list[_Event]],
    notes: list[ScannedRecord],
) -> None:
    doc = rec.doc
    kind = rec.pointer.warc_type
    if kind == "conversion":
        if doc is None or doc.get("version") != ITEM_SCHEMA_VERSION or "item_id" not in doc:
            facts.problems.append(
                f"conversion record {rec.pointer.record_id} is not an item document this "
                f"archiver reads (schema version {None if doc is None else doc.get('version')})"
            )
            return
        if doc.get("account") not in (None, facts.account):
            facts.problems.append(
                f"conversion record {rec.pointer.record_id} names account {doc.get('account')} "
                f"but is stored under {facts.account}"
            )
        captured = parse_time(doc.get("captured_at")) or rec.pointer.date
        facts.platform = facts.platform or doc.get("platform")
        events[str(doc["item_id"])].append(
            _Event(rec, doc, captured, int(doc.get("version_no") or 0), deletion=False)
        )
    elif kind == "metadata" and doc is not None:
        change = doc.get("change")
        if change == "deleted" and "item" in doc:
            seen = parse_time(doc.get("seen_at")) or rec.pointer.date
            events[str(doc["item"])].append(_Event(rec, doc, seen, 0, deletion=True))
        elif change in (Change.HIDDEN, Change.UNHIDDEN, Change.REAPPEARED) and "item" in doc:
            notes.append(rec)
        elif (rec.pointer.target_uri or "").startswith("urn:archiver:account:"):
            pass  # account status: read by _account_status
        else:
            facts.other_metadata += 1
    elif kind == "metadata":
        facts.other_metadata += 1


def _resolve(facts: AccountFacts, item_id: str, events: list[_Event]) -> list[_Event]:
    """The item's committed versions, in order; the rest become orphans (module docstring)."""
    events.sort(key=lambda e: e.key)
    kept: list[_Event] = []

    def drop(ev: _Event, why: str) -> None:
        facts.orphans.append(
            Orphan(ev.record.pointer.record_id, ev.record.pointer.warc_type, item_id, why)
        )

    for ev in events:
        if ev.deletion:
            if kept and kept[-1].deletion:
                drop(kept.pop(), "a deletion note written again later")
            ev.version_no = (kept[-1].version_no if kept else 0) + 1
        else:
            while kept and kept[-1].version_no >= ev.version_no:
                old = kept.pop()
                drop(old, f"version {old.version_no} written again later")
        kept.append(ev)
    for expected, ev in enumerate(kept, start=1):
        if ev.version_no != expected:
            facts.problems.append(
                f"item {item_id} of {facts.account}: version {expected} is not in the store "
                f"(the next one found is {ev.version_no})"
            )
            break
    return kept


def _item(
    facts: AccountFacts, item_id: str, kept: list[_Event], parquet_of: Mapping[str, str]
) -> ItemFact | None:
    first = kept[0]
    if first.deletion:
        facts.problems.append(
            f"item {item_id} of {facts.account}: a deletion note but no captured version "
            "in the store; the item was left out"
        )
        return None
    versions: list[VersionFact] = []
    state: str | None = None
    changed_at: datetime | None = None
    latest = first
    for ev in kept:
        if ev.deletion:
            new_state = "deleted"
            sha, text = latest.doc.get("content_sha256") or "", latest.doc.get("text")
            change = Change.DELETED.value
        else:
            latest = ev
            change = str(ev.doc.get("change"))
            new_state = _state(facts, item_id, change, state, ev.doc.get("moderation"))
            sha, text = str(ev.doc.get("content_sha256") or ""), ev.doc.get("text")
        if new_state != state:
            changed_at = ev.captured_at
        state = new_state
        ptr = ev.record.pointer
        versions.append(
            VersionFact(
                version_no=ev.version_no,
                content_sha256=sha,
                captured_at=ev.captured_at,
                change=change,
                pointer=ptr,
                partition=ev.record.partition.name,
                text=text,
                parquet_file_id=parquet_of.get(ptr.record_id),
            )
        )
    doc = latest.doc
    return ItemFact(
        platform_item_id=item_id,
        kind=str(first.doc.get("kind")),
        platform_parent_id=doc.get("parent_id"),
        thread_id=doc.get("thread_id"),
        partition=first.record.partition.name,
        series=first.record.partition.series,
        permalink=doc.get("permalink"),
        author=doc.get("author_handle") or doc.get("author_name") or doc.get("author_id"),
        created_at=parse_time(doc.get("created_at")),
        edited_at=parse_time(doc.get("edited_at")),
        first_captured_at=first.captured_at,
        # An unchanged re-capture writes no item record: the latest version is what is known.
        last_seen_at=latest.captured_at,
        state=state or "present",
        state_changed_at=changed_at,
        text=doc.get("text"),
        content_sha256=doc.get("content_sha256"),
        versions=versions,
    )


def _state(
    facts: AccountFacts, item_id: str, change: str, previous: str | None, moderation: Any
) -> str:
    try:
        how = Change(change)
        seen = Moderation(moderation or Moderation.VISIBLE.value)
    except ValueError:
        facts.problems.append(
            f"item {item_id} of {facts.account}: change {change!r} or moderation "
            f"{moderation!r} is unknown to this archiver; its state was left as it was"
        )
        return previous or "present"
    return state_after(how, previous, seen)


class _MediaIndex:
    """Where each media payload lies, per partition, in write order."""

    def __init__(self, records: list[ScannedRecord], dropped: set[str]) -> None:
        self.copies: dict[tuple[str, str], list[tuple[_ORDER, ScannedRecord]]] = defaultdict(list)
        self.responses: dict[tuple[str, str], list[tuple[_ORDER, ScannedRecord]]] = defaultdict(
            list
        )
        for rec in records:
            if rec.pointer.record_id in dropped:
                continue
            part = rec.partition.name
            if rec.pointer.warc_type in ("response", "resource") and rec.payload_sha256:
                self.copies[(part, rec.payload_sha256)].append((rec.order, rec))
            if rec.pointer.warc_type == "response" and rec.pointer.target_uri:
                self.responses[(part, rec.pointer.target_uri)].append((rec.order, rec))
        for bucket in (*self.copies.values(), *self.responses.values()):
            bucket.sort(key=lambda pair: pair[0])
        self.rows: list[MediaFact] = []
        self._known: set[tuple[str, str]] = set()

    @staticmethod
    def _before(bucket: list[tuple[_ORDER, ScannedRecord]], order: _ORDER) -> ScannedRecord | None:
        """The last record of ``bucket`` written before ``order``."""
        at = bisect.bisect_left(bucket, order, key=lambda pair: pair[0])
        return bucket[at - 1][1] if at else None

    def attach(self, facts: AccountFacts, ev: _Event) -> list[ItemMediaFact]:
        """The item_media rows of one kept conversion, creating media rows as capture did."""
        refs = ev.doc.get("media") or []
        hashes = ev.doc.get("media_sha256") or []
        part = ev.record.partition.name
        out = []
        for position, ref in enumerate(refs):
            ref = ref if isinstance(ref, dict) else {}
            sha = hashes[position] if position < len(hashes) else None
            status, detail, key = self._status(facts, ev, ref, sha, part)
            out.append(
                ItemMediaFact(
                    position, key, ref.get("media_id"), ref.get("alt_text"), status, detail
                )
            )
        return out

    def _status(
        self, facts: AccountFacts, ev: _Event, ref: dict[str, Any], sha: str | None, part: str
    ) -> tuple[str, str | None, tuple[str, str] | None]:
        if sha:
            key = (sha, part)
            if key in self._known:
                return "revisit", None, key
            copy = self._before(self.copies.get((part, sha), []), ev.record.order)
            if copy is None:
                facts.problems.append(
                    f"media {sha} of item {ev.doc.get('item_id')} (version "
                    f"{ev.version_no}) is not in the store's partition {part}"
                )
                return "stored", None, None
            self._known.add(key)
            self.rows.append(
                MediaFact(
                    sha,
                    part,
                    copy.payload_size or 0,
                    ref.get("mime_type"),
                    ref.get("url") or copy.pointer.target_uri,
                    copy.pointer,
                    ev.captured_at,
                )
            )
            return "stored", None, key
        if not ref.get("url") and not ref.get("archive_path"):
            return "no_source", "no URL or archive entry to fetch it from", None
        if ref.get("url"):
            answer = self._before(self.responses.get((part, str(ref["url"])), []), ev.record.order)
            if answer is not None and answer.http_status and not 200 <= answer.http_status < 300:
                return "failed", f"the platform answered HTTP {answer.http_status}", None
        return (
            UNKNOWN_MEDIA,
            "the bytes were not kept and the store does not record why (too large, or the "
            "download failed)",
            None,
        )


def _account_status(facts: AccountFacts, records: list[ScannedRecord]) -> None:
    """``unavailable`` when the latest thing the store knows of the account says so."""
    latest_note: tuple[datetime, str | None] | None = None
    for rec in records:
        doc = rec.doc
        if (
            rec.pointer.warc_type == "metadata"
            and doc is not None
            and (rec.pointer.target_uri or "").startswith("urn:archiver:account:")
        ):
            seen = parse_time(doc.get("seen_at")) or rec.pointer.date
            if latest_note is None or seen >= latest_note[0]:
                latest_note = (seen, doc.get("reason"))
    if latest_note is None:
        return
    captured = [v.captured_at for i in facts.items for v in i.versions]
    if not captured or latest_note[0] >= max(captured):
        facts.status, facts.status_reason = "unavailable", latest_note[1]
