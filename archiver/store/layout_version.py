"""The store's layout version: written when a store is created, checked whenever one is opened.

The ``layout-version`` object (:data:`~archiver.store.base.LAYOUT_KEY`) holds a small JSON
document, for example ``{"layout": 1, "written_by": "city-archiver"}``. Only ``layout`` is
read; a bare integer (``1``) is accepted too, so an operator can write one by hand. A store
whose version this code does not know is refused rather than misread.
"""

from __future__ import annotations

import json
from typing import Any

from archiver.errors import LayoutVersionError, StoreError
from archiver.store.base import LAYOUT_KEY, LAYOUT_VERSION, Store, put_bytes

#: The document is tiny; anything much larger is not a layout-version object.
_MAX_BYTES = 64 * 1024


def ensure_layout(store: Store, *, create: bool) -> int:
    """Check (and with ``create``, initialise) the store's layout version; return it.

    Raises ``LayoutVersionError`` when the store carries another version than
    :data:`~archiver.store.base.LAYOUT_VERSION`, and ``StoreError`` when it carries none and
    ``create`` is False.
    """
    if not store.exists(LAYOUT_KEY):
        if not create:
            raise StoreError(
                f"the store {store.describe()} is not initialised (it has no {LAYOUT_KEY!r} "
                "object); run `archiver run` or `archiver catalog upgrade` to initialise it"
            )
        try:
            _write(store)
        except StoreError:
            # Another process may have initialised it a moment ago: then read its version.
            if not store.exists(LAYOUT_KEY):
                raise
    found = _parse(store.get(LAYOUT_KEY, 0, _MAX_BYTES + 1), store)
    if found != LAYOUT_VERSION:
        raise LayoutVersionError(
            f"the store {store.describe()} has layout version {found}, but this archiver "
            f"reads only version {LAYOUT_VERSION}; upgrade the archiver to one that knows "
            f"layout {found} before using this store"
        )
    return found


def _write(store: Store) -> None:
    body = json.dumps({"layout": LAYOUT_VERSION, "written_by": "city-archiver"}) + "\n"
    put_bytes(store, LAYOUT_KEY, body.encode("utf-8"))


def _parse(raw: bytes, store: Store) -> int:
    try:
        if len(raw) > _MAX_BYTES:
            raise ValueError("it is too large")
        doc: Any = json.loads(raw)
        version = doc.get("layout") if isinstance(doc, dict) else doc
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("it does not name a layout number")
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError included
        raise LayoutVersionError(
            f"the {LAYOUT_KEY!r} object of {store.describe()} is unreadable ({exc}); "
            "it was not written by this archiver, or this archiver is too old to read it"
        ) from exc
    return version
