"""The local backend's metadata sidecar: one JSON document per object.

``<root>/.meta/<key>`` holds, for the object at ``<root>/<key>``::

    {"created": "2024-03-01T12:00:00+00:00", "key": "warc/...", "legal_hold": false,
     "retain_until": "2031-01-01T00:00:00+00:00", "sha256": "<64 hex>", "size": 1234}

Times are ISO 8601 in UTC; ``retain_until`` is null when no retention was set. Reading is
strict, because a mistyped field (a hold of ``"false"``) must not be guessed at.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from archiver.errors import StoreError
from archiver.store.base import ObjectInfo

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def aware(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; ``ValueError`` naming ``what`` if it has no time zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def encode(info: ObjectInfo) -> bytes:
    """The sidecar document for ``info``."""
    doc = {
        "key": info.key,
        "sha256": info.sha256,
        "size": info.size,
        "created": info.created.isoformat() if info.created else None,
        "retain_until": info.retain_until.isoformat() if info.retain_until else None,
        "legal_hold": info.legal_hold,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def decode(key: str, raw: bytes) -> ObjectInfo:
    """Parse the sidecar of ``key``; ``StoreError`` if it is not one this code wrote."""
    try:
        doc = json.loads(raw)
        sha256, size, hold = doc["sha256"], doc["size"], doc["legal_hold"]
        if not (
            isinstance(sha256, str)
            and SHA256_HEX.fullmatch(sha256)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and isinstance(hold, bool)
            and doc.get("key") == key
        ):
            raise ValueError("a field has the wrong type or value")
        return ObjectInfo(
            key=key,
            size=size,
            sha256=sha256,
            retain_until=_parse_time(doc["retain_until"]),
            legal_hold=hold,
            created=_parse_time(doc["created"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"the metadata sidecar of {key!r} is unreadable: {exc}") from exc


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp {value!r} is not a string")
    return aware(datetime.fromisoformat(value), "a stored timestamp")
