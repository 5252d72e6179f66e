"""Planning a disposition: every stored record the destroyed items own, grouped by file.

Given the items to destroy (re-checked under the retention lock by the caller), the plan
names what goes, from the catalog alone:

- each version's record (``item_versions.warc_record_id``: a ``conversion``, or the
  ``metadata`` record that evidences a deletion) and the state notes written about it
  (``metadata`` records whose ``WARC-Refers-To`` is that version);
- the media the versions carry (``item_media``), unless a kept item's version carries the
  same media row: media is stored once per partition and shared; with each media record go
  its ``revisit`` records and the request it was fetched with (``WARC-Concurrent-To``);
- the raw exchanges the versions were read from (the ``response`` or export ``resource``
  a version's ``WARC-Refers-To`` names) and their concurrent ``request``: only when every
  item whose versions refer to the exchange is destroyed now (or was before: a destroyed
  record's catalog row is gone, so it no longer counts). Otherwise the exchange is kept and
  the plan says which kept items it evidences and when it will follow: the latest date
  those items become eligible, or none while one of them is held, permanent or waiting for
  an event;
- their Parquet rows (``item_versions.parquet_file_id``).

Records are then grouped by stored file. A file none of whose other catalogued records
belongs to a kept item, media or exchange is deleted whole: records that belong to nothing
(an account check, a page of items none of which changed, a failed media download) go with
it, and so do orphans (records a crash left uncatalogued). Any other file is compacted
(:mod:`archiver.compact`): a new file, with a new id chosen here so that a crash can be
resumed, holds the records that stay.

The links come from ``warc_records.refers_to``/``concurrent_to``. Rows written before
those columns existed (migration 0005) have none: :func:`backfill_links` reads them once
from the records' headers in the store.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from ulid import ULID

from archiver.catalog.models import (
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.disposition.evidence import EXCHANGE_TYPES, ItemIds, read_body
from archiver.layout import Partition
from archiver.logging import get_logger
from archiver.retention import Decision, Outcome
from archiver.store.base import Store

log = get_logger(__name__)

#: Ids per ``IN (...)`` list: well under every database's parameter limit.
BATCH = 500
#: Compressed bytes read to find a record's header when its links must be backfilled.
HEAD_BYTES = 64 << 10

#: What a destroyed record was, as the certificate says.
WHY_VERSION = "item version"
WHY_NOTE = "state note of a destroyed version"
WHY_MEDIA = "media no kept item carries"
WHY_REVISIT = "revisit of destroyed media"
WHY_EXCHANGE = "raw exchange evidencing only destroyed items"
WHY_PARTNER = "concurrent record of a destroyed record"
WHY_CONTEXT = "capture context (evidences no item) of a file deleted whole"

#: Decides the kept items an exchange still evidences (item id → decision at execution).
Decide = Callable[[set[int]], Mapping[int, Decision]]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def batches(values: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    """``values`` sorted, in lists of at most ``size``."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


# -- what a plan holds ------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedItem:
    """An item to destroy, as the certificate lists it (its stub keeps these)."""

    item_id: int
    account: str
    platform_item_id: str
    kind: str
    series: str
    created_at: str | None
    first_captured_at: str
    content_sha256: str | None
    versions: int


@dataclass(frozen=True)
class PlannedRecord:
    """A catalogued WARC record to destroy, and why."""

    record_id: str
    warc_type: str
    block_digest: str
    file_id: str
    why: str


@dataclass(frozen=True)
class PlannedFile:
    """A stored file the disposition deletes whole or compacts.

    ``drop``: for a WARC, the ids of the catalogued records to remove; for a Parquet file,
    the ``warc_record_id`` of the rows to remove. ``keep``: how many catalogued records (or
    rows) stay. ``new_file_id``: the id of the compacted file, fixed before it is written.
    """

    file_id: str
    key: str
    kind: str  # "warc" or "parquet"
    partition: str
    sha256: str
    size: int
    records: int
    action: str  # "delete" or "compact"
    drop: tuple[str, ...]
    keep: int
    new_file_id: str | None = None

    @classmethod
    def of(
        cls,
        row: StoredFile,
        action: str,
        drop: Iterable[str],
        keep: int,
        new_file_id: str | None = None,
    ) -> PlannedFile:
        """The step for the stored file ``row``: what it is, and what becomes of it."""
        return cls(
            row.id, row.key, row.kind, row.partition or "", row.sha256, row.size, row.records,
            action, tuple(sorted(drop)), keep, new_file_id,
        )  # fmt: skip


