"""Reading the store for a rebuild: every object listed, every file verified, every record read.

Each WARC is copied once from the store into a temporary file while its SHA-256 is computed;
that digest and the size must match both the backend's record of the object and the public
``.sha256.json`` sidecar next to it. The archive's own scanner (``archiver.warc_recovery``)
then checks every record's gzip member and its block and payload digests and gives each
record's exact offset and length. Only then are the records the catalog is built from
(``conversion`` and ``metadata`` JSON, the heads of media responses) read back by offset.

Control facts (``control/facts/<month>/<fact-id>.warc.gz``, :mod:`archiver.control`) are
small WARCs outside any partition: verified the same way, their file id read from the
sidecar and the ``warcinfo``, their one ``metadata`` record parsed into a
:class:`~archiver.control.Fact`. Certificates of destruction (``control/certificates/``)
are verified against the backend (and a sidecar, if one exists) and, by the pipeline,
against the SHA-256 their ``disposition.certificate`` fact recorded. A fact of a kind this
archiver does not know stops the rebuild (:class:`~archiver.errors.IntegrityError`): a
newer archiver wrote it, and dropping it could lose a hold.

A file that fails any check is a :class:`Damage`, never silently skipped: the caller decides
whether that stops the rebuild.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from archiver import control
from archiver.audit import ANCHOR_PREFIX
from archiver.errors import ArchiverError, IntegrityError
from archiver.layout import ObjectKind, Partition
from archiver.store.base import LAYOUT_KEY, ObjectInfo, Store
from archiver.warc_records import HTTP_RECORD_TYPES, RecordPointer, label_to_hex
from archiver.warc_recovery import scan_warc

#: Where certificates of destruction are stored (``<certificate id>.json`` and ``.html``).
CERTIFICATE_PREFIX = "control/certificates/"
_SEG = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_PART = rf"({_SEG})/({_SEG})/(\d{{4}}-\d{{2}})"
_WARC = re.compile(rf"^warc/{_PART}/({_SEG})\.warc\.gz$")
_PARQUET = re.compile(rf"^parquet/{_PART}/({_SEG})\.parquet$")
_CONTROL = re.compile(rf"^control/{_PART}/({_SEG})\.json$")
_ANCHOR = re.compile(rf"^{re.escape(ANCHOR_PREFIX)}(\d+)\.json$")
_FACT = re.compile(rf"^{re.escape(control.PREFIX)}\d{{4}}-\d{{2}}/({_SEG})\.warc\.gz$")
_CERTIFICATE = re.compile(rf"^{re.escape(CERTIFICATE_PREFIX)}({_SEG})\.(json|html)$")
SIDECAR = ".sha256.json"

_COPY = 1 << 20
#: Most bytes of one ``conversion``/``metadata`` record read into memory.
_MAX_DOC = 64 << 20
#: Enough of any other record to hold its WARC head and an HTTP head (at most 1 MiB).
_HEAD_PREFIX = (1 << 20) + (64 << 10)
#: Record types whose JSON block the rebuild reads.
DOC_TYPES = frozenset({"conversion", "metadata"})


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object of the store, by what its key says it is."""

    key: str
    # "warc", "parquet", "control", "fact", "certificate", "anchor", "sidecar", "layout",
    # "unknown"
    kind: str
    info: ObjectInfo
    partition: Partition | None = None
    file_id: str | None = None
    seq: int | None = None  # for audit anchors

    @property
    def account(self) -> str | None:
        return self.partition.account if self.partition is not None else None


@dataclass(frozen=True, slots=True)
class Damage:
    """A stored file that failed verification, and how."""

    key: str
    problem: str


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """One verified record and what the rebuild needs of it.

    ``order`` sorts records in the order they were written within a partition: files by
    the time they were opened (their ``warcinfo`` date) then id, records by offset.
    """

    pointer: RecordPointer
    partition: Partition
    order: tuple[datetime, str, int]
    refers_to: str | None = None
    doc: dict[str, Any] | None = None  # conversion/metadata JSON, without ``raw``
    http_status: int | None = None
    payload_size: int | None = None

    @property
    def payload_sha256(self) -> str | None:
        """The payload digest as lowercase hex (the catalog's media key), if it has one."""
        label = self.pointer.payload_digest
        return label_to_hex(label) if label else None


