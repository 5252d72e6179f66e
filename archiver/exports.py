"""Reading platform data-export archives safely: the whole archive is checked first.

An export archive (a Mastodon "request your archive" download, say) is hostile input until
proven otherwise. :func:`open_export` opens a zip archive and refuses it, with an
:class:`~archiver.errors.ExportArchiveError` that says what was wrong, *before any entry is
read*: names that could escape a directory (absolute, ``..``, backslashes, drive letters,
names that are not in normal form), symbolic links and other special files, duplicate
names, encrypted entries, unsupported compression, entries that overlap (a zip-bomb
construction), and more entries, larger entries, more bytes in total or a higher
compression ratio than :class:`ExportLimits` allows. Because declared sizes can lie, every
entry is then decompressed once, counting the bytes that come out: an entry that yields
more than it declares, or fails its CRC, refuses the archive too (``verify=True``, the
default), still before anything is imported.

Nothing is ever extracted to a path built from an entry name: entries are read as streams
from the one open file. Only zip archives are accepted (Mastodon writes zip since 4.2;
older ``.tar.gz`` exports are refused with a message saying so).

The connector-facing side is the :class:`~archiver.connector.ExportSource` protocol:
:meth:`ExportArchive.names` and :meth:`ExportArchive.read`. The first read of an entry
appends it, byte for byte, as a WARC ``resource`` record (target
``urn:archiver:export:<archive sha256>/<entry name, percent-encoded>``) to the sink the
archive was opened with, and returns that record's id as the evidence of everything read
from it; later reads return the same id. The original archive file itself is not stored:
each entry a connector reads is kept as its own ``resource`` record, and media entries are
streamed by the pipeline (:meth:`ExportArchive.stream`) into media records of their own;
the archive's SHA-256 in every target URI ties them back to the file they came from.
"""

from __future__ import annotations

import bz2
import hashlib
import os
import posixpath
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NoReturn, Protocol
from urllib.parse import quote

from archiver.errors import ExportArchiveError
from archiver.warc_records import RecordPointer, WarcRecord, resource_record

__all__ = [
    "DEFAULT_LIMITS",
    "ExportArchive",
    "ExportEntry",
    "ExportLimits",
    "RecordSink",
    "content_type_for",
    "open_export",
]

MiB = 1 << 20
GiB = 1 << 30

_LOCAL_SIG = b"PK\x03\x04"
_LOCAL_HEAD = 30  # fixed part of a local file header
_EOCD_SIG = b"PK\x05\x06"
_EOCD_LEN = 22
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
}
_FILE_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
}
#: Content types by extension; a fixed table, so records do not depend on the host's mime.types.
_CONTENT_TYPES = {
    ".json": "application/json",
    ".js": "application/javascript",
    ".html": "text/html",
    ".htm": "text/html",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv",
    ".xml": "application/xml",
    ".pem": "application/x-pem-file",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
}


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """How much an export archive may hold before it is refused unread."""

    #: Most entries (files and directories) in one archive.
    max_entries: int = 200_000
    #: Largest uncompressed size of one entry.
    max_entry_bytes: int = 4 * GiB
    #: Largest uncompressed size of all entries together.
    max_total_bytes: int = 50 * GiB
    #: Highest compression ratio (uncompressed / compressed) of an entry ...
    max_ratio: int = 200
    #: ... that is larger than this.
    ratio_min_bytes: int = 1 * MiB
    #: Largest central directory (the list of entries), read before any check can run.
    max_directory_bytes: int = 256 * MiB
    #: Largest entry :meth:`ExportArchive.read` returns whole; larger ones must be streamed.
    max_read_bytes: int = 512 * MiB
    #: Size of the pieces entries are read, decompressed and streamed in.
    chunk_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"ExportLimits.{f.name} must be positive")


DEFAULT_LIMITS = ExportLimits()


class RecordSink(Protocol):
    """Where entries are archived: anything that appends a WARC record and says where.

    ``archiver.warc.WarcWriter`` is one; so is the HTTP client's exchange sink.
    """

    def append(self, record: WarcRecord) -> RecordPointer: ...


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One regular-file entry, as the archive's central directory declares it."""

    name: str
    size: int  # uncompressed, declared (reading holds the entry to it)
    compressed_size: int
    crc32: int
    #: The entry's timestamp as the zip records it: local time of the exporter, no zone.
    modified: str


@dataclass(frozen=True, slots=True)
class _Member:
    """An entry plus what reading it needs."""

    entry: ExportEntry
    method: int
    offset: int  # of the local header
    limit: int  # where the next entry (or the central directory) begins


