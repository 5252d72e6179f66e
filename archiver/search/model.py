"""What a search asks for and what it answers: plain records crossing the API boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.retention import Outcome

#: Item kinds a search can be limited to (``archiver.connector.ItemKind``).
KINDS = ("post", "comment", "message", "media", "profile")
#: States a search can be limited to, as the catalog records them; "removed" (by a
#: moderator or the platform) is recorded as "hidden", since both keep the item from view.
STATES = ("present", "edited", "hidden", "removed", "deleted")
_STATE_IN_CATALOG = {"removed": "hidden"}
#: Retention outcomes a search can be limited to (:class:`archiver.retention.Outcome`).
OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Conditions every result meets; an empty field does not filter.

    Time ranges are half-open: ``*_from`` inclusive, ``*_before`` exclusive, aware
    datetimes. ``created`` is the item's creation time on the platform; ``captured`` is
    when a matching version was captured. Authors compare without case and without a
    leading ``@``; platforms and authors match exactly, not as words.

    ``series`` is the item's records series (a plain column). ``held`` (True: only items an
    active hold covers; False: only items none covers) and ``retention`` (the outcomes of
    :func:`archiver.retention.decide` to keep) need retention decisions, so a search with
    them is given a :class:`~archiver.search.engine.RetentionLens` and evaluates its
    candidates in batches (see :func:`archiver.search.engine.search`).
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
    series: tuple[str, ...] = ()
    held: bool | None = None
    retention: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, allowed in (("kinds", KINDS), ("states", STATES), ("retention", OUTCOMES)):
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

    @property
    def needs_retention(self) -> bool:
        """Whether the filters need retention decisions (not answerable in SQL alone)."""
        return self.held is not None or bool(self.retention)


@dataclass(frozen=True, slots=True)
class HoldRef:
    """An active hold covering an item."""

    id: int
    case: str
    kind: str  # "legal", "prr"


@dataclass(frozen=True, slots=True)
class RetentionInfo:
    """What retention says about an item now (``archiver search`` and ``show`` columns).

    ``outcome`` is an :class:`~archiver.retention.Outcome` value, "disposed" for a destroyed
    item's stub, or None when no loaded schedule defines the item's series (``reason`` says
    so). ``holds`` are the active holds covering the item, whatever the outcome.
    """

    series: str
    rule: str | None  # the assignment rule (``items.series_rule``), None when not recorded
    outcome: str | None
    eligible_on: datetime | None
    action: str | None  # "destroy", "transfer", "permanent" once eligible
    reason: str
    holds: tuple[HoldRef, ...] = ()
    disposed_at: datetime | None = None
    certificate: str | None = None


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
    series: str = ""
    # Given when the search had a RetentionLens; None otherwise.
    retention: RetentionInfo | None = None


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
