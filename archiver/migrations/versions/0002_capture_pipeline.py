"""capture pipeline

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 21:38:40.836793
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import archiver.catalog.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_media",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.Integer(), nullable=True),
        sa.Column("platform_media_id", sa.String(length=256), nullable=True),
        sa.Column("alt_text", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media.id"], name=op.f("fk_item_media_media_id_media")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["item_versions.id"],
            name=op.f("fk_item_media_version_id_item_versions"),
        ),
        sa.PrimaryKeyConstraint("version_id", "position", name=op.f("pk_item_media")),
    )
    with op.batch_alter_table("item_media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_media_media_id"), ["media_id"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_full_walk_at",
                archiver.catalog.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("partition", sa.String(length=400), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("parquet_file_id", sa.String(length=26), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_item_versions_parquet_file_id"), ["parquet_file_id"], unique=False
        )

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform_parent_id", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("thread_id", sa.String(length=256), nullable=True))
        batch_op.add_column(
            sa.Column("partition", sa.String(length=400), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "state_changed_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("edited_at", archiver.catalog.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("versions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_items_thread_id"), ["thread_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_thread_id"))
        batch_op.drop_column("versions")
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("edited_at")
        batch_op.drop_column("state_changed_at")
        batch_op.drop_column("partition")
        batch_op.drop_column("thread_id")
        batch_op.drop_column("platform_parent_id")

    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_versions_parquet_file_id"))
        batch_op.drop_column("parquet_file_id")
        batch_op.drop_column("partition")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("status_reason")
        batch_op.drop_column("last_full_walk_at")

    with op.batch_alter_table("item_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_media_media_id"))

    op.drop_table("item_media")
