"""permalink index

``archiver show <URL>`` (and every lookup of an item by the address a resident or a
request names) finds the item by its permalink. Without an index that was a scan of every
item. On PostgreSQL the index is a hash index: a B-tree row is limited to about 2.7 KB and
a platform's URL is not, and only equality is asked of it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 05:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_permalink", "items", ["permalink"], postgresql_using="hash")


def downgrade() -> None:
    op.drop_index("ix_items_permalink", table_name="items")
