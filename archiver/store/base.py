"""The store protocol: one contract, two backends (local directory, S3 with Object Lock).

Every object is written once and never modified. Keys are ``/``-separated relative paths
(``warc/<series>/<account>/<period>/<id>.warc.gz``); a backend refuses keys that are empty,
absolute, contain ``..``/``.`` segments, backslashes or control characters.

Retention and legal holds are enforced by the backend, not by its callers: ``delete``
raises :class:`~archiver.errors.RetentionError` while an object is retained or held.
"""

from __future__ import annotations

import builtins
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

#: The layout version this code writes and reads (see docs/layout.md).
LAYOUT_VERSION = 1
LAYOUT_KEY = "layout-version"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``head`` and ``list`` report about one stored object (one version of it)."""

    key: str
    size: int
    sha256: str
    retain_until: datetime | None
    legal_hold: bool
    version_id: str | None = None
    created: datetime | None = None


@runtime_checkable
class Store(Protocol):
    """Write-once object storage with retention and legal holds."""

    def put(
        self, key: str, source: Path, sha256: str, *, retain_until: datetime | None = None
    ) -> ObjectInfo:
        """Store the file at ``source`` under ``key``.

        ``sha256`` is the hex digest the caller computed while writing the file; the backend
        verifies it while copying and raises ``IntegrityError`` on a mismatch (nothing is left
        under ``key``). A key that already holds an object is refused with ``StoreError``.
        """
        ...

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes from ``offset`` (to the end when ``length`` is None)."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the whole object in chunks."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Describe the object; ``ObjectNotFoundError`` when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every current object whose key starts with ``prefix``, in key order."""
        ...

    def set_retention(self, key: str, retain_until: datetime) -> ObjectInfo:
        """Extend the object's retention; shortening it raises ``RetentionError``."""
        ...

    def set_legal_hold(self, key: str, on: bool) -> ObjectInfo:
        """Place or release a legal hold on the object."""
        ...

    def delete(self, key: str, *, bypass_governance: bool = False) -> None:
        """Delete the object; refused with ``RetentionError`` while retained or held.

        ``bypass_governance``: a retention that an authorized person may lift (S3 Object Lock
        GOVERNANCE mode; the local backend's sidecar retention) does not refuse the delete.
        A COMPLIANCE retention and a legal hold still do. Only disposition, run by a records
        officer, passes it.
        """
        ...

    def list_versions(self, key: str) -> builtins.list[ObjectInfo]:
        """Every stored version of ``key``, newest first (one for the local backend)."""
        ...

    def delete_all_versions(self, key: str, *, bypass_governance: bool = False) -> int:
        """Delete every version of ``key`` (each refused while retained or held); count deleted.

        ``bypass_governance`` as for :meth:`delete`.
        """
        ...

    def check(self) -> None:
        """Check the store is reachable, writable and set up as configured (at start-up).

        Raises ``StoreError`` with one line saying what to fix.
        """
        ...

    def describe(self) -> str:
        """A one-line, secret-free description for logs and ``status`` (``file:///srv/...``)."""
        ...


def put_bytes(store: Store, key: str, data: bytes, *, tmp_dir: Path | None = None) -> ObjectInfo:
    """Store a small object held in memory (layout version, sidecars, audit anchors)."""
    with tempfile.NamedTemporaryFile(prefix=".put-", dir=tmp_dir, delete=False) as tmp:
        tmp.write(data)
        path = Path(tmp.name)
    try:
        return store.put(key, path, hashlib.sha256(data).hexdigest())
    finally:
        path.unlink(missing_ok=True)
