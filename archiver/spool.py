"""The spool: where WARC files are written before they enter the store.

A closed, verified spool file is put into the store, checked there with ``head``,
registered in the catalog and only then removed from the spool (:meth:`Spool.store_closed`).
Each step is idempotent, so a crash anywhere between them is healed by running it again,
which :meth:`Spool.recover` does at start for everything a crash left behind.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from archiver.catalog.db import Catalog
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.errors import ArchiverError, IntegrityError, StoreError
from archiver.layout import ObjectKind, sidecar_key
from archiver.logging import get_logger
from archiver.store.base import ObjectInfo, Store, put_bytes
from archiver.warc import SIDECAR_SUFFIX, read_sidecar
from archiver.warc_records import ClosedWarc, RecordPointer
from archiver.warc_recovery import CLOSED_SUFFIX, OPEN_SUFFIX, finalize_warc, repair_warc, scan_warc

log = get_logger(__name__)

#: Where files that cannot be placed or hold no valid record are moved, never deleted.
DAMAGED_DIR = "damaged"
#: Temporary files a crash can leave in the spool (small-object puts, sidecar writes,
#: Parquet files being rolled); :meth:`Spool.clean_stray` removes old ones.
STRAY_PATTERNS = (".put-*", ".*.tmp", "*.parquet")


class _FileLocks:
    """Which spool files are being put into the store by a thread of this process.

    A capture run stores its files when it ends while the daemon retries files left
    waiting by a store outage; the two must not store the same file at the same time.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, file_id: str, *, wait: bool = True) -> Iterator[bool]:
        with self._cond:
            while file_id in self._held:
                if not wait:
                    break
                self._cond.wait()
            mine = file_id not in self._held
            if mine:
                self._held.add(file_id)
        try:
            yield mine
        finally:
            if mine:
                with self._cond:
                    self._held.discard(file_id)
                    self._cond.notify_all()


_STORING = _FileLocks()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def put_sidecar(store: Store, key: str, closed: ClosedWarc, *, tmp_dir: Path) -> None:
    """Store the public ``<key>.sha256.json`` sidecar of a stored WARC, unless it is there.

    Also used by ``archiver.compact`` for the files it rewrites, so every WARC's sidecar has
    the one format the catalog rebuild reads.
    """
    put_file_sidecar(
        store, key, file_id=closed.file_id, partition=closed.partition.name,
        sha256=closed.sha256, size=closed.size, records=closed.record_count, tmp_dir=tmp_dir,
    )  # fmt: skip


def put_file_sidecar(
    store: Store, key: str, *, file_id: str, partition: str, sha256: str, size: int,
    records: int, tmp_dir: Path,
) -> None:  # fmt: skip
    """Store the public ``<key>.sha256.json`` sidecar of any stored file, unless it is there.

    One format for WARC and Parquet files (``records`` counts a Parquet file's rows): each
    file's SHA-256 is recorded in the catalog *and* next to the file, so the store alone
    can verify itself (docs/layout.md).
    """
    target = sidecar_key(key)
    if store.exists(target):
        return
    body = json.dumps(
        {
            "file_id": file_id,
            "key": key,
            "partition": partition,
            "sha256": sha256,
            "size": size,
            "records": records,
        },
        sort_keys=True,
        indent=1,
    ).encode()
    put_bytes(store, target, body, tmp_dir=tmp_dir)


@dataclass(frozen=True, slots=True)
class SpoolState:
    """What ``archiver status`` shows of the spool."""

    path: Path
    open_files: int
    waiting_files: int
    damaged_files: int
    bytes: int
    max_bytes: int


@dataclass(slots=True)
class RecoveredFile:
    file_id: str
    key: str | None
    records: int
    cut_bytes: int
    orphans: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass(slots=True)
class RecoveryReport:
    """What start-up recovery did; every entry is also logged."""

    files: list[RecoveredFile] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    @property
    def orphans(self) -> int:
        return sum(len(f.orphans) for f in self.files)


