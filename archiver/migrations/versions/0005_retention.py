"""retention, holds and disposition

Holds, retention events and notices, disposition reports, approvals, runs and their journal,
certificates of destruction and named locks; items gain their assignment rule and, once
destroyed, a stub's disposal date and certificate; stored files gain the date a deletion
waiting for a COMPLIANCE lock may proceed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 02:14:20.619491
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import archiver.catalog.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disposition_reports",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("created_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("expires_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposition_reports")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("accounts", sa.JSON(), nullable=False),
        sa.Column("created_from", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_to", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("created_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("released_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=256), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.Column("granted_on", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("denied_on", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_holds_case_id"), ["case_id"], unique=False)

    op.create_table(
        "named_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=True),
        sa.Column("expires_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_named_locks")),
    )
    op.create_table(
        "retention_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=True),
        sa.Column("occurred_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=256), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_events")),
    )
    with op.batch_alter_table("retention_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retention_events_kind"), ["kind"], unique=False)

    op.create_table(
        "retention_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("series", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("on", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=512), nullable=False),
        sa.Column("recorded_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=256), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_notices")),
    )
    with op.batch_alter_table("retention_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retention_notices_series"), ["series"], unique=False)

    op.create_table(
        "disposition_approvals",
        sa.Column("report_id", sa.String(length=26), nullable=False),
        sa.Column("approved_by", sa.String(length=256), nullable=False),
        sa.Column("approved_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["disposition_reports.id"],
            name=op.f("fk_disposition_approvals_report_id_disposition_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "approved_by", name=op.f("pk_disposition_approvals")),
    )
    op.create_table(
        "disposition_runs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("report_id", sa.String(length=26), nullable=False),
        sa.Column("started_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=256), nullable=False),
        sa.Column("finished_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("certificate_id", sa.String(length=26), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["disposition_reports.id"],
            name=op.f("fk_disposition_runs_report_id_disposition_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposition_runs")),
    )
    with op.batch_alter_table("disposition_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_disposition_runs_report_id"), ["report_id"], unique=False
        )

    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("created_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("json_key", sa.String(length=1024), nullable=False),
        sa.Column("html_key", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["disposition_runs.id"],
            name=op.f("fk_certificates_run_id_disposition_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_run_id"), ["run_id"], unique=False)

    op.create_table(
        "disposition_report_items",
        sa.Column("report_id", sa.String(length=26), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("series", sa.String(length=128), nullable=False),
        sa.Column("eligible_on", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_disposition_report_items_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["disposition_reports.id"],
            name=op.f("fk_disposition_report_items_report_id_disposition_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "item_id", name=op.f("pk_disposition_report_items")),
    )
    with op.batch_alter_table("disposition_report_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_disposition_report_items_item_id"), ["item_id"], unique=False
        )

    op.create_table(
        "disposition_steps",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("done_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["disposition_runs.id"],
            name=op.f("fk_disposition_steps_run_id_disposition_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_disposition_steps")),
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("series_rule", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column(
                "disposed_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("certificate_id", sa.String(length=26), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_items_certificate_id"), ["certificate_id"], unique=False
        )

    with op.batch_alter_table("stored_files", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "pending_until", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True
            )
        )

    with op.batch_alter_table("warc_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refers_to", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("concurrent_to", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_warc_records_refers_to"), ["refers_to"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_warc_records_concurrent_to"), ["concurrent_to"], unique=False
        )

    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_item_versions_warc_record_id"), ["warc_record_id"], unique=False
        )


def downgrade() -> None:
    # Tables that point at items go first: SQLite rebuilds items to drop its columns.
    op.drop_table("disposition_steps")
    with op.batch_alter_table("disposition_report_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disposition_report_items_item_id"))

    op.drop_table("disposition_report_items")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_run_id"))

    op.drop_table("certificates")
    with op.batch_alter_table("disposition_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disposition_runs_report_id"))

    op.drop_table("disposition_runs")
    op.drop_table("disposition_approvals")
    with op.batch_alter_table("retention_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_notices_series"))

    op.drop_table("retention_notices")
    with op.batch_alter_table("retention_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_events_kind"))

    op.drop_table("retention_events")
    op.drop_table("named_locks")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holds_case_id"))

    op.drop_table("holds")
    op.drop_table("disposition_reports")

    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_versions_warc_record_id"))

    op.drop_index(op.f("ix_warc_records_concurrent_to"), table_name="warc_records")
    op.drop_index(op.f("ix_warc_records_refers_to"), table_name="warc_records")
    op.drop_column("warc_records", "concurrent_to")
    op.drop_column("warc_records", "refers_to")

    op.drop_column("stored_files", "pending_until")

    # Not a batch (which would copy and drop ``items``, refused while rows point at it):
    # SQLite 3.35+ drops unindexed columns in place.
    op.drop_index(op.f("ix_items_certificate_id"), table_name="items")
    op.drop_column("items", "certificate_id")
    op.drop_column("items", "disposed_at")
    op.drop_column("items", "series_rule")