class _Damaged(Exception):
    """An entry's bytes disagree with its header (raised while reading, given context later)."""


def content_type_for(name: str) -> str:
    """The content type of an entry, by its extension; ``application/octet-stream`` if unknown."""
    suffix = posixpath.splitext(name)[1].lower()
    return _CONTENT_TYPES.get(suffix, "application/octet-stream")


def open_export(
    path: Path,
    *,
    sink: RecordSink,
    limits: ExportLimits = DEFAULT_LIMITS,
    verify: bool = True,
) -> ExportArchive:
    """Open and check an export archive; raise ``ExportArchiveError`` if it is refused.

    With ``verify`` (the default) every entry is also decompressed once, counted and
    CRC-checked before this returns, so an archive that lies about its sizes is refused
    before anything from it is imported; without it the same checks run on each read.
    """
    path = Path(path)
    try:
        file = path.open("rb")
    except OSError as exc:
        raise ExportArchiveError(
            f"cannot open export archive {path}: {exc.strerror or exc}; nothing was imported"
        ) from exc
    archive: ExportArchive | None = None
    try:
        archive = ExportArchive(path, file, sink=sink, limits=limits)
        if verify:
            archive.verify()
        return archive
    except BaseException:
        if archive is not None:
            archive.close()
        else:
            file.close()
        raise


