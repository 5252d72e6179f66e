"""The catalog: an index of everything in the store, rebuildable from the store alone."""

from __future__ import annotations

from archiver.catalog.db import Catalog as Catalog
from archiver.catalog.schema import require_current as require_current
from archiver.catalog.schema import upgrade as upgrade

__all__ = ["Catalog", "require_current", "upgrade"]
