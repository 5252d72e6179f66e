"""Reading spool WARC files back: verify every record, find the good prefix, repair, finalize.

A spool file is a sequence of gzip members, one WARC record each, starting with
``warcinfo``. A crash can tear it at any byte: inside a gzip header, inside a member,
between members, or leave garbage after the last member. The scanner inflates member by
member with zlib (which checks each member's CRC-32 and length), parses the record in the
member, checks its Content-Length, its closing CRLF CRLF and its SHA-256 block and payload
digests, and stops at the first member that is not all of that. Everything before that point
is the *good prefix*; :func:`repair_warc` cuts the file there.

The scanner is deliberately not warcio: it is a second, independent reading of what
``archiver.warc`` wrote (the tests hold both to ``warcio check``), it streams (a member is
never held in memory) and it reports the exact byte where a file stops being good, which
warcio's iterator does not.

:func:`finalize_warc` is the one verifying re-read a file gets before it leaves the spool: it
checks every record, computes the whole-file SHA-256 in the same pass and renames
``<id>.warc.gz.open`` to ``<id>.warc.gz``.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from archiver.errors import ArchiverError, IntegrityError
from archiver.layout import Partition
from archiver.warc_records import (
    HTTP_RECORD_TYPES,
    MAX_HTTP_HEAD,
    ClosedWarc,
    Hasher,
    RecordPointer,
    digest_label,
    is_blank_http_line,
)

OPEN_SUFFIX = ".warc.gz.open"
CLOSED_SUFFIX = ".warc.gz"
_READ = 1 << 20  # compressed bytes read at a time
_INFLATE = 1 << 20  # most decompressed bytes produced at a time (bounds memory per member)
_MAX_WARC_HEAD = 1 << 20
_FIRST_WINDOW = 1 << 13  # compressed bytes a member is first fed (most records are smaller)


def file_id_of(path: Path) -> str:
    """The file id in a spool or store file name (``<id>.warc.gz`` or ``<id>.warc.gz.open``)."""
    return path.name.removesuffix(".open").removesuffix(CLOSED_SUFFIX)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordsFingerprint:
    """A running SHA-256 over record pointers, to compare what was written with what is read."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def update(self, ptr: RecordPointer) -> None:
        """Add the next record's pointer."""
        line = (
            f"{ptr.offset} {ptr.length} {ptr.warc_type} {ptr.record_id} "
            f"{ptr.block_digest} {ptr.payload_digest} {ptr.target_uri}\n"
        )
        self._hash.update(line.encode("utf-8"))
        self.count += 1

    def hexdigest(self) -> str:
        """The fingerprint of every pointer added so far."""
        return self._hash.hexdigest()


class _Invalid(Exception):
    """A member that is not one complete, digest-valid WARC record."""


