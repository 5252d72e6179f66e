"""Keeping the search index: one row per item version, written with the version.

What a version's row holds: the words (:mod:`archiver.search.text`) of the version's text,
of the alt text of each of its media, and of the item's author, each a segment of its
own. Every version is indexed, including those of items deleted on the platform or hidden
by a moderator: a search finds what the City holds, not what the platform still shows.

- :func:`index_versions` indexes given versions (again, if they were: it is idempotent).
- :func:`index_session` indexes the versions a session added; capture calls it in the
  transaction of each page commit and each deletion, so the index never lags the catalog.
- :func:`reindex` rebuilds the whole index from the catalog (``archiver catalog rebuild``,
  migration 0004's back-fill).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, event, select
from sqlalchemy.orm import Session, object_session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Item, ItemMedia, ItemVersion
from archiver.search import postgres, sqlite
from archiver.search.text import normalized

#: Versions read and written per statement.
BATCH = 1000
_ADDED = "archiver.search.added_versions"


def backend(db: Session | Connection) -> ModuleType:
    """The index module of the database ``db`` is connected to."""
    bind = db.get_bind() if isinstance(db, Session) else db
    name = bind.dialect.name
    if name == "sqlite":
        return sqlite
    if name == "postgresql":
        return postgres
    raise NotImplementedError(f"no search index for {name}")  # Catalog.open refuses others


def _documents(
    db: Session | Connection, version_ids: Sequence[int]
) -> list[tuple[int, int, list[str]]]:
    """(version id, item id, normalized segments) of each version that exists."""
    rows = db.execute(
        select(ItemVersion.id, ItemVersion.item_id, ItemVersion.text, Item.author)
        .join(Item, Item.id == ItemVersion.item_id)
        .where(ItemVersion.id.in_(version_ids))
        .order_by(ItemVersion.id)
    ).all()
    alts: dict[int, list[str]] = defaultdict(list)
    for version_id, alt in db.execute(
        select(ItemMedia.version_id, ItemMedia.alt_text)
        .where(ItemMedia.version_id.in_(version_ids), ItemMedia.alt_text.is_not(None))
        .order_by(ItemMedia.version_id, ItemMedia.position)
    ):
        alts[version_id].append(normalized(alt))
    return [
        (vid, item_id, [normalized(text), *alts[vid], normalized(author)])
        for vid, item_id, text, author in rows
    ]


def index_versions(db: Session | Connection, version_ids: Iterable[int]) -> int:
    """(Re)index the given item versions in ``db``'s transaction; how many were indexed."""
    ids = sorted(set(version_ids))
    store = backend(db)
    done = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        store.delete(db, chunk)
        rows = _documents(db, chunk)
        store.insert(db, rows)
        done += len(rows)
    return done


def _note_insert(_mapper: Any, _connection: Any, version: ItemVersion) -> None:
    session = object_session(version)
    if session is not None:
        session.info.setdefault(_ADDED, set()).add(version.id)


# Every version the ORM inserts is noted in its session, for index_session to find.
event.listen(ItemVersion, "after_insert", _note_insert)


def index_session(session: Session) -> int:
    """Index the item versions ``session`` added since the last call, after flushing it.

    Capture calls this in the transaction of each page commit and of each deletion, so the
    index holds a version exactly when the catalog does.
    """
    session.flush()
    added: set[int] = session.info.pop(_ADDED, set())
    return index_versions(session, added)


def rebuild(db: Session | Connection) -> int:
    """Empty the index and index every version, in ``db``'s transaction; how many."""
    store = backend(db)
    store.clear(db)
    done, last = 0, 0
    while True:
        ids = list(
            db.scalars(
                select(ItemVersion.id)
                .where(ItemVersion.id > last)
                .order_by(ItemVersion.id)
                .limit(BATCH)
            )
        )
        if not ids:
            return done
        rows = _documents(db, ids)
        store.insert(db, rows)
        done += len(rows)
        last = ids[-1]


def reindex(catalog: Catalog) -> int:
    """Rebuild the whole search index from the catalog, in one transaction."""
    with catalog.session() as session:
        return rebuild(session)
