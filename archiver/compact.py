"""Compaction: rewrite a stored file without some of its records, for disposition.

Disposition deletes whole files. When only some records of a file are eligible, the file is
first *compacted*: a new file with a new id holds everything else, verified and stored
before the caller repoints the catalog and deletes the old object. Nothing here touches the
catalog or deletes anything.

**WARC files** (:func:`compact_warc`). Every record of our files is one gzip member, so the
kept records are copied as their original compressed members, byte for byte: their record
ids and digests cannot change, and no byte of a dropped record can reach the new file (a
dropped member is never decompressed into the output nor written anywhere, not even in
``work_dir``). The new file starts with a fresh ``warcinfo`` that names the file it was
compacted from, why, and the old ``warcinfo``'s fields (``original-…``). It carries the old
``warcinfo``'s date, because the catalog rebuild orders a partition's files by that date
and versions of one item can span files; the compaction time is its ``compacted-at`` field.
Kept records still name the old ``warcinfo`` in ``WARC-Warcinfo-ID``; the new one lists
that id as ``compacted-from-warcinfo``.

The old file is streamed once from the store (``store.open``), and memory stays bounded
whatever a record's size (it grows only with the number of records, whose ids and pointers
the result returns): each chunk goes to the whole-file SHA-256, to
:class:`~archiver.warc_check.WarcChecker` (every record's block and payload digests, as
``archiver verify`` checks them) and to a splitter that inflates each member only to find
where it ends and to read its record header; compressed bytes are held only until the
header is read (at most about a megabyte), then written out or forgotten. Inflating each
member twice (checker and splitter) costs CPU, not memory, and keeps the checker the very
one ``archiver verify`` uses. A file whose records fail their digests, or whose SHA-256 is
not what the store recorded, is refused with :class:`~archiver.errors.IntegrityError`
naming the record: damaged evidence is never compacted silently. The new file is then read
back (every record checked at its new offset, whole-file SHA-256), put into the store with
its public ``.sha256.json`` sidecar (:func:`archiver.spool.put_sidecar`, the spool's
format) and checked there with ``head``. It keeps the old object's retention (its
retain-until, if still ahead, and legal hold).

**Parquet files** (:func:`compact_parquet`) are rewritten without the rows whose
``warc_record_id`` is dropped, with :func:`archiver.parquet.write_file` (the roll's
settings) and read back before they are stored. The old file is read into memory, never
copied to disk, so no dropped text reaches ``work_dir``; Parquet files are rolled per
partition, as big as the roll holds in memory anyway.

A file whose every record (or row) is dropped is not rewritten: the result has
``new_file_id`` None and the caller deletes the whole file. Given ``file_id`` (the id a
journal recorded before calling), a compaction that crashed after storing its new file is
resumed: the stored file is verified against the old one and described, not written again.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ulid import ULID
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archiver import parquet
from archiver.errors import ArchiverError, IntegrityError
from archiver.layout import ObjectKind, Partition
from archiver.logging import get_logger
from archiver.spool import put_file_sidecar, put_sidecar
from archiver.store.base import ObjectInfo, Store
from archiver.warc import WarcInfo
from archiver.warc_check import ExpectedRecord, RecordProblem, WarcChecker
from archiver.warc_records import WARC_VERSION, ClosedWarc, format_warc_date, warcinfo_record

__all__ = ["REASON", "CompactedParquet", "CompactedWarc", "compact_parquet", "compact_warc"]

log = get_logger(__name__)

#: Why a file is compacted, as the new ``warcinfo`` says.
REASON = (
    "disposition: records eligible for destruction were removed; every other record is "
    "copied byte for byte as its original gzip member"
)
#: Compressed bytes given to zlib at a time (what follows a member's end is copied by zlib).
_STEP = 64 << 10
#: Most decompressed bytes one zlib call produces: bounds memory however well data compresses.
_INFLATE = 1 << 20
_MAX_HEAD = 1 << 20  # longest WARC record header accepted
_MAX_INFO = 64 << 10  # warcinfo block bytes kept to read its fields
_READ = 1 << 20


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompactedWarc:
    """What :func:`compact_warc` did; ``new_file_id`` None: every record was dropped.

    ``kept`` maps each kept record id to its (offset, length) in the new file, the pointer
    the catalog needs; ``dropped`` lists (record id, block digest) of the records removed, in
    file order; ``missing`` the ids asked to drop that the file does not hold. ``dangling``
    lists (kept record id, dropped record id) where a kept record's ``WARC-Refers-To`` names
    a record dropped here. ``records`` counts the new file's records, its ``warcinfo``
    included (as ``stored_files.records``); ``retain_until``/``legal_hold`` are the new
    object's, as the store reports them.
    """

    old_key: str
    old_file_id: str
    old_sha256: str
    new_file_id: str | None
    new_key: str | None
    sha256: str | None
    size: int
    records: int
    kept: dict[str, tuple[int, int]]
    dropped: list[tuple[str, str]]
    missing: list[str]
    dangling: list[tuple[str, str]] = field(default_factory=list)
    first_record_at: datetime | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False
    resumed: bool = False  # the new file was already stored by an interrupted compaction

    @property
    def emptied(self) -> bool:
        """Every record was dropped: no new file; the caller deletes the old one."""
        return self.new_file_id is None


@dataclass(frozen=True, slots=True)
class CompactedParquet:
    """What :func:`compact_parquet` did; ``new_file_id`` None: every row was dropped.

    ``kept`` and ``dropped`` are the rows' ``warc_record_id`` values in file order;
    ``missing`` the ids asked to drop that no row holds.
    """

    old_key: str
    old_file_id: str
    old_sha256: str
    new_file_id: str | None
    new_key: str | None
    sha256: str | None
    size: int
    rows: int
    kept: list[str]
    dropped: list[str]
    missing: list[str]
    retain_until: datetime | None = None
    legal_hold: bool = False
    resumed: bool = False

    @property
    def emptied(self) -> bool:
        """Every row was dropped: no new file; the caller deletes the old one."""
        return self.new_file_id is None


# -- reading a stored WARC member by member ----------------------------------------------


class _Damaged(Exception):
    """The member at ``offset`` cannot be read as one record."""

    def __init__(self, offset: int, record_id: str | None, problem: str) -> None:
        super().__init__(problem)
        self.offset, self.record_id, self.problem = offset, record_id, problem


@dataclass(frozen=True, slots=True)
class _Record:
    """One record of a file as its header describes it, and where it lies."""

    record_id: str
    warc_type: str
    block_digest: str
    payload_digest: str | None
    refers_to: str | None
    date: datetime
    offset: int
    length: int
    new_offset: int | None  # where it was copied to; None when it was not


@dataclass(frozen=True, slots=True)
class _Warcinfo:
    record_id: str
    date: datetime
    fields: tuple[tuple[str, str], ...]


class _Output:
    """The new file being written, and how many bytes it holds."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._f.write(data)
        self.pos += len(data)


