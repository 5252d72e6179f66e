"""version text and fixity algorithm

Each item version keeps its own text (the item row holds only the latest), so search finds
words that were edited away and Parquet rows show what each version said. Fixity events name
the digest algorithm they checked with (PREMIS "fixity check").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("text", sa.Text(), nullable=True))
    with op.batch_alter_table("fixity_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("algorithm", sa.String(length=16), nullable=False, server_default="sha256")
        )
    # Versions captured before this revision: the latest one's text is the item's. Older
    # versions keep None here; their text is in their WARC conversion record.
    op.execute(
        "UPDATE item_versions SET text = (SELECT items.text FROM items "
        "WHERE items.id = item_versions.item_id AND items.versions = item_versions.version_no)"
    )


def downgrade() -> None:
    with op.batch_alter_table("fixity_events", schema=None) as batch_op:
        batch_op.drop_column("algorithm")
    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.drop_column("text")
