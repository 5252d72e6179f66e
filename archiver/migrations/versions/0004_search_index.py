"""search index

One row per item version with the words of its text, its media's alt texts and its
author (see archiver/search/). SQLite: an FTS5 table with the ``unicode61
remove_diacritics 2`` tokenizer. PostgreSQL: a table with a ``tsvector`` under a GIN index,
built with the ``simple`` configuration (no stemming) and ``unaccent``, through two
functions: ``archiver_unaccent`` (an IMMUTABLE wrapper of the extension's function, bound
to its schema) and ``archiver_search_document`` (a version's segments as a JSON array, so a
phrase cannot run from one segment into the next). The index is back-filled from the
versions already in the catalog.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from archiver.errors import CatalogError
from archiver.search.index import rebuild

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _upgrade_postgresql() -> None:
    bind = op.get_bind()
    have = bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'unaccent'")).first()
    if have is None:
        available = bind.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent'")
        ).first()
        if available is None:
            raise CatalogError(
                "the PostgreSQL extension unaccent, which search needs, is not installed on "
                "the database server: install PostgreSQL's contrib package, then run "
                "`archiver catalog upgrade` again"
            )
        op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    schema = bind.execute(
        text(
            "SELECT n.nspname FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'"
        )
    ).scalar_one()
    ext = _quote(schema)
    # unaccent() is STABLE (its dictionary could be reconfigured); pinned to the
    # extension's own dictionary it is safe to declare IMMUTABLE, as indexes need.
    op.execute(
        "CREATE FUNCTION archiver_unaccent(text) RETURNS text "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS "
        f"$$ SELECT {ext}.unaccent('{ext}.unaccent'::regdictionary, $1) $$"
    )
    here = _quote(bind.execute(text("SELECT current_schema()")).scalar_one())
    op.execute(
        "CREATE FUNCTION archiver_search_document(segments jsonb) RETURNS tsvector "  # noqa: S608 - a quoted schema name
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ "
        "SELECT to_tsvector('simple'::regconfig, "
        f"coalesce(jsonb_agg({here}.archiver_unaccent(s.value) ORDER BY s.n), '[]'::jsonb)) "
        "FROM jsonb_array_elements_text(segments) WITH ORDINALITY AS s(value, n) $$"
    )
    op.execute(
        "CREATE TABLE search_index ("
        "version_id INTEGER NOT NULL, "
        "item_id INTEGER NOT NULL, "
        "document TSVECTOR NOT NULL, "
        "CONSTRAINT pk_search_index PRIMARY KEY (version_id), "
        "CONSTRAINT fk_search_index_version_id_item_versions FOREIGN KEY (version_id) "
        "REFERENCES item_versions (id) ON DELETE CASCADE)"
    )
    op.execute("CREATE INDEX ix_search_index_document ON search_index USING gin (document)")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE search_index USING fts5("
            "document, item_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')"
        )
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:  # pragma: no cover - Catalog.open refuses other databases
        raise CatalogError(f"search is not supported on {dialect}")
    rebuild(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE search_index")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION archiver_search_document(jsonb)")
        op.execute("DROP FUNCTION archiver_unaccent(text)")
        # The unaccent extension stays: other software on the server may use it.
