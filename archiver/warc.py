"""Writing WARC/1.1 spool files: one writer per open file, one file per partition.

A :class:`WarcWriter` owns one spool file, ``<spool>/<file-id>.warc.gz.open``, next to a
JSON sidecar ``<spool>/<file-id>.json`` (partition, creation time, warcinfo fields) that is
written first, atomically, so that crash recovery always knows where an open file belongs.
The file starts with a ``warcinfo`` record; each record is one gzip member, at the zlib
level :func:`archiver.warc_media.member_level` chooses for it, in the byte layout warcio's
``WARCWriter`` writes (``warcio check`` and ``warcio index`` read the files).

Digests are never computed here: records come from the builders in
:mod:`archiver.warc_records` with their SHA-256 block and payload digests already set (a
record without them is refused), so a body is hashed once per digest while the builder
holds or streams it, and never re-read for a digest as warcio's writer would. The write
order is the caller's: append → :meth:`WarcWriter.sync` (flush + fsync) → commit the
catalog rows.

Closing re-reads the file once (every digest checked, whole-file SHA-256) and renames it to
``<file-id>.warc.gz``; the caller (``archiver.spool``) takes it to the store and catalog,
which nothing here touches. ``archiver.warc_pool`` keeps one writer per partition.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from ulid import ULID

from archiver.errors import ArchiverError, IntegrityError
from archiver.layout import Partition
from archiver.warc_media import (
    STORED_BLOCK_MAX,
    STORED_GZIP_HEADER,
    STORED_LEVEL,
    GzipMember,
    PayloadTooLargeError,
    crc32_combine,
    member_level,
    spool_response,
    stored_block_header,
)
from archiver.warc_records import (
    WARC_VERSION,
    ClosedWarc,
    RecordPointer,
    WarcRecord,
    format_warc_date,
    link_values,
    warcinfo_record,
)
from archiver.warc_recovery import (
    CLOSED_SUFFIX,
    OPEN_SUFFIX,
    RecordsFingerprint,
    finalize_warc,
    fsync_dir,
)

__all__ = [
    "Clock",
    "ClosedWarc",
    "PayloadTooLargeError",
    "RecordPointer",
    "SpoolSidecar",
    "WarcInfo",
    "WarcWriter",
    "WriterClosedError",
    "closed_path",
    "open_path",
    "read_sidecar",
    "sidecar_path",
    "utc_now",
]

Clock = Callable[[], datetime]
SIDECAR_SUFFIX = ".json"
_SIDECAR_FORMAT = 1
_FLUSH_AT = 1 << 20
_BODY_READ = 1 << 20


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def open_path(spool_dir: Path, file_id: str) -> Path:
    """``<spool>/<file-id>.warc.gz.open``: the file while it is written."""
    return spool_dir / f"{file_id}{OPEN_SUFFIX}"


def closed_path(spool_dir: Path, file_id: str) -> Path:
    """``<spool>/<file-id>.warc.gz``: the file once closed and verified."""
    return spool_dir / f"{file_id}{CLOSED_SUFFIX}"


def sidecar_path(spool_dir: Path, file_id: str) -> Path:
    """``<spool>/<file-id>.json``: the open file's partition and warcinfo fields."""
    return spool_dir / f"{file_id}{SIDECAR_SUFFIX}"


class WriterClosedError(ArchiverError):
    """The writer was closed (rotated) or broken; open a new one for the partition."""


@dataclass(frozen=True, slots=True)
class WarcInfo:
    """What every file's ``warcinfo`` says besides its partition."""

    software: str
    dependencies: Mapping[str, str]  # locked package versions, name → version
    operator: str
    node: str

    def fields(self, partition: Partition, file_id: str) -> list[tuple[str, str]]:
        """The warcinfo block's fields for one file."""
        return [
            ("software", self.software),
            ("format", "WARC File Format 1.1"),
            ("operator", self.operator),
            ("hostname", self.node),
            ("isPartOf", partition.name),
            ("series", partition.series),
            ("account", partition.account),
            ("period", partition.period),
            ("file-id", file_id),
            *(("dependency", f"{n}=={v}") for n, v in sorted(self.dependencies.items())),
        ]


@dataclass(frozen=True, slots=True)
class SpoolSidecar:
    """The contents of ``<file-id>.json`` next to an open spool file."""

    file_id: str
    partition: Partition
    created: datetime
    info: WarcInfo


