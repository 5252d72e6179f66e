"""Checking a stored WARC file's records against their digests and the catalog, as it streams.

:class:`WarcChecker` is fed the file's bytes in order, in chunks of any size, by whoever
reads them (``archiver.fixity`` feeds it the same chunks it computes the whole-file SHA-256
over, so the file is read once). Each gzip member is inflated incrementally (zlib checks its
CRC-32 and length), the one record inside it is parsed, and its block and payload are
hashed as they pass; nothing is held whole, and memory stays bounded by ``_INFLATE`` per
call however well a member compresses.

For every record it checks, against the record's own header and against the catalog's
``warc_records`` row for the offset where the record begins:

- the recomputed ``WARC-Block-Digest`` (SHA-256 of the whole block);
- the recomputed ``WARC-Payload-Digest``: for ``request``/``response`` records under an
  http(s) URI the payload is the block after the HTTP head, as stored (not de-chunked or
  decoded), which is what our builders (``archiver.warc_records``) and ``warcio check``
  digest; for other records the payload is the block. A ``revisit``'s payload digest names
  another record's payload, so only its agreement with the catalog is checked;
- the record id, type, offset and length the catalog holds for it.

A record the catalog knows but the file does not hold at that offset is a failure (the
catalog points at evidence that is not there). A record in the file that the catalog does not
know is an *orphan* and is only reported: the write order is append, fsync, then commit the
catalog rows, so a crash in between leaves complete, digest-valid records that no row points
to (docs/layout.md). They were never part of the catalogued record, a later run may have
written the same content again, and the whole-file SHA-256 still covers their bytes. The
file's leading ``warcinfo`` record is never catalogued and is not an orphan.

Damage that breaks a gzip member loses the member's end; checking resumes at the next offset
the catalog knows, so every damaged catalogued record is named, not only the first.

A few bits of a file change no record: gzip header fields zlib does not check (MTIME, XFL,
OS, FTEXT) and the padding bits after a member's last deflate code. The whole-file SHA-256
(``archiver.fixity``) catches those; for a header field, the member whose gzip header
differs from the file's others is reported in :attr:`WarcCheck.odd_gzip_headers` so the
record can still be named (one writer gives every member of a file the same header, except
XFL: zlib writes 2 for level 9 and 4 for the stored members of compressed media, and both
count as the same header here; one flipped bit cannot turn either into the other).
"""

from __future__ import annotations

import bisect
import hashlib
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from archiver.warc_records import (
    HTTP_RECORD_TYPES,
    MAX_HTTP_HEAD,
    digest_label,
    is_blank_http_line,
)

#: Most decompressed bytes one zlib call produces: bounds memory for well-compressed members.
_INFLATE = 4 << 20
_MAX_WARC_HEAD = 1 << 20
#: Compressed bytes given to zlib at a time for a member whose length the catalog does not know.
_STEP = 64 << 10
#: How much of a block is copied at a time while looking for the end of a head.
_HEAD_STEP = 64 << 10
_GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM=deflate: how every member begins
#: Members named per unusual gzip header (memory stays bounded however many there are).
_ODD_HEADS = 100
#: The fixed part of a gzip member header (RFC 1952): magic, method, flags, MTIME, XFL, OS.
GZIP_HEADER = 10
_XFL = 8
#: XFL values zlib writes at levels 9 (2) and 0-1 (4): the writer's two kinds of member.
_WRITER_XFL = (2, 4)

_WARC_HEAD, _BLOCK, _TRAILER = 0, 1, 2
#: A line start (after LF) whose first byte is not printable ASCII: it may be a blank line.
_SUSPECT_LINE = re.compile(rb"\n[^\x21-\x7e]")


@dataclass(frozen=True, slots=True)
class ExpectedRecord:
    """What the catalog's ``warc_records`` row says about one record."""

    record_id: str
    offset: int
    length: int
    warc_type: str
    block_digest: str
    payload_digest: str | None


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """What is wrong with the record at ``offset`` (``record_id`` None when unknown)."""

    offset: int
    record_id: str | None
    problem: str


