"""Reading records back from the store by their catalog pointers, digest-checked.

Every read is one ranged read of exactly one record: the gzip member at the record's
*(file, offset, length)*, found through the catalog by record id (the primary key of
``warc_records``), never by scanning a file. What is read is checked before it is returned:

- :func:`read_record`: the member inflates to exactly one WARC record whose
  ``WARC-Record-ID`` is the one asked for and whose block matches the recorded SHA-256 block
  digest.
- :func:`read_payload`: the same, then the record's *payload* (for an HTTP ``response``, the
  body after the HTTP head, as the archiving client received it: de-chunked, still
  content-encoded; for a ``resource``/``conversion``/``metadata`` record, the block itself)
  against its recorded payload digest. A ``revisit`` is followed to the record it refers to
  (the earlier capture of the same bytes, in the same partition), whose payload must carry
  the revisit's payload digest.

Any disagreement raises :class:`~archiver.errors.IntegrityError` naming the record, the
stored file (key and id) and the offset, so the damage can be found and reported.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.errors import ArchiverError, IntegrityError, ObjectNotFoundError
from archiver.store.base import Store
from archiver.warc_records import HTTP_RECORD_TYPES, is_blank_http_line, label_to_hex


@dataclass(frozen=True, slots=True)
class Located:
    """Where the catalog says a record lies, and the digests it recorded for it."""

    record_id: str
    file_id: str
    key: str
    offset: int
    length: int
    warc_type: str
    block_digest: str
    payload_digest: str | None
    target_uri: str | None
    partition: str | None
    file_state: str

    def where(self) -> str:
        """``record <id> in <key> (file <id>) at offset <n>``: what an error message names."""
        return (
            f"record {self.record_id} in {self.key} (file {self.file_id}) at offset {self.offset}"
        )


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One WARC record as stored: the gzip member and the record it inflates to."""

    record_id: str
    key: str
    member: bytes
    headers: dict[str, str]
    block: bytes
    located: Located

    @property
    def warc_type(self) -> str:
        return self.headers.get("WARC-Type", self.located.warc_type)


@dataclass(frozen=True, slots=True)
class Payload:
    """A record's payload, digest-checked.

    ``record`` holds the bytes (for a revisit: the original capture); ``revisit`` is the
    revisit record that led there, if any. ``http_head`` is the HTTP status line and header
    fields when the record is an HTTP message, else None.
    """

    record: Retrieved
    http_head: bytes | None
    body: bytes
    sha256: str
    revisit: Retrieved | None = None


def locate(catalog: Catalog, record_ids: Iterable[str]) -> dict[str, Located]:
    """The catalog's pointers for ``record_ids`` (one query on the primary key)."""
    with catalog.reader() as session:
        return locate_in(session, record_ids)


def locate_in(session: Session, record_ids: Iterable[str]) -> dict[str, Located]:
    """:func:`locate` in a session the caller holds (one query on the primary key)."""
    wanted = sorted(set(record_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(WarcRecord, StoredFile.key, StoredFile.partition, StoredFile.state)
        .join(StoredFile, StoredFile.id == WarcRecord.file_id)
        .where(WarcRecord.record_id.in_(wanted))
    ).all()
    return {
        rec.record_id: Located(
            record_id=rec.record_id,
            file_id=rec.file_id,
            key=key,
            offset=rec.offset,
            length=rec.length,
            warc_type=rec.warc_type,
            block_digest=rec.block_digest,
            payload_digest=rec.payload_digest,
            target_uri=rec.target_uri,
            partition=partition,
            file_state=state,
        )
        for rec, key, partition, state in rows
    }


def locate_one(catalog: Catalog, record_id: str) -> Located:
    """The pointer of one record; ``ObjectNotFoundError`` when the catalog does not know it."""
    found = locate(catalog, [record_id]).get(record_id)
    if found is None:
        raise ObjectNotFoundError(f"no stored record {record_id} in the catalog")
    return found


def read_record(catalog: Catalog, store: Store, record_id: str) -> Retrieved:
    """Fetch the record's bytes with one ranged read and check its block digest.

    Raises ``ObjectNotFoundError`` when the catalog does not know the record and
    ``IntegrityError`` when the stored bytes do not match the recorded digest.
    """
    return read_located(store, locate_one(catalog, record_id))


def read_located(store: Store, at: Located) -> Retrieved:
    """One ranged read of the record at ``at``, its block checked against the catalog."""
    if at.file_state != "stored":
        raise ArchiverError(
            f"{at.where()}: the file is {at.file_state}, its records can no longer be read"
        )
    try:
        member = store.get(at.key, at.offset, at.length)
    except ObjectNotFoundError as exc:
        raise ObjectNotFoundError(
            f"{at.where()}: the stored file is missing ({exc}); run a fixity check"
        ) from exc
    if len(member) != at.length:
        raise IntegrityError(
            f"{at.where()}: the stored file ends {at.length - len(member)} bytes early "
            "(it is truncated)"
        )
    try:
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(member) + inflater.flush()
        if not inflater.eof or inflater.unused_data:
            raise zlib.error("the range is not exactly one gzip member")
    except zlib.error as exc:
        raise IntegrityError(
            f"{at.where()}, length {at.length}: the stored bytes are damaged ({exc})"
        ) from exc
    headers, block = _parse(raw, at)
    algorithm, _, _ = at.block_digest.partition(":")
    if algorithm != "sha256":
        raise IntegrityError(f"{at.where()} has a {algorithm} digest; expected sha256")
    if headers.get("WARC-Record-ID") != at.record_id or not _matches(block, at.block_digest):
        raise IntegrityError(
            f"{at.where()} does not match its recorded digest: the stored file is damaged"
        )
    return Retrieved(at.record_id, at.key, member, headers, block, at)


def _parse(raw: bytes, at: Located) -> tuple[dict[str, str], bytes]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise IntegrityError(f"{at.where()} has no WARC header")
    headers: dict[str, str] = {}
    try:
        for line in head.decode("utf-8").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        length = int(headers["Content-Length"])
    except (UnicodeDecodeError, KeyError, ValueError) as exc:
        raise IntegrityError(f"{at.where()} has a malformed WARC header ({exc})") from exc
    if len(rest) < length:
        raise IntegrityError(f"{at.where()}: the block is shorter than its Content-Length")
    return headers, rest[:length]


def _matches(data: bytes, label: str) -> bool:
    try:
        expected = label_to_hex(label)
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.sha256(data).hexdigest(), expected)


