"""Retention schedules shipped with the package: one TOML file per records series."""

from __future__ import annotations