@dataclass(slots=True)
class ScannedWarc:
    """A verified WARC file: the facts of its ``stored_files`` row and its records."""

    obj: StoredObject
    sha256: str
    size: int
    created_at: datetime  # the earliest record date, as ``archiver.spool`` registers it
    opened_at: datetime  # the warcinfo record's date: when the file was opened
    warcinfo: dict[str, str]
    records: list[ScannedRecord] = field(default_factory=list)
    record_count: int = 0  # the warcinfo record included, as in ``stored_files.records``


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """A verified Parquet or control object."""

    obj: StoredObject
    sha256: str
    size: int
    rows: int = 0
    record_ids: tuple[str, ...] = ()  # Parquet: the ``warc_record_id`` of every row
    #: The file's id where its key does not hold it (facts, certificates): from its sidecar.
    stored_id: str | None = None
    created_at: datetime | None = None  # when the file says it was written, if it says

    @property
    def file_id(self) -> str:
        file_id = self.stored_id or self.obj.file_id
        assert file_id is not None
        return file_id


@dataclass(frozen=True, slots=True)
class ScannedFacts:
    """A verified control-fact file and the facts it holds (one, as ``write_fact`` writes)."""

    file: ScannedFile
    facts: tuple[control.Fact, ...]


@dataclass(frozen=True, slots=True)
class Anchor:
    """An anchored audit-chain head (``control/audit/<seq>.json``)."""

    key: str
    seq: int
    hash: str
    anchored_at: str | None
    node: str | None


@dataclass(slots=True)
class Listing:
    """Every object of the store, sorted by what it is."""

    warcs: list[StoredObject] = field(default_factory=list)
    parquet: list[StoredObject] = field(default_factory=list)
    control: list[StoredObject] = field(default_factory=list)
    facts: list[StoredObject] = field(default_factory=list)
    certificates: list[StoredObject] = field(default_factory=list)
    anchors: list[StoredObject] = field(default_factory=list)
    sidecars: dict[str, StoredObject] = field(default_factory=dict)  # by the key it describes
    unknown: list[str] = field(default_factory=list)

    def accounts(self) -> list[str]:
        """Every account with a file in the store, sorted."""
        found = {o.account for o in (*self.warcs, *self.parquet, *self.control)}
        return sorted(a for a in found if a is not None)


def classify(info: ObjectInfo) -> StoredObject:
    """What an object is, by its key (docs/layout.md)."""
    key = info.key
    if key == LAYOUT_KEY:
        return StoredObject(key, "layout", info)
    if key.endswith(SIDECAR):
        return StoredObject(key, "sidecar", info)
    for kind, pattern in (
        (ObjectKind.WARC, _WARC),
        (ObjectKind.PARQUET, _PARQUET),
        (ObjectKind.CONTROL, _CONTROL),
    ):
        m = pattern.fullmatch(key)
        if m is not None:
            try:
                partition = Partition(m.group(1), m.group(2), m.group(3))
            except ArchiverError:
                break
            return StoredObject(key, kind.value, info, partition, m.group(4))
    m = _ANCHOR.fullmatch(key)
    if m is not None:
        return StoredObject(key, "anchor", info, seq=int(m.group(1)))
    # Outside every partition: no account, and the file id is not in the key.
    if _FACT.fullmatch(key):
        return StoredObject(key, "fact", info)
    if _CERTIFICATE.fullmatch(key):
        return StoredObject(key, "certificate", info)
    return StoredObject(key, "unknown", info)


def list_store(store: Store) -> Listing:
    """List and classify every object in the store."""
    listing = Listing()
    for info in store.list(""):
        obj = classify(info)
        if obj.kind == "warc":
            listing.warcs.append(obj)
        elif obj.kind == "parquet":
            listing.parquet.append(obj)
        elif obj.kind == "control":
            listing.control.append(obj)
        elif obj.kind == "fact":
            listing.facts.append(obj)
        elif obj.kind == "certificate":
            listing.certificates.append(obj)
        elif obj.kind == "anchor":
            listing.anchors.append(obj)
        elif obj.kind == "sidecar":
            listing.sidecars[obj.key.removesuffix(SIDECAR)] = obj
        elif obj.kind == "unknown":
            listing.unknown.append(obj.key)
    return listing


