"""Removing destroyed items from the catalog and the search index, and from the disk.

After their records are gone from the store, the items become *stubs*: the row keeps its
id, account, platform id, kind, series, dates, content hash, version count and the
certificate of destruction; its text, author, permalink and edit date are cleared, as are
its versions' texts and its media's alt texts. Media rows only destroyed items carried are
deleted, and so are the versions' search index rows.

A deleted or overwritten value can survive in the database files: in free space of a page,
in a free page, in old FTS5 index segments, in SQLite's write-ahead log or in PostgreSQL's
dead tuples. :func:`secure_session` zeroes what SQLite frees (``PRAGMA secure_delete``) in
every transaction that removes destroyed content, and :func:`secure_delete` then:

- SQLite (3.40 has no FTS5 ``secure-delete`` option): merges the FTS5 index into one
  segment (``'optimize'``), so no old segment keeps a destroyed word; ``VACUUM``, which
  rebuilds the file without free pages; ``PRAGMA wal_checkpoint(TRUNCATE)``, which empties
  the write-ahead log;
- PostgreSQL: ``VACUUM (FULL)`` of the tables that held destroyed content, which rewrites
  them (and their TOAST tables and indexes) into new files without dead tuples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Item, ItemMedia, ItemVersion, Media
from archiver.disposition.plan import Plan, batches
from archiver.logging import get_logger
from archiver.search import index
from archiver.search.sqlite import TABLE as FTS_TABLE

log = get_logger(__name__)

#: Tables whose rows held destroyed content (PostgreSQL ``VACUUM (FULL)``).
TOUCHED_TABLES = (
    "items",
    "item_versions",
    "item_media",
    "media",
    "warc_records",
    "search_index",
)
#: How long to retry a checkpoint that other connections keep from finishing.
CHECKPOINT_PATIENCE = 10.0


def secure_session(session: Session) -> None:
    """Make SQLite overwrite with zeros what this session's transaction deletes."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA secure_delete = ON"))


def scrub_items(
    session: Session, plan: Plan, *, certificate_id: str, disposed_at: datetime
) -> dict[str, int]:
    """Turn the plan's items into stubs, in the caller's transaction; what was changed.

    Idempotent: a resumed run scrubs the same rows again to the same result.
    """
    secure_session(session)
    item_ids = [i.item_id for i in plan.items]
    counts = {"items": 0, "versions": 0, "media_links": 0, "media": 0, "index_rows": 0}
    for chunk in batches(item_ids):
        result: Any = session.execute(
            update(Item)
            .where(Item.id.in_(chunk))
            .values(
                text=None,
                author=None,
                permalink=None,
                edited_at=None,
                disposed_at=disposed_at,
                certificate_id=certificate_id,
            )
        )
        counts["items"] += result.rowcount
    for chunk in batches(plan.version_ids):
        result = session.execute(
            update(ItemVersion).where(ItemVersion.id.in_(chunk)).values(text=None)
        )
        counts["versions"] += result.rowcount
        result = session.execute(
            update(ItemMedia)
            .where(ItemMedia.version_id.in_(chunk))
            .values(alt_text=None, media_id=None, detail=None, status="disposed")
        )
        counts["media_links"] += result.rowcount
        index.backend(session).delete(session, chunk)
        counts["index_rows"] += len(chunk)
    for chunk in batches(plan.media_ids):
        result = session.execute(delete(Media).where(Media.id.in_(chunk)))
        counts["media"] += result.rowcount
    return counts


def _checkpoint(dbapi: Any) -> bool:
    """Empty SQLite's write-ahead log; False when readers kept it from finishing."""
    deadline = time.monotonic() + CHECKPOINT_PATIENCE
    while True:
        cur = dbapi.cursor()
        try:
            busy, _log, _done = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            cur.close()
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def checkpoint(catalog: Catalog) -> bool:
    """SQLite: empty the write-ahead log (written again by every later commit). True on
    PostgreSQL, whose WAL is the server's business."""
    if catalog.dialect != "sqlite":
        return True
    raw = catalog.engine.raw_connection()
    try:
        return _checkpoint(raw.driver_connection)
    finally:
        raw.close()


def secure_delete(catalog: Catalog, tables: Sequence[str] = TOUCHED_TABLES) -> dict[str, Any]:
    """Leave no destroyed value in the database's files (see the module docstring).

    Runs outside any transaction, as ``VACUUM`` must. Returns what was done, for the journal.
    """
    started = time.monotonic()
    if catalog.dialect == "sqlite":
        raw = catalog.engine.raw_connection()
        try:
            dbapi: Any = raw.driver_connection
            dbapi.execute("PRAGMA secure_delete = ON")
            dbapi.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES('optimize')")
            dbapi.execute("VACUUM")
            emptied = _checkpoint(dbapi)
        finally:
            raw.close()
        if not emptied:
            log.warning(
                "the catalog's write-ahead log could not be emptied: another process kept a "
                "read open; it is emptied at that process's next checkpoint"
            )
        done: dict[str, Any] = {"sqlite": ["secure_delete", "fts5 optimize", "vacuum"]}
        done["wal_truncated"] = emptied
    else:
        with catalog.engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                auto.exec_driver_sql(f'VACUUM (FULL) "{table}"')
        done = {"postgresql": [f"vacuum full {t}" for t in tables]}
    done["seconds"] = round(time.monotonic() - started, 3)
    log.info("catalog space of destroyed content cleared", **done)
    return done
