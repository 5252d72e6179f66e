"""The catalog's tables, as SQLAlchemy 2 typed ORM classes.

The catalog is an index: every fact in it can be rebuilt from the store
(``archiver catalog rebuild``). Pointers to stored bytes always name a file by its
stable id (a ULID assigned when the file was opened), never by a path or key.
Schema changes go through Alembic migrations in ``archiver/migrations``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from archiver.catalog.types import UTCDateTime

# Deterministic constraint names keep migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHA256_HEX = 64
FILE_ID = 26  # a ULID in Crockford base32


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Account(Base):
    """A City account on a platform, as configured; kept after it leaves the config."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    handle: Mapped[str | None] = mapped_column(String(256))
    platform_id: Mapped[str | None] = mapped_column(String(256))
    department: Mapped[str | None] = mapped_column(String(256))
    series: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # "ok", "unavailable" (the platform says the account cannot be reached), "unknown".
    status: Mapped[str] = mapped_column(String(32), default="unknown")
    created_at: Mapped[datetime]
    last_success_at: Mapped[datetime | None]
    last_full_walk_at: Mapped[datetime | None]
    status_reason: Mapped[str | None] = mapped_column(Text)


class CaptureRun(Base):
    """One capture of one account; incomplete runs record why they stopped."""

    __tablename__ = "capture_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    node: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # "running", "complete", "incomplete", "failed"
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    lease_generation: Mapped[int] = mapped_column(BigInteger, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Checkpoint(Base):
    """A connector's versioned resume point, committed with the page it follows."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    stream: Mapped[str] = mapped_column(String(128), default="main")
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class StoredFile(Base):
    """A WARC, Parquet or control object in the store, by its stable id."""

    __tablename__ = "stored_files"

    id: Mapped[str] = mapped_column(String(FILE_ID), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "warc", "parquet", "control"
    partition: Mapped[str | None] = mapped_column(String(400), index=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    size: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    stored_at: Mapped[datetime]
    retain_until: Mapped[datetime | None]
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    # "stored", "disposed", "pending" (disposition waits for a COMPLIANCE lock to end)
    state: Mapped[str] = mapped_column(String(16), default="stored")
    disposed_at: Mapped[datetime | None]
    # While ``state`` is "pending": the retain-until the deletion waits for.
    pending_until: Mapped[datetime | None]


class WarcRecord(Base):
    """Every record of every WARC we wrote: what was committed, so the rest is orphaned."""

    __tablename__ = "warc_records"

    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(FILE_ID), index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    warc_type: Mapped[str] = mapped_column(String(16))
    target_uri: Mapped[str | None] = mapped_column(Text)
    block_digest: Mapped[str] = mapped_column(String(80))
    payload_digest: Mapped[str | None] = mapped_column(String(80))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("capture_runs.id"))
    recorded_at: Mapped[datetime]
    # The record's WARC-Refers-To (an item version: the response it was read from) and
    # WARC-Concurrent-To (a request: its response): disposition follows them to keep a raw
    # exchange while a kept item still refers to it. None: no such header (or a row written
    # before migration 0005, whose links disposition reads from the store).
    refers_to: Mapped[str | None] = mapped_column(String(64), index=True)
    concurrent_to: Mapped[str | None] = mapped_column(String(64), index=True)


class Item(Base):
    """A post, comment, reply, message, media object or profile, across its versions."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("account_id", "platform_item_id", name="uq_items_account_item"),
        # Hash on PostgreSQL: a B-tree row is limited to ~2.7 KB, a URL is not (0006).
        Index("ix_items_permalink", "permalink", postgresql_using="hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    platform_item_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    # The platform's ids as given, which may name items not (yet) captured.
    platform_parent_id: Mapped[str | None] = mapped_column(String(256))
    thread_id: Mapped[str | None] = mapped_column(String(256), index=True)
    partition: Mapped[str] = mapped_column(String(400), default="")
    series: Mapped[str] = mapped_column(String(128))
    permalink: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime | None] = mapped_column(index=True)
    first_captured_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # "present", "edited", "hidden", "deleted"
    state: Mapped[str] = mapped_column(String(16), default="present")
    state_changed_at: Mapped[datetime | None]
    text: Mapped[str | None] = mapped_column(Text)
    edited_at: Mapped[datetime | None]
    content_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    versions: Mapped[int] = mapped_column(Integer, default=0)
    # The assignment rule that put the item in its series (``[[retention.rules]]`` name, or
    # "default"); None for items captured before assignments were recorded.
    series_rule: Mapped[str | None] = mapped_column(String(128))
    # Set when the item was destroyed: the row stays as a stub (id, series, dates, content
    # hash) pointing at the certificate of destruction; its text is gone.
    disposed_at: Mapped[datetime | None]
    certificate_id: Mapped[str | None] = mapped_column(String(FILE_ID), index=True)


class ItemVersion(Base):
    """One captured version of an item: content hash and where its record lies."""

    __tablename__ = "item_versions"
    __table_args__ = (UniqueConstraint("item_id", "version_no", name="uq_item_versions_item_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    version_no: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    captured_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("capture_runs.id"))
    change: Mapped[str] = mapped_column(String(16))  # "new", "edited", "hidden", "deleted"
    warc_file_id: Mapped[str] = mapped_column(String(FILE_ID), index=True)
    warc_offset: Mapped[int] = mapped_column(BigInteger)
    warc_length: Mapped[int] = mapped_column(BigInteger)
    # Indexed: disposition goes from a record to the item version it holds.
    warc_record_id: Mapped[str] = mapped_column(String(64), index=True)
    partition: Mapped[str] = mapped_column(String(400), default="")
    # The Parquet file that holds this version's row; None while it waits to be rolled.
    parquet_file_id: Mapped[str | None] = mapped_column(String(FILE_ID), index=True)
    # This version's text as captured (the item row holds only the latest).
    text: Mapped[str | None] = mapped_column(Text)


class ItemMedia(Base):
    """Which media an item version carries, in order, with what the platform said of it."""

    __tablename__ = "item_media"

    version_id: Mapped[int] = mapped_column(ForeignKey("item_versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id"), index=True)
    platform_media_id: Mapped[str | None] = mapped_column(String(256))
    alt_text: Mapped[str | None] = mapped_column(Text)
    # "stored", "too_large", "failed" (why the bytes are missing, when they are)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)


class Media(Base):
    """A media object, stored once per sha256 within a partition."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("sha256", "partition", name="uq_media_sha256_partition"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    partition: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str | None] = mapped_column(String(256))
    source_url: Mapped[str | None] = mapped_column(Text)
    warc_file_id: Mapped[str] = mapped_column(String(FILE_ID), index=True)
    warc_offset: Mapped[int] = mapped_column(BigInteger)
    warc_length: Mapped[int] = mapped_column(BigInteger)
    warc_record_id: Mapped[str] = mapped_column(String(64))
    first_captured_at: Mapped[datetime]


class FixityEvent(Base):
    """A check of a stored file's bytes against its recorded sha256."""

    __tablename__ = "fixity_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("stored_files.id"), index=True)
    checked_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # "pass", "fail", "missing"
    detail: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(256))
    # PREMIS "fixity check": the message digest algorithm the bytes were checked with.
    algorithm: Mapped[str] = mapped_column(String(16), default="sha256", server_default="sha256")


class Lease(Base):
    """Which node may capture an account; the generation fences stale holders."""

    __tablename__ = "leases"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    renewed_at: Mapped[datetime | None]


class Heartbeat(Base):
    """The daemon's liveness row, read by ``archiver status``."""

    __tablename__ = "heartbeats"

    node: Mapped[str] = mapped_column(String(256), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(32))  # "starting", "running", "stopping", "stopped"
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    """One hash-chained audit log entry; appended one at a time, never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action", "action"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)


# --- retention, holds and disposition -------------------------------------------------------


class Hold(Base):
    """A legal hold or a public-records-request hold: no item in its scope may be destroyed.

    Scope: accounts (none = every account), an item creation-date range, and a search query
    (resolved when retention is evaluated, so items captured later are covered too).
    """

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(256), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "legal", "prr"
    reason: Mapped[str] = mapped_column(Text)
    accounts: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Items created (captured, when the platform gives no date) in [created_from, created_to].
    created_from: Mapped[datetime | None]
    created_to: Mapped[datetime | None]
    query: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(256))
    release_reason: Mapped[str | None] = mapped_column(Text)
    # A public-records request's outcome (Wis. Stat. § 19.35(5)).
    granted_on: Mapped[datetime | None]
    denied_on: Mapped[datetime | None]


class RetentionEvent(Base):
    """Something that starts an event-triggered retention period (an account's closure)."""

    __tablename__ = "retention_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(256))
    note: Mapped[str | None] = mapped_column(Text)


class RetentionNotice(Base):
    """A notice of intended destruction sent to (or a waiver from) the historical society."""

    __tablename__ = "retention_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "sent", "waiver"
    on: Mapped[datetime]
    reference: Mapped[str] = mapped_column(String(512))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(256))
    note: Mapped[str | None] = mapped_column(Text)


class DispositionReport(Base):
    """A list of items eligible for disposition at one moment; it expires."""

    __tablename__ = "disposition_reports"

    id: Mapped[str] = mapped_column(String(FILE_ID), primary_key=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime]
    # "open", "disposed", "expired"
    status: Mapped[str] = mapped_column(String(16), default="open")
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DispositionReportItem(Base):
    """An item a report found eligible, with the decision behind it."""

    __tablename__ = "disposition_report_items"

    report_id: Mapped[str] = mapped_column(ForeignKey("disposition_reports.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True, index=True)
    series: Mapped[str] = mapped_column(String(128))
    eligible_on: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)


class DispositionApproval(Base):
    """An officer's approval of a report (a second officer, where config requires one)."""

    __tablename__ = "disposition_approvals"

    report_id: Mapped[str] = mapped_column(ForeignKey("disposition_reports.id"), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(256), primary_key=True)
    approved_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class DispositionRun(Base):
    """One execution of a report; its steps are the journal a crash rolls forward from."""

    __tablename__ = "disposition_runs"

    id: Mapped[str] = mapped_column(String(FILE_ID), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("disposition_reports.id"), index=True)
    started_at: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(String(256))
    finished_at: Mapped[datetime | None]
    # "planned", "running", "done", "pending" (objects wait for a COMPLIANCE lock)
    state: Mapped[str] = mapped_column(String(16))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    certificate_id: Mapped[str | None] = mapped_column(String(FILE_ID))


class DispositionStep(Base):
    """One journaled step of a disposition run, done at most once and redone idempotently."""

    __tablename__ = "disposition_steps"

    run_id: Mapped[str] = mapped_column(ForeignKey("disposition_runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(1024))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # "planned", "done", "pending"
    state: Mapped[str] = mapped_column(String(16), default="planned")
    done_at: Mapped[datetime | None]


class Certificate(Base):
    """A certificate of destruction, stored permanently as JSON and HTML."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(FILE_ID), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("disposition_runs.id"), index=True)
    created_at: Mapped[datetime]
    json_key: Mapped[str] = mapped_column(String(1024))
    html_key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class NamedLock(Base):
    """A catalog-wide lock by name ("retention": disposition against hold changes)."""

    __tablename__ = "named_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
