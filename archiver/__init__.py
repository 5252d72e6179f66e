"""City social-media records archiver."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("city-archiver")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
