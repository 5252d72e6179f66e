"""PostgreSQL: the tsvector side of the search index, and queries compiled to tsquery.

The index is the table ``search_index`` (``version_id`` → ``item_versions.id``,
``item_id``, ``document tsvector`` under a GIN index), one row per item version. A
document is built by ``archiver_search_document(jsonb)`` (migration 0004): the version's
normalized segments (text, each media alt text, the author) as a JSON array, each passed
through ``archiver_unaccent`` (an IMMUTABLE wrapper of ``unaccent``) and indexed with
``to_tsvector('simple', ...)``, which leaves a position gap between array elements so a
phrase cannot run from one segment into the next. No stemming: a word means itself.

A query is compiled to ``to_tsquery('simple', archiver_unaccent(...))`` with every word a
quoted lexeme (``'word'``, ``'word':*`` for a prefix, ``<->`` between the words of a
phrase), so nothing typed can be read as tsquery syntax.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, column, table, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select, select

from archiver.search.query import And, Node, Not, Or, Term

TABLE = "search_index"

search_index = table(TABLE, column("version_id"), column("item_id"), column("document"))


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def compile_tsquery(node: Node) -> str:
    """The tsquery text for a parsed query (fully parenthesized)."""
    if isinstance(node, Term):
        lexemes = [_lexeme(w) for w in node.words]
        if node.prefix:
            lexemes[-1] += ":*"
        return lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(compile_tsquery(i) for i in node.items) + ")"
    if isinstance(node, And):
        parts = [compile_tsquery(i) for i in node.positives]
        parts += [f"!{compile_tsquery(n)}" for n in node.negatives]
        return "(" + " & ".join(parts) + ")"
    assert isinstance(node, Not)  # the parser allows NOT only inside an AND
    raise ValueError("a NOT must stand inside an AND with a positive term")


def hits(node: Node) -> Select[tuple[int, int]]:
    """Version and item ids of the versions matching ``node``."""
    condition = text(
        f"{TABLE}.document @@ to_tsquery('simple'::regconfig, archiver_unaccent(:tsquery))"
    ).bindparams(bindparam("tsquery", compile_tsquery(node)))
    return select(search_index.c.version_id, search_index.c.item_id).where(condition)


def delete(db: Session | Connection, version_ids: Sequence[int]) -> None:
    if version_ids:
        db.execute(
            text("DELETE FROM search_index WHERE version_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": list(version_ids)},
        )


def clear(db: Session | Connection) -> None:
    db.execute(text("DELETE FROM search_index"))


def insert(db: Session | Connection, rows: Sequence[tuple[int, int, list[str]]]) -> None:
    """Add (version id, item id, normalized segments) rows."""
    if rows:
        db.execute(
            text(
                "INSERT INTO search_index (version_id, item_id, document) "
                "VALUES (:v, :i, archiver_search_document(CAST(:d AS jsonb)))"
            ),
            [
                {"v": v, "i": i, "d": json.dumps([s for s in segments if s])}
                for v, i, segments in rows
            ],
        )