def split_http(record: Retrieved) -> tuple[bytes | None, bytes]:
    """The HTTP head and the payload of ``record`` (head None when it is not HTTP).

    As warcio reads it: an HTTP record (``request``/``response``/``revisit`` under an
    http(s) target URI) has its head end at the first line that is blank once stripped.
    """
    uri = record.headers.get("WARC-Target-URI", "")
    if record.warc_type not in HTTP_RECORD_TYPES or not uri.startswith(("http:", "https:")):
        return None, record.block
    block, start = record.block, 0
    while (end := block.find(b"\n", start)) != -1:
        if start > 0 and is_blank_http_line(block[start : end + 1]):
            return block[: end + 1], block[end + 1 :]
        start = end + 1
    raise IntegrityError(f"{record.located.where()}: the HTTP head has no end")


def read_payload(catalog: Catalog, store: Store, record_id: str) -> Payload:
    """The record's payload, checked against its payload digest; a revisit is followed."""
    return payload_of(catalog, store, read_record(catalog, store, record_id))


def payload_of(catalog: Catalog, store: Store, record: Retrieved) -> Payload:
    """:func:`read_payload` for a record already read (a revisit costs one more read)."""
    if record.warc_type == "revisit":
        return _original_of(catalog, store, record)
    head, body = split_http(record)
    digest = _payload_label(record)
    if digest is not None and not _matches(body, digest):
        raise IntegrityError(
            f"{record.located.where()}: the payload does not match its recorded digest"
        )
    return Payload(record, head, body, hashlib.sha256(body).hexdigest())


def _payload_label(record: Retrieved) -> str | None:
    """The payload digest the catalog recorded, which the WARC header must repeat."""
    recorded, header = record.located.payload_digest, record.headers.get("WARC-Payload-Digest")
    if recorded and header and recorded != header:
        raise IntegrityError(
            f"{record.located.where()}: the catalog's payload digest {recorded} differs from "
            f"the record's {header}"
        )
    return recorded or header


def _original_of(catalog: Catalog, store: Store, revisit: Retrieved) -> Payload:
    where = revisit.located.where()
    original_id = revisit.headers.get("WARC-Refers-To")
    digest = _payload_label(revisit)
    if not original_id or not digest:
        raise IntegrityError(f"{where}: a revisit without WARC-Refers-To or payload digest")
    original = read_located(store, locate_one(catalog, original_id))
    if original.warc_type == "revisit":
        raise IntegrityError(f"{where} refers to another revisit, {original_id}")
    if original.located.partition != revisit.located.partition:
        raise IntegrityError(
            f"{where} refers to {original_id} in another partition "
            f"({original.located.partition}); deduplication never crosses partitions"
        )
    found = payload_of(catalog, store, original)
    if not _matches(found.body, digest):
        raise IntegrityError(
            f"{where} refers to {original.located.where()}, whose payload does not match the "
            "revisit's payload digest"
        )
    return Payload(original, found.http_head, found.body, found.sha256, revisit)
