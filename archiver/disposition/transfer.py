"""Transfer to another archive: a BagIt package of a report's items in a "transfer" series.

A series whose disposition is ``transfer`` (records of lasting value, e.g. to the
Wisconsin Historical Society) leaves the City's archive only after the receiving archive
has the records: ``archiver retention transfer REPORT --out DIR`` writes a BagIt 1.0 bag
(RFC 8493) of the report's eligible items of transfer series; the officer delivers it and
records the receipt (``archiver retention receipt``); disposition destroys those items
only once the receipt is recorded (:func:`archiver.disposition.report.transfer_receipt`).

The bag::

    bagit.txt                      BagIt-Version 1.0, UTF-8
    bag-info.txt                   Source-Organization (the City), Bagging-Date,
                                   External-Description (series, report), Payload-Oxum, ...
    data/records.warc.gz           every version of every item and the media they own, as
                                   the original WARC records: each record's gzip member
                                   copied verbatim from the store (digest-checked first)
    data/items.jsonl               one JSON line per item: its catalog facts, its versions
                                   (with their record ids and offsets in records.warc.gz)
                                   and its media files
    data/media/<sha256>.<ext>      the owned media, as captured (payload digest-checked)
    manifest-sha256.txt            SHA-256 of every payload file
    tagmanifest-sha256.txt         SHA-256 of the tag files

The bag is built in a hidden sibling directory and renamed into place when complete, so
``DIR`` is either absent or a whole bag.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from sqlalchemy import select
from ulid import ULID

from archiver import __version__, audit
from archiver.catalog.db import Catalog
from archiver.catalog.models import (
    Account,
    DispositionReport,
    DispositionReportItem,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
)
from archiver.disposition.report import record_transfer, refuse_closed
from archiver.errors import ArchiverError, IntegrityError, RetentionError
from archiver.retrieve import Located, locate_in, payload_of, read_located
from archiver.store.base import Store

BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
RECORDS = "data/records.warc.gz"
ITEMS = "data/items.jsonl"


@dataclass(frozen=True)
class Bag:
    """A transfer package written to disk, and what the report remembers of it."""

    path: Path
    report_id: str
    items: list[int]
    item_versions: dict[str, int]  # item id → how many versions it had when bagged
    series: list[str]
    records: int
    media: int
    payload_oxum: str
    tagmanifest_sha256: str
    made_at: datetime
    made_by: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.path.name,
            "path": str(self.path),
            "items": list(self.items),
            "item_versions": dict(self.item_versions),
            "series": list(self.series),
            "records": self.records,
            "media": self.media,
            "payload_oxum": self.payload_oxum,
            "tagmanifest_sha256": self.tagmanifest_sha256,
            "made_at": self.made_at.astimezone(UTC).isoformat(),
            "made_by": self.made_by,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _one_line(text: str) -> str:
    """A bag-info value on one line (a newline would start a new label)."""
    return " ".join(text.split())


class _Hashed:
    """A file written under the bag, hashed and counted as it is written."""

    def __init__(self, root: Path, relative: str) -> None:
        self.relative = relative
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("xb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        offset = self.size
        self.size += len(data)
        return offset

    def close(self) -> tuple[str, str, int]:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self.relative, self._hash.hexdigest(), self.size


def _manifest(entries: Sequence[tuple[str, str, int]]) -> str:
    # Two spaces, as sha256sum writes them: `sha256sum -c` checks the bag too.
    return "".join(f"{digest}  {name}\n" for name, digest, _ in sorted(entries))


def _write_tag(root: Path, name: str, text: str) -> tuple[str, str, int]:
    data = text.encode("utf-8")
    (root / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest(), len(data)


def transfer_items(
    catalog: Catalog, report_id: str, now: datetime
) -> tuple[DispositionReport, list[int], dict[str, dict[str, Any]]]:
    """The open report, its items in a transfer series, and those series' summaries."""
    with catalog.reader() as s:
        row = s.get(DispositionReport, report_id)
        if row is None:
            raise RetentionError(
                f"no disposition report {report_id!r}; list the reports with `archiver "
                "retention reports`"
            )
        refuse_closed(row, now, "transfer")
        series = {
            code: info
            for code, info in (row.summary or {}).get("series", {}).items()
            if info.get("action") == "transfer"
        }
        ids = (
            s.scalars(
                select(DispositionReportItem.item_id)
                .where(
                    DispositionReportItem.report_id == report_id,
                    DispositionReportItem.series.in_(sorted(series)),
                )
                .order_by(DispositionReportItem.item_id)
            ).all()
            if series
            else []
        )
        s.expunge(row)
    if not ids:
        raise RetentionError(
            f"disposition report {report_id} lists no item of a series whose disposition is "
            "transfer: there is nothing to transfer (items of destroy series are disposed of "
            f"with `archiver retention dispose {report_id}`)"
        )
    return row, list(ids), series


