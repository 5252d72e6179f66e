"""Disposition: reports, approval, execution, certificates of destruction and transfer."""

from __future__ import annotations
