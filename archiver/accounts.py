"""The catalog's accounts kept in step with the configuration, and what staff see of them.

An account stays in the catalog for as long as its records exist, whatever the
configuration says. :func:`reconcile` (called by ``archiver run`` at start-up) registers
every configured account, copies its settings, and marks an account that left the
configuration **inactive**: ``enabled = False``, ``status = "inactive"`` and a
``status_reason`` saying since when. Its records, runs and leases are not touched. An
inactive account that comes back is **reactivated** (``status = "unknown"`` until its next
run looks). Each of these changes is one audit entry (``account.registered``,
``account.updated``, ``account.deactivated``, ``account.reactivated``).

:func:`overview` is the read-only view ``archiver accounts`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.catalog.db import Catalog
from archiver.catalog.models import Account, CaptureRun, Item
from archiver.config import AccountSettings, Config

__all__ = [
    "INACTIVE",
    "AccountChange",
    "AccountView",
    "LastRun",
    "overview",
    "reconcile",
]

#: ``Account.status`` of an account that is no longer in the configuration.
INACTIVE = "inactive"

#: Settings copied from the configuration onto the catalog row, in this order.
_COPIED = ("platform", "handle", "platform_id", "department", "series", "enabled")

# Serializes reconciliation between daemons sharing one PostgreSQL catalog (SQLite
# transactions already take the write lock at BEGIN IMMEDIATE).
_PG_RECONCILE_LOCK = 0x61636374_73000000

Action = Literal["registered", "updated", "deactivated", "reactivated"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One change :func:`reconcile` made to an account row (and audited)."""

    account: str
    action: Action
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def audit_action(self) -> str:
        """The audit log's name for the change, e.g. ``account.deactivated``."""
        return f"account.{self.action}"


def reconcile(
    config: Config,
    catalog: Catalog,
    actor: str,
    *,
    clock: Callable[[], datetime] = _utcnow,
) -> list[AccountChange]:
    """Bring the catalog's accounts in line with ``config``; return (and audit) the changes.

    ``actor`` is who the audit entries name (the daemon passes ``App.actor.display``).
    Everything happens in one transaction: either every change and its audit entry is
    committed, or none. Running it again with the same configuration changes nothing.
    """
    now = clock().astimezone(UTC)
    day = now.astimezone(config.archiver.zone).date().isoformat()
    changes: list[AccountChange] = []
    with catalog.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(_PG_RECONCILE_LOCK)))
        rows = {row.id: row for row in session.scalars(select(Account))}
        for settings in config.accounts:
            row = rows.get(settings.id)
            if row is None:
                changes.append(_register(session, settings, now))
                continue
            if row.status == INACTIVE:
                changes.append(_reactivate(row, settings, day))
            updated = _copy_settings(row, settings)
            if updated:
                changes.append(AccountChange(row.id, "updated", {"changed": updated}))
        configured = {a.id for a in config.accounts}
        for row in rows.values():
            if row.id not in configured and row.status != INACTIVE:
                changes.append(_deactivate(row, day))
        for change in changes:
            _audit(session, change, actor, now)
    return changes


def ensure_registered(
    catalog: Catalog, settings: AccountSettings, actor: str, now: datetime
) -> AccountChange | None:
    """Register one configured account if the catalog does not know it yet (audited)."""
    with catalog.session() as session:
        if session.get(Account, settings.id) is not None:
            return None
        change = _register(session, settings, now)
        _audit(session, change, actor, now)
        return change


def _audit(session: Session, change: AccountChange, actor: str, now: datetime) -> None:
    audit.append(
        session,
        actor=actor,
        action=change.audit_action,
        subject=change.account,
        detail=dict(change.detail),
        clock=lambda: now,
    )


def _register(session: Session, settings: AccountSettings, now: datetime) -> AccountChange:
    row = Account(id=settings.id, created_at=now, status="unknown")
    _copy_settings(row, settings)
    session.add(row)
    session.flush()
    return AccountChange(
        settings.id, "registered", {name: getattr(settings, name) for name in _COPIED}
    )