def make_bag(
    catalog: Catalog,
    store: Store,
    report_id: str,
    out: Path,
    *,
    operator: str,
    actor: str,
    now: datetime,
    zone: ZoneInfo,
) -> Bag:
    """Write the transfer bag of ``report_id`` at ``out`` (absent, or an empty directory).

    Every record is read with its digest checked, and every media payload against its
    SHA-256, before it goes into the bag. The bag is noted on the report and audited
    ("retention.transfer").
    """
    report, ids, series = transfer_items(catalog, report_id, now)
    out = out.absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArchiverError(f"{out} already exists and is not an empty directory; choose another")
    if not out.parent.is_dir():
        raise ArchiverError(f"{out.parent} does not exist; create it or choose another --out")
    work = out.parent / f".{out.name}.partial-{ULID()}"
    work.mkdir()
    try:
        counts, payload, item_versions = _write_payload(catalog, store, ids, work)
        oxum = f"{sum(size for _, _, size in payload)}.{len(payload)}"
        description = "; ".join(
            f"records series {code} ({info.get('title')}; authority: {info.get('authority')})"
            for code, info in sorted(series.items())
        )
        info_lines = [
            ("Source-Organization", operator),
            ("Bagging-Date", now.astimezone(zone).date().isoformat()),
            (
                "External-Description",
                f"{len(ids)} items of {description}, transferred under disposition report "
                f"{report_id} of {_iso(report.created_at)} from the social-media records "
                f"archive of {operator}",
            ),
            ("External-Identifier", f"disposition-report:{report_id}"),
            ("Internal-Sender-Identifier", report_id),
            ("Bag-Software-Agent", f"city-archiver/{__version__}"),
            ("Payload-Oxum", oxum),
        ]
        tags = [
            _write_tag(work, "bagit.txt", BAGIT_TXT),
            _write_tag(
                work,
                "bag-info.txt",
                "".join(f"{label}: {_one_line(value)}\n" for label, value in info_lines),
            ),
            _write_tag(work, "manifest-sha256.txt", _manifest(payload)),
        ]
        tag_manifest = _manifest(tags)
        _write_tag(work, "tagmanifest-sha256.txt", tag_manifest)
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    bag = Bag(
        path=out,
        report_id=report_id,
        items=ids,
        item_versions=item_versions,
        series=sorted(series),
        records=counts[0],
        media=counts[1],
        payload_oxum=oxum,
        tagmanifest_sha256=hashlib.sha256(tag_manifest.encode()).hexdigest(),
        made_at=now,
        made_by=actor,
    )
    with catalog.session() as s:
        record_transfer(s, report_id, bag.as_dict())
        audit.append(
            s,
            actor=actor,
            action="retention.transfer",
            subject=report_id,
            detail={
                "bag": out.name,
                "path": str(out),
                "items": len(ids),
                "series": sorted(series),
                "records": counts[0],
                "media": counts[1],
                "payload_oxum": oxum,
                "tagmanifest_sha256": bag.tagmanifest_sha256,
            },
        )
    return bag