class _RecordParser:
    """Incremental parser and verifier of the one record inside one gzip member."""

    def __init__(self) -> None:
        self._state = "warc-head"  # then "block", then "trailer"
        self._buf = bytearray()  # the WARC head, later the trailer
        self._headers: dict[str, str] = {}
        self._remaining = 0
        self._block = hashlib.sha256()
        self._payload: Hasher | None = None  # only for a payload after an HTTP head
        self._http_head: bytearray | None = None  # the block's HTTP head while it is read
        self._line_start = 0

    def feed(self, data: bytes) -> None:
        while data:
            if self._state == "warc-head":
                self._buf += data
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > _MAX_WARC_HEAD:
                        raise _Invalid("record header is too long")
                    return
                data = bytes(self._buf[end + 4 :])
                self._start_block(bytes(self._buf[:end]))
                self._buf.clear()
            elif self._state == "block":
                take, data = data[: self._remaining], data[self._remaining :]
                self._remaining -= len(take)
                self._block_bytes(take)
                if self._remaining == 0:
                    self._state = "trailer"
            else:
                self._buf += data
                if len(self._buf) > 4:
                    raise _Invalid("bytes follow the record's block")
                return

    def _start_block(self, head: bytes) -> None:
        try:
            lines = head.decode("utf-8").split("\r\n")
        except UnicodeDecodeError as exc:
            raise _Invalid("record header is not UTF-8") from exc
        if lines[0] not in ("WARC/1.1", "WARC/1.0"):
            raise _Invalid(f"not a WARC record (first line {lines[0][:40]!r})")
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _Invalid(f"malformed header line {line[:40]!r}")
            self._headers.setdefault(name.strip().lower(), value.strip())
        for name in ("warc-type", "warc-record-id", "warc-date", "warc-block-digest"):
            if not self._headers.get(name):
                raise _Invalid(f"record has no {name} header")
        length = self._headers.get("content-length", "")
        if not length.isdigit():
            raise _Invalid(f"bad Content-Length {length!r}")
        self._remaining = int(length)
        uri = self._headers.get("warc-target-uri", "")
        rec_type = self._headers["warc-type"]
        # Mirrors warcio: only these types under http(s) URIs carry an HTTP head, and a
        # revisit's payload digest names another record's payload, so it is not checked.
        if rec_type in HTTP_RECORD_TYPES and uri.startswith(("http:", "https:")):
            self._http_head = bytearray()
            if rec_type != "revisit":
                self._payload = hashlib.sha256()
        self._state = "block" if self._remaining else "trailer"

    def _block_bytes(self, data: bytes) -> None:
        self._block.update(data)
        if self._http_head is None:
            if self._payload is not None:
                self._payload.update(data)
            return
        head = self._http_head
        head += data
        # The payload starts after the first line that is blank once stripped (warcio's rule).
        while (nl := head.find(b"\n", self._line_start)) >= 0:
            line, self._line_start = head[self._line_start : nl + 1], nl + 1
            if is_blank_http_line(bytes(line)):
                if self._payload is not None:
                    self._payload.update(bytes(head[self._line_start :]))
                self._http_head = None
                return
        if len(head) > MAX_HTTP_HEAD:
            raise _Invalid("HTTP head is too long to find its payload")

    def finish(self, file_id: str, offset: int, length: int) -> RecordPointer:
        if self._state != "trailer" or bytes(self._buf) != b"\r\n\r\n":
            raise _Invalid("record is incomplete or not closed by CRLF CRLF")
        h = self._headers
        block = digest_label(self._block)
        if h["warc-block-digest"] != block:
            raise _Invalid(f"block digest mismatch (recorded {h['warc-block-digest']})")
        payload = h.get("warc-payload-digest") or None
        if payload is not None and h["warc-type"] != "revisit":
            actual = digest_label(self._payload) if self._payload is not None else block
            if payload != actual:
                raise _Invalid(f"payload digest mismatch (recorded {payload})")
        try:
            date = datetime.fromisoformat(h["warc-date"])
        except ValueError as exc:
            raise _Invalid(f"bad WARC-Date {h['warc-date']!r}") from exc
        if date.tzinfo is None:
            raise _Invalid(f"WARC-Date without a time zone {h['warc-date']!r}")
        return RecordPointer(
            file_id=file_id,
            offset=offset,
            length=length,
            record_id=h["warc-record-id"],
            block_digest=block,
            payload_digest=payload,
            warc_type=h["warc-type"],
            target_uri=h.get("warc-target-uri"),
            date=date,
            refers_to=h.get("warc-refers-to") or None,
            concurrent_to=h.get("warc-concurrent-to") or None,
        )


