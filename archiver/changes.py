"""Change detection: what one observation of an item means against what the catalog knows.

A pure function, so every decision can be explained and tested on its own. Counters and
rotating media URLs are not content (see ``Item.content``), so a re-capture of an unchanged
item is ``UNCHANGED`` and writes nothing but its last-seen time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from archiver.connector import Item, Moderation


class Change(StrEnum):
    NEW = "new"
    UNCHANGED = "unchanged"
    EDITED = "edited"
    HIDDEN = "hidden"  # the platform now reports the item hidden or removed
    UNHIDDEN = "unhidden"
    REAPPEARED = "reappeared"  # marked deleted before, answered again now
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Known:
    """What the catalog holds about an item: its last content hash, state and moderation."""

    content_sha256: str
    state: str  # "present", "edited", "hidden", "deleted"


@dataclass(frozen=True, slots=True)
class Decision:
    change: Change
    why: str

    @property
    def new_version(self) -> bool:
        """Whether the observation is written as a new item version."""
        return self.change is not Change.UNCHANGED


_NOT_SHOWN = {Moderation.HIDDEN, Moderation.REMOVED}


def decide(item: Item, known: Known | None) -> Decision:
    """Classify an observed item against the catalog's knowledge of it."""
    if known is None:
        return Decision(Change.NEW, "first time captured")
    digest = item.content_sha256()
    hidden_now = item.moderation in _NOT_SHOWN
    if known.state == "deleted":
        return Decision(Change.REAPPEARED, "was marked deleted, the platform shows it again")
    if hidden_now and known.state != "hidden":
        return Decision(Change.HIDDEN, f"the platform now reports it {item.moderation.value}")
    if not hidden_now and known.state == "hidden":
        return Decision(Change.UNHIDDEN, "the platform shows it again")
    if digest != known.content_sha256:
        return Decision(Change.EDITED, "its content differs from the last captured version")
    return Decision(Change.UNCHANGED, "same content as the last captured version")


def state_after(
    change: Change, previous: str | None, moderation: Moderation = Moderation.VISIBLE
) -> str:
    """The item's catalog state once ``change`` is recorded.

    An item first seen (or seen again) already hidden by the account is ``hidden`` from the
    start: the state follows what the platform says, not only what changed.
    """
    if change is Change.UNCHANGED:
        return previous or "present"
    if change is Change.DELETED:
        return "deleted"
    if moderation in _NOT_SHOWN:
        return "hidden"
    return "edited" if change is Change.EDITED else "present"
