"""Item versions as Parquet rows, rolled per partition from what the catalog holds.

Rows wait in the catalog (``item_versions.parquet_file_id`` is NULL) until their partition
has enough of them, or the oldest is old enough; then one Parquet file is written to the
spool, put into the store like a WARC, registered, and the rows are marked as rolled in the
same transaction. So there is never one tiny file per run, a crash at any point rolls the
same rows again, and the Parquet can always be rebuilt from the catalog (which itself can be
rebuilt from the WARCs).

The files are plain Parquet (zstd), readable by DuckDB, Trino, Spark or Athena; the schema
is :data:`SCHEMA`, one row per item version, with the WARC pointer of its record.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select, update
from ulid import ULID

from archiver.catalog.db import Catalog
from archiver.catalog.models import Item, ItemVersion, StoredFile
from archiver.layout import ObjectKind, Partition
from archiver.logging import get_logger
from archiver.spool import put_file_sidecar
from archiver.store.base import Store

log = get_logger(__name__)

_PG_ROLL_LOCK = 0x70617271_75657400

SCHEMA = pa.schema(
    [
        pa.field("account", pa.string(), nullable=False),
        pa.field("series", pa.string(), nullable=False),
        pa.field("partition", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("parent_id", pa.string()),
        pa.field("thread_id", pa.string()),
        pa.field("permalink", pa.string()),
        pa.field("author", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("edited_at", pa.timestamp("us", tz="UTC")),
        pa.field("captured_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("version_no", pa.int32(), nullable=False),
        pa.field("change", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("warc_file_id", pa.string(), nullable=False),
        pa.field("warc_offset", pa.int64(), nullable=False),
        pa.field("warc_length", pa.int64(), nullable=False),
        pa.field("warc_record_id", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class Rolled:
    file_id: str
    key: str
    partition: str
    rows: int
    sha256: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def pending(catalog: Catalog) -> list[tuple[str, int, datetime]]:
    """Partitions with rows waiting: (partition, count, oldest capture time)."""
    with catalog.reader() as s:
        rows = s.execute(
            select(ItemVersion.partition, func.count(), func.min(ItemVersion.captured_at))
            .join(Item, Item.id == ItemVersion.item_id)
            # A destroyed item's versions never get a row: its stub is not a record.
            .where(ItemVersion.parquet_file_id.is_(None), Item.disposed_at.is_(None))
            .group_by(ItemVersion.partition)
            .order_by(ItemVersion.partition)
        ).all()
    return [(r[0], int(r[1]), r[2]) for r in rows]


def roll(
    catalog: Catalog,
    store: Store,
    spool_dir: Path,
    *,
    min_rows: int,
    max_age: timedelta,
    force: bool = False,
    clock: Callable[[], datetime] = _utcnow,
) -> list[Rolled]:
    """Roll every partition that is due (or all of them with ``force``)."""
    now = clock()
    done: list[Rolled] = []
    with _roll_lock(catalog) as mine:
        if not mine:
            log.info("another node is rolling Parquet files; skipped")
            return done
        for partition, count, oldest in pending(catalog):
            if force or count >= min_rows or now - oldest >= max_age:
                done.append(_roll_partition(catalog, store, spool_dir, partition, now))
    return done


@contextmanager
def _roll_lock(catalog: Catalog) -> Iterator[bool]:
    """Whether this process may roll now.

    On PostgreSQL one node rolls at a time (a session advisory lock): two nodes rolling the
    same pending rows would write them into two files. SQLite serves one node, whose daemon
    already runs its rolls one at a time.
    """
    if catalog.dialect != "postgresql":
        yield True
        return
    with catalog.engine.connect() as conn:
        held = bool(conn.execute(select(func.pg_try_advisory_lock(_PG_ROLL_LOCK))).scalar())
        try:
            yield held
        finally:
            if held:
                conn.execute(select(func.pg_advisory_unlock(_PG_ROLL_LOCK)))


def _rows(catalog: Catalog, partition: str) -> tuple[list[int], dict[str, list[Any]]]:
    columns: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    ids: list[int] = []
    series = Partition.parse(partition).series
    item, version = Item.__table__, ItemVersion.__table__
    parents = item.alias("parent")
    # Plain columns, no ORM objects: building an instance per row cost more than the rest
    # of the roll together.
    query = (
        select(
            version.c.id,
            item.c.account_id,
            item.c.platform_item_id,
            item.c.kind,
            func.coalesce(parents.c.platform_item_id, item.c.platform_parent_id),
            item.c.thread_id,
            item.c.permalink,
            item.c.author,
            item.c.created_at,
            item.c.edited_at,
            version.c.captured_at,
            version.c.version_no,
            version.c.change,
            item.c.state,
            func.coalesce(version.c.text, item.c.text),
            version.c.content_sha256,
            version.c.warc_file_id,
            version.c.warc_offset,
            version.c.warc_length,
            version.c.warc_record_id,
        )
        .join(item, item.c.id == version.c.item_id)
        .outerjoin(parents, parents.c.id == item.c.parent_id)
        .where(
            version.c.partition == partition,
            version.c.parquet_file_id.is_(None),
            item.c.disposed_at.is_(None),
        )
        .order_by(version.c.id)
    )
    names = (
        "account", "item_id", "kind", "parent_id", "thread_id", "permalink", "author",
        "created_at", "edited_at", "captured_at", "version_no", "change", "state", "text",
        "content_sha256", "warc_file_id", "warc_offset", "warc_length", "warc_record_id",
    )  # fmt: skip
    lists = [columns[name] for name in names]
    with catalog.reader() as s:
        for row in s.execute(query):
            ids.append(row[0])
            for values, value in zip(lists, row[1:], strict=True):
                values.append(value)
    columns["series"] = [series] * len(ids)
    columns["partition"] = [partition] * len(ids)
    return ids, columns


def write_file(table: pa.Table, path: Path) -> str:
    """Write ``table`` (of :data:`SCHEMA`) as one of our Parquet files, fsync it; its sha256.

    The one place the writer settings live: the roll and ``archiver.compact`` both use it.
    """
    pq.write_table(table, path, compression="zstd")
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.fsync(f.fileno())
    return digest


def _roll_partition(
    catalog: Catalog, store: Store, spool_dir: Path, partition: str, now: datetime
) -> Rolled:
    ids, columns = _rows(catalog, partition)
    file_id = str(ULID())
    part = Partition.parse(partition)
    key = part.key(ObjectKind.PARQUET, file_id)
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{file_id}.parquet"
    digest = write_file(pa.Table.from_pydict(columns, schema=SCHEMA), path)
    size = path.stat().st_size
    if not store.exists(key):
        store.put(key, path, digest)
    info = store.head(key)
    put_file_sidecar(
        store, key, file_id=file_id, partition=partition, sha256=digest, size=size,
        records=len(ids), tmp_dir=spool_dir,
    )  # fmt: skip
    with catalog.session() as s:
        s.add(
            StoredFile(
                id=file_id,
                key=key,
                kind=ObjectKind.PARQUET.value,
                partition=partition,
                sha256=digest,
                size=size,
                records=len(ids),
                created_at=now,
                stored_at=now,
                retain_until=info.retain_until,
                legal_hold=info.legal_hold,
                state="stored",
            )
        )
        s.execute(
            update(ItemVersion).where(ItemVersion.id.in_(ids)).values(parquet_file_id=file_id)
        )
    path.unlink()
    log.info("parquet rolled", partition=partition, rows=len(ids), key=key)
    return Rolled(file_id, key, partition, len(ids), digest)
