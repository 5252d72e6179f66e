"""Alembic revisions of the catalog schema."""
