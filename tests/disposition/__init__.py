"""Tests of disposition: reports, approval, execution, certificates and transfer."""

from __future__ import annotations
