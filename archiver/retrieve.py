"""Reading one record back from the store by its catalog pointer, digest-checked."""

from __future__ import annotations

import hashlib
import hmac
import zlib
from dataclasses import dataclass

from sqlalchemy import select

from archiver.catalog.db import Catalog
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.errors import IntegrityError, ObjectNotFoundError
from archiver.store.base import Store
from archiver.warc_records import label_to_hex


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One WARC record as stored: the gzip member and the record it inflates to."""

    record_id: str
    key: str
    member: bytes
    headers: dict[str, str]
    block: bytes


def read_record(catalog: Catalog, store: Store, record_id: str) -> Retrieved:
    """Fetch the record's bytes with one ranged read and check its block digest.

    Raises ``ObjectNotFoundError`` when the catalog does not know the record and
    ``IntegrityError`` when the stored bytes do not match the recorded digest.
    """
    with catalog.reader() as session:
        row = session.execute(
            select(WarcRecord, StoredFile.key)
            .join(StoredFile, StoredFile.id == WarcRecord.file_id)
            .where(WarcRecord.record_id == record_id)
        ).first()
    if row is None:
        raise ObjectNotFoundError(f"no stored record {record_id} in the catalog")
    rec, key = row[0], row[1]
    member = store.get(key, rec.offset, rec.length)
    try:
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(member) + inflater.flush()
        if not inflater.eof or inflater.unused_data:
            raise zlib.error("the range is not exactly one gzip member")
    except zlib.error as exc:
        raise IntegrityError(
            f"record {record_id} at {key}@{rec.offset}+{rec.length}: {exc}"
        ) from exc
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise IntegrityError(f"record {record_id} at {key}@{rec.offset} has no WARC header")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    block = rest[: int(headers["Content-Length"])]
    algorithm, _, _ = rec.block_digest.partition(":")
    if algorithm != "sha256":
        raise IntegrityError(f"record {record_id} has a {algorithm} digest; expected sha256")
    actual = hashlib.sha256(block).hexdigest()
    if headers.get("WARC-Record-ID") != record_id or not hmac.compare_digest(
        actual, label_to_hex(rec.block_digest)
    ):
        raise IntegrityError(
            f"record {record_id} in {key} at offset {rec.offset} does not match its recorded "
            "digest: the stored file is damaged"
        )
    return Retrieved(record_id, key, member, headers, block)
