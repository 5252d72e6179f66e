"""Running a search: the index's matches first, then the filters, a page, the details.

The matching versions come out of the full-text index as a materialized set (FTS5 MATCH or
a GIN-indexed ``@@``), so no plan can walk the items table and probe the index row by row;
only then are they joined to their versions and items, filtered, grouped per item, ordered
and cut to one page in SQL. Python sees one page of rows.

Retention filters (``held``, ``retention``) depend on decisions no SQL can make (holds with
query scopes, schedules, events, notices), so they are applied to the SQL result in order,
:data:`SCAN_BATCH` candidates at a time, by a :class:`RetentionLens`, until the page is full.
The cost is one retention evaluation per candidate scanned: about ``(page × limit) /
(share of candidates kept)`` items, so a filter keeping few of many items (``--held`` over
the whole archive) scans the whole candidate set; narrow it with words, accounts or dates.
Retention *columns* evaluate only the page shown.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, Item, ItemVersion
from archiver.search import index
from archiver.search.model import RetentionInfo, SearchFilters, SearchPage, SearchResult
from archiver.search.query import Node, describe, parse

#: Most results one page may hold.
MAX_LIMIT = 10_000
#: Candidates read and evaluated at a time by retention filters.
SCAN_BATCH = 500


class RetentionLens(Protocol):
    """Retention decisions for search results (:class:`archiver.search.retention_view.
    RetentionView` reads them from the catalog)."""

    def keep(self, session: Session, ids: Sequence[int], filters: SearchFilters) -> set[int]:
        """Which of ``ids`` meet the filters' ``held`` and ``retention`` conditions."""
        ...

    def describe(self, session: Session, ids: Sequence[int]) -> dict[int, RetentionInfo]:
        """Retention of each of ``ids``, for the result columns."""
        ...


def _item_conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.accounts:
        conditions.append(Item.account_id.in_(filters.accounts))
    if filters.platforms:
        platforms = [p.lower() for p in filters.platforms]
        conditions.append(
            Item.account_id.in_(
                select(Account.id).where(func.lower(Account.platform).in_(platforms))
            )
        )
    if filters.kinds:
        conditions.append(Item.kind.in_(filters.kinds))
    if filters.authors:
        authors = [a.lower().removeprefix("@") for a in filters.authors]
        conditions.append(func.lower(Item.author).in_(authors))
    if filters.states:
        conditions.append(Item.state.in_(filters.catalog_states))
    if filters.created_from is not None:
        conditions.append(Item.created_at >= filters.created_from)
    if filters.created_before is not None:
        conditions.append(Item.created_at < filters.created_before)
    if filters.series:
        conditions.append(Item.series.in_(filters.series))
    return conditions


def _version_conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.captured_from is not None:
        conditions.append(ItemVersion.captured_at >= filters.captured_from)
    if filters.captured_before is not None:
        conditions.append(ItemVersion.captured_at < filters.captured_before)
    return conditions


def _newest_first(filters: SearchFilters) -> tuple[Any, ...]:
    created: Any = Item.created_at.desc()
    if filters.created_from is None and filters.created_before is None:
        # The databases sort NULL differently unless told; with a creation range there is
        # no NULL, and a plain DESC lets PostgreSQL read its index backwards instead.
        created = created.nulls_last()
    return (created, Item.id.desc())


def _matching_page(
    s: Session, node: Node, filters: SearchFilters, limit: int, offset: int
) -> list[tuple[int, str]]:
    """(item id, comma-separated matching version numbers) of one page of matches."""
    hits = index.backend(s).hits(node).cte("hits").prefix_with("MATERIALIZED")
    if s.get_bind().dialect.name == "postgresql":
        numbers: Any = func.string_agg(cast(ItemVersion.version_no, String), ",")
    else:
        numbers = func.group_concat(ItemVersion.version_no)
    stmt = (
        select(Item.id, numbers)
        .select_from(hits)
        .join(ItemVersion, ItemVersion.id == hits.c.version_id)
        .join(Item, Item.id == ItemVersion.item_id)
        .where(*_item_conditions(filters), *_version_conditions(filters))
        .group_by(Item.id, Item.created_at)
        .order_by(*_newest_first(filters))
        .limit(limit + 1)
        .offset(offset)
    )
    return [(row[0], row[1]) for row in s.execute(stmt)]


