"""SQLite: the FTS5 side of the search index, and queries compiled to FTS5 MATCH syntax.

The index is one FTS5 table, ``search_index`` (``tokenize = "unicode61 remove_diacritics
2"``), one row per item version: its rowid is the version's id, ``document`` its words
(:mod:`archiver.search.text`) and ``item_id`` is carried along unindexed. The document's
segments (the version's text, each media alt text, the author) are separated by
:data:`GAP`, a private-use character FTS5 indexes as a word of its own and the word
definition never produces, so a phrase cannot run from one segment into the next; that is
what PostgreSQL's JSON documents do with a position gap.

Every word of a query reaches FTS5 inside double quotes, so nothing typed can be read as
FTS5 syntax (column filters, ``NEAR``, ``^``, ``+``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, column, table, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select, select

from archiver.search.query import And, Node, Not, Or, Term

TABLE = "search_index"
GAP = "\ue000"

search_index = table(TABLE, column("rowid"), column("item_id"), column("document"))


def _quoted(words: Sequence[str]) -> str:
    return '"' + " ".join(words).replace('"', '""') + '"'


def compile_match(node: Node) -> str:
    """The FTS5 MATCH expression for a parsed query (fully parenthesized)."""
    if isinstance(node, Term):
        return _quoted(node.words) + (" *" if node.prefix else "")
    if isinstance(node, Or):
        return "(" + " OR ".join(compile_match(i) for i in node.items) + ")"
    if isinstance(node, And):
        # FTS5's NOT is binary (a NOT b): subtract each negative from the positives.
        expr = "(" + " AND ".join(compile_match(i) for i in node.positives) + ")"
        for negative in node.negatives:
            expr = f"({expr} NOT {compile_match(negative)})"
        return expr
    assert isinstance(node, Not)  # the parser allows NOT only inside an AND
    raise ValueError("a NOT must stand inside an AND with a positive term")


def document(segments: Iterable[str]) -> str:
    """The indexed text of one version from its normalized segments."""
    return f" {GAP} ".join(s for s in segments if s)


def hits(node: Node) -> Select[tuple[int, int]]:
    """Version and item ids of the versions matching ``node``."""
    return select(
        search_index.c.rowid.label("version_id"), search_index.c.item_id.label("item_id")
    ).where(text(f"{TABLE} MATCH :match").bindparams(bindparam("match", compile_match(node))))


def delete(db: Session | Connection, version_ids: Sequence[int]) -> None:
    if version_ids:
        db.execute(
            text("DELETE FROM search_index WHERE rowid IN :ids").bindparams(
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
            text("INSERT INTO search_index (rowid, item_id, document) VALUES (:v, :i, :d)"),
            [{"v": v, "i": i, "d": document(segments)} for v, i, segments in rows],
        )