class _Member:
    """One gzip member being inflated, from file offset ``offset``."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.started = False
        self.parser = _RecordParser()
        self._inflate = zlib.decompressobj(wbits=31)  # gzip, CRC-32 and ISIZE checked
        # zlib copies what follows a member's end (``unused_data``): fed the whole read
        # buffer, each small record would copy the rest of it. Windows that start small
        # and grow keep that copy small for a 1 KB record and the calls few for a video.
        self._window = _FIRST_WINDOW

    def feed(self, data: memoryview) -> int | None:
        """Consume ``data``; the bytes of it up to the member's end, None if it goes on."""
        self.started = True
        at = 0
        while at < len(data):
            piece = data[at : at + self._window]
            at += len(piece)
            self._window = min(self._window * 2, _READ)
            while True:
                out = self._inflate.decompress(piece, _INFLATE)
                self.parser.feed(out)
                if self._inflate.eof:
                    return at - len(self._inflate.unused_data)
                piece = self._inflate.unconsumed_tail  # type: ignore[assignment]
                if not piece and len(out) < _INFLATE:
                    break
        return None


@dataclass(frozen=True, slots=True)
class _Summary:
    good_end: int
    file_size: int
    problem: str | None
    sha256: str | None


def _scan(path: Path, file_id: str, on_record: Callable[[RecordPointer], None]) -> _Summary:
    """Verify records in order, calling ``on_record`` for each good one, until the first bad."""
    whole = hashlib.sha256()
    good_end, problem = 0, None
    member = _Member(0)
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = 0  # file offset of data[0]
        while problem is None and (chunk := f.read(_READ)):
            whole.update(chunk)
            data = memoryview(chunk)
            while data:
                try:
                    used = member.feed(data)
                    if used is None:
                        at += len(data)
                        break
                    end = at + used
                    ptr = member.parser.finish(file_id, member.offset, end - member.offset)
                    if good_end == 0 and ptr.warc_type != "warcinfo":
                        raise _Invalid("the first record is not warcinfo")
                except (zlib.error, _Invalid) as exc:
                    problem = f"record at offset {member.offset} is invalid: {exc}"
                    break
                on_record(ptr)
                good_end, at, data = end, end, data[used:]
                member = _Member(end)
    if problem is None and member.started:
        problem = (
            f"record at offset {member.offset} is incomplete "
            f"(the file ends {size - member.offset} bytes into it)"
        )
    complete = problem is None and good_end == size
    return _Summary(good_end, size, problem, whole.hexdigest() if complete else None)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The good prefix of a WARC file and why scanning stopped where it did."""

    path: Path
    file_id: str
    records: tuple[RecordPointer, ...]
    good_end: int
    file_size: int
    problem: str | None
    sha256: str | None  # hex of the whole file, only when every byte is in a good record

    @property
    def complete(self) -> bool:
        """Whether every byte of the file belongs to a complete, digest-valid record."""
        return self.problem is None and self.good_end == self.file_size


def scan_warc(path: Path, *, file_id: str | None = None) -> ScanResult:
    """Verify a (possibly torn) WARC file; the pointers of its good records, in file order."""
    fid = file_id or file_id_of(path)
    records: list[RecordPointer] = []
    s = _scan(path, fid, records.append)
    return ScanResult(path, fid, tuple(records), s.good_end, s.file_size, s.problem, s.sha256)


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What :func:`repair_warc` kept and cut; the caller logs it."""

    path: Path
    records: tuple[RecordPointer, ...]
    kept_bytes: int
    cut_bytes: int
    problem: str | None  # why the cut tail was refused; None when nothing was cut
    valid_after: int | None = None  # a valid record past the damage (only with force=True)

    @property
    def empty(self) -> bool:
        """No record survived (torn inside warcinfo, or nothing valid): the caller decides."""
        return not self.records


def _member_is_valid(path: Path, offset: int) -> bool:
    member = _Member(offset)
    with path.open("rb") as f:
        f.seek(offset)
        try:
            while data := f.read(_READ):
                if member.feed(memoryview(data)) is not None:
                    member.parser.finish("", offset, 0)
                    return True
        except (zlib.error, _Invalid):
            pass
    return False