class ExportArchive:
    """An export archive that passed the checks; implements the ``ExportSource`` protocol.

    Create it with :func:`open_export`. Safe to share between threads; close it (or use it
    as a context manager) when done.
    """

    def __init__(
        self, path: Path, file: BinaryIO, *, sink: RecordSink, limits: ExportLimits
    ) -> None:
        self.path = path
        self._file = file
        self._sink = sink
        self._limits = limits
        self._lock = threading.Lock()
        self._evidence: dict[str, str] = {}
        self._closed = False
        st = _fstat(file)
        if not stat.S_ISREG(st.st_mode):
            self._refuse("it is not a regular file")
        self.size: int = st.st_size
        self._members = self._check()  # the cheap refusals first, then one pass to hash
        #: SHA-256 (hex) of the whole archive file, computed once when it is opened.
        self.sha256: str = self._hash()
        self._by_name = {m.entry.name: m for m in self._members}

    # -- the ExportSource protocol -------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """Every regular-file entry, in archive order."""
        return tuple(m.entry.name for m in self._members)

    def read(self, name: str) -> tuple[bytes, str]:
        """The entry's bytes and the record id of the ``resource`` record that keeps them.

        The first read archives the entry (once it has been read whole and checked);
        later reads return the same id.
        """
        member = self._member(name)
        if member.entry.size > self._limits.max_read_bytes:
            raise ExportArchiveError(
                f"export archive {self.path.name}: entry {name!r} holds {member.entry.size} "
                f"bytes, more than the {self._limits.max_read_bytes} that may be read into "
                "memory at once; it was not imported"
            )
        data = b"".join(self._chunks(member))
        with self._lock:
            evidence = self._evidence.get(name)
            if evidence is None:
                record = resource_record(
                    self.entry_uri(name),
                    data,
                    content_type=content_type_for(name),
                    extra_headers=self._record_headers(member.entry),
                )
                evidence = self._sink.append(record).record_id
                self._evidence[name] = evidence
        return data, evidence

    # -- for the core ----------------------------------------------------------------------

    def entries(self) -> tuple[ExportEntry, ...]:
        """Every regular-file entry with its declared sizes, in archive order."""
        return tuple(m.entry for m in self._members)

    def entry(self, name: str) -> ExportEntry:
        """The entry called ``name``; ``ExportArchiveError`` if there is none."""
        return self._member(name).entry

    def stream(self, name: str) -> Iterator[bytes]:
        """The entry's bytes in pieces of at most ``chunk_bytes``, for large (media) entries.

        The entry is counted and CRC-checked as it streams; if it turns out damaged or
        larger than it declared, the iterator raises ``ExportArchiveError`` (after the
        pieces already given), and whatever the caller received must be discarded.
        Streaming archives nothing: the caller stores what it streams.
        """
        return self._chunks(self._member(name))

    def entry_uri(self, name: str) -> str:
        """``urn:archiver:export:<archive sha256>/<name, percent-encoded>``."""
        return f"urn:archiver:export:{self.sha256}/{quote(name, safe='/')}"

    def evidence_of(self, name: str) -> str | None:
        """The record id of the entry's ``resource`` record, if it was read (archived)."""
        with self._lock:
            return self._evidence.get(name)

    def verify(self) -> None:
        """Decompress every entry once, counting and CRC-checking it; keep nothing."""
        for member in self._members:
            for _ in self._chunks(member):
                pass

    def close(self) -> None:
        """Close the archive file; reads after this raise ``ExportArchiveError``."""
        self._closed = True
        self._file.close()

    def __enter__(self) -> ExportArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------

    def _refuse(self, reason: str) -> NoReturn:
        raise ExportArchiveError(
            f"export archive {self.path} refused: {reason}. Nothing from it was imported."
        )

    def _hash(self) -> str:
        digest = hashlib.sha256()
        at = 0
        while at < self.size:
            data = self._pread(min(self._limits.chunk_bytes, self.size - at), at)
            if not data:
                self._refuse("it became shorter while it was being read")
            digest.update(data)
            at += len(data)
        return digest.hexdigest()

    def _check(self) -> list[_Member]:
        """Every refusal that needs no decompression; returns the regular files."""
        if self.size == 0:
            self._refuse("it is empty")
        magic = self._pread(4, 0)
        if magic.startswith(b"\x1f\x8b"):
            self._refuse(
                "it is a gzip (.tar.gz) archive, as Mastodon wrote before version 4.2; only "
                "zip archives can be imported"
            )
        declared = _declared_directory(self._pread, self.size)
        if declared is not None:
            count, directory_bytes = declared
            if count > self._limits.max_entries:
                self._refuse(
                    f"it declares {count} entries, more than the limit of "
                    f"{self._limits.max_entries}"
                )
            if directory_bytes > self._limits.max_directory_bytes:
                self._refuse(
                    f"its list of entries takes {directory_bytes} bytes, more than the limit "
                    f"of {self._limits.max_directory_bytes}"
                )
        try:
            with zipfile.ZipFile(self._file) as zf:
                infos = zf.infolist()
                start_dir = getattr(zf, "start_dir", self.size)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
            raise ExportArchiveError(
                f"export archive {self.path} is not a zip archive or is damaged ({exc}). "
                "Nothing from it was imported."
            ) from exc
        if len(infos) > self._limits.max_entries:
            self._refuse(
                f"it has {len(infos)} entries, more than the limit of {self._limits.max_entries}"
            )
        files = [info for info in infos if self._check_entry(info)]
        self._check_names(infos)
        self._check_sizes(files)
        return self._layout(infos, files, start_dir if isinstance(start_dir, int) else self.size)

    def _check_entry(self, info: zipfile.ZipInfo) -> bool:
        """Refuse an unsafe entry; True if it is a regular file."""
        name = info.orig_filename
        problem = _name_problem(name)
        if problem is not None:
            self._refuse(f"entry {name!r} {problem}")
        mode = info.external_attr >> 16
        kind = _FILE_TYPES.get(stat.S_IFMT(mode))
        if kind is not None:
            self._refuse(f"entry {name!r} is {kind}")
        if info.flag_bits & _FLAG_ENCRYPTED:
            self._refuse(f"entry {name!r} is encrypted")
        if info.is_dir():
            return False
        if info.compress_type not in _METHODS:
            self._refuse(
                f"entry {name!r} uses compression method {info.compress_type}; only stored, "
                "deflate and bzip2 entries are accepted"
            )
        return True

    def _check_names(self, infos: Sequence[zipfile.ZipInfo]) -> None:
        seen: dict[str, str] = {}
        files: set[str] = set()
        dirs: set[str] = set()
        for info in infos:
            name = info.orig_filename
            key = unicodedata.normalize("NFC", name)
            if key in seen:
                same = seen[key] == name
                twice = "appears twice" if same else f"is the same name as {seen[key]!r}"
                self._refuse(f"entry {name!r} {twice}")
            seen[key] = name
            (dirs if info.is_dir() else files).add(key.rstrip("/"))
        for name in sorted(files):
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent in files:
                    self._refuse(f"entry {parent!r} is both a file and a directory")
            if name in dirs:
                self._refuse(f"entry {name!r} is both a file and a directory")

    def _check_sizes(self, files: Sequence[zipfile.ZipInfo]) -> None:
        limits = self._limits
        total = 0
        for info in files:
            name, size, packed = info.orig_filename, info.file_size, info.compress_size
            if size > limits.max_entry_bytes:
                self._refuse(
                    f"entry {name!r} declares {size} bytes, more than the limit of "
                    f"{limits.max_entry_bytes} for one entry"
                )
            total += size
            if total > limits.max_total_bytes:
                self._refuse(
                    f"its entries declare more than {limits.max_total_bytes} bytes in total "
                    f"(the limit), reached at entry {name!r}"
                )
            if info.compress_type == zipfile.ZIP_STORED and packed != size:
                self._refuse(
                    f"stored entry {name!r} declares {packed} bytes stored but {size} bytes "
                    "of content"
                )
            if size > limits.ratio_min_bytes and size > limits.max_ratio * max(packed, 1):
                ratio = size // max(packed, 1)
                self._refuse(
                    f"entry {name!r} would expand {packed} bytes into {size} ({ratio}:1, more "
                    f"than the limit of {limits.max_ratio}:1): a decompression bomb"
                )

    def _layout(
        self, infos: Sequence[zipfile.ZipInfo], files: Sequence[zipfile.ZipInfo], end: int
    ) -> list[_Member]:
        """Refuse entries that overlap or lie past the end; where each one must stop."""
        ordered = sorted(infos, key=lambda i: i.header_offset)
        limit_of: dict[int, int] = {}
        for i, info in enumerate(ordered):
            limit = ordered[i + 1].header_offset if i + 1 < len(ordered) else min(end, self.size)
            least = info.header_offset + _LOCAL_HEAD + len(_name_bytes(info)) + info.compress_size
            if least > self.size:
                self._refuse(f"entry {info.orig_filename!r} runs past the end of the file")
            if least > limit:
                self._refuse(
                    f"entry {info.orig_filename!r} overlaps the next one (a zip-bomb construction)"
                )
            limit_of[id(info)] = limit
        return [
            _Member(
                entry=ExportEntry(
                    name=info.orig_filename,
                    size=info.file_size,
                    compressed_size=info.compress_size,
                    crc32=info.CRC,
                    modified="{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*info.date_time),
                ),
                method=info.compress_type,
                offset=info.header_offset,
                limit=limit_of[id(info)],
            )
            for info in files
        ]

    # -- reading ---------------------------------------------------------------------------

    def _member(self, name: str) -> _Member:
        member = self._by_name.get(name)
        if member is None:
            raise ExportArchiveError(f"export archive {self.path.name} has no entry {name!r}")
        return member

    def _pread(self, n: int, offset: int) -> bytes:
        if self._closed:
            raise ExportArchiveError(f"export archive {self.path.name} is closed")
        try:
            return _pread(self._file, n, offset)
        except OSError as exc:
            raise ExportArchiveError(
                f"cannot read export archive {self.path}: {exc.strerror or exc}"
            ) from exc

    def _chunks(self, member: _Member) -> Iterator[bytes]:
        """The entry's content, decompressed in bounded pieces, counted and CRC-checked."""
        entry = member.entry
        try:
            raw = self._raw(member)
            step = self._limits.chunk_bytes
            pieces: Iterable[bytes]
            if member.method == zipfile.ZIP_DEFLATED:
                pieces = _inflate(raw, step)
            elif member.method == zipfile.ZIP_BZIP2:
                pieces = _bunzip(raw, step)
            else:
                pieces = raw
            count = crc = 0
            for piece in pieces:
                count += len(piece)
                if count > entry.size:
                    raise _Damaged(
                        f"expands beyond the {entry.size} bytes it declares (the archive lies "
                        "about its sizes: a decompression bomb or damage)"
                    )
                crc = zlib.crc32(piece, crc)
                yield piece
            if count != entry.size:
                raise _Damaged(f"holds {count} bytes, not the {entry.size} it declares")
            if crc != entry.crc32:
                raise _Damaged("fails its CRC-32 check (the archive is damaged)")
        except _Damaged as exc:
            self._refuse_entry(entry, str(exc), exc)
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            self._refuse_entry(entry, f"has damaged compressed data ({exc})", exc)

    def _refuse_entry(self, entry: ExportEntry, reason: str, cause: Exception) -> NoReturn:
        raise ExportArchiveError(
            f"export archive {self.path} refused: entry {entry.name!r} {reason}. It was not "
            "imported."
        ) from cause

    def _raw(self, member: _Member) -> Iterator[bytes]:
        """The entry's stored (compressed) bytes, after checking its local header."""
        head = self._pread(_LOCAL_HEAD, member.offset)
        if len(head) < _LOCAL_HEAD or head[:4] != _LOCAL_SIG:
            raise _Damaged("has no local header where the directory says it starts")
        (flags,) = struct.unpack("<H", head[6:8])
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        local = self._pread(name_len, member.offset + _LOCAL_HEAD)
        local_name = local.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", "replace")
        if local_name != member.entry.name:
            raise _Damaged(f"has a local header naming another file ({local_name!r})")
        at = member.offset + _LOCAL_HEAD + name_len + extra_len
        end = at + member.entry.compressed_size
        if end > member.limit:
            raise _Damaged("overlaps the next entry or runs past the end of the file")
        while at < end:
            data = self._pread(min(self._limits.chunk_bytes, end - at), at)
            if not data:
                raise _Damaged("is cut short (the archive is truncated)")
            at += len(data)
            yield data

    def _record_headers(self, entry: ExportEntry) -> list[tuple[str, str]]:
        headers = [("Archiver-Export-Entry-Modified", entry.modified)]
        filename = self.path.name
        if filename.isprintable():
            headers.append(("Archiver-Export-Filename", filename))
        return headers


