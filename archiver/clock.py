"""The time retention and disposition decisions are made at.

Decisions depend on "now" (an item ages into eligibility; a denied request's hold ends 60
days after the denial). Commands take it from :func:`now`, which reads the ``ARCHIVER_NOW``
environment variable (an ISO 8601 time with offset) when it is set: a records officer can
rehearse a disposition "as of" a future date on a copy of the archive, and tests run the
real CLI with a clock they control. Unset, it is the system clock in UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from archiver.errors import ConfigError

ENV = "ARCHIVER_NOW"


def now() -> datetime:
    """The current time in UTC, or ``ARCHIVER_NOW`` when set."""
    value = os.environ.get(ENV)
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{ENV}={value!r} is not an ISO 8601 time such as 2031-01-01T00:00:00+00:00; "
            "unset it to use the system clock"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"{ENV}={value!r} needs a UTC offset, e.g. 2031-01-01T00:00:00+00:00")
    return moment.astimezone(UTC)