def read_sidecar(path: Path) -> SpoolSidecar:
    """Read the sidecar of an open spool file (crash recovery uses it to find the partition)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        info = data["warcinfo"]
        return SpoolSidecar(
            file_id=data["file_id"],
            partition=Partition.parse(data["partition"]),
            created=datetime.fromisoformat(data["created"]),
            info=WarcInfo(
                info["software"], dict(info["dependencies"]), info["operator"], info["node"]
            ),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiverError(f"cannot read spool sidecar {path}: {exc}") from exc


def _write_sidecar(path: Path, sidecar: SpoolSidecar) -> None:
    data = {
        "format": _SIDECAR_FORMAT,
        "file_id": sidecar.file_id,
        "partition": sidecar.partition.name,
        "created": sidecar.created.isoformat(),
        "warcinfo": {
            "software": sidecar.info.software,
            "dependencies": dict(sidecar.info.dependencies),
            "operator": sidecar.info.operator,
            "node": sidecar.info.node,
        },
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


#: Errors of ``copy_file_range`` that mean "not here" (another filesystem, an old kernel,
#: a filesystem without it): the bytes are then copied through user space.
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF}
)


class _Sink:
    """Appends to the spool file through a buffer that is dropped if a record fails midway."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self._path = path
        self._written = 0
        self._buf = bytearray()
        # copy_file_range refuses an O_APPEND descriptor: kernel copies go through a
        # second one, at explicit offsets (opened on the first copy).
        self._copy_fd: int | None = None
        self._kernel_copy = hasattr(os, "copy_file_range")

    def tell(self) -> int:
        return self._written + len(self._buf)

    def write(self, data: bytes) -> None:
        if len(data) >= _FLUSH_AT:
            # A large piece (a media body's compressed chunk) goes straight from the
            # caller's buffer to the file: copying it into ours first would cost a memcpy.
            self.flush()
            self._write_all(memoryview(data))
            return
        self._buf += data
        if len(self._buf) >= _FLUSH_AT:
            self.flush()

    def copy_from(self, src: int, offset: int, count: int) -> int:
        """Append ``count`` bytes of file ``src`` from ``offset``; how many there were.

        In the kernel (``copy_file_range``: no trip through user space, a reflink where
        the filesystem can) when it can, else read and written here.
        """
        self.flush()
        done = 0
        while done < count:
            n = self._kernel(src, offset + done, count - done) if self._kernel_copy else None
            if n is None:
                data = os.pread(src, min(count - done, _BODY_READ), offset + done)
                self._write_all(memoryview(data))
                n = len(data)
            else:
                self._written += n
            if n == 0:
                break  # the source ends early: the caller finds the count short
            done += n
        return done

    def _kernel(self, src: int, offset: int, count: int) -> int | None:
        if self._copy_fd is None:
            self._copy_fd = os.open(self._path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return os.copy_file_range(src, self._copy_fd, count, offset, self._written)
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            self._kernel_copy = False
            return None

    def flush(self) -> None:
        buf, self._buf = self._buf, bytearray()  # dropped even if writing fails, as before
        if buf:
            self._write_all(memoryview(buf))

    def _write_all(self, view: memoryview) -> None:
        while view:
            n = os.write(self.fd, view)
            view, self._written = view[n:], self._written + n

    def rollback(self, offset: int) -> None:
        """Forget everything after ``offset`` (the fd is O_APPEND, so writes follow the end)."""
        self._buf.clear()
        os.ftruncate(self.fd, offset)
        self._written = offset

    def close(self) -> None:
        try:
            if self._copy_fd is not None:
                os.close(self._copy_fd)
        finally:
            os.close(self.fd)


class _BodyReader:
    """The body as the writer reads it, counted, so a body that changed length is caught."""

    def __init__(self, body: bytes | BinaryIO) -> None:
        self._body = body
        self._at = 0

    @property
    def count(self) -> int:
        return self._at

    def read(self, size: int = -1) -> bytes:
        if isinstance(self._body, bytes):
            end = len(self._body) if size < 0 else self._at + size
            chunk = self._body[self._at : end]
        else:
            chunk = self._body.read(size)
        self._at += len(chunk)
        return chunk


#: Record types without a payload digest of their own (as in warcio's writer).
_NO_PAYLOAD_DIGEST = frozenset({"warcinfo", "revisit"})


def _write_member(
    out: _Sink, record: WarcRecord, headers: list[tuple[str, str]], level: int
) -> int:
    """Write ``record`` as one gzip member at zlib ``level``: WARC head, block, CRLF CRLF.

    The same bytes warcio's writer produced, serialized here: warcio rebuilt its header
    objects for every record, which cost more than deflating a small record. Nothing is
    hashed: digests come from the builders in :mod:`archiver.warc_records`. Returns the
    body bytes written.
    """
    if not record.block_digest or (
        record.payload_digest is None and record.warc_type not in _NO_PAYLOAD_DIGEST
    ):
        raise AssertionError("WARC digests must be computed by archiver.warc_records")
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = f"{WARC_VERSION}\r\n{fields}\r\n".encode() + record.block_head
    if level == STORED_LEVEL and record.body_crc32 is not None and _is_file(record.body):
        size = record.block_length - len(record.block_head)
        return _write_stored_file(out, head, cast(BinaryIO, record.body), record.body_crc32, size)
    member = GzipMember(cast(BinaryIO, out), level)  # it only calls write and flush
    member.write(head)
    if not isinstance(record.body, bytes):
        record.body.seek(0)
    body = _BodyReader(record.body)
    while chunk := body.read(_BODY_READ):
        member.write(chunk)
    member.write(b"\r\n\r\n")
    member.flush()
    return body.count


def _is_file(body: bytes | BinaryIO) -> bool:
    if isinstance(body, bytes):
        return False
    try:
        body.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _write_stored_file(out: _Sink, head: bytes, body: BinaryIO, body_crc: int, size: int) -> int:
    """A stored gzip member around a spooled body, the body never read into this process.

    Already-compressed media is not deflated anyway (level 0): its member is the body
    framed in stored deflate blocks. So the 5-byte block headers are written here, the
    body's bytes are copied file to file between them, and the member's CRC-32 comes from
    the head's and the CRC the spool computed as the body streamed in. The verifying
    re-read at close inflates the member and checks its CRC and both digests, so a copy
    that went wrong cannot pass unnoticed. Returns the body bytes copied (short if the
    file ended early: the caller refuses the record).
    """
    body.flush()
    src = body.fileno()
    if (on_disk := os.fstat(src).st_size) != size:
        return on_disk  # the caller refuses a body that changed length
    out.write(STORED_GZIP_HEADER)
    for at in range(0, len(head), STORED_BLOCK_MAX):
        piece = head[at : at + STORED_BLOCK_MAX]
        out.write(stored_block_header(len(piece)) + piece)
    copied = 0
    while copied < size:
        n = min(STORED_BLOCK_MAX, size - copied)
        out.write(stored_block_header(n))
        got = out.copy_from(src, copied, n)
        copied += got
        if got < n:
            return copied
    tail = b"\r\n\r\n"
    out.write(stored_block_header(len(tail), final=True) + tail)
    crc = zlib.crc32(tail, crc32_combine(zlib.crc32(head), body_crc, size))
    isize = (len(head) + size + len(tail)) & 0xFFFFFFFF
    out.write(crc.to_bytes(4, "little") + isize.to_bytes(4, "little"))
    out.flush()
    return copied


class WarcWriter:
    """One open spool WARC file of one partition. Safe to share between threads."""

    def __init__(
        self,
        spool_dir: Path,
        partition: Partition,
        info: WarcInfo,
        *,
        clock: Clock = utc_now,
        file_id: str | None = None,
    ) -> None:
        self.partition = partition
        self.file_id = file_id or str(ULID())
        self.path = open_path(spool_dir, self.file_id)
        self._clock = clock
        self._lock = threading.Lock()
        self._fingerprint = RecordsFingerprint()
        # Appended to (or cut back) since the last fsync: a sync of a clean file is a no-op,
        # so a page commit fsyncs only the files the page wrote to.
        self._dirty = False
        self._state: str | None = None  # why appends are refused: closed or broken
        self.opened_at = clock()
        self.last_write_at = self.opened_at
        # The sidecar comes first: an .open file without one could not be placed after a crash.
        _write_sidecar(
            sidecar_path(spool_dir, self.file_id),
            SpoolSidecar(self.file_id, partition, self.opened_at, info),
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._sink = _Sink(os.open(self.path, flags, 0o640), self.path)
        self.warcinfo_id = ""  # set once the warcinfo record, which carries none, is written
        record = warcinfo_record(
            f"{self.file_id}{CLOSED_SUFFIX}",
            info.fields(partition, self.file_id),
            date=self.opened_at,
        )
        try:
            fsync_dir(spool_dir)
            self._append(record)
            self.warcinfo_id = record.record_id
            self.sync()
        except BaseException:
            self._sink.close()
            self._state = "broken (its warcinfo record could not be written)"
            raise

    @property
    def size(self) -> int:
        """Bytes in the file so far."""
        return self._sink.tell()

    @property
    def record_count(self) -> int:
        """Records appended so far, warcinfo included."""
        return self._fingerprint.count

    def append(self, record: WarcRecord) -> RecordPointer:
        """Append one record as one gzip member; durable only after :meth:`sync`.

        If writing fails midway the file is cut back to where the record began, so it
        never holds part of a record that this method did not return a pointer for.
        """
        with self._lock:
            if self._state is not None:
                raise WriterClosedError(f"WARC file {self.path.name} is {self._state}")
            return self._append(record)

    def append_response_stream(
        self,
        target_uri: str,
        http_response_head: bytes,
        body: BinaryIO | Iterable[bytes],
        *,
        max_bytes: int,
        concurrent_to: str | None = None,
        date: datetime | None = None,
    ) -> RecordPointer:
        """Stream a (media) response into a record, digesting it once on the way.

        The body goes through a temporary file in the spool directory first, because the
        record's length precedes its body; a body over ``max_bytes`` raises
        :class:`PayloadTooLargeError` before anything is written to this file.
        """
        with spool_response(
            target_uri,
            http_response_head,
            body,
            max_bytes=max_bytes,
            tmp_dir=self.path.parent,
            concurrent_to=concurrent_to,
            date=date,
        ) as spooled:
            return self.append(spooled.record)

    def _append(self, record: WarcRecord) -> RecordPointer:
        self._dirty = True
        now = self._clock()
        date = record.date or now
        headers = [
            ("WARC-Type", record.warc_type),
            ("WARC-Record-ID", record.record_id),
            ("WARC-Date", format_warc_date(date)),
        ]
        if record.target_uri is not None:
            headers.append(("WARC-Target-URI", record.target_uri))
        if self.warcinfo_id:
            headers.append(("WARC-Warcinfo-ID", self.warcinfo_id))
        headers += record.headers
        headers.append(("WARC-Block-Digest", record.block_digest))
        if record.payload_digest is not None:
            headers.append(("WARC-Payload-Digest", record.payload_digest))
        headers += [("Content-Type", record.content_type)]
        headers += [("Content-Length", str(record.block_length))]
        offset = self._sink.tell()
        try:
            count = _write_member(self._sink, record, headers, member_level(record))
            if len(record.block_head) + count != record.block_length:
                raise IntegrityError(
                    f"record {record.record_id}: {count} body bytes were written, not "
                    f"the {record.block_length - len(record.block_head)} that were digested"
                )
        except BaseException:
            try:
                self._sink.rollback(offset)
            except OSError as exc:
                self._state = f"broken (could not cut a failed record: {exc})"
            raise
        ptr = RecordPointer(
            file_id=self.file_id,
            offset=offset,
            length=self._sink.tell() - offset,
            record_id=record.record_id,
            block_digest=record.block_digest,
            payload_digest=record.payload_digest,
            warc_type=record.warc_type,
            target_uri=record.target_uri,
            date=date.astimezone(UTC),
            **link_values(record.headers),
        )
        self._fingerprint.update(ptr)
        self.last_write_at = now
        return ptr

    def sync(self) -> None:
        """Flush and fsync: after this returns, the caller may commit pointers to the catalog."""
        with self._lock:
            if self._state == "closed" or not self._dirty:
                return  # closing synced it, or nothing was written since the last sync
            self._sink.flush()
            os.fsync(self._sink.fd)
            self._dirty = False

    def close(self) -> ClosedWarc:
        """Sync, close, verify by one full re-read, rename to ``.warc.gz``.

        Raises :class:`IntegrityError` (the ``.open`` file is left for recovery) when the
        re-read finds anything but exactly the records that were appended.
        """
        with self._lock:
            if self._state == "closed":
                raise WriterClosedError(f"WARC file {self.path.name} is already closed")
            broken = self._state
            self._shut()
            if broken is not None:
                raise IntegrityError(f"WARC file {self.path.name} is {broken}; left for recovery")
            return finalize_warc(
                self.path,
                self.partition,
                expected_records=self._fingerprint.count,
                expected_fingerprint=self._fingerprint.hexdigest(),
            )

    def abandon(self) -> None:
        """Sync and close without verifying or renaming; the ``.open`` file is left for recovery."""
        with self._lock:
            if self._state != "closed":
                self._shut()

    def _shut(self) -> None:
        """Flush, fsync and close the file descriptor; the writer is closed whatever happens."""
        try:
            self._sink.flush()
            os.fsync(self._sink.fd)
        finally:
            self._sink.close()
            self._state = "closed"
