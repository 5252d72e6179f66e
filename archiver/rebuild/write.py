"""Writing rebuilt facts into the target catalog, which must start empty."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.catalog.db import Catalog, redacted
from archiver.catalog.models import (
    Account,
    AuditEntry,
    Base,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
    StoredFile,
)
from archiver.catalog.records import record_row
from archiver.config import AccountSettings
from archiver.errors import CatalogError
from archiver.rebuild.facts import AccountFacts
from archiver.rebuild.scan import Anchor, ScannedFile, ScannedWarc, StoredObject

#: ``Account.status`` of an account found in the store but not in the configuration.
INACTIVE = "inactive"
#: ``items.series_rule`` of an item no assignment fact names: the series is the one its
#: records are stored under (its partition's); which rule chose it is not in the store.
PARTITION_RULE = "partition"
_ALEMBIC = "alembic_version"
#: The audit entry lists at most this many anchors (the latest ones) and counts them all.
MAX_LISTED_ANCHORS = 1000


def require_empty(catalog: Catalog) -> None:
    """Refuse a target database that holds anything: a rebuild never merges into data.

    A database with no tables, or with the archiver's schema (an ``alembic_version`` table)
    and no row in any catalog table, as ``archiver catalog upgrade`` leaves it, is empty.
    Tables a migration adds beside the catalog's own (a search index) are not counted.
    """
    where = redacted(catalog.engine.url)
    with catalog.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if tables and _ALEMBIC not in tables:
            raise CatalogError(
                f"the catalog at {where} is not empty: it holds tables that are not the "
                f"archiver's ({', '.join(sorted(tables)[:5])}); rebuild into a new, empty database"
            )
        filled = []
        for table in Base.metadata.sorted_tables:
            if table.name in tables:
                rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
                if rows:
                    filled.append(f"{rows} {table.name}")
    if filled:
        raise CatalogError(
            f"the catalog at {where} is not empty ({', '.join(filled[:4])}); rebuild writes "
            "only into an empty database: create a new one and name it with --into"
        )


def stored_file(
    obj: StoredObject,
    sha256: str,
    size: int,
    records: int,
    created: datetime,
    file_id: str | None = None,
) -> StoredFile:
    file_id = file_id or obj.file_id
    assert file_id is not None
    return StoredFile(
        id=file_id,
        key=obj.key,
        # Facts and certificates are control objects, as ``archiver.control`` registers them.
        kind="control" if obj.kind in ("fact", "certificate") else obj.kind,
        partition=obj.partition.name if obj.partition is not None else None,
        sha256=sha256,
        size=size,
        records=records,
        created_at=created,
        stored_at=obj.info.created or created,
        retain_until=obj.info.retain_until,
        legal_hold=obj.info.legal_hold,
        state="stored",
    )


def write_warc(session: Session, warc: ScannedWarc) -> None:
    session.add(stored_file(warc.obj, warc.sha256, warc.size, warc.record_count, warc.created_at))


def write_file(session: Session, scanned: ScannedFile, now: datetime) -> None:
    # Only a fact's WARC records when it was written; for the others, the store does.
    created = scanned.created_at or scanned.obj.info.created or now
    session.add(
        stored_file(
            scanned.obj, scanned.sha256, scanned.size, scanned.rows, created, scanned.file_id
        )
    )


def advance_sequences(session: Session, tables: Sequence[str]) -> None:
    """Move PostgreSQL's id sequences past the ids a rebuild inserted explicitly.

    Holds, events and notices keep the ids their facts name (a hold is cited by its id), and
    PostgreSQL's ``SERIAL`` does not notice explicit ids: without this, the next ``hold
    create`` in the rebuilt catalog would collide with hold 1. SQLite needs nothing.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in tables:
        top = func.max(Base.metadata.tables[name].c.id)
        sequence = func.pg_get_serial_sequence(name, "id")
        session.execute(select(func.setval(sequence, func.coalesce(top, 1), top.is_not(None))))