@dataclass(frozen=True)
class KeptExchange:
    """A raw exchange a destroyed item was read from that a kept item still needs."""

    record_id: str
    file_id: str
    evidences_items_kept: list[int]
    follows_on: str | None
    why: str


@dataclass
class Plan:
    """Everything one disposition run destroys, and the exchanges it keeps."""

    items: list[PlannedItem] = field(default_factory=list)
    version_ids: list[int] = field(default_factory=list)
    media_ids: list[int] = field(default_factory=list)
    records: list[PlannedRecord] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)
    exchanges_kept: list[KeptExchange] = field(default_factory=list)
    #: Record ids whose file is not (yet) in the store: a spool file, or a lost one.
    unstored: dict[str, list[str]] = field(default_factory=dict)

    @property
    def accounts(self) -> list[str]:
        return sorted({i.account for i in self.items})

    @property
    def partitions(self) -> list[str]:
        return sorted({f.partition for f in self.files})

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["files"] = [{**f, "drop": list(f["drop"])} for f in doc["files"]]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Plan:
        return cls(
            items=[PlannedItem(**i) for i in doc.get("items", [])],
            version_ids=list(doc.get("version_ids", [])),
            media_ids=list(doc.get("media_ids", [])),
            records=[PlannedRecord(**r) for r in doc.get("records", [])],
            files=[
                PlannedFile(**{**f, "drop": tuple(f.get("drop", ()))}) for f in doc.get("files", [])
            ],
            exchanges_kept=[KeptExchange(**e) for e in doc.get("exchanges_kept", [])],
            unstored={k: list(v) for k, v in doc.get("unstored", {}).items()},
        )


# -- planning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rec:
    record_id: str
    file_id: str
    warc_type: str
    block_digest: str
    refers_to: str | None
    concurrent_to: str | None
    offset: int
    length: int


_COLUMNS = (
    WarcRecord.record_id,
    WarcRecord.file_id,
    WarcRecord.warc_type,
    WarcRecord.block_digest,
    WarcRecord.refers_to,
    WarcRecord.concurrent_to,
    WarcRecord.offset,
    WarcRecord.length,
)


def _records(session: Session, where: Any, values: Iterable[str]) -> list[_Rec]:
    out: list[_Rec] = []
    for chunk in batches(values):
        rows = session.execute(select(*_COLUMNS).where(where.in_(chunk))).all()
        out.extend(_Rec(*row) for row in rows)
    return out


def _months(start: datetime, end: datetime) -> set[str]:
    """Every ``YYYY-MM`` (UTC) from ``start``'s month to ``end``'s."""
    year, month = start.astimezone(UTC).year, start.astimezone(UTC).month
    last = end.astimezone(UTC).strftime("%Y-%m")
    found = set()
    while True:
        period = f"{year:04d}-{month:02d}"
        found.add(period)
        if period >= last:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _referrers(session: Session, evidence: Iterable[str]) -> dict[str, set[int]]:
    """For each record id: the not-destroyed items having a version that refers to it."""
    found: dict[str, set[int]] = defaultdict(set)
    for chunk in batches(evidence):
        rows = session.execute(
            select(WarcRecord.refers_to, ItemVersion.item_id)
            .join(ItemVersion, ItemVersion.warc_record_id == WarcRecord.record_id)
            .join(Item, Item.id == ItemVersion.item_id)
            .where(WarcRecord.refers_to.in_(chunk), Item.disposed_at.is_(None))
        ).all()
        for ref, item_id in rows:
            if ref is not None:
                found[ref].add(item_id)
    return found