def _inflate(raw: Iterable[bytes], step: int) -> Iterator[bytes]:
    """Raw deflate, never more than ``step`` bytes of output per piece."""
    d = zlib.decompressobj(-15)
    for data in raw:
        while data and not d.eof:
            out = d.decompress(data, step)
            data = d.unconsumed_tail
            if out:
                yield out
        if d.eof:
            break
    while not d.eof:
        out = d.decompress(b"", step)
        if not out:
            raise _Damaged("ends in the middle of its compressed data (truncated)")
        yield out


def _bunzip(raw: Iterable[bytes], step: int) -> Iterator[bytes]:
    """bzip2, never more than ``step`` bytes of output per piece."""
    d = bz2.BZ2Decompressor()
    for data in raw:
        out = d.decompress(data, step)
        while True:
            if out:
                yield out
            if d.eof or d.needs_input:
                break
            out = d.decompress(b"", step)
            if not out:
                break
        if d.eof:
            break
    if not d.eof:
        raise _Damaged("ends in the middle of its compressed data (truncated)")


def _name_problem(name: str) -> str | None:
    """Why an entry name could not be a safe relative path, or None."""
    if not name or name == "/":
        return "has an empty name"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "has control characters in its name"
    if "\\" in name:
        return "uses backslashes (a Windows path)"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "names a drive letter"
    bare = name[:-1] if name.endswith("/") else name
    if ".." in bare.split("/"):
        return "climbs out of the archive with '..'"
    if posixpath.normpath(bare) != bare:
        return "is not a plain relative path (it has '.' or empty segments)"
    return None