def write_account(
    session: Session, facts: AccountFacts, settings: AccountSettings | None, now: datetime
) -> None:
    """The account row and every item, version, media and record row of one account."""
    session.add(account_row(facts.account, facts, settings, now))
    session.flush()
    # Runs are operational state and are not rebuilt: no run id.
    session.add_all(record_row(p, run_id=None, recorded_at=p.date) for p in facts.records)
    media_ids = _media(session, facts)
    items: dict[str, Item] = {}
    for fact in facts.items:
        row = Item(
            account_id=facts.account,
            platform_item_id=fact.platform_item_id,
            kind=fact.kind,
            platform_parent_id=fact.platform_parent_id,
            thread_id=fact.thread_id,
            partition=fact.partition,
            series=fact.series,
            series_rule=PARTITION_RULE,
            permalink=fact.permalink,
            author=fact.author,
            created_at=fact.created_at,
            first_captured_at=fact.first_captured_at,
            last_seen_at=fact.last_seen_at,
            state=fact.state,
            state_changed_at=fact.state_changed_at,
            text=fact.text,
            edited_at=fact.edited_at,
            content_sha256=fact.content_sha256,
            versions=len(fact.versions),
        )
        items[fact.platform_item_id] = row
        session.add(row)
    session.flush()
    for fact in facts.items:
        row = items[fact.platform_item_id]
        parent = items.get(fact.platform_parent_id or "")
        row.parent_id = parent.id if parent is not None else None
        for v in fact.versions:
            version = ItemVersion(
                item_id=row.id,
                version_no=v.version_no,
                content_sha256=v.content_sha256,
                captured_at=v.captured_at,
                run_id=None,
                change=v.change,
                warc_file_id=v.pointer.file_id,
                warc_offset=v.pointer.offset,
                warc_length=v.pointer.length,
                warc_record_id=v.pointer.record_id,
                partition=v.partition,
                parquet_file_id=v.parquet_file_id,
                text=v.text,
            )
            session.add(version)
            if v.media:
                session.flush()
                session.add_all(
                    ItemMedia(
                        version_id=version.id,
                        position=m.position,
                        media_id=media_ids.get(m.media) if m.media is not None else None,
                        platform_media_id=m.platform_media_id,
                        alt_text=m.alt_text,
                        status=m.status,
                        detail=m.detail,
                    )
                    for m in v.media
                )
    session.flush()


def _media(session: Session, facts: AccountFacts) -> dict[tuple[str, str], int]:
    rows = {}
    for m in facts.media:
        rows[(m.sha256, m.partition)] = Media(
            sha256=m.sha256,
            partition=m.partition,
            size=m.size,
            mime_type=m.mime_type,
            source_url=m.source_url,
            warc_file_id=m.pointer.file_id,
            warc_offset=m.pointer.offset,
            warc_length=m.pointer.length,
            warc_record_id=m.pointer.record_id,
            first_captured_at=m.first_captured_at,
        )
    session.add_all(rows.values())
    session.flush()
    return {key: row.id for key, row in rows.items()}


def account_row(
    account: str, facts: AccountFacts | None, settings: AccountSettings | None, now: datetime
) -> Account:
    """The account as the store shows it, with its configured settings when there are any.

    An account the configuration no longer names is ``inactive``, as ``archiver run``
    would mark it; one with no records yet is ``unknown`` until its first run.
    """
    platform = (facts.platform if facts else None) or (settings.platform if settings else None)
    series = (settings.series if settings else None) or (facts.series if facts else None)
    status, reason = (facts.status, facts.status_reason) if facts else ("unknown", None)
    if settings is None:
        status, reason = INACTIVE, "not in the configuration when the catalog was rebuilt"
    return Account(
        id=account,
        platform=platform or "unknown",
        handle=settings.handle if settings else None,
        platform_id=settings.platform_id if settings else None,
        department=settings.department if settings else None,
        series=series or "unknown",
        enabled=settings.enabled if settings else False,
        status=status,
        created_at=(facts.first_record_at if facts else None) or now,
        last_success_at=None,
        last_full_walk_at=None,
        status_reason=reason,
    )


def write_audit(
    session: Session,
    *,
    actor: str,
    anchors: list[Anchor],
    detail: Mapping[str, Any],
    at: datetime,
) -> AuditEntry:
    """The rebuilt catalog's first audit entry, ``catalog.rebuild``.

    The entries themselves lived only in the lost catalog; the store keeps just the anchored
    chain heads. The new log continues the chain from the latest anchor (its ``seq`` + 1, its
    hash as ``prev_hash``), so later anchors get new keys and the first entry proves which
    head it continues.
    """
    last = max(anchors, key=lambda a: a.seq) if anchors else None
    seq, prev = (last.seq + 1, last.hash) if last else (1, audit.GENESIS)
    at = at.astimezone(UTC)
    listed = sorted(anchors, key=lambda a: a.seq)[-MAX_LISTED_ANCHORS:]
    body = {
        **detail,
        "anchors_found": len(anchors),
        "anchors": [{"seq": a.seq, "hash": a.hash, "key": a.key} for a in listed],
        "continues": {"seq": last.seq, "hash": last.hash} if last else None,
    }
    data = audit.canonical(seq, at, actor, "catalog.rebuild", None, body)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action="catalog.rebuild",
        subject=None,
        detail=body,
        prev_hash=prev,
        hash=audit.chain_hash(prev, data),
    )
    session.add(entry)
    session.flush()
    return entry
