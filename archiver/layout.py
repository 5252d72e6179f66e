"""Where things live in the store: partitions and object keys (see docs/layout.md).

Partitions follow disposition: item records and their media are partitioned by the item's
creation month, raw exchanges by the capture month, so that a whole partition becomes
eligible for destruction at once and nothing outside it refers into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from archiver.errors import UnsafeKeyError

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class ObjectKind(StrEnum):
    """Top-level key prefixes; each names one kind of stored object."""

    WARC = "warc"
    PARQUET = "parquet"
    CONTROL = "control"


_SUFFIX = {ObjectKind.WARC: ".warc.gz", ObjectKind.PARQUET: ".parquet", ObjectKind.CONTROL: ".json"}


def check_segment(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one key segment, else raise ``UnsafeKeyError``."""
    if not _SEGMENT.fullmatch(value) or value in {".", ".."}:
        raise UnsafeKeyError(
            f"{what} {value!r} cannot be used in a storage key: use letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (at most 128 characters)"
        )
    return value


def period_of(moment: datetime) -> str:
    """The partition period (``YYYY-MM``, UTC) of a moment."""
    if moment.tzinfo is None:
        raise ValueError("period_of needs a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """A (series, account, period) triple: the unit of storage and of disposition."""

    series: str
    account: str
    period: str

    def __post_init__(self) -> None:
        check_segment(self.series, "records series")
        check_segment(self.account, "account")
        if not _PERIOD.fullmatch(self.period):
            raise UnsafeKeyError(f"partition period {self.period!r} is not YYYY-MM")

    @property
    def name(self) -> str:
        """``series/account/period``, the partition's name in keys and the catalog."""
        return f"{self.series}/{self.account}/{self.period}"

    @classmethod
    def parse(cls, name: str) -> Partition:
        """Inverse of :attr:`name`."""
        parts = name.split("/")
        if len(parts) != 3:
            raise UnsafeKeyError(f"partition name {name!r} is not series/account/YYYY-MM")
        return cls(*parts)

    def key(self, kind: ObjectKind, file_id: str) -> str:
        """The store key of a file of ``kind`` with stable id ``file_id`` in this partition."""
        check_segment(file_id, "file id")
        return f"{kind.value}/{self.name}/{file_id}{_SUFFIX[kind]}"


def sidecar_key(key: str) -> str:
    """The key of the small JSON object that records a stored file's sha256 and size."""
    return f"{key}.sha256.json"