def _name_bytes(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("utf-8" if info.flag_bits & _FLAG_UTF8 else "cp437")


def _declared_directory(pread: Callable[[int, int], bytes], size: int) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end record, before zipfile parses it all."""
    tail_len = min(size, _EOCD_LEN + 0xFFFF)
    tail = pread(tail_len, size - tail_len)
    at = tail.rfind(_EOCD_SIG)
    # The record ends the file but for its comment, which may itself hold the signature.
    while at >= 0 and (
        len(tail) - at < _EOCD_LEN
        or at + _EOCD_LEN + struct.unpack("<H", tail[at + 20 : at + 22])[0] != len(tail)
    ):
        at = tail.rfind(_EOCD_SIG, 0, at)
    if at < 0:
        return None  # zipfile will say it is not a zip
    count, directory_bytes = struct.unpack("<HL", tail[at + 10 : at + 16])
    if count != 0xFFFF and directory_bytes != 0xFFFFFFFF:
        return count, directory_bytes
    locator_at = size - tail_len + at - 20
    if locator_at < 0:
        return None
    locator = pread(20, locator_at)
    if locator[:4] != _ZIP64_LOCATOR_SIG:
        return None
    (record_at,) = struct.unpack("<Q", locator[8:16])
    record = pread(56, record_at) if record_at < size else b""
    if len(record) < 56 or record[:4] != _ZIP64_EOCD_SIG:
        return None
    count64, directory64 = struct.unpack("<QQ", record[32:48])
    return int(count64), int(directory64)


def _fstat(file: BinaryIO) -> os.stat_result:
    return os.fstat(file.fileno())


def _pread(file: BinaryIO, n: int, offset: int) -> bytes:
    """Exactly ``n`` bytes at ``offset`` unless the file ends first (positionless: thread-safe)."""
    out = b""
    while len(out) < n:
        data = os.pread(file.fileno(), n - len(out), offset + len(out))
        if not data:
            break
        out += data
    return out
