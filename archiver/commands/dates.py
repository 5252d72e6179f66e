"""Dates and times typed on the command line: one reading for every command.

A bare ``YYYY-MM-DD`` is a day in the configured time zone (its local midnight, or the next
one as the exclusive end of an inclusive range); an ISO timestamp without an offset is read
in that zone too. Every result is UTC, as the catalog stores it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import click

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_moment(value: str, zone: ZoneInfo, option: str, *, end: bool = False) -> datetime:
    """A date (a whole day in ``zone``) or an ISO timestamp, as a UTC moment.

    ``end``: the exclusive upper bound of an inclusive ``--...-to`` value: the next day's
    midnight for a date, the next microsecond for a timestamp.
    """
    try:
        if DAY.fullmatch(value):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=zone)
            step = timedelta(days=1)
        else:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            step = timedelta(microseconds=1)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a date (YYYY-MM-DD) in the configured time zone nor an ISO "
            "timestamp (e.g. 2026-03-01T14:30 or 2026-03-01T20:30Z)",
            param_hint=option,
        ) from None
    return (moment + step if end else moment).astimezone(UTC)