def _first_valid_after(path: Path, start: int) -> int | None:
    """Offset of the first complete, digest-valid record beginning after ``start``."""
    magic = b"\x1f\x8b\x08"  # gzip, deflate: where a member can begin
    with path.open("rb") as f:
        f.seek(start + 1)
        base, data = start + 1, b""
        while chunk := f.read(_READ):
            data += chunk
            i = data.find(magic)
            while i >= 0:
                if _member_is_valid(path, base + i):
                    return base + i
                i = data.find(magic, i + 1)
            keep = len(magic) - 1  # a magic split between two reads is found in the next
            base, data = base + len(data) - keep, data[-keep:]
    return None


def repair_warc(path: Path, *, force: bool = False) -> RepairResult:
    """Truncate ``path`` after its last complete, digest-valid record and fsync it.

    A crash leaves damage only at the end. If a valid record still follows the damage,
    the file was damaged otherwise (a bad disk, or a power loss that kept later unsynced
    pages but not earlier ones); then nothing is cut and :class:`IntegrityError` is raised,
    unless ``force``: pass it once the catalog shows that no committed pointer lies past
    the damage (records written after the last fsync were never committed).
    """
    scan = scan_warc(path)
    cut = scan.file_size - scan.good_end
    after = _first_valid_after(path, scan.good_end) if cut else None
    if after is not None and not force:
        raise IntegrityError(
            f"{path} is damaged at offset {scan.good_end} ({scan.problem}) but a valid record "
            f"follows at offset {after}; nothing was cut. Check that no catalog row points "
            "past the damage before repairing with force."
        )
    if cut:
        with path.open("r+b") as f:
            f.truncate(scan.good_end)
            f.flush()
            os.fsync(f.fileno())
    problem = scan.problem if cut else None
    return RepairResult(path, scan.records, scan.good_end, cut, problem, after)


def finalize_warc(
    path: Path,
    partition: Partition,
    *,
    expected_records: int | None = None,
    expected_fingerprint: str | None = None,
) -> ClosedWarc:
    """Verify a whole spool file in one pass and rename ``.warc.gz.open`` → ``.warc.gz``.

    Every record's digests are checked and the file's SHA-256 is computed in the same read.
    ``expected_records``/``expected_fingerprint`` (a :class:`RecordsFingerprint` of what the
    writer appended) must match when given. Raises :class:`IntegrityError` and leaves the
    file untouched if anything is wrong. A file already named ``.warc.gz`` is only verified.
    """
    fingerprint = RecordsFingerprint()
    first: datetime | None = None
    last: datetime | None = None

    def seen(ptr: RecordPointer) -> None:
        nonlocal first, last
        fingerprint.update(ptr)
        first = ptr.date if first is None else min(first, ptr.date)
        last = ptr.date if last is None else max(last, ptr.date)

    s = _scan(path, file_id_of(path), seen)
    if s.problem is not None or s.sha256 is None:
        raise IntegrityError(f"{path} failed verification: {s.problem}; it was left as it is")
    if first is None or last is None:
        raise IntegrityError(f"{path} holds no records")
    if expected_records is not None and fingerprint.count != expected_records:
        raise IntegrityError(
            f"{path} holds {fingerprint.count} records, {expected_records} were written"
        )
    if expected_fingerprint is not None and fingerprint.hexdigest() != expected_fingerprint:
        raise IntegrityError(f"{path} does not hold the records that were written to it")
    final = path
    if path.name.endswith(OPEN_SUFFIX):
        final = path.with_name(path.name.removesuffix(".open"))
        if final.exists():
            raise ArchiverError(f"cannot close {path}: {final.name} already exists")
        path.rename(final)
        fsync_dir(final.parent)
    return ClosedWarc(
        path=final,
        file_id=file_id_of(final),
        partition=partition,
        sha256=s.sha256,
        size=s.file_size,
        record_count=fingerprint.count,
        first_record_at=first,
        last_record_at=last,
    )