def _copy_settings(row: Account, settings: AccountSettings) -> dict[str, list[Any]]:
    """Copy the configured settings onto ``row``; ``{field: [old, new]}`` for each change."""
    changed: dict[str, list[Any]] = {}
    for name in _COPIED:
        old, new = getattr(row, name), getattr(settings, name)
        if old != new:
            changed[name] = [old, new]
            setattr(row, name, new)
    return changed


def _deactivate(row: Account, day: str) -> AccountChange:
    reason = f"removed from the configuration on {day}"
    detail = {"previous_status": row.status, "previous_enabled": row.enabled, "reason": reason}
    row.enabled = False
    row.status = INACTIVE
    row.status_reason = reason
    return AccountChange(row.id, "deactivated", detail)


def _reactivate(row: Account, settings: AccountSettings, day: str) -> AccountChange:
    detail = {"inactive_since": row.status_reason, "reason": f"back in the configuration on {day}"}
    row.status = "unknown"
    row.status_reason = None
    row.enabled = settings.enabled
    return AccountChange(row.id, "reactivated", detail)


# --- the read-only view --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastRun:
    """An account's most recent capture run."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class AccountView:
    """What ``archiver accounts`` shows of one account.

    ``configured`` says whether the configuration names it; ``status`` is ``inactive`` for
    an account that is not configured, even before the daemon has marked it so, and
    ``unknown`` for a configured account the catalog does not know yet.
    """

    id: str
    platform: str
    handle: str | None
    platform_id: str | None
    department: str | None
    series: str
    configured: bool
    enabled: bool
    status: str
    status_reason: str | None
    registered_at: datetime | None
    last_run: LastRun | None
    last_success_at: datetime | None
    items: int


def overview(config: Config, catalog: Catalog) -> list[AccountView]:
    """Every configured account (in configuration order), then every other catalog account."""
    with catalog.reader() as session:
        rows = {row.id: row for row in session.scalars(select(Account))}
        items = dict(
            session.execute(select(Item.account_id, func.count()).group_by(Item.account_id)).all()
        )
        latest = select(func.max(CaptureRun.id)).group_by(CaptureRun.account_id)
        runs = {
            run.account_id: LastRun(run.id, run.started_at, run.finished_at, run.status, run.reason)
            for run in session.scalars(select(CaptureRun).where(CaptureRun.id.in_(latest)))
        }
    views = [
        _configured_view(settings, rows.get(settings.id), runs, items)
        for settings in config.accounts
    ]
    configured = {a.id for a in config.accounts}
    for row in sorted(rows.values(), key=lambda r: r.id):
        if row.id in configured:
            continue
        views.append(
            AccountView(
                id=row.id,
                platform=row.platform,
                handle=row.handle,
                platform_id=row.platform_id,
                department=row.department,
                series=row.series,
                configured=False,
                enabled=False,
                status=INACTIVE,
                status_reason=row.status_reason
                if row.status == INACTIVE
                else "not in the configuration (the daemon marks it inactive at its next start)",
                registered_at=row.created_at,
                last_run=runs.get(row.id),
                last_success_at=row.last_success_at,
                items=items.get(row.id, 0),
            )
        )
    return views


def _configured_view(
    settings: AccountSettings,
    row: Account | None,
    runs: Mapping[str, LastRun],
    items: Mapping[str, int],
) -> AccountView:
    status: str
    reason: str | None
    if row is None:
        status, reason = "unknown", "not registered yet (the daemon registers it at its start)"
    elif row.status == INACTIVE:
        status, reason = "unknown", "back in the configuration (reactivated at the daemon's start)"
    else:
        status, reason = row.status, row.status_reason
    return AccountView(
        id=settings.id,
        platform=settings.platform,
        handle=settings.handle,
        platform_id=settings.platform_id,
        department=settings.department,
        series=settings.series,
        configured=True,
        enabled=settings.enabled,
        status=status,
        status_reason=reason,
        registered_at=row.created_at if row is not None else None,
        last_run=runs.get(settings.id),
        last_success_at=row.last_success_at if row is not None else None,
        items=items.get(settings.id, 0),
    )