class _Splitter:
    """Finds each gzip member of a WARC stream and reads its record header as it passes.

    Members are inflated only to find where they end (and to read the header); their
    compressed bytes are held until the header says whether the record is kept, then
    copied to ``out`` or forgotten. The first member must be the ``warcinfo``: it is never
    copied; ``on_warcinfo`` is called when it ends (to write the new one in its place).
    """

    def __init__(
        self,
        keep: Callable[[str], bool],
        out: _Output | None,
        on_warcinfo: Callable[[_Warcinfo], None] | None = None,
    ) -> None:
        self._keep = keep
        self._out = out
        self._on_warcinfo = on_warcinfo
        self.pos = 0  # offset in the old file of the next byte fed
        self.records: list[_Record] = []
        self.warcinfo: _Warcinfo | None = None
        self._new_member()

    def _new_member(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)  # gzip; CRC-32 and ISIZE checked
        self._start = self.pos
        self._buf = bytearray()  # the decompressed header (and, for warcinfo, its block)
        self._headers: dict[str, str] | None = None
        self._pending = bytearray()  # compressed bytes read before the header was
        self._copy: bool | None = None  # whether this member goes to the output
        self._new_offset: int | None = None

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[self._inflate(view[:_STEP]) :]

    def _inflate(self, data: memoryview | bytes) -> int:
        """Inflate ``data`` into the current member; how much of it the member took."""
        taken = 0
        while True:
            try:
                out = self._inflater.decompress(data, _INFLATE)
            except zlib.error as exc:
                damaged = self._damaged(f"the gzip member is damaged ({exc})")
                if damaged.record_id is None:
                    damaged.record_id = _record_id_before_damage(bytes(self._pending) + data)
                raise damaged from exc
            eof = self._inflater.eof
            rest = self._inflater.unused_data if eof else self._inflater.unconsumed_tail
            used = len(data) - len(rest)
            self._compressed(data[:used])
            self.pos += used
            taken += used
            if out:
                self._inflated(out)
            if eof:
                self._end_member()
                return taken
            data = rest
            if not data and len(out) < _INFLATE:
                return taken

    def _compressed(self, data: memoryview | bytes) -> None:
        if self._copy is None:
            self._pending += data
        elif self._copy:
            assert self._out is not None
            self._out.write(data)

    def _inflated(self, data: bytes) -> None:
        if self._headers is not None:
            if self._start == 0 and len(self._buf) < _MAX_INFO:
                self._buf += data[: _MAX_INFO - len(self._buf)]
            return
        old = len(self._buf)
        self._buf += data
        end = self._buf.find(b"\r\n\r\n", max(0, old - 3))
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise self._damaged("the record header is too long")
            return
        self._headers = self._parse_head(bytes(self._buf[:end]))
        # What follows is the block: kept (a little) only for the warcinfo's fields.
        del self._buf[: end + 4]
        del self._buf[_MAX_INFO if self._start == 0 else 0 :]
        self._decide()

    def _decide(self) -> None:
        assert self._headers is not None
        record_id = self._headers["warc-record-id"]
        if self._start == 0:
            if self._headers["warc-type"] != "warcinfo":
                raise self._damaged("the file does not begin with a warcinfo record")
            self._copy = False
        else:
            self._copy = self._out is not None and self._keep(record_id)
        if self._copy:
            assert self._out is not None
            self._new_offset = self._out.pos
            self._out.write(self._pending)
        self._pending = bytearray()

    def _parse_head(self, head: bytes) -> dict[str, str]:
        try:
            lines = head.decode("utf-8").split("\r\n")
        except UnicodeDecodeError:
            raise self._damaged("the record header is not UTF-8") from None
        if lines[0] not in ("WARC/1.1", "WARC/1.0"):
            raise self._damaged(f"not a WARC record (first line {lines[0][:40]!r})")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise self._damaged(f"malformed header line {line[:40]!r}")
            headers.setdefault(name.strip().lower(), value.strip())
        for name in ("warc-type", "warc-record-id", "warc-date", "warc-block-digest"):
            if not headers.get(name):
                raise self._damaged(f"the record has no {name} header")
        return headers

    def _end_member(self) -> None:
        h = self._headers
        if h is None:
            raise self._damaged("the gzip member ends inside the record header")
        try:
            date = datetime.fromisoformat(h["warc-date"])
        except ValueError:
            raise self._damaged(f"bad WARC-Date {h['warc-date']!r}") from None
        if date.tzinfo is None:
            raise self._damaged(f"WARC-Date without a time zone {h['warc-date']!r}")
        if self._start == 0:
            self.warcinfo = _Warcinfo(h["warc-record-id"], date, _warc_fields(bytes(self._buf)))
            if self._on_warcinfo is not None:
                self._on_warcinfo(self.warcinfo)
        else:
            self.records.append(
                _Record(
                    record_id=h["warc-record-id"],
                    warc_type=h["warc-type"],
                    block_digest=h["warc-block-digest"],
                    payload_digest=h.get("warc-payload-digest") or None,
                    refers_to=h.get("warc-refers-to") or None,
                    date=date,
                    offset=self._start,
                    length=self.pos - self._start,
                    new_offset=self._new_offset,
                )
            )
        self._new_member()

    def finish(self) -> None:
        """The stream ended: a member must not be left open."""
        if self.pos == 0:
            raise _Damaged(0, None, "the file is empty")
        if self.pos > self._start:
            raise self._damaged(
                f"the file ends {self.pos - self._start} bytes into this record: it is truncated"
            )

    def _damaged(self, problem: str) -> _Damaged:
        record_id = self._headers.get("warc-record-id") if self._headers else None
        return _Damaged(self._start, record_id, problem)


