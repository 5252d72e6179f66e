"""Who is acting: the operating-system identity behind a CLI command, and its roles.

The archiver has no accounts of its own. A command is done by the person the operating
system says runs it (DESIGN, "Who is acting"):

- normally the **real user** of the process (``getpwuid(getuid())``);
- when staff run the CLI **through sudo as the service account**
  (``sudo -u archiver archiver search ...``), the person who invoked sudo, named by the
  ``SUDO_USER`` and ``SUDO_UID`` variables sudo sets.

Environment variables can be set by anyone, so ``SUDO_USER`` is believed only when all of
these hold (see :func:`resolve_actor`):

1. ``SUDO_USER`` is set and not empty, and ``SUDO_UID`` is set and is an integer;
2. ``SUDO_USER`` names an existing user whose uid is ``SUDO_UID`` (consistent);
3. ``SUDO_UID`` differs from the process's real uid (the command really runs as someone
   else than the invoker; ``sudo -u alice`` run by alice changes nothing);
4. the process's real uid is **privileged**: root (0) or one of the service accounts.

Rule 4 is what stops spoofing: a plain user who exports ``SUDO_USER=bob SUDO_UID=1001``
still runs as herself, which is neither root nor the service account, so she is recorded
as herself (and the ignored claim is kept in :attr:`Actor.ignored_sudo_user`). Only sudo
(or someone who already is root or the service account, and so controls the archive
anyway) can start a privileged process with chosen ``SUDO_*`` values, and sudo always
overwrites them with the true invoker.

Groups decide roles (:func:`roles_for`). Through sudo they are the invoking user's groups
from the user database (``os.getgrouplist``), since the process itself carries the
service account's groups; otherwise they are the process's own groups (its real gid and
supplementary groups), which is what the kernel enforces for that session.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_SERVICE_USERS",
    "Actor",
    "SystemUserDatabase",
    "UserDatabase",
    "UserEntry",
    "current_actor",
    "resolve_actor",
    "roles_for",
]

DEFAULT_SERVICE_USERS: tuple[str, ...] = ("archiver",)
"""The account the systemd unit runs as; sudo to it identifies the invoking user."""


@dataclass(frozen=True)
class UserEntry:
    """One user of the user database."""

    name: str
    uid: int
    gid: int


class UserDatabase(Protocol):
    """The lookups identity needs, so tests can supply their own users and groups."""

    def user_by_uid(self, uid: int) -> UserEntry | None:
        """The user with this uid, or None."""
        ...

    def user_by_name(self, name: str) -> UserEntry | None:
        """The user with this name, or None."""
        ...

    def group_ids_of(self, user: UserEntry) -> Iterable[int]:
        """The gids of every group *user* belongs to (primary included)."""
        ...

    def process_group_ids(self) -> Iterable[int]:
        """The gids of the running process: real gid and supplementary groups."""
        ...

    def group_name(self, gid: int) -> str | None:
        """The name of group *gid*, or None if it has none."""
        ...


class SystemUserDatabase:
    """:class:`UserDatabase` backed by ``pwd``, ``grp`` and ``os`` (NSS: files, LDAP, ...)."""

    def user_by_uid(self, uid: int) -> UserEntry | None:
        """The user with this uid, or None."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return None
        return UserEntry(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def user_by_name(self, name: str) -> UserEntry | None:
        """The user with this name, or None."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return UserEntry(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def group_ids_of(self, user: UserEntry) -> Iterable[int]:
        """The gids of every group *user* belongs to (primary included)."""
        return os.getgrouplist(user.name, user.gid)

    def process_group_ids(self) -> Iterable[int]:
        """The gids of the running process: real gid and supplementary groups."""
        return [os.getgid(), *os.getgroups()]

    def group_name(self, gid: int) -> str | None:
        """The name of group *gid*, or None if it has none."""
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return None


@dataclass(frozen=True)
class Actor:
    """The person a command is attributed to.

    Attributes:
        user: the acting person's user name (the sudo invoker when :attr:`via_sudo`);
            ``#<uid>`` for a uid without a user-database entry.
        uid: that person's uid.
        via_sudo: whether the command runs through sudo as another account.
        sudo_user: when :attr:`via_sudo`, the account sudo runs the command as (the
            service account, or ``root``); None otherwise.
        groups: names of the acting person's groups, sorted (see the module docstring).
        ignored_sudo_user: a ``SUDO_USER`` value present but not believed; worth auditing.
    """

    user: str
    uid: int
    via_sudo: bool = False
    sudo_user: str | None = None
    groups: tuple[str, ...] = ()
    ignored_sudo_user: str | None = None

    @property
    def display(self) -> str:
        """``alice``, or ``alice (via sudo as archiver)``."""
        if self.via_sudo:
            return f"{self.user} (via sudo as {self.sudo_user})"
        return self.user


def _group_names(gids: Iterable[int], lookup: UserDatabase) -> tuple[str, ...]:
    names = set()
    for gid in gids:
        name = lookup.group_name(gid)
        names.add(name if name is not None else str(gid))
    return tuple(sorted(names))


def _trusted_sudo_invoker(
    env: Mapping[str, str],
    uid: int,
    lookup: UserDatabase,
    service_users: Collection[str],
) -> UserEntry | None:
    """The sudo invoker if ``SUDO_USER`` passes rules 1-4 of the module docstring."""
    name = env.get("SUDO_USER", "")
    try:
        sudo_uid = int(env.get("SUDO_UID", ""))
    except ValueError:
        return None
    if not name or sudo_uid == uid:
        return None
    invoker = lookup.user_by_name(name)
    if invoker is None or invoker.uid != sudo_uid:
        return None
    if uid == 0:
        return invoker
    service_uids = {e.uid for e in map(lookup.user_by_name, service_users) if e is not None}
    return invoker if uid in service_uids else None


def resolve_actor(
    env: Mapping[str, str],
    uid: int,
    lookup: UserDatabase | None = None,
    *,
    service_users: Collection[str] = DEFAULT_SERVICE_USERS,
) -> Actor:
    """Decide who acts, from the environment *env* and the process's real *uid*.

    Pure apart from *lookup* (the system user database by default). ``SUDO_USER`` is
    believed under the four rules of the module docstring, with *service_users* the
    accounts (besides root) that staff may sudo to.
    """
    db: UserDatabase = lookup if lookup is not None else SystemUserDatabase()
    process_user = db.user_by_uid(uid)
    process_name = process_user.name if process_user is not None else f"#{uid}"

    invoker = _trusted_sudo_invoker(env, uid, db, service_users)
    if invoker is not None:
        return Actor(
            user=invoker.name,
            uid=invoker.uid,
            via_sudo=True,
            sudo_user=process_name,
            groups=_group_names(db.group_ids_of(invoker), db),
        )
    claimed = env.get("SUDO_USER") or None
    return Actor(
        user=process_name,
        uid=uid,
        groups=_group_names(db.process_group_ids(), db),
        ignored_sudo_user=claimed if claimed is not None and claimed != process_name else None,
    )


def current_actor(*, service_users: Collection[str] = DEFAULT_SERVICE_USERS) -> Actor:
    """Who runs this process: :func:`resolve_actor` on ``os.environ`` and ``os.getuid()``."""
    return resolve_actor(os.environ, os.getuid(), service_users=service_users)


def roles_for(actor: Actor, role_map: Mapping[str, str]) -> frozenset[str]:
    """The roles *actor* holds: ``role_map[group]`` for each of the actor's groups.

    *role_map* maps OS group names to roles (``{"records": "officer"}``). Nothing is
    implied: root gets a role only if one of its groups is mapped.
    """
    return frozenset(role_map[g] for g in actor.groups if g in role_map)