class _Planner:
    def __init__(
        self, session: Session, store: Store, item_ids: Iterable[int], decide: Decide
    ) -> None:
        self.s = session
        self.store = store
        self.doomed = set(item_ids)
        self.decide = decide
        self.destroyed: dict[str, tuple[_Rec, str]] = {}
        #: Per account: when its items to destroy were first and last seen.
        self.windows: dict[str, tuple[datetime, datetime]] = {}
        #: Record id → the items a raw exchange names (None: it could not be read).
        self.named: dict[str, set[int] | None] = {}
        self.disposed: set[int] = set()
        self.ids = ItemIds(())
        self._files_seen: dict[str, tuple[str, str]] = {}  # file id → (key, account)

    def destroy(self, rec: _Rec, why: str) -> None:
        self.destroyed.setdefault(rec.record_id, (rec, why))

    def plan(self) -> Plan:
        plan = Plan()
        plan.items = self._items()
        self.doomed = {i.item_id for i in plan.items}
        versions = self._versions()
        plan.version_ids = sorted(v[0] for v in versions)
        version_rids = {v[2] for v in versions}
        version_recs = _records(self.s, WarcRecord.record_id, version_rids)
        for rec in version_recs:
            self.destroy(rec, WHY_VERSION)
        for rec in _records(self.s, WarcRecord.refers_to, version_rids):
            if rec.warc_type == "metadata" and rec.record_id not in version_rids:
                self.destroy(rec, WHY_NOTE)
        plan.media_ids = self._media(plan.version_ids)
        self._index()
        plan.exchanges_kept = self._exchanges(version_recs)
        plan.files = self._files(plan)
        plan.files.extend(self._parquet(versions))
        plan.records = sorted(
            (
                PlannedRecord(rec.record_id, rec.warc_type, rec.block_digest, rec.file_id, why)
                for rec, why in self.destroyed.values()
            ),
            key=lambda r: (r.file_id, r.record_id),
        )
        return plan

    def _items(self) -> list[PlannedItem]:
        items = []
        for chunk in batches(self.doomed):
            for row in self.s.scalars(
                select(Item).where(Item.id.in_(chunk), Item.disposed_at.is_(None))
            ):
                first, last = self.windows.get(
                    row.account_id, (row.first_captured_at, row.last_seen_at)
                )
                self.windows[row.account_id] = (
                    min(first, row.first_captured_at),
                    max(last, row.last_seen_at),
                )
                items.append(
                    PlannedItem(
                        item_id=row.id,
                        account=row.account_id,
                        platform_item_id=row.platform_item_id,
                        kind=row.kind,
                        series=row.series,
                        created_at=_iso(row.created_at),
                        first_captured_at=_iso(row.first_captured_at) or "",
                        content_sha256=row.content_sha256,
                        versions=row.versions,
                    )
                )
        return sorted(items, key=lambda i: i.item_id)

    def _versions(self) -> list[tuple[int, int, str, str | None]]:
        out: list[tuple[int, int, str, str | None]] = []
        for chunk in batches(self.doomed):
            rows = self.s.execute(
                select(
                    ItemVersion.id,
                    ItemVersion.item_id,
                    ItemVersion.warc_record_id,
                    ItemVersion.parquet_file_id,
                ).where(ItemVersion.item_id.in_(chunk))
            ).all()
            out.extend((r[0], r[1], r[2], r[3]) for r in rows)
        return out

    def _media(self, version_ids: Sequence[int]) -> list[int]:
        """Media rows only destroyed items carry; their records, revisits and requests go."""
        carried: set[int] = set()
        for chunk in batches(version_ids):
            carried.update(
                m
                for m in self.s.scalars(
                    select(ItemMedia.media_id).where(
                        ItemMedia.version_id.in_(chunk), ItemMedia.media_id.is_not(None)
                    )
                )
                if m is not None
            )
        carriers: dict[int, set[int]] = defaultdict(set)
        for chunk in batches(carried):
            for media_id, item_id in self.s.execute(
                select(ItemMedia.media_id, ItemVersion.item_id)
                .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
                .where(ItemMedia.media_id.in_(chunk))
            ):
                if media_id is not None:
                    carriers[media_id].add(item_id)
        gone = sorted(m for m in carried if carriers[m] <= self.doomed)
        media_rids: set[str] = set()
        for chunk in batches(gone):
            media_rids.update(
                self.s.scalars(select(Media.warc_record_id).where(Media.id.in_(chunk)))
            )
        for rec in _records(self.s, WarcRecord.record_id, media_rids):
            self.destroy(rec, WHY_MEDIA)
        for rec in _records(self.s, WarcRecord.refers_to, media_rids):
            if rec.warc_type == "revisit":
                self.destroy(rec, WHY_REVISIT)
        for rec in _records(self.s, WarcRecord.concurrent_to, media_rids):
            self.destroy(rec, WHY_PARTNER)
        return gone

    # -- raw exchanges ---------------------------------------------------------------

    def _index(self) -> None:
        """The platform ids of the accounts' items, and which of them are stubs already."""
        rows = []
        for account in sorted(self.windows):
            for platform_id, item_id, disposed_at in self.s.execute(
                select(Item.platform_item_id, Item.id, Item.disposed_at).where(
                    Item.account_id == account, Item.kind != "profile"
                )
            ):
                rows.append((account, platform_id, item_id))
                if disposed_at is not None:
                    self.disposed.add(item_id)
        self.ids = ItemIds(rows)

    def _file(self, file_id: str) -> tuple[str, str] | None:
        """(key, account) of a stored file, or None when it is not stored."""
        if file_id not in self._files_seen:
            row = self.s.get(StoredFile, file_id)
            if row is None or row.state != "stored" or not row.partition:
                return None
            self._files_seen[file_id] = (row.key, Partition.parse(row.partition).account)
        return self._files_seen[file_id]

    def _names(self, rec: _Rec) -> set[int] | None:
        """The items a raw exchange names (read once from the store)."""
        if rec.record_id not in self.named:
            where = self._file(rec.file_id)
            body = (
                None if where is None else read_body(self.store, where[0], rec.offset, rec.length)
            )
            self.named[rec.record_id] = (
                None if body is None or where is None else self.ids.named(where[1], body)
            )
        return self.named[rec.record_id]

    def _window_records(self) -> list[_Rec]:
        """The raw exchanges captured while an item to destroy could be seen."""
        found: list[_Rec] = []
        for account, (first, last) in sorted(self.windows.items()):
            months = _months(first, last)
            files = []
            for file_id, key, name in self.s.execute(
                select(StoredFile.id, StoredFile.key, StoredFile.partition).where(
                    StoredFile.kind == "warc",
                    StoredFile.state == "stored",
                    StoredFile.partition.like(f"%/{account}/%"),
                )
            ):
                part = Partition.parse(name) if name else None
                if part is not None and part.account == account and part.period in months:
                    files.append(file_id)
                    self._files_seen[file_id] = (key, account)
            exchanges = [
                r
                for r in _records(self.s, WarcRecord.file_id, files)
                if r.warc_type in EXCHANGE_TYPES
            ]
            media = self._existing(Media.warc_record_id, (r.record_id for r in exchanges))
            found.extend(r for r in exchanges if r.record_id not in media)
        return found

    def _exchanges(self, version_recs: Sequence[_Rec]) -> list[KeptExchange]:
        """Destroy the exchanges that name or evidence only destroyed items; keep the rest."""
        evidence = {r.refers_to for r in version_recs if r.refers_to}
        candidates = {r.record_id: r for r in _records(self.s, WarcRecord.record_id, evidence)}
        for rec in self._window_records():
            named = self._names(rec)
            if named and named & self.doomed:
                candidates[rec.record_id] = rec
        referrers = _referrers(self.s, candidates)
        gone: list[_Rec] = []
        kept_items: dict[str, set[int]] = {}
        for rid, rec in sorted(candidates.items()):
            named = (self._names(rec) or set()) | referrers.get(rid, set())
            others = named - self.doomed - self.disposed
            if others:
                kept_items[rid] = others
            elif self._names(rec) is None and rid not in evidence:
                continue  # unreadable: what it names is unknown, so it stays
            else:
                gone.append(rec)
        for rec in gone:
            self.destroy(rec, WHY_EXCHANGE)
        gone_ids = {r.record_id for r in gone}
        partners = {r.concurrent_to for r in gone if r.concurrent_to}
        for rec in _records(self.s, WarcRecord.record_id, partners):
            self.destroy(rec, WHY_PARTNER)
        for rec in _records(self.s, WarcRecord.concurrent_to, gone_ids):
            self.destroy(rec, WHY_PARTNER)
        needed: set[int] = set().union(*kept_items.values()) if kept_items else set()
        decisions = self.decide(needed) if needed else {}
        kept = []
        for rid, items in sorted(kept_items.items()):
            follows_on, why = _follows(sorted(items), decisions)
            kept.append(KeptExchange(rid, candidates[rid].file_id, sorted(items), follows_on, why))
        return kept

    def _files(self, plan: Plan) -> list[PlannedFile]:
        by_file: dict[str, set[str]] = defaultdict(set)
        for rec, _why in self.destroyed.values():
            by_file[rec.file_id].add(rec.record_id)
        files = []
        for file_id, doomed in sorted(by_file.items()):
            row = self.s.get(StoredFile, file_id)
            if row is None or row.state != "stored":
                plan.unstored[file_id] = sorted(doomed)
                continue
            recs = _records(self.s, WarcRecord.file_id, [file_id])
            owned = self._owned(recs)
            keep = [r for r in recs if r.record_id not in doomed]
            if any(r.record_id in owned for r in keep):
                files.append(PlannedFile.of(row, "compact", doomed, len(keep), str(ULID())))
                continue
            for rec in keep:  # belongs to nothing: goes with the file
                self.destroy(rec, WHY_CONTEXT)
            files.append(PlannedFile.of(row, "delete", (r.record_id for r in recs), 0))
        return files

    def _owned(self, recs: Sequence[_Rec]) -> set[str]:
        """The records of one file that belong to an item, media row or item's exchange."""
        # A link may cross into the partition's next file (rotation), so every test is
        # against the whole catalog, not only this file.
        rids = {r.record_id for r in recs}
        links = {r.refers_to for r in recs if r.refers_to} | {
            r.concurrent_to for r in recs if r.concurrent_to
        }
        versions = self._existing(ItemVersion.warc_record_id, rids | links)
        media = self._existing(Media.warc_record_id, rids | links)
        exchanges = set(_referrers(self.s, rids | links))  # what items were read from
        for r in recs:
            if r.warc_type in EXCHANGE_TYPES and r.record_id not in media:
                named = self._names(r)
                if named is None or named - self.doomed - self.disposed:
                    exchanges.add(r.record_id)  # it names a kept item (or may)
        anchors = versions | media | exchanges
        owned = rids & anchors
        for r in recs:
            if r.warc_type == "metadata" and r.refers_to in versions:
                owned.add(r.record_id)  # a state note
            elif r.warc_type == "revisit" and r.refers_to in media:
                owned.add(r.record_id)
            elif r.concurrent_to in anchors:
                owned.add(r.record_id)  # the request of a response that stays
        return owned

    def _existing(self, column: Any, values: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in batches(values):
            found.update(self.s.scalars(select(column).where(column.in_(chunk))))
        return found

    def _parquet(self, versions: Sequence[tuple[int, int, str, str | None]]) -> list[PlannedFile]:
        drop: dict[str, set[str]] = defaultdict(set)
        for _vid, _item, rid, parquet_id in versions:
            if parquet_id:
                drop[parquet_id].add(rid)
        files = []
        for file_id, rids in sorted(drop.items()):
            row = self.s.get(StoredFile, file_id)
            if row is None or row.state != "stored":
                continue  # already gone (an earlier disposition of the same partition)
            rows = set(
                self.s.scalars(
                    select(ItemVersion.warc_record_id).where(ItemVersion.parquet_file_id == file_id)
                )
            )
            whole = rows <= rids
            action, new_id = ("delete", None) if whole else ("compact", str(ULID()))
            files.append(PlannedFile.of(row, action, rids, len(rows - rids), new_id))
        return files


def _follows(items: Sequence[int], decisions: Mapping[int, Decision]) -> tuple[str | None, str]:
    """When an exchange kept for ``items`` can follow, and why it stays."""
    waiting = []
    latest: datetime | None = None
    for item_id in items:
        d = decisions.get(item_id)
        if d is None:
            waiting.append(f"item {item_id} (no retention decision)")
            continue
        if d.outcome in (Outcome.HELD, Outcome.PERMANENT, Outcome.AWAITING_EVENT):
            waiting.append(f"item {item_id} ({d.outcome.value}: {d.reason})")
            continue
        if d.eligible_on is None:
            waiting.append(f"item {item_id} ({d.reason})")
            continue
        latest = d.eligible_on if latest is None else max(latest, d.eligible_on)
    noun = "item" if len(items) == 1 else "items"
    if waiting:
        return None, (
            f"evidences kept {noun} {', '.join(map(str, items))}; no date yet: "
            + "; ".join(waiting)
        )
    last = "it is" if len(items) == 1 else "the last of them is"
    return _iso(latest), (
        f"evidences kept {noun} {', '.join(map(str, items))}; it goes when {last} "
        "destroyed (eligible from the date given)"
    )


def make_plan(session: Session, store: Store, item_ids: Iterable[int], decide: Decide) -> Plan:
    """The plan that destroys ``item_ids`` (items already disposed of are skipped).

    ``store`` is read for the raw exchanges that may name the items (:mod:`.evidence`);
    ``decide`` gives the retention decisions of the kept items an exchange still evidences
    (for the date it will follow).
    """
    return _Planner(session, store, item_ids, decide).plan()


# -- links of rows written before migration 0005 ----------------------------------------


def _head_links(data: bytes) -> tuple[str | None, str | None]:
    """``WARC-Refers-To`` and ``WARC-Concurrent-To`` of the record starting ``data``."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        text = inflater.decompress(data, 1 << 20)
    except zlib.error:
        return None, None
    head = text.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    refers = concurrent = None
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "warc-refers-to" and refers is None:
            refers = value.strip() or None
        elif name.strip().lower() == "warc-concurrent-to" and concurrent is None:
            concurrent = value.strip() or None
    return refers, concurrent


def backfill_links(session: Session, store: Store, item_ids: Iterable[int]) -> int:
    """Fill the links of rows written before migration 0005, for the runs that captured the
    versions of ``item_ids``: every record of such a run, read from its header in the store.

    A version's record always names its source, so a version record without a link marks
    its run as not yet backfilled. Returns how many rows were read.
    """
    runs: set[int] = set()
    for chunk in batches(item_ids):
        runs.update(
            r
            for r in session.scalars(
                select(WarcRecord.run_id)
                .join(ItemVersion, ItemVersion.warc_record_id == WarcRecord.record_id)
                .where(
                    ItemVersion.item_id.in_(chunk),
                    WarcRecord.warc_type == "conversion",
                    WarcRecord.refers_to.is_(None),
                    WarcRecord.run_id.is_not(None),
                )
                .distinct()
            )
            if r is not None
        )
    done = 0
    for chunk in batches(runs):
        rows = session.execute(
            select(WarcRecord.record_id, WarcRecord.offset, WarcRecord.length, StoredFile.key)
            .join(StoredFile, StoredFile.id == WarcRecord.file_id)
            .where(
                WarcRecord.run_id.in_(chunk),
                WarcRecord.refers_to.is_(None),
                WarcRecord.concurrent_to.is_(None),
            )
        ).all()
        for record_id, offset, length, key in rows:
            refers, concurrent = _head_links(store.get(key, offset, min(length, HEAD_BYTES)))
            done += 1
            if refers or concurrent:
                session.execute(
                    update(WarcRecord)
                    .where(WarcRecord.record_id == record_id)
                    .values(refers_to=refers, concurrent_to=concurrent)
                )
    if done:
        log.info("record links read from the store", records=done, runs=len(runs))
    return done
