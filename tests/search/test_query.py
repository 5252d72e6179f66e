"""The search grammar: what a query means, what is refused, and what each database is sent."""

from __future__ import annotations

import pytest

from archiver.errors import ArchiverError, SearchQueryError
from archiver.search.postgres import compile_tsquery
from archiver.search.query import MAX_DEPTH, MAX_TERMS, And, Not, Or, Term, describe, parse
from archiver.search.sqlite import compile_match


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("snow", "snow"),
        ("Snow PLOW", "(snow AND plow)"),
        ("snow AND plow", "(snow AND plow)"),
        ("snow OR ice", "(snow OR ice)"),
        # NOT binds tighter than AND, AND tighter than OR.
        ("a b OR c", "((a AND b) OR c)"),
        ("a OR b c", "(a OR (b AND c))"),
        ("a NOT b OR c", "((a AND NOT b) OR c)"),
        ("a NOT (b OR c)", "(a AND NOT (b OR c))"),
        ("(a OR b) c", "((a OR b) AND c)"),
        ("((a))", "a"),
        ("a AND (b AND c)", "(a AND b AND c)"),
        ('"Elm Street"', '"elm street"'),
        ('"Elm  Street!"', '"elm street"'),
        ("pick*", "pick*"),
        ('"elm str"*', '"elm str"*'),
        # Punctuation inside a word separates words: a phrase of them.
        ("e-mail", '"e mail"'),
        ("resident.bsky.social", '"resident bsky social"'),
        ("e-ma*", '"e ma"*'),
        # Case and diacritics do not matter; operators are capitals only.
        ("CAFÉ", "cafe"),
        ("Søren Ærø", "(soren AND aero)"),
        ("snow or ice", "(snow AND or AND ice)"),
        ('"OR" NOT "not"', "(or AND NOT not)"),
        ("NEAR(a b)", "(near AND a AND b)"),
    ],
)
def test_a_query_parses_to_its_tree(query: str, tree: str) -> None:
    assert describe(parse(query)) == tree


def test_the_tree_holds_normalized_words_only() -> None:
    node = parse('Café "Main St." NOT plow*')
    assert node == And(
        (
            Term(("cafe",), False, "Café"),
            Term(("main", "st"), False, '"Main St."'),
            Not(Term(("plow",), True, "plow*")),
        )
    )
    assert isinstance(parse("a OR b"), Or)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('"plow missed', r'the quote at character 1 is never closed: add the closing "'),
        ('snow "plow', "the quote at character 6 is never closed"),
        ("(snow OR ice", r"the \( at character 1 is never closed: add a \)"),
        ("snow OR ice)", r"the \) at character 12 has no matching \("),
        (")", r"the \) at character 1 has no matching \("),
        ("()", "the parentheses at character 1 hold nothing"),
        ("snow OR", "OR at character 6 needs a term after it"),
        ("snow AND", "AND at character 6 needs a term after it"),
        ("OR snow", "OR at character 1 needs a term before it"),
        ("snow OR OR ice", "OR at character 6 needs a term after it"),
        ("NOT", "NOT at character 1 needs a term after it"),
        ("NOT snow", "NOT needs a term to narrow"),
        ("snow OR NOT ice", "NOT needs a term to narrow"),
        ("snow NOT NOT ice", "NOT needs a term to narrow"),
        ("*", r"\* stands alone at character 1"),
        ("snow **", r"\* stands alone at character 6"),
        ("pl*ow", r"\* stands inside 'pl\*ow' at character 1"),
        ("plow**", r"\* stands inside 'plow\*\*'"),
        ("-", "- at character 1 holds no letters or digits"),
        ("^", r"\^ at character 1 holds no letters or digits"),
        ('""', '"" at character 1 holds no letters or digits'),
        ("snow 🚜", "🚜 at character 6 holds no letters or digits"),
        ("", "there is nothing to search for"),
        ("   ", "there is nothing to search for"),
        ("x" * 300, "has a word longer than 255 letters"),
        ("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1), "nested more than 20 levels"),
        ("NOT " * (MAX_DEPTH + 1) + "a", "nested more than 20 levels"),
        (" ".join(["a"] * (MAX_TERMS + 1)), "more than 100 terms"),
        ("a " * 1001, "longer than 2000 characters"),
    ],
)
def test_a_malformed_query_is_refused_saying_what_and_where(query: str, message: str) -> None:
    with pytest.raises(SearchQueryError, match=message) as info:
        parse(query)
    assert isinstance(info.value, ArchiverError) and info.value.exit_code == 2
    assert "\n" not in str(info.value) and str(info.value).startswith("search query: ")


@pytest.mark.parametrize(
    ("query", "match", "tsquery"),
    [
        ("snow", '"snow"', "'snow'"),
        ("snow plow", '("snow" AND "plow")', "('snow' & 'plow')"),
        ("snow OR plow", '("snow" OR "plow")', "('snow' | 'plow')"),
        ('"elm street"', '"elm street"', "('elm' <-> 'street')"),
        ("pick*", '"pick" *', "'pick':*"),
        ('"elm str"*', '"elm str" *', "('elm' <-> 'str':*)"),
        (
            "plow NOT elm NOT main",
            '((("plow") NOT "elm") NOT "main")',
            "('plow' & !'elm' & !'main')",
        ),
        (
            "(a OR b) NOT (c d)",
            '((("a" OR "b")) NOT ("c" AND "d"))',
            "(('a' | 'b') & !('c' & 'd'))",
        ),
    ],
)
def test_both_compilers_say_the_same_thing_in_their_databases_syntax(
    query: str, match: str, tsquery: str
) -> None:
    node = parse(query)
    assert compile_match(node) == match
    assert compile_tsquery(node) == tsquery


@pytest.mark.parametrize(
    "attempt",
    [
        '"a" OR content:x',
        "document:plow",
        "NEAR(plow elm)",
        "NEAR/2",
        "^plow",
        "+plow",
        "-plow",
        "plow' | 'x",
        "o'brien",
        "x\\' & !'y",
        "a:* | b",
        "a <-> b",
        "{document}: plow",
        "a\u0000b",
        "\ue000",
    ],
)
def test_typed_syntax_of_either_database_only_ever_reaches_it_as_quoted_words(
    attempt: str,
) -> None:
    try:
        node = parse(attempt)
    except SearchQueryError:
        return  # refused outright is safe too
    match, tsquery = compile_match(node), compile_tsquery(node)
    # FTS5: every word is inside double quotes, and the words hold letters and digits only.
    outside_quotes = match.split('"')[::2]
    assert all(set(part) <= set("() ANDORT*") for part in outside_quotes), match
    assert all(w.isalnum() for w in match.split('"')[1::2] for w in w.split()), match
    # tsquery: every lexeme single-quoted, nothing but operators around them.
    outside = tsquery.split("'")[::2]
    assert all(set(part) <= set("()&|!<-> :*") for part in outside), tsquery
    assert all(w.isalnum() for w in tsquery.split("'")[1::2]), tsquery
