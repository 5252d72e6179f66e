"""What a command works with: the configuration and the parts built from it.

Parts are built on first use, so a command that only reads the catalog never touches the
store, and a configuration error surfaces before anything is opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import cached_property
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from archiver import __version__, audit
from archiver.catalog import Catalog, require_current
from archiver.config import Config, LocalStoreSettings, load_config
from archiver.errors import ArchiverError, PermissionDenied
from archiver.evaluate import policy_of
from archiver.identity import DEFAULT_SERVICE_USERS, Actor, current_actor, roles_for
from archiver.retention_locks import lock_until_for
from archiver.series import Schedules, load_schedules
from archiver.store import LocalStore, Store
from archiver.store.locking import LockingStore
from archiver.warc import WarcInfo


def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version: the locked set, as it really is here."""
    versions = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            versions[name.lower()] = dist.version
    return versions


#: Roles a command may require; ``admin`` may do everything.
ROLES = ("officer", "legal", "admin")


class App:
    """The configuration, the catalog, the store and the person acting."""

    def __init__(self, config_path: Path, *, actor: Actor | None = None) -> None:
        self.config_path = config_path
        self._actor = actor

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def actor(self) -> Actor:
        return self._actor or current_actor()

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog.open(self.config.catalog.sqlalchemy_url())

    def checked_catalog(self) -> Catalog:
        """The catalog, refusing a schema that does not match this code."""
        require_current(self.catalog)
        return self.catalog

    @cached_property
    def schedules(self) -> Schedules:
        """The retention schedules: ``[retention] schedules_dir``, or the shipped ones."""
        return load_schedules(self.config.retention.schedules_dir)

    @cached_property
    def store(self) -> Store:
        """The configured backend; every object it stores is locked by the retention seam."""
        settings = self.config.store
        backend: Store
        if isinstance(settings, LocalStoreSettings):
            backend = LocalStore(settings.path)
        else:
            # Imported here: boto3 is loaded only by commands that use an S3 store.
            from archiver.store.s3 import S3Store

            backend = S3Store.from_settings(settings)
        policy = policy_of(self.config)
        lock_until = lock_until_for(self.schedules, policy, self.config.retention.default_lock)
        return LockingStore(backend, lock_until)

    def checked_store(self) -> Store:
        """The store, after checking it is reachable and set up as configured (start-up)."""
        self.store.check()
        return self.store

    @property
    def spool_dir(self) -> Path:
        return self.config.spool.path

    def record(
        self, action: str, subject: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Append an audit entry attributed to the acting person."""
        with self.catalog.session() as session:
            audit.append(
                session,
                actor=self.actor.display,
                action=action,
                subject=subject,
                detail=dict(detail or {}),
            )

    def require(self, *allowed: str, command: str) -> None:
        """Refuse (and audit the refusal) unless the actor holds one of ``allowed`` roles.

        With no ``[roles]`` configured every user may act: a single-operator installation
        relies on file permissions alone. Root and the service account acting directly
        (not through sudo) are the service itself and may act as admin.
        """
        role_map = self.config.roles
        if not role_map:
            return
        actor = self.actor
        held = set(roles_for(actor, role_map))
        if not actor.via_sudo and actor.user in ("root", *DEFAULT_SERVICE_USERS):
            held.add("admin")
        if held & {*allowed, "admin"}:
            return
        # The refusal stands even when the catalog cannot record it.
        with contextlib.suppress(ArchiverError):
            self.record(
                "permission.denied",
                subject=command,
                detail={
                    "needs": sorted(allowed),
                    "holds": sorted(held),
                    "groups": list(actor.groups),
                },
            )
        raise PermissionDenied(
            f"{actor.display} may not run `archiver {command}`: it needs the role "
            f"{' or '.join(sorted(allowed))}, granted to OS groups in [roles] of {self.config_path}"
        )

    def warc_info(self) -> WarcInfo:
        """What every WARC file's ``warcinfo`` record says about who wrote it, and with what."""
        return WarcInfo(
            software=f"city-archiver/{__version__}",
            dependencies=installed_versions(),
            operator=self.config.archiver.operator,
            node=self.config.archiver.node,
        )

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()
