"""Start-up steps of ``archiver run`` after spool recovery: accounts and stale leases."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from archiver.accounts import AccountChange, reconcile
from archiver.catalog.db import Catalog
from archiver.catalog.models import CaptureRun, Lease
from archiver.config import Config
from archiver.errors import CatalogError
from archiver.lease import release
from archiver.logging import get_logger

log = get_logger(__name__)

#: Tries at registering the accounts when other nodes insert the same rows at once.
REGISTER_ATTEMPTS = 3


def register_accounts(
    catalog: Catalog, config: Config, actor: str, now: datetime
) -> list[AccountChange]:
    """Reconcile the catalog's accounts with the configuration (audited); give each a lease row.

    New accounts are registered, changed settings copied, accounts removed from the
    configuration become inactive with their records untouched (``archiver.accounts``).
    Nodes sharing a catalog may start at once and insert the same new rows; the one that
    loses that race finds them on its next attempt.
    """
    for attempt in range(1, REGISTER_ATTEMPTS + 1):
        try:
            changes = reconcile(config, catalog, actor, clock=lambda: now)
            _lease_rows(catalog, config)
        except CatalogError as exc:
            if attempt == REGISTER_ATTEMPTS or not isinstance(exc.__cause__, IntegrityError):
                raise
            log.info("accounts registered meanwhile by another node; trying again")
            continue
        for change in changes:
            log.info("account reconciled", account=change.account, change=change.action)
        return changes
    return []  # pragma: no cover - the loop returns or raises


def _lease_rows(catalog: Catalog, config: Config) -> None:
    # Created here, where a race between starting nodes is retried, so that taking the
    # lease later only ever locks an existing row.
    with catalog.session() as session:
        for acct in config.accounts:
            if session.get(Lease, acct.id) is None:
                session.add(Lease(account_id=acct.id, generation=0))


def release_dead_leases(catalog: Catalog, node: str, *, clock: Callable[[], datetime]) -> int:
    """Release leases held by a process of this node that is gone (kill -9, power loss).

    A lease holder is ``<node>:<pid>``; on this node a pid that no longer exists cannot be
    capturing. Its runs still marked running are marked interrupted (their committed pages
    stand; spool recovery kept their records) and the lease is released, so this start
    resumes at once instead of waiting for the lease to expire. Leases of other nodes, and
    of live processes here (an ``archiver capture`` in a terminal), are left alone.
    Returns how many were released.
    """
    prefix = f"{node}:"
    with catalog.reader() as s:
        held = [
            (lease.account_id, lease.holder or "", lease.generation)
            for lease in s.scalars(
                select(Lease).where(Lease.holder.startswith(prefix, autoescape=True))
            )
        ]
    released = 0
    for account_id, holder, generation in held:
        pid = holder.removeprefix(prefix)
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with catalog.session() as s:
            for run in s.scalars(
                select(CaptureRun).where(
                    CaptureRun.account_id == account_id,
                    CaptureRun.lease_generation == generation,
                    CaptureRun.status == "running",
                )
            ):
                run.status = "interrupted"
                run.finished_at = clock()
                run.reason = f"the process {holder} ended during the run; found at start-up"
        release(catalog, account_id, generation)
        released += 1
        log.warning("lease of a dead process released", account=account_id, holder=holder)
    return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
