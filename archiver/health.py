"""``archiver status --check``: what monitoring should wake someone for.

:func:`check` looks at one node (the configuration's ``[archiver] node``; run the check
on every node) and returns one :class:`Problem` per thing that is wrong:

- **daemon**: this node's heartbeat is missing, says ``stopped``, or is older than three
  ``[daemon] heartbeat_every`` (the daemon hangs, crashed, or was stopped);
- **stale**: an enabled account has not been captured completely within its
  ``staleness_limit`` (an account that never succeeded counts from when it was registered);
- **credential**: an enabled account's secret reference does not resolve here and now, or
  its last run was refused for its credentials (HTTP 401/403, an invalid or expired token).

Secrets are resolved only to see that they can be; their values are never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select

from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, CaptureRun, Heartbeat
from archiver.config import SERVICE_CREDENTIALS, AccountSettings, Config
from archiver.errors import ConfigError

__all__ = [
    "SERVICE_CREDENTIALS",
    "STALE_BEATS",
    "Problem",
    "auth_failure",
    "check",
    "summary",
]

#: A heartbeat older than this many ``heartbeat_every`` intervals means the daemon is gone.
STALE_BEATS = 3


#: A run's reason that says the platform refused the account's credentials.
_AUTH_FAILURE = re.compile(
    r"\bHTTP (401|403)\b|\bunauthori[sz]ed\b|\bforbidden\b|\bauthentication ?required\b"
    r"|\b(invalid|expired|revoked)[ _-]?token\b|\btoken (is |was |has )?(been )?"
    r"(invalid|expired|revoked)\b|\bsecret SecretRef\(",
    re.IGNORECASE,
)

Kind = Literal["daemon", "stale", "credential"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason for ``status --check`` to exit 1."""

    kind: Kind
    subject: str  # the node or the account
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def auth_failure(reason: str | None) -> bool:
    """Whether a run's ``reason`` says the platform refused the credentials."""
    return bool(reason and _AUTH_FAILURE.search(reason))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _span(delta: timedelta) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: a duration for people."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def check(
    config: Config,
    catalog: Catalog,
    *,
    clock: Callable[[], datetime] = _utcnow,
    service_credentials: Path = SERVICE_CREDENTIALS,
) -> list[Problem]:
    """Every problem monitoring should know about, daemon first, then by account."""
    now = clock()
    node = config.archiver.node
    with catalog.reader() as session:
        beat = session.get(Heartbeat, node)
        rows = {row.id: row for row in session.scalars(select(Account))}
        latest = (
            select(func.max(CaptureRun.id))
            .where(CaptureRun.status != "running")
            .group_by(CaptureRun.account_id)
        )
        runs = {
            run.account_id: run
            for run in session.scalars(select(CaptureRun).where(CaptureRun.id.in_(latest)))
        }
    problems = _daemon(config, beat, now)
    enabled = [a for a in config.accounts if a.enabled]
    started = beat.started_at if beat is not None else None
    for account in enabled:
        problems += _staleness(account, rows.get(account.id), started, now)
    for account in enabled:
        problems += _credentials(account, runs.get(account.id), service_credentials)
    # One line each, whatever a platform put in a run's reason.
    return [Problem(p.kind, p.subject, " ".join(p.message.split())) for p in problems]


def _daemon(config: Config, beat: Heartbeat | None, now: datetime) -> list[Problem]:
    node = config.archiver.node
    limit = STALE_BEATS * config.daemon.heartbeat_every
    if beat is None:
        message = f"node {node}: no daemon heartbeat: `archiver run` has never run on this node"
    elif beat.state == "stopped":
        message = f"node {node}: the daemon stopped {_span(now - beat.beat_at)} ago"
    elif now - beat.beat_at > limit:
        message = (
            f"node {node}: the daemon's last heartbeat ({beat.state}) was "
            f"{_span(now - beat.beat_at)} ago, more than {STALE_BEATS} × [daemon] "
            f"heartbeat_every ({_span(limit)})"
        )
    else:
        return []
    return [Problem("daemon", node, message)]


def _staleness(
    account: AccountSettings, row: Account | None, started: datetime | None, now: datetime
) -> list[Problem]:
    limit = account.staleness_limit
    if row is not None and row.last_success_at is not None:
        age = now - row.last_success_at
        if age <= limit:
            return []
        message = f"last complete capture {_span(age)} ago"
    else:
        # Never captured completely: count from registration, or (not registered yet) from
        # the start of this node's daemon, which should have registered it.
        since = row.created_at if row is not None else started
        if since is None or now - since <= limit:
            return []
        what = "registered" if row is not None else "the daemon started"
        message = f"never captured completely, {_span(now - since)} after {what}"
    return [
        Problem(
            "stale",
            account.id,
            f"account {account.id}: {message}; its staleness limit is {_span(limit)}",
        )
    ]


def _credentials(
    account: AccountSettings, last: CaptureRun | None, service_credentials: Path
) -> list[Problem]:
    problems = []
    for name, ref in sorted(account.credentials.items()):
        try:
            ref.resolve(service_credentials=service_credentials)
        except ConfigError as exc:
            problems.append(
                Problem(
                    "credential",
                    account.id,
                    f"account {account.id}: credential {name!r} does not resolve: {exc.message}",
                )
            )
    if last is not None and last.status != "complete" and auth_failure(last.reason):
        problems.append(
            Problem(
                "credential",
                account.id,
                f"account {account.id}: its last run ({last.status}) was refused for its "
                f"credentials: {last.reason}",
            )
        )
    return problems


def summary(count: int) -> str:
    """``healthy``, ``1 problem`` or ``3 problems``."""
    if not count:
        return "healthy"
    return f"{count} problem" + ("s" if count > 1 else "")