class _Failed(Exception):
    """A file failed verification (turned into a :class:`Damage` by the caller)."""


class Reader:
    """Reads and verifies files of one store, through temporary copies in ``tmp_dir``."""

    def __init__(self, store: Store, tmp_dir: Path | None = None) -> None:
        self.store = store
        self.tmp_dir = tmp_dir

    # -- WARC --------------------------------------------------------------------------

    def warc(self, obj: StoredObject, sidecar: StoredObject | None) -> ScannedWarc | Damage:
        """Verify one WARC against its sidecar and the backend, and read its records."""
        assert obj.partition is not None and obj.file_id is not None
        try:
            expected = self._sidecar(obj, sidecar)
            with self._copy(obj) as (path, sha256, size):
                _check_digest(obj, sha256, size, expected)
                return self._records(obj, path, sha256, size, expected)
        except _Failed as exc:
            return Damage(obj.key, str(exc))

    def _sidecar(self, obj: StoredObject, sidecar: StoredObject | None) -> dict[str, Any] | None:
        if sidecar is None:
            return None
        try:
            doc = json.loads(self.store.get(sidecar.key))
            if not isinstance(doc, dict):
                raise ValueError("it is not a JSON object")
        except ValueError as exc:
            raise _Failed(f"its sidecar {sidecar.key} is unreadable ({exc})") from exc
        other_id = obj.file_id is not None and doc.get("file_id") not in (None, obj.file_id)
        if other_id or doc.get("key") not in (None, obj.key):
            raise _Failed(f"its sidecar {sidecar.key} describes another file")
        return doc

    def _records(
        self,
        obj: StoredObject,
        path: Path,
        sha256: str,
        size: int,
        sidecar: dict[str, Any] | None,
    ) -> ScannedWarc:
        assert obj.partition is not None and obj.file_id is not None
        scan = scan_warc(path, file_id=obj.file_id)
        if not scan.complete:
            raise _Failed(f"its records do not verify: {scan.problem or 'trailing bytes'}")
        if not scan.records:
            raise _Failed("it holds no record")
        if sidecar is not None and sidecar.get("records") not in (None, len(scan.records)):
            raise _Failed(
                f"it holds {len(scan.records)} records, its sidecar says {sidecar['records']}"
            )
        first = scan.records[0]
        opened = first.date
        warc = ScannedWarc(
            obj,
            sha256,
            size,
            created_at=min(p.date for p in scan.records),
            opened_at=opened,
            warcinfo={},
            record_count=len(scan.records),
        )
        with path.open("rb") as f:
            warc.warcinfo = _warc_fields(_read_member(f, first.offset, first.length, _MAX_DOC)[1])
            for ptr in scan.records[1:]:
                order = (opened, obj.file_id, ptr.offset)
                warc.records.append(_record(f, ptr, obj.partition, order))
        return warc

    # -- Parquet and control objects ---------------------------------------------------

    def parquet(self, obj: StoredObject, sidecar: StoredObject | None) -> ScannedFile | Damage:
        """Verify a Parquet file against the backend (and a sidecar, if one exists)."""
        try:
            expected = self._sidecar(obj, sidecar)
            with self._copy(obj) as (path, sha256, size):
                _check_digest(obj, sha256, size, expected)
                try:
                    table = pq.read_table(path, columns=["warc_record_id"])
                except Exception as exc:  # pyarrow raises many types for a broken file
                    raise _Failed(f"it is not a readable Parquet file ({exc})") from exc
                ids = tuple(str(v) for v in table.column("warc_record_id").to_pylist())
                return ScannedFile(obj, sha256, size, rows=len(ids), record_ids=ids)
        except _Failed as exc:
            return Damage(obj.key, str(exc))

    def control(self, obj: StoredObject, sidecar: StoredObject | None) -> ScannedFile | Damage:
        """Verify a partition-level control object (manifest, certificate)."""
        try:
            expected = self._sidecar(obj, sidecar)
            with self._copy(obj) as (_path, sha256, size):
                _check_digest(obj, sha256, size, expected)
                return ScannedFile(obj, sha256, size)
        except _Failed as exc:
            return Damage(obj.key, str(exc))

    def certificate(self, obj: StoredObject, sidecar: StoredObject | None) -> ScannedFile | Damage:
        """Verify a certificate of destruction (JSON or HTML) against the backend's record.

        Its file id is its sidecar's, if it has one; one without is not a stored file of
        the catalog (``stored_id`` None), as the disposition that wrote it left it.
        """
        try:
            expected = self._sidecar(obj, sidecar)
            with self._copy(obj) as (_path, sha256, size):
                _check_digest(obj, sha256, size, expected)
                recorded = (expected or {}).get("file_id")
                return ScannedFile(obj, sha256, size, stored_id=str(recorded) if recorded else None)
        except _Failed as exc:
            return Damage(obj.key, str(exc))

    # -- control facts -----------------------------------------------------------------

    def facts(self, obj: StoredObject, sidecar: StoredObject | None) -> ScannedFacts | Damage:
        """Verify one control-fact WARC and parse its facts.

        Raises :class:`IntegrityError` for a fact of a kind this archiver does not know: a
        newer archiver wrote it, and it is not damage that ``--skip-damaged`` may leave out.
        """
        try:
            expected = self._sidecar(obj, sidecar)
            with self._copy(obj) as (path, sha256, size):
                _check_digest(obj, sha256, size, expected)
                return _facts(obj, path, sha256, size, expected)
        except _Failed as exc:
            return Damage(obj.key, str(exc))

    def anchor(self, obj: StoredObject) -> Anchor | Damage:
        """Read an anchored audit head."""
        try:
            data = json.loads(self.store.get(obj.key))
            return Anchor(
                obj.key,
                int(data["seq"]),
                str(data["hash"]),
                data.get("anchored_at"),
                data.get("node"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return Damage(obj.key, f"the audit anchor is unreadable ({exc})")

    # -- copying -----------------------------------------------------------------------

    def _copy(self, obj: StoredObject) -> _Copy:
        return _Copy(self.store, obj.key, self.tmp_dir)


def _facts(
    obj: StoredObject, path: Path, sha256: str, size: int, sidecar: dict[str, Any] | None
) -> ScannedFacts:
    recorded = (sidecar or {}).get("file_id")
    scan = scan_warc(path, file_id=str(recorded) if recorded else "control-fact")
    if not scan.complete:
        raise _Failed(f"its records do not verify: {scan.problem or 'trailing bytes'}")
    if not scan.records or scan.records[0].warc_type != "warcinfo":
        raise _Failed("it does not start with a warcinfo record")
    if sidecar is not None and sidecar.get("records") not in (None, len(scan.records)):
        raise _Failed(
            f"it holds {len(scan.records)} records, its sidecar says {sidecar['records']}"
        )
    facts: list[control.Fact] = []
    with path.open("rb") as f:
        first = scan.records[0]
        info = _warc_fields(_read_member(f, first.offset, first.length, _MAX_DOC)[1])
        file_id = info.get("file-id") or recorded
        if not file_id or (recorded and recorded != file_id):
            raise _Failed(f"its warcinfo names file {file_id}, its sidecar {recorded}")
        for ptr in scan.records[1:]:
            if ptr.warc_type == "metadata":
                facts.append(_fact(obj, _read_member(f, ptr.offset, ptr.length, _MAX_DOC)[1]))
    if not facts:
        raise _Failed("it holds no fact")
    stored = ScannedFile(
        obj,
        sha256,
        size,
        rows=len(scan.records),
        stored_id=str(file_id),
        created_at=min(p.date for p in scan.records),
    )
    return ScannedFacts(stored, tuple(facts))


def _fact(obj: StoredObject, block: bytes) -> control.Fact:
    try:
        doc = json.loads(block)
    except ValueError as exc:
        raise _Failed(f"its fact is not JSON ({exc})") from exc
    kind = doc.get("fact") if isinstance(doc, dict) else None
    if isinstance(kind, str) and kind not in control.KINDS:
        raise IntegrityError(
            f"control fact {obj.key} is of kind {kind!r}, which this archiver does not know "
            "(a newer archiver wrote it); nothing was written: upgrade the archiver and "
            "rebuild again"
        )
    try:
        return control.parse_fact(block, obj.key)
    except IntegrityError as exc:
        raise _Failed(str(exc)) from exc


class _Copy:
    """A temporary local copy of one object, with the SHA-256 and size of what was read."""

    def __init__(self, store: Store, key: str, tmp_dir: Path | None) -> None:
        self.store, self.key, self.tmp_dir = store, key, tmp_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> tuple[Path, str, int]:
        self._tmp = tempfile.TemporaryDirectory(prefix="rebuild-", dir=self.tmp_dir)
        path = Path(self._tmp.name) / "object"
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("wb") as out:
                for chunk in self.store.open(self.key):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except ArchiverError as exc:
            raise _Failed(f"it could not be read from the store ({exc})") from exc
        return path, digest.hexdigest(), size

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _check_digest(
    obj: StoredObject, sha256: str, size: int, sidecar: dict[str, Any] | None
) -> None:
    """The bytes read must match the backend's record and the sidecar's, when there is one."""
    recorded: list[tuple[str, str, int | None]] = [
        ("the store's record", obj.info.sha256, obj.info.size)
    ]
    if sidecar is not None:
        recorded.append(("its sidecar", str(sidecar.get("sha256", "")), sidecar.get("size")))
    for where, want, want_size in recorded:
        if want and not hmac.compare_digest(want, sha256):
            raise _Failed(f"its bytes have sha256 {sha256}, {where} says {want}")
        if want_size is not None and want_size != size:
            raise _Failed(f"it is {size} bytes long, {where} says {want_size}")


def _read_member(f: BinaryIO, offset: int, length: int, limit: int) -> tuple[dict[str, str], bytes]:
    """The WARC headers (lower-case names) and up to ``limit`` bytes of one record's block."""
    f.seek(offset)
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    left = length
    while left and len(out) < limit and not inflater.eof:
        data = f.read(min(_COPY, left))
        if not data:
            break
        left -= len(data)
        while data and len(out) < limit and not inflater.eof:
            out += inflater.decompress(data, limit - len(out))
            data = inflater.unconsumed_tail
    head, _, rest = bytes(out).partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    block_length = int(headers.get("content-length", "0"))
    return headers, rest[:block_length]


def _warc_fields(block: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.decode("utf-8").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip(), value.strip())
    return fields


def _record(
    f: BinaryIO, ptr: RecordPointer, partition: Partition, order: tuple[datetime, str, int]
) -> ScannedRecord:
    if ptr.warc_type in DOC_TYPES:
        headers, block = _read_member(f, ptr.offset, ptr.length, _MAX_DOC)
        doc: dict[str, Any] | None = None
        if headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(block)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                parsed.pop("raw", None)  # the platform's object: large, and not a catalog fact
                doc = parsed
        return ScannedRecord(ptr, partition, order, headers.get("warc-refers-to"), doc)
    if ptr.warc_type not in ("response", "resource", "revisit"):
        return ScannedRecord(ptr, partition, order)
    headers, block = _read_member(f, ptr.offset, ptr.length, _HEAD_PREFIX)
    length = int(headers.get("content-length", "0"))
    status, payload = None, length
    uri = ptr.target_uri or ""
    if ptr.warc_type in HTTP_RECORD_TYPES and uri.startswith(("http:", "https:")):
        end = block.find(b"\r\n\r\n")
        payload = length - (end + 4) if end >= 0 else 0
        parts = block.split(b" ", 2)
        if len(parts) > 1 and parts[1][:3].isdigit():
            status = int(parts[1][:3])
    return ScannedRecord(
        ptr, partition, order, headers.get("warc-refers-to"), None, status, payload
    )