def _write_payload(
    catalog: Catalog, store: Store, ids: list[int], work: Path
) -> tuple[tuple[int, int], list[tuple[str, str, int]], dict[str, int]]:
    """data/: records.warc.gz, media/, items.jsonl.

    Returns (records, media files), the manifest entries, and each item's version count.
    """
    with catalog.reader() as s:
        items = s.scalars(select(Item).where(Item.id.in_(ids)).order_by(Item.id)).all()
        platforms = {a: p for a, p in s.execute(select(Account.id, Account.platform)).all()}
        versions: dict[int, list[ItemVersion]] = defaultdict(list)
        for v in s.scalars(
            select(ItemVersion)
            .where(ItemVersion.item_id.in_(ids))
            .order_by(ItemVersion.item_id, ItemVersion.version_no)
        ):
            versions[v.item_id].append(v)
        owned: dict[int, list[Media]] = defaultdict(list)
        for item_id, media in s.execute(
            select(ItemVersion.item_id, Media)
            .join(ItemMedia, ItemMedia.version_id == ItemVersion.id)
            .join(Media, Media.id == ItemMedia.media_id)
            .where(ItemVersion.item_id.in_(ids))
            .order_by(ItemVersion.item_id, Media.id)
        ).all():
            if media not in owned[item_id]:
                owned[item_id].append(media)
        record_ids = [v.warc_record_id for vs in versions.values() for v in vs]
        record_ids += [m.warc_record_id for ms in owned.values() for m in ms]
        located: dict[str, Located] = locate_in(s, record_ids)
        s.expunge_all()
    missing = sorted(set(record_ids) - set(located))
    if missing:
        raise IntegrityError(
            f"the catalog has no pointer for records {', '.join(missing[:5])}; run "
            "`archiver verify` before transferring"
        )

    warc = _Hashed(work, RECORDS)
    placed: dict[str, tuple[int, int]] = {}  # record id → (offset, length) in the bag

    def copy(record_id: str) -> tuple[int, int]:
        if record_id not in placed:
            member = read_located(store, located[record_id]).member
            placed[record_id] = (warc.write(member), len(member))
        return placed[record_id]

    media_files: dict[str, str] = {}  # sha256 → its file in the bag
    entries: list[tuple[str, str, int]] = []
    lines: list[bytes] = []
    for item in items:
        doc_versions = []
        for v in versions[item.id]:
            offset, length = copy(v.warc_record_id)
            doc_versions.append(
                {
                    "version_no": v.version_no,
                    "captured_at": _iso(v.captured_at),
                    "change": v.change,
                    "content_sha256": v.content_sha256,
                    "warc_record_id": v.warc_record_id,
                    "warc_type": located[v.warc_record_id].warc_type,
                    "block_digest": located[v.warc_record_id].block_digest,
                    "records_offset": offset,
                    "records_length": length,
                }
            )
        doc_media = []
        for m in owned[item.id]:
            offset, length = copy(m.warc_record_id)
            name = media_files.get(m.sha256)
            if name is None:
                retrieved = read_located(store, located[m.warc_record_id])
                payload = payload_of(catalog, store, retrieved)
                if payload.sha256 != m.sha256:
                    raise IntegrityError(
                        f"media {m.sha256} of item {item.id}: the stored payload has sha256 "
                        f"{payload.sha256}; run `archiver verify`"
                    )
                ext = mimetypes.guess_extension(m.mime_type or "") or ".bin"
                f = _Hashed(work, f"data/media/{m.sha256}{ext}")
                f.write(payload.body)
                entries.append(f.close())
                media_files[m.sha256] = name = f.relative
            doc_media.append(
                {
                    "sha256": m.sha256,
                    "mime_type": m.mime_type,
                    "size": m.size,
                    "file": name.removeprefix("data/"),
                    "source_url": m.source_url,
                    "warc_record_id": m.warc_record_id,
                    "records_offset": offset,
                    "records_length": length,
                }
            )
        doc = {
            "item_id": item.id,
            "account": item.account_id,
            "platform": platforms.get(item.account_id),
            "platform_item_id": item.platform_item_id,
            "kind": item.kind,
            "series": item.series,
            "permalink": item.permalink,
            "author": item.author,
            "parent": item.platform_parent_id,
            "thread": item.thread_id,
            "state": item.state,
            "created_at": _iso(item.created_at),
            "first_captured_at": _iso(item.first_captured_at),
            "last_seen_at": _iso(item.last_seen_at),
            "content_sha256": item.content_sha256,
            "text": item.text,
            "versions": doc_versions,
            "media": doc_media,
        }
        lines.append(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    entries.append(warc.close())
    jsonl = _Hashed(work, ITEMS)
    for line in lines:
        jsonl.write(line)
    entries.append(jsonl.close())
    item_versions = {str(item.id): item.versions for item in items}
    return (len(placed), len(media_files)), entries, item_versions
