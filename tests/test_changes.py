"""Change detection: one observation against what the catalog knows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from archiver.changes import Change, Known, decide, state_after
from archiver.connector import Item, ItemKind, MediaRef, Moderation

POST = Item(
    platform="mastodon",
    item_id="109",
    kind=ItemKind.POST,
    evidence="<urn:uuid:1>",
    permalink="https://mastodon.example/@city/109",
    created_at=datetime(2026, 11, 2, 15, 0, tzinfo=UTC),
    text="Leaf collection starts Monday",
    media=(MediaRef(media_id="m1", url="https://cdn.example/a.png?sig=1", alt_text="map"),),
    raw={"replies_count": 3, "favourites_count": 10},
)


def known(item: Item, state: str = "present") -> Known:
    return Known(item.content_sha256(), state)


def test_an_item_never_seen_is_new() -> None:
    assert decide(POST, None).change is Change.NEW


def test_counters_and_rotating_media_urls_are_not_content() -> None:
    again = replace(
        POST,
        evidence="<urn:uuid:2>",
        raw={"replies_count": 99, "favourites_count": 1000},
        media=(replace(POST.media[0], url="https://cdn.example/a.png?sig=2"),),
    )
    decision = decide(again, known(POST))
    assert decision.change is Change.UNCHANGED and not decision.new_version


@pytest.mark.parametrize(
    "edit",
    [
        {"text": "Leaf collection starts Tuesday"},
        {"edited_at": datetime(2026, 11, 3, tzinfo=UTC)},
        {"media": (replace(POST.media[0], alt_text="route map"),)},
        {"visibility": "unlisted"},
    ],
)
def test_a_change_of_content_is_an_edit(edit: dict[str, object]) -> None:
    assert decide(replace(POST, **edit), known(POST)).change is Change.EDITED  # type: ignore[arg-type]


def test_hidden_by_the_account_is_a_state_change_and_reversible() -> None:
    hidden = replace(POST, moderation=Moderation.HIDDEN)
    assert decide(hidden, known(POST)).change is Change.HIDDEN
    assert state_after(Change.HIDDEN, "present", Moderation.HIDDEN) == "hidden"
    assert decide(POST, known(hidden, "hidden")).change is Change.UNHIDDEN


def test_an_item_seen_again_after_being_marked_deleted_reappears() -> None:
    decision = decide(POST, known(POST, "deleted"))
    assert decision.change is Change.REAPPEARED
    assert state_after(decision.change, "deleted") == "present"


def test_unchanged_keeps_the_state() -> None:
    assert state_after(Change.UNCHANGED, "edited") == "edited"


def test_an_item_first_seen_already_hidden_is_hidden_from_the_start() -> None:
    hidden = replace(POST, moderation=Moderation.HIDDEN)
    assert state_after(decide(hidden, None).change, None, hidden.moderation) == "hidden"
