"""What a word is, and the proof that both databases keep our words as we cut them.

The same items come back from SQLite and PostgreSQL because each database is handed words
it leaves unchanged. These tests check that for every Unicode code point (and for words
mixing scripts, digits and letters) against the real index of each database: FTS5's
``unicode61 remove_diacritics 2`` tokens, and PostgreSQL's ``archiver_search_document``
lexemes and ``to_tsquery('simple', archiver_unaccent(...))``.
"""

from __future__ import annotations

import random
from functools import cache

import pytest
from sqlalchemy import text

from archiver.catalog import Catalog
from archiver.search import sqlite
from archiver.search.text import MAX_WORD, normalized, words


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Café on Main Street!", ["cafe", "on", "main", "street"]),
        ("CAFÉ", ["cafe"]),
        ("cafe\u0301", ["cafe"]),  # decomposed é
        ("Søren Ærø Łódź straße", ["soren", "aero", "lodz", "strasse"]),
        ("ﬁle ＭＡＩＮ ²", ["file", "main", "2"]),
        (
            "resident.bsky.social e-mail o'brien",
            ["resident", "bsky", "social", "e", "mail", "o", "brien"],
        ),
        ("snow🚜plow #tag @handle", ["snow", "plow", "tag", "handle"]),
        ("8e9x 12e3", ["8e9", "x", "12e3"]),  # as PostgreSQL's parser reads numbers
        ("Ελληνικά Русский 日本語", ["ελληνικα", "русскии", "日本語"]),
        ("", []),
        (None, []),
    ],
)
def test_words_are_letters_and_digits_folded_for_case_and_diacritics(
    raw: str | None, expected: list[str]
) -> None:
    assert words(raw) == expected
    assert normalized(raw) == " ".join(expected)


def test_words_longer_than_the_limit_are_not_indexed() -> None:
    long = "x" * (MAX_WORD + 1)
    assert words(f"a {long} b") == ["a", "b"]
    assert words(long, keep_long=True) == [long]


@cache
def _samples() -> list[str]:
    """One document per code point that yields words, then mixed words."""
    docs = []
    for code in range(1, 0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        if found := normalized(chr(code)):
            docs.append(found)
    letters = sorted({d for d in docs if len(d) == 1})
    rnd = random.Random(20261124)
    ascii_part = "abcexyz0123456789"
    for _ in range(20_000):
        mixed = "".join(
            rnd.choice(ascii_part) if rnd.random() < 0.6 else rnd.choice(letters)
            for _ in range(rnd.randint(2, 7))
        )
        docs.append(normalized(mixed))
    return docs


def test_each_database_keeps_every_word_as_it_is_cut(catalog: Catalog) -> None:
    docs = _samples()
    assert len(docs) > 150_000
    with catalog.session() as s:
        if catalog.dialect == "sqlite":
            s.execute(
                text(
                    "CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, search_index, instance)"
                )
            )
            sqlite.insert(s, [(n, n, [d]) for n, d in enumerate(docs, start=1)])
            kept: dict[int, list[tuple[int, str]]] = {}
            for term, doc, offset in s.execute(text("SELECT term, doc, offset FROM temp.vocab")):
                kept.setdefault(doc, []).append((offset, term))
            got = [" ".join(t for _, t in sorted(kept.get(n, []))) for n in range(1, len(docs) + 1)]
        else:
            rows = s.execute(
                text(
                    "SELECT d.doc, (SELECT string_agg(lexeme, ' ' ORDER BY pos) FROM "
                    "(SELECT lexeme, unnest(positions) AS pos FROM unnest("
                    "archiver_search_document(jsonb_build_array(d.doc)))) AS x), "
                    "to_tsquery('simple'::regconfig, archiver_unaccent("
                    "'''' || replace(d.doc, ' ', ''' <-> ''') || ''''))::text "
                    "FROM unnest(CAST(:docs AS text[])) WITH ORDINALITY AS d(doc, n) ORDER BY d.n"
                ),
                {"docs": docs},
            ).all()
            got = [r[1] or "" for r in rows]
            queried = [r[2] for r in rows]
            expected = [" <-> ".join(f"'{w}'" for w in d.split()) for d in docs]
            assert [q for q, e in zip(queried, expected, strict=True) if q != e] == []
    assert [(d, g) for d, g in zip(docs, got, strict=True) if d != g] == []
