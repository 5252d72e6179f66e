"""Platform connectors.

One module per platform, each registered through the ``archiver.connectors`` entry-point
group, the same way a third-party package registers its own.
"""

from __future__ import annotations