def _filtered_page(
    s: Session, filters: SearchFilters, limit: int, offset: int
) -> list[tuple[int, str]]:
    """The same without words: items meeting the filters (versions: those in range)."""
    conditions = _item_conditions(filters)
    if filters.captured:
        conditions.append(
            exists().where(ItemVersion.item_id == Item.id, *_version_conditions(filters))
        )
    stmt = (
        select(Item.id)
        .where(and_(True, *conditions))
        .order_by(*_newest_first(filters))
        .limit(limit + 1)
        .offset(offset)
    )
    ids = list(s.scalars(stmt))
    page = ids[:limit]
    matched: dict[int, list[str]] = defaultdict(list)
    if page:
        for item_id, number in s.execute(
            select(ItemVersion.item_id, ItemVersion.version_no).where(
                ItemVersion.item_id.in_(page), *_version_conditions(filters)
            )
        ):
            matched[item_id].append(str(number))
    return [(i, ",".join(matched[i])) for i in ids]


def _results(s: Session, page: list[tuple[int, str]]) -> list[SearchResult]:
    ids = [item_id for item_id, _ in page]
    numbers = {
        item_id: tuple(sorted({int(n) for n in (listed or "").split(",") if n}))
        for item_id, listed in page
    }
    items = {
        row.Item.id: row
        for row in s.execute(
            select(Item, Account.platform)
            .join(Account, Account.id == Item.account_id)
            .where(Item.id.in_(ids))
        )
    }
    texts: dict[tuple[int, int], str | None] = {
        (r.item_id, r.version_no): r.text
        for r in s.execute(
            select(ItemVersion.item_id, ItemVersion.version_no, ItemVersion.text).where(
                ItemVersion.item_id.in_(ids)
            )
        )
    }
    results = []
    for item_id in ids:
        item, platform = items[item_id].Item, items[item_id].platform
        matched = numbers[item_id]
        text = texts.get((item_id, matched[-1]), item.text) if matched else item.text
        results.append(
            SearchResult(
                id=item.id,
                account=item.account_id,
                platform=platform,
                kind=item.kind,
                platform_item_id=item.platform_item_id,
                permalink=item.permalink,
                author=item.author,
                created_at=item.created_at,
                state=item.state,
                text=text,
                versions=item.versions,
                versions_matched=matched,
                series=item.series,
            )
        )
    return results


def _kept_page(
    s: Session,
    node: Node | None,
    filters: SearchFilters,
    limit: int,
    offset: int,
    lens: RetentionLens,
) -> list[tuple[int, str]]:
    """The page (and one more row) of the candidates ``lens`` keeps, scanning in batches."""
    wanted = offset + limit + 1
    kept: list[tuple[int, str]] = []
    scanned = 0
    while len(kept) < wanted:
        if node is not None:
            rows = _matching_page(s, node, filters, SCAN_BATCH, scanned)
        else:
            rows = _filtered_page(s, filters, SCAN_BATCH, scanned)
        batch = rows[:SCAN_BATCH]
        if not batch:
            break
        keep = lens.keep(s, [item_id for item_id, _ in batch], filters)
        kept.extend(row for row in batch if row[0] in keep)
        if len(rows) <= SCAN_BATCH:
            break
        scanned += SCAN_BATCH
    return kept[offset:wanted]


def search(
    catalog: Catalog,
    query: str | None,
    filters: SearchFilters | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
    retention: RetentionLens | None = None,
) -> SearchPage:
    """One page of the items matching ``query`` (the grammar of :mod:`archiver.search.query`;
    None or blank: every item) and ``filters``. An item matches when any of its versions
    does, including versions of items deleted on the platform or hidden by a moderator.

    With ``retention``, every result carries its :class:`RetentionInfo`; filters on holds or
    retention outcomes need it (ValueError without).

    Raises ``SearchQueryError`` for a query that does not parse.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset must not be negative")
    filters = filters or SearchFilters()
    if filters.needs_retention and retention is None:
        raise ValueError("filters on holds or retention outcomes need a RetentionLens")
    node = parse(query) if query is not None and query.strip() else None
    with catalog.reader() as s:
        if retention is not None and filters.needs_retention:
            page = _kept_page(s, node, filters, limit, offset, retention)
        elif node is not None:
            page = _matching_page(s, node, filters, limit, offset)
        else:
            page = _filtered_page(s, filters, limit, offset)
        results = _results(s, page[:limit])
        if retention is not None and results:
            infos = retention.describe(s, [r.id for r in results])
            results = [dataclasses.replace(r, retention=infos.get(r.id)) for r in results]
    return SearchPage(
        results=tuple(results),
        limit=limit,
        offset=offset,
        more=len(page) > limit,
        query=describe(node) if node is not None else None,
    )