def _record_id_before_damage(member: bytes) -> str | None:
    """The record id in a damaged member's header, if the damage comes after the header.

    zlib drops a call's whole output when it finds damage, and a small member is inflated
    in one call: inflate it again a little at a time to name the record in the refusal.
    """
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    for at in range(0, len(member), 32):
        try:
            out += inflater.decompress(member[at : at + 32])
        except zlib.error:
            break
        if b"\r\n\r\n" in out or len(out) > _MAX_HEAD:
            break
    head, sep, _ = bytes(out).partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:] if sep else ():
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"warc-record-id":
            return value.strip().decode("utf-8", "replace")
    return None


def _warc_fields(block: bytes) -> tuple[tuple[str, str], ...]:
    """The ``name: value`` lines of a warc-fields block; a line cut by the size cap is left."""
    fields = []
    for line in block.split(b"\r\n")[:-1]:
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if sep and name.strip():
            fields.append((name.strip(), value.strip()))
    return tuple(fields)


def _scan(
    store: Store,
    key: str,
    head: ObjectInfo,
    splitter: _Splitter,
    known: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Stream ``key`` once through ``splitter`` and a digest checker; raise on any damage.

    A record whose header is itself damaged is named from ``known`` (the catalog's
    pointers), when given.
    """
    whole = hashlib.sha256()
    size = 0
    checker = WarcChecker(())
    try:
        for chunk in store.open(key):
            whole.update(chunk)
            size += len(chunk)
            checker.feed(chunk)
            splitter.feed(chunk)
        splitter.finish()
    except _Damaged as exc:
        record_id = exc.record_id or next(
            (rid for rid, (offset, _) in (known or {}).items() if offset == exc.offset), None
        )
        raise _refusal(key, exc.offset, record_id, exc.problem) from None
    check = checker.finish()
    if check.problems:
        first = check.problems[0]
        more = (
            f" ({len(check.problems) - 1} more damaged record(s))"
            if len(check.problems) > 1
            else ""
        )
        raise _refusal(key, first.offset, first.record_id, first.problem + more)
    if check.records != len(splitter.records) + 1:  # two readings of one file disagree
        raise _refusal(
            key,
            0,
            None,
            f"one reading finds {check.records} records, the other {len(splitter.records) + 1}",
        )
    sha256 = whole.hexdigest()
    if size != head.size or not hmac.compare_digest(sha256, head.sha256):
        raise _refusal(
            key,
            None,
            None,
            f"its {size} bytes have sha256 {sha256}; the store recorded {head.size} bytes "
            f"with sha256 {head.sha256}",
        )


def _refusal(key: str, offset: int | None, record_id: str | None, problem: str) -> IntegrityError:
    if record_id is not None:
        where = f"record {record_id} at offset {offset}: "
    elif offset is not None:
        where = f"offset {offset}: "
    else:
        where = ""
    return IntegrityError(
        f"{key} is damaged: {where}{problem}. It was not compacted and nothing was stored; "
        "check it with `archiver verify --file ID` and restore it from a replica before "
        "disposing of its records"
    )


# -- writing and storing the new file ------------------------------------------------------


def _original(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The old warcinfo's fields, renamed ``original-<name>`` (those a warcinfo can hold)."""
    out = []
    for name, value in fields:
        if name == "format" or any(c in value for c in "\r\n\0"):
            continue
        if all(c.isalnum() or c in "!#$%&'*+.^_`|~-" for c in name) and name.isascii():
            out.append((f"original-{name}", value))
    return out


def _warcinfo_member(
    new_id: str,
    partition: Partition,
    info: WarcInfo,
    source: tuple[str, str, str],
    old: _Warcinfo,
    now: datetime,
) -> bytes:
    """The new file's warcinfo as one gzip member, written as ``archiver.warc`` writes one."""
    old_key, old_id, old_sha256 = source
    fields = [
        *info.fields(partition, new_id),
        ("compacted-from", old_id),
        ("compacted-from-key", old_key),
        ("compacted-from-sha256", old_sha256),
        ("compacted-from-warcinfo", old.record_id),
        ("compacted-at", format_warc_date(now)),
        ("compaction", REASON),
        *_original(old.fields),
    ]
    record = warcinfo_record(f"{new_id}.warc.gz", fields, date=old.date)
    assert isinstance(record.body, bytes)
    headers = [
        ("WARC-Type", record.warc_type),
        ("WARC-Record-ID", record.record_id),
        ("WARC-Date", format_warc_date(old.date)),
        *record.headers,
        ("WARC-Block-Digest", record.block_digest),
        ("Content-Type", record.content_type),
        ("Content-Length", str(record.block_length)),
    ]
    rec = ArcWarcRecord(
        "warc",
        record.warc_type,
        StatusAndHeaders("", headers, protocol=WARC_VERSION),
        io.BytesIO(record.body),
        None,
        record.content_type,
        record.block_length,
    )
    buf = io.BytesIO()
    # The block digest is set, so warcio computes no digest of its own; the gzip settings
    # are warcio's, as for every other member of our files.
    WARCWriter(buf, gzip=True, warc_version=WARC_VERSION).write_record(rec)
    return buf.getvalue()


def _verify_written(path: Path, expected: list[ExpectedRecord]) -> tuple[str, int]:
    """Read the new file back: each kept record where it should be, digests; (sha256, size)."""
    whole = hashlib.sha256()
    size = 0
    checker = WarcChecker(expected)
    with path.open("rb") as f:
        while chunk := f.read(_READ):
            whole.update(chunk)
            size += len(chunk)
            checker.feed(chunk)
    check = checker.finish()
    problems: list[str] = [_describe(p) for p in check.problems[:3]]
    if check.orphans:
        problems.append(f"records nobody copied: {', '.join(check.orphans[:3])}")
    if check.records != len(expected) + 1:
        problems.append(f"{check.records} records, not {len(expected) + 1}")
    if problems:
        raise IntegrityError(
            f"the compacted file {path.name} does not verify ({'; '.join(problems)}); "
            "nothing was stored and the old file is untouched"
        )
    return whole.hexdigest(), size


def _describe(p: RecordProblem) -> str:
    return f"record {p.record_id} at offset {p.offset}: {p.problem}"


def _retention(old: ObjectInfo, asked: datetime | None) -> datetime | None:
    """The new object's retain-until: the later of the old one's and ``asked``, if ahead.

    Compared with the real clock, as the store's own lock is: a date already past cannot
    be set on S3 and would protect nothing.
    """
    now = datetime.now(UTC)
    ahead = [t for t in (old.retain_until, asked) if t is not None and t > now]
    return max(ahead, default=None)


def _put(
    store: Store,
    key: str,
    path: Path,
    sha256: str,
    size: int,
    old: ObjectInfo,
    retain_until: datetime | None,
) -> ObjectInfo:
    """Put the new file, check it with ``head``, and hold it if the old object was held."""
    store.put(key, path, sha256, retain_until=_retention(old, retain_until))
    return _check_stored(store, key, sha256, size, old)


def _check_stored(store: Store, key: str, sha256: str, size: int, old: ObjectInfo) -> ObjectInfo:
    stored = store.head(key)
    if stored.size != size or not hmac.compare_digest(stored.sha256, sha256):
        raise IntegrityError(
            f"the store holds {key} with {stored.size} bytes and sha256 {stored.sha256}, but "
            f"{size} bytes with sha256 {sha256} were put; the old file is untouched"
        )
    # A hold covers the records, not the object: the ones kept here are still covered.
    if old.legal_hold and not stored.legal_hold:
        stored = store.set_legal_hold(key, True)
    return stored


def _old_file_id(key: str, partition: Partition, kind: ObjectKind) -> str:
    """The file id in ``key``, which must be a ``kind`` file of ``partition``."""
    suffix = ".warc.gz" if kind is ObjectKind.WARC else ".parquet"
    file_id = key.rsplit("/", 1)[-1].removesuffix(suffix)
    if not file_id or file_id == key or partition.key(kind, file_id) != key:
        raise ArchiverError(
            f"{key} is not a {kind.value} file of partition {partition.name}: a compacted "
            "file stays in the partition of the file it replaces"
        )
    return file_id


def _new_key(partition: Partition, kind: ObjectKind, file_id: str | None, old_key: str) -> str:
    key = partition.key(kind, file_id or str(ULID()))
    if key == old_key:
        raise ArchiverError(f"a compacted file needs a new id, not the one of {old_key}")
    return key


def _file_id_of(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".warc.gz").removesuffix(".parquet")


# -- WARC ----------------------------------------------------------------------------------


def compact_warc(
    store: Store,
    key: str,
    drop: Collection[str],
    *,
    work_dir: Path,
    info: WarcInfo,
    partition: Partition,
    now: datetime | None = None,
    known: Mapping[str, tuple[int, int]] | None = None,
    file_id: str | None = None,
    retain_until: datetime | None = None,
) -> CompactedWarc:
    """Store a new WARC holding every record of ``key`` whose id is not in ``drop``.

    ``info`` describes the software and operator doing the compaction (the new warcinfo);
    ``partition`` is the old file's, and the new file's. ``known`` (record id → offset,
    length, from the catalog) is checked against the file: a record the catalog points at
    that is not there is an integrity error. ``file_id`` sets the new file's id (a journal
    records it first so that a crash can be resumed); ``retain_until`` asks for a retention
    at least that long on the new object, which keeps the old one's in any case.

    Raises :class:`IntegrityError` when the old file is damaged (nothing is written to the
    store) and :class:`ArchiverError` when a kept ``revisit`` would lose the record holding
    its payload. Memory stays bounded whatever the records' sizes.
    """
    now = now or datetime.now(UTC)
    old_id = _old_file_id(key, partition, ObjectKind.WARC)
    drop_set = frozenset(drop)
    old = store.head(key)
    new_key = _new_key(partition, ObjectKind.WARC, file_id, key)
    new_id = _file_id_of(new_key)
    if store.exists(new_key):
        return _resume_warc(store, key, old, new_key, drop_set, work_dir, partition, known)

    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f".compact-{new_id}.warc.gz.tmp"
    try:
        with path.open("wb") as f:
            out = _Output(f)
            source = (key, old_id, old.sha256)

            def write_warcinfo(old_info: _Warcinfo) -> None:
                out.write(_warcinfo_member(new_id, partition, info, source, old_info, now))

            splitter = _Splitter(lambda rid: rid not in drop_set, out, write_warcinfo)
            _scan(store, key, old, splitter, known)
        records = splitter.records
        assert splitter.warcinfo is not None
        kept = [r for r in records if r.new_offset is not None]
        dropped = [r for r in records if r.new_offset is None]
        _check_known(key, records, known)
        dangling = _dangling(key, kept, dropped)
        missing = sorted(drop_set - {r.record_id for r in dropped})
        result = _Partial(key, old_id, old.sha256, dropped, missing, dangling)
        if not kept:
            log.info("warc emptied by compaction", key=key, dropped=len(dropped))
            return result.emptied()
        expected = [
            ExpectedRecord(
                r.record_id, r.new_offset, r.length, r.warc_type, r.block_digest, r.payload_digest
            )
            for r in kept
            if r.new_offset is not None
        ]
        sha256, size = _verify_written(path, expected)
        first = min([splitter.warcinfo.date, *(r.date for r in kept)])
        last = max([splitter.warcinfo.date, *(r.date for r in kept)])
        closed = ClosedWarc(path, new_id, partition, sha256, size, len(kept) + 1, first, last)
        stored = _put(store, new_key, path, sha256, size, old, retain_until)
        put_sidecar(store, new_key, closed, tmp_dir=work_dir)
    finally:
        path.unlink(missing_ok=True)
    log.info(
        "warc compacted",
        key=key,
        new_key=new_key,
        kept=len(kept),
        dropped=len(dropped),
        missing=len(missing),
    )
    return result.rewritten(
        new_id,
        new_key,
        stored,
        len(kept) + 1,
        {r.record_id: (r.new_offset, r.length) for r in kept if r.new_offset is not None},
        first,
    )


@dataclass(frozen=True, slots=True)
class _Partial:
    """What is known of a WARC compaction once the old file is read."""

    old_key: str
    old_file_id: str
    old_sha256: str
    dropped: list[_Record]
    missing: list[str]
    dangling: list[tuple[str, str]]

    def emptied(self) -> CompactedWarc:
        return CompactedWarc(
            old_key=self.old_key,
            old_file_id=self.old_file_id,
            old_sha256=self.old_sha256,
            new_file_id=None,
            new_key=None,
            sha256=None,
            size=0,
            records=0,
            kept={},
            dropped=[(r.record_id, r.block_digest) for r in self.dropped],
            missing=self.missing,
            dangling=self.dangling,
        )

    def rewritten(
        self,
        new_id: str,
        new_key: str,
        stored: ObjectInfo,
        records: int,
        kept: dict[str, tuple[int, int]],
        first: datetime,
        *,
        resumed: bool = False,
    ) -> CompactedWarc:
        return CompactedWarc(
            old_key=self.old_key,
            old_file_id=self.old_file_id,
            old_sha256=self.old_sha256,
            new_file_id=new_id,
            new_key=new_key,
            sha256=stored.sha256,
            size=stored.size,
            records=records,
            kept=kept,
            dropped=[(r.record_id, r.block_digest) for r in self.dropped],
            missing=self.missing,
            dangling=self.dangling,
            first_record_at=first,
            retain_until=stored.retain_until,
            legal_hold=stored.legal_hold,
            resumed=resumed,
        )


def _check_known(
    key: str, records: list[_Record], known: Mapping[str, tuple[int, int]] | None
) -> None:
    """The catalog's pointers must name records the file holds where it says."""
    by_id: dict[str, _Record] = {}
    for r in records:
        if by_id.setdefault(r.record_id, r) is not r:
            raise _refusal(key, r.offset, r.record_id, "a second record has this id")
    for record_id, (offset, length) in (known or {}).items():
        rec = by_id.get(record_id)
        if rec is None:
            raise _refusal(
                key, offset, record_id, "the catalog points here, the file has no such record"
            )
        if (rec.offset, rec.length) != (offset, length):
            raise _refusal(
                key,
                rec.offset,
                record_id,
                f"the catalog says {length} bytes at offset {offset}, the file has "
                f"{rec.length} bytes at offset {rec.offset}",
            )


def _dangling(key: str, kept: list[_Record], dropped: list[_Record]) -> list[tuple[str, str]]:
    """Kept records that refer to a dropped one; a revisit among them is refused."""
    gone = {r.record_id for r in dropped}
    out = []
    for r in kept:
        if r.refers_to is None or r.refers_to not in gone:
            continue
        if r.warc_type == "revisit":
            raise ArchiverError(
                f"{key}: record {r.record_id} is a revisit that is kept, but the record holding "
                f"its payload, {r.refers_to}, would be dropped; keep both or drop both. "
                "Nothing was stored"
            )
        out.append((r.record_id, r.refers_to))
    return out


def _resume_warc(
    store: Store,
    key: str,
    old: ObjectInfo,
    new_key: str,
    drop: frozenset[str],
    work_dir: Path,
    partition: Partition,
    known: Mapping[str, tuple[int, int]] | None,
) -> CompactedWarc:
    """The new file is already stored: check it is this compaction of ``key``, describe it."""
    old_id = _file_id_of(key)
    before = _Splitter(lambda rid: rid not in drop, None)
    _scan(store, key, old, before, known)
    _check_known(key, before.records, known)
    kept = [r for r in before.records if r.record_id not in drop]
    dropped = [r for r in before.records if r.record_id in drop]
    dangling = _dangling(key, kept, dropped)
    missing = sorted(drop - {r.record_id for r in dropped})
    head = store.head(new_key)
    after = _Splitter(lambda rid: True, None)
    try:
        _scan(store, new_key, head, after)
    except IntegrityError as exc:
        raise IntegrityError(
            f"{new_key}, stored by an interrupted compaction of {key}, does not verify: {exc}"
        ) from None
    assert after.warcinfo is not None
    same = [(r.record_id, r.block_digest, r.length) for r in after.records] == [
        (r.record_id, r.block_digest, r.length) for r in kept
    ]
    if ("compacted-from", old_id) not in after.warcinfo.fields or not same:
        raise IntegrityError(
            f"{new_key} is already stored but is not {key} without the records to drop; "
            "nothing was changed"
        )
    new_id = _file_id_of(new_key)
    first = min([after.warcinfo.date, *(r.date for r in after.records)])
    last = max([after.warcinfo.date, *(r.date for r in after.records)])
    records = len(after.records) + 1
    closed = ClosedWarc(
        work_dir / new_key.rsplit("/", 1)[-1],
        new_id,
        partition,
        head.sha256,
        head.size,
        records,
        first,
        last,
    )
    stored = _check_stored(store, new_key, head.sha256, head.size, old)
    put_sidecar(store, new_key, closed, tmp_dir=work_dir)
    log.info("warc compaction resumed", key=key, new_key=new_key)
    result = _Partial(key, old_id, old.sha256, dropped, missing, dangling)
    kept_at = {r.record_id: (r.offset, r.length) for r in after.records}
    return result.rewritten(new_id, new_key, stored, records, kept_at, first, resumed=True)


# -- Parquet -------------------------------------------------------------------------------


def compact_parquet(
    store: Store,
    key: str,
    drop_record_ids: Collection[str],
    *,
    work_dir: Path,
    partition: Partition,
    now: datetime | None = None,
    file_id: str | None = None,
    retain_until: datetime | None = None,
) -> CompactedParquet:
    """Store a new Parquet file holding the rows of ``key`` whose record id is not dropped.

    The rows keep their order and values; the file's schema metadata names the file it was
    compacted from and when. ``file_id`` and ``retain_until`` as for :func:`compact_warc`.
    Raises :class:`IntegrityError` when the old file does not match what the store recorded.
    """
    now = now or datetime.now(UTC)
    old_id = _old_file_id(key, partition, ObjectKind.PARQUET)
    drop = frozenset(drop_record_ids)
    old = store.head(key)
    table = _read_parquet(store, key, old)
    ids = table.column("warc_record_id")
    mask = pc.is_in(ids, value_set=pa.array(sorted(drop), type=pa.string()))
    dropped = [str(v) for v in ids.filter(mask).to_pylist()]
    kept_table = table.filter(pc.invert(mask))
    kept = [str(v) for v in kept_table.column("warc_record_id").to_pylist()]
    missing = sorted(drop - set(dropped))

    def result(
        new_key: str | None, stored: ObjectInfo | None, resumed: bool = False
    ) -> CompactedParquet:
        return CompactedParquet(
            old_key=key,
            old_file_id=old_id,
            old_sha256=old.sha256,
            new_file_id=None if new_key is None else _file_id_of(new_key),
            new_key=new_key,
            sha256=None if stored is None else stored.sha256,
            size=0 if stored is None else stored.size,
            rows=len(kept) if stored is not None else 0,
            kept=kept if stored is not None else [],
            dropped=dropped,
            missing=missing,
            retain_until=None if stored is None else stored.retain_until,
            legal_hold=False if stored is None else stored.legal_hold,
            resumed=resumed,
        )

    if not kept:
        log.info("parquet emptied by compaction", key=key, dropped=len(dropped))
        return result(None, None)
    new_key = _new_key(partition, ObjectKind.PARQUET, file_id, key)
    new_id = _file_id_of(new_key)
    if store.exists(new_key):
        head = store.head(new_key)
        stored_table = _read_parquet(store, new_key, head)
        meta = stored_table.schema.metadata or {}
        if meta.get(b"compacted-from") != old_id.encode() or not stored_table.equals(kept_table):
            raise IntegrityError(
                f"{new_key} is already stored but is not {key} without the rows to drop; "
                "nothing was changed"
            )
        log.info("parquet compaction resumed", key=key, new_key=new_key)
        checked = _check_stored(store, new_key, head.sha256, head.size, old)
        put_file_sidecar(
            store, new_key, file_id=new_id, partition=partition.name, sha256=head.sha256,
            size=head.size, records=len(kept), tmp_dir=work_dir,
        )  # fmt: skip
        return result(new_key, checked, True)

    kept_table = kept_table.replace_schema_metadata(
        {
            "compacted-from": old_id,
            "compacted-from-key": key,
            "compacted-from-sha256": old.sha256,
            "compacted-at": now.astimezone(UTC).isoformat(),
            "compaction": REASON.replace("gzip member", "row"),
        }
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f".compact-{new_id}.parquet.tmp"
    try:
        sha256 = parquet.write_file(kept_table, path)
        size = path.stat().st_size
        try:
            back = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many types for a broken file
            raise IntegrityError(
                f"the compacted file {path.name} cannot be read back ({exc})"
            ) from exc
        if back.num_rows != len(kept) or not back.equals(kept_table):
            raise IntegrityError(
                f"the compacted file {path.name} does not read back as the kept rows; "
                "nothing was stored and the old file is untouched"
            )
        stored = _put(store, new_key, path, sha256, size, old, retain_until)
    finally:
        path.unlink(missing_ok=True)
    put_file_sidecar(
        store, new_key, file_id=new_id, partition=partition.name, sha256=stored.sha256,
        size=stored.size, records=len(kept), tmp_dir=work_dir,
    )  # fmt: skip
    log.info("parquet compacted", key=key, new_key=new_key, kept=len(kept), dropped=len(dropped))
    return result(new_key, stored)


def _read_parquet(store: Store, key: str, head: ObjectInfo) -> pa.Table:
    """The stored file as a table, read into memory (no copy on disk), checked to the byte."""
    buf = bytearray()
    whole = hashlib.sha256()
    for chunk in store.open(key):
        whole.update(chunk)
        buf += chunk
    sha256 = whole.hexdigest()
    if len(buf) != head.size or not hmac.compare_digest(sha256, head.sha256):
        raise _refusal(
            key,
            None,
            None,
            f"its {len(buf)} bytes have sha256 {sha256}; the store recorded {head.size} bytes "
            f"with sha256 {head.sha256}",
        )
    try:
        table = pq.read_table(pa.BufferReader(pa.py_buffer(buf)))
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise _refusal(key, None, None, f"it is not a readable Parquet file ({exc})") from exc
    if not table.schema.equals(parquet.SCHEMA):
        raise ArchiverError(
            f"{key} does not have the archiver's Parquet schema; it was not compacted"
        )
    return table
