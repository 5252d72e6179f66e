"""CLI verbs, one module per verb group; each reads its ``App`` from the click context."""

from __future__ import annotations
