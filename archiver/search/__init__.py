"""Full-text search of the catalog, with the same answers on SQLite and PostgreSQL.

- :mod:`archiver.search.query`: the query grammar, parsed into a tree.
- :mod:`archiver.search.text`: what a word is, for documents and queries alike.
- :mod:`archiver.search.sqlite`, :mod:`archiver.search.postgres`: each database's index
  table and the query compiled to its syntax (FTS5 MATCH, tsquery).
- :mod:`archiver.search.index`: keeping the index (per version, in capture's transactions;
  a full rebuild).
- :mod:`archiver.search.engine`: running a search: matches, filters, one page.

Usage::

    page = search(catalog, '"Elm Street" OR plow*', SearchFilters(kinds=("comment",)))
    for result in page.results: ...
"""

from __future__ import annotations

from archiver.errors import SearchQueryError
from archiver.search.engine import MAX_LIMIT, SCAN_BATCH, RetentionLens, search
from archiver.search.index import index_session, index_versions, reindex
from archiver.search.model import (
    KINDS,
    OUTCOMES,
    STATES,
    HoldRef,
    RetentionInfo,
    SearchFilters,
    SearchPage,
    SearchResult,
)
from archiver.search.query import parse

__all__ = [
    "KINDS",
    "MAX_LIMIT",
    "OUTCOMES",
    "SCAN_BATCH",
    "STATES",
    "HoldRef",
    "RetentionInfo",
    "RetentionLens",
    "SearchFilters",
    "SearchPage",
    "SearchQueryError",
    "SearchResult",
    "index_session",
    "index_versions",
    "parse",
    "reindex",
    "search",
]
