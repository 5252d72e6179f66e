"""Finding connectors: the ``archiver.connectors`` entry-point group, loaded lazily.

The project's own connectors register there exactly as a third-party package would, so
the core never imports a connector by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from archiver.errors import ConnectorNotFoundError

GROUP = "archiver.connectors"


@dataclass(frozen=True, slots=True)
class InstalledConnector:
    """One registered connector: its platform name, where it comes from, its version."""

    platform: str
    target: str
    distribution: str | None
    version: str | None

    def load(self) -> Any:
        return _entry_point(self.platform).load()


def _entry_point(platform: str) -> EntryPoint:
    for ep in entry_points(group=GROUP):
        if ep.name == platform:
            return ep
    raise ConnectorNotFoundError(
        f"no connector is installed for platform {platform!r}; installed: "
        f"{', '.join(c.platform for c in installed()) or 'none'}. Check the account's "
        "`platform` in the configuration, or install the connector package"
    )


def installed() -> list[InstalledConnector]:
    """Every registered connector, sorted by platform name."""
    found = []
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        found.append(
            InstalledConnector(
                platform=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
        )
    return sorted(found, key=lambda c: c.platform)


def load_connector(platform: str) -> Any:
    """The connector class registered for ``platform``; ``ConnectorNotFoundError`` if none."""
    return _entry_point(platform).load()