class Spool:
    """The spool directory of one node, and the path from it into the store and catalog."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        catalog: Catalog,
        *,
        max_bytes: int,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.directory = directory
        self.store = store
        self.catalog = catalog
        self.max_bytes = max_bytes
        self._clock = clock

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)

    # -- into the store -------------------------------------------------------------------

    def store_closed(self, closed: ClosedWarc) -> StoredFile:
        """Put a closed spool WARC into the store, check it there, register it, remove it."""
        with _STORING.hold(closed.file_id):
            return self._store_closed(closed)

    def store_waiting(self, *, stop: threading.Event | None = None) -> list[str]:
        """Retry storing the closed files that wait in the spool; the ids stored.

        Files wait there when the store failed as their run ended (or at start-up
        recovery). A :class:`StoreError` stops the round and propagates, so the caller can
        back off; a file that fails verification is logged and left for an operator.
        With ``stop``, the round ends early once it is set.
        """
        stored = []
        for path in sorted(self.directory.glob(f"*{CLOSED_SUFFIX}")):
            if stop is not None and stop.is_set():
                break
            file_id = path.name.removesuffix(CLOSED_SUFFIX)
            sidecar = self.directory / f"{file_id}{SIDECAR_SUFFIX}"
            if not sidecar.is_file():
                continue  # start-up recovery decides about a file without its sidecar
            with _STORING.hold(file_id, wait=False) as mine:
                if not mine or not path.exists():
                    continue  # a run is storing it right now, or just did
                try:
                    closed = finalize_warc(path, read_sidecar(sidecar).partition)
                except IntegrityError as exc:
                    log.error(
                        "waiting spool file fails verification", path=str(path), error=str(exc)
                    )
                    continue
                self._store_closed(closed)
                stored.append(file_id)
        return stored

    def clean_stray(self, older_than: timedelta) -> list[str]:
        """Remove temporary files a crash left in the spool, if older than ``older_than``."""
        if not self.directory.is_dir():
            return []
        cutoff = self._clock().timestamp() - older_than.total_seconds()
        removed = []
        for pattern in STRAY_PATTERNS:
            for path in self.directory.glob(pattern):
                try:
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path.name)
                except FileNotFoundError:
                    continue
        if removed:
            log.info("stray spool files removed", files=sorted(removed))
        return sorted(removed)

    def _store_closed(self, closed: ClosedWarc) -> StoredFile:
        key = closed.partition.key(ObjectKind.WARC, closed.file_id)
        info = self._put_once(key, closed.path, closed.sha256)
        if info.size != closed.size or not hmac.compare_digest(info.sha256, closed.sha256):
            raise IntegrityError(
                f"the store holds {key} with size {info.size} and sha256 {info.sha256}, but the "
                f"spool file has {closed.size} and {closed.sha256}; the spool copy was kept"
            )
        self._put_sidecar(key, closed)
        now = self._clock()
        with self.catalog.session() as session:
            row = session.get(StoredFile, closed.file_id)
            if row is None:
                row = StoredFile(
                    id=closed.file_id,
                    key=key,
                    kind=ObjectKind.WARC.value,
                    partition=closed.partition.name,
                    sha256=closed.sha256,
                    size=closed.size,
                    records=closed.record_count,
                    created_at=closed.first_record_at,
                    stored_at=now,
                    retain_until=info.retain_until,
                    legal_hold=info.legal_hold,
                    state="stored",
                )
                session.add(row)
            elif row.sha256 != closed.sha256:
                raise IntegrityError(
                    f"the catalog records file {closed.file_id} with sha256 {row.sha256}, "
                    f"the spool file has {closed.sha256}; nothing was removed"
                )
        self._remove(closed.path, self.directory / f"{closed.file_id}{SIDECAR_SUFFIX}")
        log.info(
            "warc stored",
            file_id=closed.file_id,
            key=key,
            size=closed.size,
            records=closed.record_count,
        )
        return row

    def _put_once(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        # A crash after the put but before the catalog commit leaves the object stored:
        # finding the same bytes there is success, finding other bytes is an integrity error.
        if self.store.exists(key):
            return self.store.head(key)
        return self.store.put(key, path, sha256)

    def _put_sidecar(self, key: str, closed: ClosedWarc) -> None:
        put_sidecar(self.store, key, closed, tmp_dir=self.directory)

    def _remove(self, *paths: Path) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Finish whatever a crash left in the spool; report torn tails and orphan records."""
        self.prepare()
        report = RecoveryReport()
        sidecars = {
            p.name.removesuffix(SIDECAR_SUFFIX): p
            for p in self.directory.glob(f"*{SIDECAR_SUFFIX}")
        }
        for path in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
            file_id = path.name.removesuffix(OPEN_SUFFIX)
            if file_id not in sidecars:
                report.damaged.append(self._set_aside(path, "no spool sidecar names its partition"))
                continue
            report.files.append(self._recover_file(path, sidecars.pop(file_id)))
        for path in sorted(self.directory.glob(f"*{CLOSED_SUFFIX}")):
            file_id = path.name.removesuffix(CLOSED_SUFFIX)
            if file_id not in sidecars:
                report.damaged.append(self._set_aside(path, "no spool sidecar names its partition"))
                continue
            report.files.append(self._recover_file(path, sidecars.pop(file_id)))
        for file_id, sidecar in sidecars.items():
            # The WARC went into the store; the crash came before its sidecar was removed.
            with self.catalog.session() as session:
                known = session.get(StoredFile, file_id) is not None
            if known:
                self._remove(sidecar)
            else:
                report.damaged.append(
                    self._set_aside(
                        sidecar, "its WARC file is neither in the spool nor in the catalog"
                    )
                )
        return report

    def _recover_file(self, path: Path, sidecar_path: Path) -> RecoveredFile:
        sidecar = read_sidecar(sidecar_path)
        file_id = sidecar.file_id
        records: tuple[RecordPointer, ...]
        cut = 0
        if path.name.endswith(OPEN_SUFFIX):
            try:
                repaired = repair_warc(path)
            except IntegrityError as exc:
                # Damage in the middle, not a torn tail: cut only if nothing committed lies
                # beyond it, and keep a copy of the whole file either way.
                good_end = scan_warc(path).good_end
                if self._committed_beyond(file_id, good_end):
                    where = self._set_aside(path, str(exc))
                    self._set_aside(sidecar_path, "its WARC file was set aside")
                    return RecoveredFile(
                        file_id, None, 0, 0, problem=f"{exc}; set aside as {where}"
                    )
                self._keep_copy(path, str(exc))
                repaired = repair_warc(path, force=True)
            records, cut = repaired.records, repaired.cut_bytes
            if cut:
                log.warning(
                    "torn spool file repaired",
                    file_id=file_id,
                    kept_records=len(records),
                    cut_bytes=cut,
                    reason=repaired.problem,
                )
            if repaired.empty:
                where = self._set_aside(path, "no complete record survived the crash")
                self._set_aside(sidecar_path, "its WARC file held no complete record")
                return RecoveredFile(file_id, None, 0, cut, problem=f"set aside as {where}")
        else:
            records = scan_warc(path).records
        orphans = self._orphans(file_id, records)
        if orphans:
            log.warning("orphan records in spool file", file_id=file_id, orphans=len(orphans))
        try:
            closed = finalize_warc(path, sidecar.partition)
            stored = self.store_closed(closed)
        except ArchiverError as exc:
            log.error("spool file could not be stored", file_id=file_id, error=str(exc))
            return RecoveredFile(file_id, None, len(records), cut, orphans, problem=str(exc))
        return RecoveredFile(file_id, stored.key, len(records), cut, orphans)

    def _orphans(self, file_id: str, records: tuple[RecordPointer, ...]) -> list[str]:
        """Records written and synced but never committed: no catalog row points to them."""
        with self.catalog.reader() as session:
            known = set(
                session.scalars(select(WarcRecord.record_id).where(WarcRecord.file_id == file_id))
            )
        return [
            r.record_id for r in records if r.warc_type != "warcinfo" and r.record_id not in known
        ]

    def _committed_beyond(self, file_id: str, offset: int) -> bool:
        with self.catalog.reader() as session:
            last = session.scalar(
                select(func.max(WarcRecord.offset + WarcRecord.length)).where(
                    WarcRecord.file_id == file_id
                )
            )
        return last is not None and last > offset

    def _damaged_dir(self) -> Path:
        damaged = self.directory / DAMAGED_DIR
        damaged.mkdir(exist_ok=True, mode=0o750)
        return damaged

    def _keep_copy(self, path: Path, why: str) -> None:
        target = self._damaged_dir() / f"{path.name}.before-repair"
        shutil.copy2(path, target)
        log.error(
            "damaged spool file copied before repair", path=str(path), copy=str(target), reason=why
        )

    def _set_aside(self, path: Path, why: str) -> str:
        target = self._damaged_dir() / path.name
        shutil.move(path, target)
        log.error("spool file set aside", path=str(path), moved_to=str(target), reason=why)
        return str(target)

    # -- state -----------------------------------------------------------------------------

    def state(self) -> SpoolState:
        def files(pattern: str, where: Path) -> list[Path]:
            return list(where.glob(pattern)) if where.is_dir() else []

        def size_of(path: Path) -> int:
            # Another worker's run renames its file at close and removes it once stored:
            # one listed a moment ago may be gone, which is no error.
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return 0

        open_files = files(f"*{OPEN_SUFFIX}", self.directory)
        waiting = files(f"*{CLOSED_SUFFIX}", self.directory)
        damaged = files("*", self.directory / DAMAGED_DIR)
        size = sum(size_of(p) for p in (*open_files, *waiting, *damaged))
        return SpoolState(
            self.directory, len(open_files), len(waiting), len(damaged), size, self.max_bytes
        )

    def check_space(self) -> None:
        """Refuse to start new work when the spool is over its size limit."""
        state = self.state()
        if state.bytes > self.max_bytes:
            raise StoreError(
                f"the spool {self.directory} holds {state.bytes} bytes, over its limit of "
                f"{self.max_bytes} ([spool] max_bytes): check that the store is reachable"
            )
