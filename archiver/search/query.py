"""The search grammar: a query string parsed into a small tree, or a clear refusal.

::

    snow plow                 both words (an implied AND)
    snow AND plow             the same
    snow OR ice               either word
    plow NOT Elm              plow, but not Elm (NOT binds tighter than AND, AND than OR)
    "Elm Street"              the words next to each other, in this order
    pick*                     words starting with "pick"
    (snow OR ice) "Main St"   parentheses group

``AND``, ``OR`` and ``NOT`` are operators only in capitals; in lower case (or in quotes)
they are words. Matching ignores case and diacritics, and punctuation inside a term only
separates words (``e-mail`` is the phrase "e mail"; see :mod:`archiver.search.text`).
NOT narrows the terms it stands with, so it needs at least one term to subtract from
(``plow NOT Elm``; not ``NOT Elm`` alone nor ``snow OR NOT Elm``).

The tree (:class:`Term`, :class:`And`, :class:`Or`, :class:`Not`) holds only normalized
words, so the compilers for each database never see a character of the raw input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from archiver.errors import SearchQueryError
from archiver.search.text import MAX_WORD, words

#: Longest query accepted, in characters, and most terms: far above any real request,
#: low enough that nothing nests deeper than the databases' expression limits.
MAX_QUERY = 2000
MAX_TERMS = 100
MAX_DEPTH = 20

OPERATORS = ("AND", "OR", "NOT")


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must appear next to each other, in order; ``prefix``: the last one may
    be the start of a longer word. A single word is a one-word term."""

    words: tuple[str, ...]
    prefix: bool = False
    source: str = ""  # as typed, for messages


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]

    @property
    def positives(self) -> tuple[Node, ...]:
        return tuple(i for i in self.items if not isinstance(i, Not))

    @property
    def negatives(self) -> tuple[Node, ...]:
        return tuple(i.item for i in self.items if isinstance(i, Not))


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "phrase", "(", ")", "AND", "OR", "NOT"
    text: str
    at: int  # 1-based character position, for messages
    prefix: bool = False


def _fail(message: str) -> SearchQueryError:
    return SearchQueryError(f"search query: {message}")


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c, i + 1))
            i += 1
        elif c == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise _fail(
                    f"the quote at character {i + 1} is never closed: "
                    'add the closing " (a phrase is written "like this")'
                )
            prefix = end + 1 < n and query[end + 1] == "*"
            tokens.append(_Token("phrase", query[i + 1 : end], i + 1, prefix))
            i = end + 2 if prefix else end + 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            text = query[start:i]
            if text in OPERATORS:
                tokens.append(_Token(text, text, start + 1))
                continue
            prefix = text.endswith("*")
            body = text[:-1] if prefix else text
            if "*" in body or not body:
                where = "alone" if not body.strip("*") else f"inside {text!r}"
                raise _fail(
                    f"* stands {where} at character {start + 1}: it may only end a word, "
                    "as in pick* (words starting with pick)"
                )
            tokens.append(_Token("word", body, start + 1, prefix))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.terms = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        node = self.or_expr()
        extra = self.peek()
        if extra is not None:
            # Only a ")" can be left over: everything else starts or joins a term.
            raise _fail(f"the ) at character {extra.at} has no matching (")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            items.append(self.and_expr(after=token))
        return items[0] if len(items) == 1 else Or(tuple(_flatten(items, Or)))

    def and_expr(self, after: _Token | None = None) -> Node:
        items = [self.unary(after)]
        while (token := self.peek()) is not None and token.kind not in ("OR", ")"):
            if token.kind == "AND":
                self.take()
                items.append(self.unary(token))
            else:
                items.append(self.unary(None))
        return items[0] if len(items) == 1 else And(tuple(_flatten(items, And)))

    def unary(self, after: _Token | None) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.take()
            with self.nested(token):
                return Not(self.unary(token))
        return self.primary(after)

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _fail(f"nested more than {MAX_DEPTH} levels deep at character {token.at}")
        try:
            yield
        finally:
            self.depth -= 1

    def primary(self, after: _Token | None) -> Node:
        token = self.peek()
        if token is None or token.kind in ("OR", "AND", ")"):
            if after is not None:
                raise _fail(
                    f"{after.text} at character {after.at} needs a term after it "
                    "(write AND, OR and NOT in capitals only as operators; quote them to "
                    'search for the word, as in "or")'
                )
            if token is None:
                raise _fail("there is nothing to search for")
            if token.kind == ")":
                raise _fail(f"the ) at character {token.at} has no matching (")
            raise _fail(
                f"{token.text} at character {token.at} needs a term before it "
                '(quote it to search for the word, as in "or")'
            )
        self.take()
        if token.kind == "(":
            if (nxt := self.peek()) is not None and nxt.kind == ")":
                raise _fail(f"the parentheses at character {token.at} hold nothing")
            with self.nested(token):
                node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise _fail(f"the ( at character {token.at} is never closed: add a )")
            self.take()
            return node
        return self.term(token)

    def term(self, token: _Token) -> Term:
        found = words(token.text, keep_long=True)
        shown = f'"{token.text}"' if token.kind == "phrase" else token.text
        if not found:
            raise _fail(
                f"{shown} at character {token.at} holds no letters or digits to search for "
                "(punctuation and symbols are not indexed)"
            )
        if any(len(w) > MAX_WORD for w in found):
            raise _fail(
                f"{shown[:40]}... at character {token.at} has a word longer than {MAX_WORD} "
                "letters; such words are not indexed"
            )
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _fail(f"more than {MAX_TERMS} terms: split the search into several")
        return Term(tuple(found), token.prefix, shown + ("*" if token.prefix else ""))


def _flatten(items: list[Node], kind: type[And] | type[Or]) -> list[Node]:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else [item])
    return flat


def _check_negation(node: Node, *, narrowed: bool = False) -> None:
    """NOT only subtracts from other terms it stands with: both databases need that."""
    if isinstance(node, Term):
        return
    if isinstance(node, Not):
        if not narrowed:
            raise _fail(
                "NOT needs a term to narrow in the same group, as in plow NOT Elm; "
                "a search for everything without a word is not possible"
            )
        _check_negation(node.item)
        return
    if isinstance(node, Or):
        for item in node.items:
            _check_negation(item)
        return
    has_positive = bool(node.positives)
    for item in node.items:
        _check_negation(item, narrowed=has_positive)


def parse(query: str) -> Node:
    """Parse ``query`` into a tree of normalized words; ``SearchQueryError`` says what is
    wrong and where."""
    if len(query) > MAX_QUERY:
        raise _fail(f"the query is longer than {MAX_QUERY} characters")
    if not query.strip():
        raise _fail("there is nothing to search for")
    node = _Parser(_lex(query)).parse()
    _check_negation(node)
    return node


def describe(node: Node) -> str:
    """The tree in a fully parenthesized, readable form (for tests and ``--json``)."""
    if isinstance(node, Term):
        text = " ".join(node.words)
        text = f'"{text}"' if len(node.words) > 1 else text
        return text + ("*" if node.prefix else "")
    if isinstance(node, Not):
        return f"NOT {describe(node.item)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(describe(i) for i in node.items) + ")"
