"""Searching the captured corpus: the same items on SQLite and on PostgreSQL.

Every case asserts the exact set of items the corpus (tests/corpus.py) should answer, on
each database, so passing on both proves both return the same ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text

from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import ItemVersion
from archiver.catalog.schema import _alembic_config
from archiver.errors import SearchQueryError
from archiver.search import SearchFilters, index_versions, reindex, search
from archiver.store import LocalStore
from tests.corpus import PLOW_PHRASE, capture_corpus
from tests.search.conftest import Archive

# query -> names of the corpus items it must find (and nothing else)
EXPECTED: dict[str, set[str]] = {
    f'"{PLOW_PHRASE}"': {"plow_reply"},
    "plow": {"plow_reply", "cafe_reply"},
    "plow NOT elm": {"cafe_reply"},
    "plow AND NOT elm": {"cafe_reply"},
    "Café": {"cafe_reply"},
    "cafe": {"cafe_reply"},
    "CAFE": {"cafe_reply"},
    '"cafe on main street"': {"cafe_reply"},
    "snow OR leaf": {"snow_post", "images_post"},
    "leaf*": {"images_post"},
    "pick*": {"edited_post"},
    '"elm str"*': {"plow_reply"},
    "riverwest": {"edited_post"},
    "harambee": {"edited_post"},
    '"may 1"': {"edited_post"},
    "brush": {"edited_post", "mastodon_reply"},
    "brush NOT crew": {"edited_post"},
    '"compost site"': {"images_post"},
    "truck": {"images_post"},
    "resident": {"plow_reply", "deleted_reply"},
    "jalvarez": {"mastodon_reply"},
    "maria": {"cafe_reply"},
    '"oak avenue"': {"deleted_reply"},
    "bestdeals": {"hidden_reply"},
    "street": {"snow_post", "plow_reply", "cafe_reply", "deleted_reply"},
    "(snow OR plow) street": {"snow_post", "plow_reply", "cafe_reply"},
    "street NOT (elm OR main)": {"snow_post", "deleted_reply"},
    "official": {"bluesky_profile", "mastodon_profile"},
    "city": {"bluesky_profile", "snow_post", "images_post", "mastodon_profile", "edited_post"},
    "plow OR bestdeals OR riverwest": {"plow_reply", "cafe_reply", "hidden_reply", "edited_post"},
    # A phrase does not run from one part of a version into the next: text → author,
    # one alt text → the next.
    '"fix resident"': set(),
    '"route truck"': set(),
    # Words that are not there, and typed syntax of the databases, which is only words here.
    "snowplow": set(),
    "document:plow": set(),
    "item_id:5": set(),
    "plow^": {"plow_reply", "cafe_reply"},
    "NEAR plow": set(),
    "o'brien": set(),
    "back\\slash": set(),
}

BASE = "street OR brush OR bestdeals"
BASE_FOUND = {
    "snow_post",
    "plow_reply",
    "cafe_reply",
    "deleted_reply",
    "edited_post",
    "mastodon_reply",
    "hidden_reply",
}


def found(archive: Archive, query: str | None, filters: SearchFilters | None = None) -> set[str]:
    """The corpus names of every item the search finds (all pages)."""
    by_id = {archive.corpus.item(n).id: n for n in archive.corpus.names}
    page = search(archive.catalog, query, filters, limit=1000)
    assert not page.more
    return {by_id[r.id] for r in page.results}


@pytest.mark.parametrize("query", list(EXPECTED))
def test_each_query_finds_exactly_its_items_on_both_databases(archive: Archive, query: str) -> None:
    assert found(archive, query) == EXPECTED[query]


def test_a_phrase_in_a_comment_is_found_with_what_it_said(archive: Archive) -> None:
    page = search(archive.catalog, f'"{PLOW_PHRASE}"')
    (result,) = page.results
    corpus = archive.corpus
    assert result.id == corpus.plow_reply.id
    assert (result.kind, result.account, result.platform) == ("comment", "mke-bluesky", "bluesky")
    assert result.author == "resident.bsky.social"
    assert result.created_at == datetime(2026, 1, 12, 15, 2, tzinfo=UTC)
    assert PLOW_PHRASE in (result.text or "")
    assert result.versions_matched == (1,) and page.query == f'"{PLOW_PHRASE.lower()}"'


def test_a_word_only_in_an_earlier_version_finds_the_item_with_that_version(
    archive: Archive,
) -> None:
    (result,) = search(archive.catalog, "Riverwest").results
    assert result.id == archive.corpus.edited_post.id
    assert result.state == "edited" and result.versions == 2
    assert result.versions_matched == (1,)
    assert result.text == "Brush pickup starts May 1 in Riverwest"  # the version that matched
    (both,) = search(archive.catalog, "brush pickup").results
    assert both.versions_matched == (1, 2) and both.text == "Brush pickup starts May 8 in Harambee"


def test_deleted_and_hidden_items_are_found_with_their_state(archive: Archive) -> None:
    (deleted,) = search(archive.catalog, '"oak avenue"').results
    (hidden,) = search(archive.catalog, "cheap followers").results
    assert (deleted.id, deleted.state, deleted.versions_matched) == (
        archive.corpus.deleted_reply.id,
        "deleted",
        (1, 2),
    )
    assert (hidden.id, hidden.state) == (archive.corpus.hidden_reply.id, "hidden")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (SearchFilters(accounts=("mke-dpw-mastodon",)), {"edited_post", "mastodon_reply"}),
        (
            SearchFilters(platforms=("Bluesky",)),
            {"snow_post", "plow_reply", "cafe_reply", "deleted_reply", "hidden_reply"},
        ),
        (SearchFilters(kinds=("post",)), {"snow_post", "edited_post"}),
        (SearchFilters(kinds=("message", "profile")), set()),
        (SearchFilters(authors=("@Resident.bsky.social",)), {"plow_reply", "deleted_reply"}),
        (SearchFilters(states=("deleted",)), {"deleted_reply"}),
        (SearchFilters(states=("hidden",)), {"hidden_reply"}),
        (SearchFilters(states=("removed",)), {"hidden_reply"}),
        (SearchFilters(states=("edited",)), {"edited_post"}),
        (SearchFilters(states=("edited", "deleted")), {"edited_post", "deleted_reply"}),
        (SearchFilters(created_from=datetime(2026, 2, 1, tzinfo=UTC)), {"deleted_reply"}),
        (
            SearchFilters(created_before=datetime(2026, 1, 15, tzinfo=UTC)),
            {"snow_post", "plow_reply", "cafe_reply", "hidden_reply"},
        ),
        (
            SearchFilters(
                created_from=datetime(2026, 1, 20, tzinfo=UTC),
                created_before=datetime(2026, 1, 21, tzinfo=UTC),
            ),
            {"edited_post", "mastodon_reply"},
        ),
        (
            # The boundaries are exact: from is inclusive, before exclusive.
            SearchFilters(
                created_from=datetime(2026, 1, 12, 15, 2, tzinfo=UTC),
                created_before=datetime(2026, 1, 12, 15, 4, tzinfo=UTC),
            ),
            {"plow_reply", "cafe_reply"},
        ),
        (
            SearchFilters(platforms=("bluesky",), kinds=("comment",), states=("present",)),
            {"plow_reply", "cafe_reply"},
        ),
    ],
)
def test_each_filter_narrows_the_matches(
    archive: Archive, filters: SearchFilters, expected: set[str]
) -> None:
    assert found(archive, BASE) == BASE_FOUND
    assert found(archive, BASE, filters) == expected
    assert expected < BASE_FOUND or not expected


def test_a_capture_time_filter_looks_at_the_versions_captured_then(archive: Archive) -> None:
    with archive.catalog.reader() as s:
        second = s.scalar(
            select(func.min(ItemVersion.captured_at)).where(ItemVersion.change == "deleted")
        )
    assert second is not None
    later = SearchFilters(captured_from=second)
    # The second captures wrote the hidden, deleted and edited versions only.
    assert found(archive, BASE, later) == {"hidden_reply", "deleted_reply", "edited_post"}
    assert found(archive, "riverwest", later) == set()  # only in the first version
    assert found(archive, "riverwest", SearchFilters(captured_before=second)) == {"edited_post"}
    (edited,) = search(archive.catalog, "brush pickup", later).results
    assert edited.versions_matched == (2,)


def test_without_words_the_filters_alone_list_items_newest_first_in_pages(
    archive: Archive,
) -> None:
    corpus = archive.corpus
    newest_first = [
        "deleted_reply",
        "images_post",
        "mastodon_reply",
        "edited_post",
        "mastodon_profile",
        "hidden_reply",
        "cafe_reply",
        "plow_reply",
        "snow_post",
        "bluesky_profile",
    ]
    pages = [search(archive.catalog, None, limit=3, offset=o) for o in (0, 3, 6, 9)]
    listed = [r.id for p in pages for r in p.results]
    assert listed == [corpus.item(n).id for n in newest_first]
    assert [p.more for p in pages] == [True, True, True, False]
    assert [p.page for p in pages] == [1, 2, 3, 4]
    assert search(archive.catalog, "  ", limit=3).results == pages[0].results
    assert found(archive, None, SearchFilters(states=("deleted", "hidden"))) == {
        "deleted_reply",
        "hidden_reply",
    }


def test_matches_page_in_the_same_order(archive: Archive) -> None:
    whole = search(archive.catalog, BASE, limit=50)
    pages = [search(archive.catalog, BASE, limit=2, offset=o) for o in range(0, 8, 2)]
    assert [r.id for p in pages for r in p.results] == [r.id for r in whole.results]
    assert [p.more for p in pages] == [True, True, True, False]


def test_a_query_that_does_not_parse_is_refused_before_anything_is_searched(
    archive: Archive,
) -> None:
    with pytest.raises(SearchQueryError, match="never closed"):
        search(archive.catalog, '"plow missed')


def test_filters_refuse_naive_datetimes_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SearchFilters(created_from=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown kinds"):
        SearchFilters(kinds=("tweet",))


def _index_rows(catalog: Catalog) -> int:
    with catalog.reader() as s:
        return int(s.scalar(text("SELECT count(*) FROM search_index")) or 0)


def test_the_index_rebuilds_to_the_same_answers_and_reindexing_is_idempotent(
    catalog: Catalog, tmp_path: Path
) -> None:
    corpus = capture_corpus(catalog, LocalStore(tmp_path / "store"), tmp_path / "work")
    with catalog.reader() as s:
        versions = list(s.scalars(select(ItemVersion.id)))
    before = {q: {r.id for r in search(catalog, q).results} for q in EXPECTED}
    assert _index_rows(catalog) == len(versions)  # capture indexed every version

    with catalog.session() as s:
        assert index_versions(s, versions[:3] * 2) == 3
    assert reindex(catalog) == len(versions)

    assert _index_rows(catalog) == len(versions)
    assert {q: {r.id for r in search(catalog, q).results} for q in EXPECTED} == before
    assert before[f'"{PLOW_PHRASE}"'] == {corpus.plow_reply.id}


def test_the_migration_back_fills_the_index_from_an_existing_catalog(
    catalog: Catalog, tmp_path: Path
) -> None:
    corpus = capture_corpus(catalog, LocalStore(tmp_path / "store"), tmp_path / "work")
    with catalog.engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    assert not inspect(catalog.engine).has_table("search_index")

    upgrade(catalog)

    assert {r.id for r in search(catalog, '"compost site"').results} == {corpus.images_post.id}
    assert {r.id for r in search(catalog, "riverwest").results} == {corpus.edited_post.id}
