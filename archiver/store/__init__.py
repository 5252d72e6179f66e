"""Write-once object storage: the protocol, the local backend and the layout version."""

from __future__ import annotations

from archiver.store.base import LAYOUT_VERSION as LAYOUT_VERSION
from archiver.store.base import ObjectInfo as ObjectInfo
from archiver.store.base import Store as Store
from archiver.store.layout_version import ensure_layout as ensure_layout
from archiver.store.local import LocalStore as LocalStore

__all__ = ["LAYOUT_VERSION", "LocalStore", "ObjectInfo", "Store", "ensure_layout"]
