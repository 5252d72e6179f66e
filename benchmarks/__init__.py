"""Benchmarks: one module per measurement, run by `python -m benchmarks.run`."""

from __future__ import annotations
