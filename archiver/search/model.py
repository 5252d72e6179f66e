"""What a search asks for and what it answers: plain records crossing the API boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: Item kinds a search can be limited to (``archiver.connector.ItemKind``).
KINDS = ("post", "comment", "message", "media", "profile")
#: States a search can be limited to, as the catalog records them; "removed" (by a
#: moderator or the platform) is recorded as "hidden", since both keep the item from view.
STATES = ("present", "edited", "hidden", "removed", "deleted")
_STATE_IN_CATALOG = {"removed": "hidden"}


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Conditions every result meets; an empty field does not filter.

    Time ranges are half-open: ``*_from`` inclusive, ``*_before`` exclusive, aware
    datetimes. ``created`` is the item's creation time on the platform; ``captured`` is
    when a matching version was captured. Authors compare without case and without a
    leading ``@``; platforms and authors match exactly, not as words.
    """

    accounts: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None
    captured_from: datetime | None = None
    captured_before: datetime | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("kinds", KINDS), ("states", STATES)):
            unknown = sorted(set(getattr(self, name)) - set(allowed))
            if unknown:
                raise ValueError(f"unknown {name} {unknown}: choose from {', '.join(allowed)}")
        for name in ("created_from", "created_before", "captured_from", "captured_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")

    @property
    def catalog_states(self) -> tuple[str, ...]:
        return tuple(sorted({_STATE_IN_CATALOG.get(s, s) for s in self.states}))

    @property
    def captured(self) -> bool:
        return self.captured_from is not None or self.captured_before is not None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One matching item. ``text`` is the text of the latest matching version (the item's
    latest text when the search had no words); ``versions_matched`` are the numbers of the
    versions that matched, of ``versions`` captured."""

    id: int
    account: str
    platform: str
    kind: str
    platform_item_id: str
    permalink: str | None
    author: str | None
    created_at: datetime | None
    state: str
    text: str | None
    versions: int
    versions_matched: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results, newest item first (by creation time, then catalog id)."""

    results: tuple[SearchResult, ...]
    limit: int
    offset: int
    more: bool  # whether a next page has results
    query: str | None  # the query as parsed (fully parenthesized), None without words

    @property
    def page(self) -> int:
        """1-based page number, for ``offset`` a multiple of ``limit``."""
        return self.offset // self.limit + 1
