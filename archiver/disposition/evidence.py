"""Which items a raw exchange names: the platform ids in a stored response's body.

A raw API page mixes many items, and the catalog links each item *version* only to the
response it was first read from (``WARC-Refers-To``). A later capture that finds an item
unchanged writes no version, yet its response holds the item's text all the same: a thread
fetched again, a feed page of a full walk. So disposition reads the responses an item could
appear in and looks for the item's platform id among the body's tokens (runs of the
characters ids and URIs are made of; JSON's escaped ``\\/`` is read as ``/``, and each token
also counts by its ``/``-separated parts). A response naming a kept item is kept; one
naming only destroyed items goes.

Profiles are left out of the match: an account's own id appears in nearly every response
(as the author of its posts), which says who spoke, not that the profile record is there;
a profile version is linked to its own response like every version.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from warcio.archiveiterator import ArchiveIterator

from archiver.errors import StoreError
from archiver.logging import get_logger
from archiver.store.base import Store

log = get_logger(__name__)

#: Responses longer than this (compressed) are not read: API pages are far smaller. Such a
#: response counts as naming something unknown, so it is never destroyed for what it names.
MAX_RECORD = 64 << 20
_TOKEN = re.compile(rb"[A-Za-z0-9:/._~@%+=-]+")
#: Record types whose body is a platform's answer (an API response, an export entry).
EXCHANGE_TYPES = ("response", "resource")


def tokens(body: bytes) -> set[str]:
    """Every token of ``body`` and every ``/``-separated part of one."""
    found: set[str] = set()
    for match in _TOKEN.finditer(body.replace(b"\\/", b"/")):
        token = match.group().decode("ascii")
        found.add(token)
        if "/" in token:
            found.update(part for part in token.split("/") if part)
    return found


def read_body(store: Store, key: str, offset: int, length: int) -> bytes | None:
    """The body of the record at ``offset`` (its HTTP payload, decoded), or None when it is
    too large or cannot be read as a record."""
    if length > MAX_RECORD:
        return None
    try:
        member = store.get(key, offset, length)
        for record in ArchiveIterator(io.BytesIO(member)):
            try:
                return bytes(record.content_stream().read())
            except Exception:  # a body warcio cannot decode (bad encoding) is read as stored
                return bytes(record.raw_stream.read())
    except (StoreError, ValueError, OSError) as exc:
        log.warning("a raw exchange could not be read", key=key, offset=offset, error=str(exc))
    return None


class ItemIds:
    """Platform id → catalog id of each account's items (profiles left out)."""

    def __init__(self, rows: Iterable[tuple[str, str, int]]) -> None:
        self._ids: dict[str, dict[str, int]] = {}
        for account, platform_id, item_id in rows:
            self._ids.setdefault(account, {})[platform_id] = item_id

    def named(self, account: str, body: bytes) -> set[int]:
        """The items of ``account`` whose platform id is a token of ``body``."""
        ids = self._ids.get(account, {})
        if not ids:
            return set()
        return {ids[t] for t in tokens(body) if t in ids}
