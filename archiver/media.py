"""Media of captured items: fetched through the client, stored once per sha256 per partition.

Media belongs to the partition of the item that carries it (the item's creation month), so
that disposing of a partition takes its media along and nothing outside it depends on it. A
second capture of the same bytes in the same partition writes a ``revisit`` record pointing
at the first; deduplication never crosses a partition.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Media
from archiver.config import Config
from archiver.connector import MediaRef
from archiver.errors import CaptureError
from archiver.layout import Partition
from archiver.logging import get_logger
from archiver.warc_media import PayloadTooLargeError, SpooledResponse, spool_resource
from archiver.warc_pool import WriterPool
from archiver.warc_records import RecordPointer, label_to_hex, revisit_record

log = get_logger(__name__)


@dataclass(slots=True)
class StoredMedia:
    """What happened to one media reference; ``sha256`` is None when no bytes were kept."""

    ref: MediaRef
    partition: Partition
    status: str  # "stored", "revisit", "too_large", "failed", "no_source"
    sha256: str | None = None
    size: int | None = None
    record: RecordPointer | None = None  # the response/resource (or the original, for a revisit)
    source_url: str | None = None
    detail: str | None = None
    pointers: list[RecordPointer] = field(default_factory=list)  # every record written for it

    def upsert(self, session: Session, now: datetime) -> Media | None:
        """The catalog row of these bytes in this partition (added when they were stored now)."""
        if self.sha256 is None:
            return None
        row = session.scalars(
            select(Media).where(Media.sha256 == self.sha256, Media.partition == self.partition.name)
        ).first()
        if row is None and self.record is not None:
            row = Media(
                sha256=self.sha256,
                partition=self.partition.name,
                size=self.size or 0,
                mime_type=self.ref.mime_type,
                source_url=self.source_url,
                warc_file_id=self.record.file_id,
                warc_offset=self.record.offset,
                warc_length=self.record.length,
                warc_record_id=self.record.record_id,
                first_captured_at=now,
            )
            session.add(row)
            session.flush()
        return row


@dataclass(frozen=True, slots=True)
class _Original:
    record_id: str
    target_uri: str
    date: datetime


class MediaFetcher:
    """Fetches and stores the media of one run; remembers what the run already wrote."""

    def __init__(self, config: Config, catalog: Catalog, pool: WriterPool, source: Any) -> None:
        self.max_bytes = config.warc.max_media_bytes
        self.tmp_dir = config.spool.path
        self.catalog = catalog
        self.pool = pool
        self.source = source
        self._written: dict[tuple[str, str], _Original] = {}

    def store(self, ref: MediaRef, partition: Partition, stats: Any) -> StoredMedia:
        try:
            if ref.url is not None and hasattr(self.source, "download"):
                return self._from_http(ref, partition, stats)
            if ref.archive_path is not None and hasattr(self.source, "stream"):
                return self._from_archive(ref, partition, stats)
        except PayloadTooLargeError as exc:
            stats.media_too_large += 1
            log.warning("media over the size limit", media=ref.media_id, detail=str(exc))
            return StoredMedia(ref, partition, "too_large", detail=str(exc))
        except CaptureError as exc:
            # One image failing does not stop the capture of the posts around it.
            stats.media_failed += 1
            log.warning("media could not be fetched", media=ref.media_id, detail=str(exc))
            return StoredMedia(ref, partition, "failed", detail=str(exc))
        return StoredMedia(
            ref, partition, "no_source", detail="no URL or archive entry to fetch it from"
        )

    def _original(self, sha256: str, partition: Partition) -> _Original | None:
        known = self._written.get((sha256, partition.name))
        if known is not None:
            return known
        with self.catalog.reader() as s:
            row = s.scalars(
                select(Media).where(Media.sha256 == sha256, Media.partition == partition.name)
            ).first()
            if row is None:
                return None
            return _Original(row.warc_record_id, row.source_url or "", row.first_captured_at)

    def _keep(
        self,
        ref: MediaRef,
        partition: Partition,
        spooled: SpooledResponse,
        extra: list[RecordPointer],
        stats: Any,
        source_url: str,
    ) -> StoredMedia:
        sha = label_to_hex(spooled.payload_digest)
        original = self._original(sha, partition)
        with spooled:
            if original is None:
                pointer = self.pool.append(partition, spooled.record)
                self._written[(sha, partition.name)] = _Original(
                    pointer.record_id, source_url, pointer.date
                )
                stats.media_stored += 1
                return StoredMedia(
                    ref, partition, "stored", sha, spooled.payload_size, pointer, source_url,
                    pointers=[*extra, pointer],
                )  # fmt: skip
            stats.media_revisits += 1
            pointers = list(extra)
            # An HTTP response seen again is recorded as a revisit of the first capture; an
            # export entry has no exchange to record, the catalog row points to the original.
            if spooled.record.warc_type == "response":
                pointers.append(
                    self.pool.append(
                        partition,
                        revisit_record(
                            source_url,
                            spooled.record.block_head,
                            payload_digest=spooled.payload_digest,
                            refers_to=original.record_id,
                            refers_to_target_uri=original.target_uri or source_url,
                            refers_to_date=original.date,
                        ),
                    )
                )
            return StoredMedia(
                ref, partition, "revisit", sha, spooled.payload_size, None, source_url,
                pointers=pointers,
            )  # fmt: skip

    def _from_http(self, ref: MediaRef, partition: Partition, stats: Any) -> StoredMedia:
        assert ref.url is not None
        download = self.source.download(ref.url, max_bytes=self.max_bytes, tmp_dir=self.tmp_dir)
        # Redirect hops and failed attempts are evidence of this download too.
        pointers = [self.pool.append(partition, record) for record in download.history]
        pointers.append(self.pool.append(partition, download.request))
        if not 200 <= download.status_code < 300:
            with download.response as spooled:
                pointers.append(self.pool.append(partition, spooled.record))
            stats.media_failed += 1
            detail = f"the platform answered HTTP {download.status_code}"
            log.warning("media could not be fetched", media=ref.media_id, detail=detail)
            return StoredMedia(ref, partition, "failed", detail=detail, pointers=pointers)
        return self._keep(ref, partition, download.response, pointers, stats, ref.url)

    def _from_archive(self, ref: MediaRef, partition: Partition, stats: Any) -> StoredMedia:
        assert ref.archive_path is not None
        uri = self.source.entry_uri(ref.archive_path)
        kind = (
            ref.mime_type or mimetypes.guess_type(ref.archive_path)[0] or "application/octet-stream"
        )
        spooled = spool_resource(
            uri,
            kind,
            self.source.stream(ref.archive_path),
            max_bytes=self.max_bytes,
            tmp_dir=self.tmp_dir,
        )
        return self._keep(ref, partition, spooled, [], stats, uri)
