"""Recreating the catalog from the store alone, and comparing two catalogs row by row.

- :mod:`archiver.rebuild.scan` lists the store and verifies and reads each file;
- :mod:`archiver.rebuild.facts` turns one account's records into rows (and drops orphans);
- :mod:`archiver.rebuild.write` writes them into an empty catalog;
- :mod:`archiver.rebuild.bodies` checks the control facts' bodies (holds, events, notices,
  reassignments, certificates) and :mod:`archiver.rebuild.replay` replays them in order;
- :mod:`archiver.rebuild.pipeline` runs the whole rebuild in one transaction;
- :mod:`archiver.rebuild.compare` diffs two catalogs on natural keys.
"""

from __future__ import annotations

from archiver.rebuild.compare import Comparison, Difference, compare
from archiver.rebuild.pipeline import RebuildReport, rebuild

__all__ = ["Comparison", "Difference", "RebuildReport", "compare", "rebuild"]