@dataclass(frozen=True, slots=True)
class WarcCheck:
    """The outcome of checking every record of one file."""

    records: int  # records read whole and checked
    problems: tuple[RecordProblem, ...]  # in file order
    orphans: tuple[str, ...]  # ids of records the catalog does not know
    #: Records whose gzip header differs from the file's other members'. zlib ignores MTIME,
    #: XFL, OS and FTEXT, so a changed byte there alters no record; it only shows here (and
    #: in the whole-file SHA-256).
    odd_gzip_headers: tuple[RecordProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


_LABEL = re.compile(r"sha256:[A-Z2-7]{52}====")
#: RFC 4648 base32 digits to the digits ``int(text, 32)`` reads.
_BASE32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv")


def _matches(label: str, digest: bytes) -> bool:
    """Whether ``label`` (``sha256:<BASE32>``) names ``digest``.

    Decoding the label with ``int`` is several times faster than base32-encoding the digest
    with :mod:`base64`, which is pure Python; with thousands of small records per file the
    difference shows. 52 base32 digits are 260 bits: the digest and 4 zero bits.
    """
    if not _LABEL.fullmatch(label):
        return False
    return int(label[7:59].translate(_BASE32), 32) == int.from_bytes(digest, "big") << 4


def _mismatch(what: str, recorded: str, hasher: hashlib._Hash) -> str:
    return f"{what} digest mismatch: the header says {recorded}, the bytes {digest_label(hasher)}"


class _Record:
    """The one record inside one gzip member, parsed and digested while it inflates."""

    def __init__(self) -> None:
        self.state = _WARC_HEAD
        self.buf = bytearray()  # the WARC head while it is read, then the trailer
        self.headers: dict[str, str] = {}
        self.remaining = 0
        self.block = hashlib.sha256()
        self.payload: hashlib._Hash | None = None  # None: no payload of its own (or a revisit's)
        self.http_head: bytearray | None = None  # the block's HTTP head while it is read
        self.line_start = 0
        self.error: str | None = None  # the first thing wrong; the rest is not parsed

    @property
    def record_id(self) -> str | None:
        return self.headers.get("warc-record-id")

    @property
    def warc_type(self) -> str | None:
        return self.headers.get("warc-type")

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        if self.state == _WARC_HEAD and not self.buf:
            # The usual case: the whole head is in the member's first output; no copy.
            end = data.find(b"\r\n\r\n", 0, _MAX_WARC_HEAD)
            if end >= 0:
                self._start_block(data[:end])
                view = view[end + 4 :]
        while view and self.error is None:
            if self.state == _WARC_HEAD:
                view = self._warc_head(view)
            elif self.state == _BLOCK:
                n = min(len(view), self.remaining)
                self._block_bytes(view[:n])
                view = view[n:]
                self.remaining -= n
                if self.remaining == 0:
                    self.state = _TRAILER
            else:
                self.buf += view[:5]
                if len(self.buf) > 4:
                    self.error = "bytes follow the record's block"
                return

    def _warc_head(self, view: memoryview) -> memoryview:
        old = len(self.buf)
        self.buf += view[:_HEAD_STEP]
        end = self.buf.find(b"\r\n\r\n", max(0, old - 3))
        if end < 0:
            if len(self.buf) > _MAX_WARC_HEAD:
                self.error = "the record header is too long"
            return view[_HEAD_STEP:]
        head = bytes(self.buf[:end])
        self.buf.clear()
        self._start_block(head)
        return view[end + 4 - old :]

    def _start_block(self, head: bytes) -> None:
        try:
            lines = head.decode("utf-8").split("\r\n")
        except UnicodeDecodeError:
            self.error = "the record header is not UTF-8"
            return
        if lines[0] not in ("WARC/1.1", "WARC/1.0"):
            self.error = f"not a WARC record (first line {lines[0][:40]!r})"
            return
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self.error = f"malformed header line {line[:40]!r}"
                return
            self.headers.setdefault(name.strip().lower(), value.strip())
        length = self.headers.get("content-length", "")
        if not length.isdigit():
            self.error = f"bad Content-Length {length!r}"
            return
        self.remaining = int(length)
        rec_type = self.headers.get("warc-type", "")
        uri = self.headers.get("warc-target-uri", "")
        # warcio's rule, which our builders follow: only these types under http(s) URIs
        # carry an HTTP head; a revisit's payload digest names another record's payload.
        if rec_type in HTTP_RECORD_TYPES and uri.startswith(("http:", "https:")):
            self.http_head = bytearray()
            if rec_type != "revisit":
                self.payload = hashlib.sha256()
        self.state = _BLOCK if self.remaining else _TRAILER

    def _block_bytes(self, data: memoryview) -> None:
        self.block.update(data)
        if self.http_head is None:
            if self.payload is not None:
                self.payload.update(data)
            return
        head, at = self.http_head, 0
        while at < len(data):
            before = len(head)
            head += data[at : at + _HEAD_STEP]
            end = self._http_head_end(head)
            if end is not None:
                if self.payload is not None:
                    self.payload.update(data[at + end - before :])
                self.http_head = None
                return
            at += len(head) - before
            if len(head) > MAX_HTTP_HEAD:
                self.error = "the HTTP head is too long to find the payload"
                return

    def _http_head_end(self, head: bytearray) -> int | None:
        """Where the payload starts: after the first line that is blank once stripped
        (warcio's rule). None while that line is not in ``head`` yet.

        A line that starts with printable ASCII cannot be blank, so only the other line
        starts (in practice just the empty line that ends the head) are looked at closely.
        """
        while self.line_start < len(head):
            start = self.line_start
            if 0x21 <= head[start] <= 0x7E:
                suspect = _SUSPECT_LINE.search(head, start)
                if suspect is None:
                    # Every complete line start from here is printable; resume at the last.
                    self.line_start = max(start, head.rfind(b"\n") + 1)
                    return None
                self.line_start = suspect.start() + 1
                continue
            nl = head.find(b"\n", start)
            if nl < 0:
                return None
            self.line_start = nl + 1
            if is_blank_http_line(bytes(head[start : nl + 1])):
                return nl + 1
        return None

    def check(self) -> list[str]:
        """What is wrong with the record as a whole, once its member has ended."""
        if self.error is not None:
            return [self.error]
        if self.state != _TRAILER or bytes(self.buf) != b"\r\n\r\n":
            return ["the record is incomplete or not closed by CRLF CRLF"]
        h, problems = self.headers, []
        for name in ("warc-type", "warc-record-id", "warc-block-digest"):
            if not h.get(name):
                problems.append(f"the record has no {name} header")
        block = self.block.digest()
        recorded = h.get("warc-block-digest", "")
        if recorded and not _matches(recorded, block):
            problems.append(_mismatch("block", recorded, self.block))
        payload = h.get("warc-payload-digest")
        if payload and h.get("warc-type") != "revisit":
            hasher = self.payload if self.payload is not None else self.block
            if not _matches(payload, hasher.digest()):
                problems.append(_mismatch("payload", payload, hasher))
        return problems

    def against(self, row: ExpectedRecord, length: int) -> list[str]:
        """Where the record disagrees with the catalog's row for its offset."""
        h, problems = self.headers, []
        pairs = (
            ("record id", row.record_id, h.get("warc-record-id")),
            ("type", row.warc_type, h.get("warc-type")),
            ("block digest", row.block_digest, h.get("warc-block-digest")),
            ("payload digest", row.payload_digest, h.get("warc-payload-digest")),
        )
        for what, catalogued, in_file in pairs:
            if catalogued != in_file:
                problems.append(f"the catalog records {what} {catalogued}, the file has {in_file}")
        if row.length != length:
            problems.append(f"the catalog records {row.length} bytes, the record is {length}")
        return problems


def _name(rec: _Record, row: ExpectedRecord | None) -> str | None:
    """The record's id as its header says, else as the catalog says."""
    return rec.record_id or (row.record_id if row is not None else None)


class WarcChecker:
    """Feed a WARC file's bytes in order with :meth:`feed`, then call :meth:`finish`."""

    def __init__(self, expected: Iterable[ExpectedRecord]) -> None:
        self._expected = {row.offset: row for row in expected}
        self._offsets = sorted(self._expected)  # where catalogued records begin
        self._pos = 0  # file offset of the next byte fed
        self._start = 0  # file offset where the current member began
        self._inflater: zlib._Decompress | None = None
        self._record = _Record()
        self._end: int | None = None  # where the catalog says the current member ends
        self._overrun = False  # the member goes on past that end: look at what follows
        self._gzip_head = bytearray()
        self._skip_to: int | None = None  # resume at this offset after a broken member
        self._stopped = False  # no offset to resume at: the rest is only counted
        self._records = 0
        self._problems: list[RecordProblem] = []
        self._orphans: list[str] = []
        # Members by gzip header: how many, and where the first few of each are.
        self._head_counts: Counter[bytes] = Counter()
        self._heads: dict[bytes, list[tuple[int, str | None]]] = {}

    def feed(self, chunk: bytes) -> None:
        """Check the next bytes of the file."""
        view = memoryview(chunk)
        at = 0  # index in ``view`` of the byte at file offset ``_pos``
        while at < len(view):
            if self._skip_to is not None:
                skip = self._skip_to - self._pos
                if skip >= len(view) - at:
                    self._pos += len(view) - at
                    return
                at, self._pos, self._skip_to = at + skip, self._skip_to, None
            if self._stopped:
                self._pos += len(view) - at
                return
            if self._inflater is None:
                self._inflater = zlib.decompressobj(wbits=31)  # gzip; CRC-32 and ISIZE checked
                self._start, self._record = self._pos, _Record()
                row = self._expected.get(self._pos)
                self._end = None if row is None else self._pos + row.length
                self._gzip_head.clear()
            if self._overrun:
                self._overrun = False
                # Damaged data can decode on past the member's catalogued end into the next
                # record. If a gzip member begins there, stop, so that one bad record never
                # hides the next; otherwise the member is just longer than catalogued.
                if view[at : at + len(_GZIP_MAGIC)] == _GZIP_MAGIC[: len(view) - at]:
                    self._lose(f"the gzip member does not end at offset {self._pos} as catalogued")
                    continue
            if len(self._gzip_head) < GZIP_HEADER:
                self._gzip_head += view[at : at + GZIP_HEADER - len(self._gzip_head)]
            # zlib copies whatever follows a member's end (``unused_data``): with many small
            # records per chunk, feeding it the whole chunk each time would copy it once per
            # record. Feed it what the member should still need: its catalogued length, or
            # a step at a time when the catalog does not know it.
            end = self._end if self._end is not None and self._end > self._pos else None
            want = _STEP if end is None else end - self._pos
            at += self._inflate(view[at : at + want])
            self._overrun = self._inflater is not None and end is not None and self._pos >= end

    def _inflate(self, data: bytes | memoryview) -> int:
        """Inflate ``data`` into the current member; return how much of it the member took."""
        inflater = self._inflater
        assert inflater is not None
        taken = 0
        while True:
            try:
                out = inflater.decompress(data, _INFLATE)
            except zlib.error as exc:
                self._lose(f"the gzip member is damaged ({exc})")
                return taken
            if out:
                self._record.feed(out)
            rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            used = len(data) - len(rest)
            taken += used
            self._pos += used
            if inflater.eof:
                self._end_member()
                return taken
            data = rest
            if not data and len(out) < _INFLATE:
                return taken

    def _problem(self, offset: int, record_id: str | None, problems: list[str]) -> None:
        self._problems.append(RecordProblem(offset, record_id, "; ".join(problems)))

    def _end_member(self) -> None:
        start, rec = self._start, self._record
        length = self._pos - start
        self._inflater = None
        self._records += 1
        head = bytes(self._gzip_head)
        if len(head) == GZIP_HEADER and head[_XFL] in _WRITER_XFL:
            # Stored (media) and level-9 members differ only in XFL: compare them as one.
            head = head[:_XFL] + bytes((_WRITER_XFL[0],)) + head[_XFL + 1 :]
        self._head_counts[head] += 1
        where = self._heads.setdefault(head, [])
        if len(where) < _ODD_HEADS:
            where.append((start, rec.record_id))
        row = self._expected.pop(start, None)
        problems = rec.check()
        if row is not None:
            problems += rec.against(row, length) if rec.error is None else []
        elif not (start == 0 and rec.warc_type == "warcinfo"):
            self._orphans.append(rec.record_id or f"offset {start}")
        if problems:
            self._problem(start, _name(rec, row), problems)

    def _lose(self, why: str) -> None:
        """The member at ``_start`` cannot be inflated: name it, resume at the next known one."""
        start = self._start
        row = self._expected.pop(start, None)
        self._problem(start, _name(self._record, row), [why])
        self._inflater = None
        # Catalogued records the damaged member ran into cannot be reached any more.
        after = bisect.bisect_right(self._offsets, start)
        resume_at = bisect.bisect_left(self._offsets, max(self._pos, start + 1))
        for offset in self._offsets[after:resume_at]:
            swallowed = self._expected.pop(offset, None)
            if swallowed is not None:
                self._problem(
                    offset,
                    swallowed.record_id,
                    [f"not checked: inside the damaged data from offset {start}"],
                )
        if resume_at < len(self._offsets):
            self._skip_to = self._offsets[resume_at]
        else:
            self._stopped = True

    def finish(self) -> WarcCheck:
        """The outcome, once the whole file was fed."""
        if self._inflater is not None:
            start = self._start
            row = self._expected.pop(start, None)
            self._problem(
                start,
                _name(self._record, row),
                [f"the file ends {self._pos - start} bytes into this record: it is truncated"],
            )
            self._inflater = None
        for offset in sorted(self._expected):
            row = self._expected.pop(offset)
            if offset >= self._pos:
                why = f"the file ends at byte {self._pos}, before this catalogued record"
            elif self._stopped:
                why = "not checked: the file cannot be read past earlier damage"
            else:
                why = "the catalog points here but no record begins at this offset"
            self._problem(offset, row.record_id, [why])
        return WarcCheck(
            records=self._records,
            problems=tuple(sorted(self._problems, key=lambda p: p.offset)),
            orphans=tuple(self._orphans),
            odd_gzip_headers=self._odd_heads(),
        )

    def _odd_heads(self) -> tuple[RecordProblem, ...]:
        counts = self._head_counts.most_common(2)
        if len(counts) < 2:
            return ()
        # One writer wrote every member with the same header; with no majority, any may be it.
        usual = counts[0][0] if counts[0][1] > counts[1][1] else None
        odd = [
            RecordProblem(
                offset,
                record_id,
                f"its gzip header ({head.hex()}) differs from the file's other members'"
                + (f" ({usual.hex()})" if usual is not None else ""),
            )
            for head, where in self._heads.items()
            if head != usual
            for offset, record_id in where
        ]
        return tuple(sorted(odd, key=lambda p: p.offset))
