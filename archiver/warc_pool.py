"""The pool of open spool WARC files: one writer per partition, rotated by size and time.

Records of one capture run land in several partitions (items by creation month, exchanges
by capture month), so the run appends through a :class:`WriterPool` that keeps one open
:class:`~archiver.warc.WarcWriter` per partition and closes files when they are big, idle
or old. Closed files (:class:`~archiver.warc_records.ClosedWarc`) are handed back to the
caller (``archiver.spool``), which stores and registers them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from archiver.errors import ArchiverError
from archiver.layout import Partition
from archiver.warc import Clock, WarcInfo, WarcWriter, WriterClosedError, utc_now
from archiver.warc_media import spool_response
from archiver.warc_records import ClosedWarc, RecordPointer, WarcRecord


class WriterPool:
    """One open :class:`WarcWriter` per partition, rotated by size, idle time and age.

    Size is checked after every append made through the pool: the writer that reached
    ``max_size`` is closed at once, so a file exceeds ``max_size`` by at most one record
    and the partition's next record opens a new file. Closing between an append and the
    page's catalog commit is safe: closing syncs first, and pointers name the file id,
    which the rename keeps. Idle (``max_idle`` seconds since the last append) and age
    (``max_age`` seconds since opening, optional, so that a trickle of records does not
    keep a file only in the spool for months) are checked by :meth:`rotate_due`, which
    the caller runs between pages and on a timer.

    Closed files wait in the pool until the caller takes them from :meth:`rotate_due`,
    :meth:`close_all` or :meth:`take_closed`; the pool never touches the store or the
    catalog. Appends made directly on :meth:`writer_for`'s writer skip the size check
    until the next :meth:`rotate_due`.
    """

    def __init__(
        self,
        spool_dir: Path,
        info: WarcInfo,
        *,
        max_size: int,
        max_idle: float,
        max_age: float | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.spool_dir = spool_dir
        self.info = info
        self.max_size = max_size
        self.max_idle = max_idle
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._writers: dict[Partition, WarcWriter] = {}
        self._closed: list[ClosedWarc] = []

    @property
    def partitions(self) -> list[Partition]:
        """Partitions with an open file."""
        with self._lock:
            return sorted(self._writers)

    def writer_for(self, partition: Partition) -> WarcWriter:
        """The partition's open writer, opening a new file if it has none."""
        with self._lock:
            writer = self._writers.get(partition)
            if writer is None:
                writer = WarcWriter(self.spool_dir, partition, self.info, clock=self._clock)
                self._writers[partition] = writer
            return writer

    def append(self, partition: Partition, record: WarcRecord) -> RecordPointer:
        """Append to the partition's file; close the file if it reached ``max_size``."""
        while True:
            writer = self.writer_for(partition)
            try:
                ptr = writer.append(record)
            except WriterClosedError:
                # Rotated by another thread, or broken by a failed write: use a new file
                # (a broken one is left, synced, for recovery).
                if self._forget(partition, writer):
                    writer.abandon()
                continue
            if writer.size >= self.max_size and self._forget(partition, writer):
                self._close([writer])
            return ptr

    def append_response_stream(
        self,
        partition: Partition,
        target_uri: str,
        http_response_head: bytes,
        body: BinaryIO | Iterable[bytes],
        *,
        max_bytes: int,
        concurrent_to: str | None = None,
        date: datetime | None = None,
    ) -> RecordPointer:
        """Stream a (media) response into the partition's file; see ``WarcWriter``."""
        with spool_response(
            target_uri,
            http_response_head,
            body,
            max_bytes=max_bytes,
            tmp_dir=self.spool_dir,
            concurrent_to=concurrent_to,
            date=date,
        ) as spooled:
            return self.append(partition, spooled.record)

    def _forget(self, partition: Partition, writer: WarcWriter) -> bool:
        with self._lock:
            if self._writers.get(partition) is writer:
                del self._writers[partition]
                return True
            return False

    def _close(self, writers: list[WarcWriter]) -> None:
        """Close each writer; raise the first failure after trying them all."""
        failure: BaseException | None = None
        for writer in writers:
            try:
                closed = writer.close()
            except (ArchiverError, OSError) as exc:
                failure = failure or exc
                continue
            with self._lock:
                self._closed.append(closed)
        if failure is not None:
            raise failure

    def sync(self) -> None:
        """Flush and fsync every open file (before committing a page's catalog rows)."""
        with self._lock:
            writers = list(self._writers.values())
        for writer in writers:
            writer.sync()

    def take_closed(self) -> list[ClosedWarc]:
        """Files closed since the last call, oldest first."""
        with self._lock:
            closed, self._closed = self._closed, []
            return closed

    def rotate_due(self, now: datetime | None = None) -> list[ClosedWarc]:
        """Close files that are too big, idle or old; return every file closed since last asked.

        If closing one fails, the others are still closed and the error is raised; the
        files that did close stay available from :meth:`take_closed`.
        """
        now = now or self._clock()
        with self._lock:
            due = [p for p, w in self._writers.items() if self._due(w, now)]
            writers = [self._writers.pop(p) for p in due]
        self._close(writers)
        return self.take_closed()

    def _due(self, writer: WarcWriter, now: datetime) -> bool:
        if writer.size >= self.max_size:
            return True
        if (now - writer.last_write_at).total_seconds() >= self.max_idle:
            return True
        age = (now - writer.opened_at).total_seconds()
        return self.max_age is not None and age >= self.max_age

    def close_all(self) -> list[ClosedWarc]:
        """Close every open file (shutdown, end of run); return every file closed since asked."""
        with self._lock:
            writers = list(self._writers.values())
            self._writers.clear()
        self._close(writers)
        return self.take_closed()
