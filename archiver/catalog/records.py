"""Committing WARC record pointers: the last step of the write order."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from archiver.catalog.models import WarcRecord
from archiver.warc_records import RecordPointer

_TABLE = cast(Table, WarcRecord.__table__)


def record_row(ptr: RecordPointer, *, run_id: int | None, recorded_at: datetime) -> WarcRecord:
    """The catalog row that points at one stored record."""
    return WarcRecord(
        record_id=ptr.record_id,
        file_id=ptr.file_id,
        offset=ptr.offset,
        length=ptr.length,
        warc_type=ptr.warc_type,
        target_uri=ptr.target_uri,
        block_digest=ptr.block_digest,
        payload_digest=ptr.payload_digest,
        run_id=run_id,
        recorded_at=recorded_at,
        refers_to=ptr.refers_to,
        concurrent_to=ptr.concurrent_to,
    )


def register_records(
    session: Session, pointers: Iterable[RecordPointer], *, run_id: int | None = None
) -> int:
    """Add a row per record, in the caller's transaction; call only after the WARC was synced.

    One multi-row INSERT (no ORM objects: a capture page registers hundreds of records).
    """
    now = datetime.now(UTC)
    rows = [
        {
            "record_id": ptr.record_id,
            "file_id": ptr.file_id,
            "offset": ptr.offset,
            "length": ptr.length,
            "warc_type": ptr.warc_type,
            "target_uri": ptr.target_uri,
            "block_digest": ptr.block_digest,
            "payload_digest": ptr.payload_digest,
            "run_id": run_id,
            "recorded_at": now,
            "refers_to": ptr.refers_to,
            "concurrent_to": ptr.concurrent_to,
        }
        for ptr in pointers
    ]
    if rows:
        session.execute(insert(_TABLE), rows)
    return len(rows)
