"""archiver.identity: who acts, including through sudo, and which roles they hold."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable

import pytest

from archiver.identity import (
    Actor,
    SystemUserDatabase,
    UserEntry,
    current_actor,
    resolve_actor,
    roles_for,
)

ROOT = UserEntry("root", 0, 0)
ARCHIVER = UserEntry("archiver", 999, 999)
ALICE = UserEntry("alice", 1000, 1000)
BOB = UserEntry("bob", 1001, 1001)

GROUPS = {0: "root", 999: "archiver", 1000: "alice", 1001: "bob", 2000: "records", 2001: "legal"}
MEMBERSHIP = {"root": [0], "archiver": [999], "alice": [1000, 2000], "bob": [1001, 2001]}


class FakeUsers:
    """A user database with root, the service account, alice (records) and bob (legal)."""

    def __init__(self, process_gids: Iterable[int] = (999,)) -> None:
        self.users = {u.name: u for u in (ROOT, ARCHIVER, ALICE, BOB)}
        self.process_gids = list(process_gids)

    def user_by_uid(self, uid: int) -> UserEntry | None:
        return next((u for u in self.users.values() if u.uid == uid), None)

    def user_by_name(self, name: str) -> UserEntry | None:
        return self.users.get(name)

    def group_ids_of(self, user: UserEntry) -> Iterable[int]:
        return MEMBERSHIP[user.name]

    def process_group_ids(self) -> Iterable[int]:
        return self.process_gids

    def group_name(self, gid: int) -> str | None:
        return GROUPS.get(gid)


def sudo_env(user: UserEntry) -> dict[str, str]:
    return {"SUDO_USER": user.name, "SUDO_UID": str(user.uid), "SUDO_GID": str(user.gid)}


def test_plain_user_is_the_real_user() -> None:
    actor = resolve_actor({}, 1000, FakeUsers(process_gids=[1000, 2000]))
    assert actor == Actor(user="alice", uid=1000, groups=("alice", "records"))
    assert actor.display == "alice"
    assert not actor.via_sudo


def test_sudo_to_the_service_account_acts_as_the_invoker() -> None:
    actor = resolve_actor(sudo_env(ALICE), ARCHIVER.uid, FakeUsers(process_gids=[999]))
    assert actor.user == "alice"
    assert actor.uid == 1000
    assert actor.via_sudo
    assert actor.sudo_user == "archiver"
    # the invoker's groups from the user database, not the service account's
    assert actor.groups == ("alice", "records")
    assert actor.display == "alice (via sudo as archiver)"


def test_sudo_to_root_acts_as_the_invoker() -> None:
    actor = resolve_actor(sudo_env(BOB), 0, FakeUsers(process_gids=[0]))
    assert (actor.user, actor.via_sudo, actor.sudo_user) == ("bob", True, "root")
    assert actor.groups == ("bob", "legal")
    assert actor.display == "bob (via sudo as root)"


def test_root_sudo_to_the_service_account_is_root() -> None:
    actor = resolve_actor(sudo_env(ROOT), ARCHIVER.uid, FakeUsers())
    assert actor.display == "root (via sudo as archiver)"


def test_a_plain_user_cannot_claim_to_be_someone_else() -> None:
    # alice exports SUDO_USER=bob with a consistent SUDO_UID: she is neither root nor
    # the service account, so the claim is ignored (and kept for the audit log).
    actor = resolve_actor(sudo_env(BOB), ALICE.uid, FakeUsers(process_gids=[1000, 2000]))
    assert actor.user == "alice"
    assert not actor.via_sudo
    assert actor.sudo_user is None
    assert actor.groups == ("alice", "records")
    assert actor.ignored_sudo_user == "bob"


def test_service_accounts_are_configurable() -> None:
    env = sudo_env(ALICE)
    default = resolve_actor(env, BOB.uid, FakeUsers())
    assert default.user == "bob"  # bob is not a service account by default
    configured = resolve_actor(env, BOB.uid, FakeUsers(), service_users=["bob"])
    assert configured.display == "alice (via sudo as bob)"
    unknown = resolve_actor(env, ARCHIVER.uid, FakeUsers(), service_users=["svc-archiver"])
    assert unknown.user == "archiver"


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"SUDO_USER": "alice"}, "no SUDO_UID"),
        ({"SUDO_USER": "alice", "SUDO_UID": "x"}, "SUDO_UID not a number"),
        ({"SUDO_USER": "alice", "SUDO_UID": "1001"}, "SUDO_UID is not alice's uid"),
        ({"SUDO_USER": "mallory", "SUDO_UID": "4242"}, "no such user"),
        ({"SUDO_USER": "", "SUDO_UID": "1000"}, "empty SUDO_USER"),
        ({"SUDO_UID": "1000"}, "no SUDO_USER"),
    ],
)
def test_inconsistent_sudo_variables_are_ignored(env: dict[str, str], why: str) -> None:
    actor = resolve_actor(env, ARCHIVER.uid, FakeUsers())
    assert actor.user == "archiver", why
    assert not actor.via_sudo, why
    assert actor.groups == ("archiver",), why


def test_sudo_to_oneself_is_not_via_sudo() -> None:
    actor = resolve_actor(sudo_env(ALICE), ALICE.uid, FakeUsers(process_gids=[1000, 2000]))
    assert actor == Actor(user="alice", uid=1000, groups=("alice", "records"))


def test_unknown_uid_and_unnamed_group() -> None:
    actor = resolve_actor({}, 4242, FakeUsers(process_gids=[4242, 2001]))
    assert actor.user == "#4242"
    assert actor.groups == ("4242", "legal")


def test_roles_for_maps_groups_to_roles() -> None:
    role_map = {"records": "officer", "legal": "legal", "it-admins": "admin"}
    alice = resolve_actor(sudo_env(ALICE), ARCHIVER.uid, FakeUsers())
    assert roles_for(alice, role_map) == frozenset({"officer"})
    both = Actor(user="carol", uid=1002, groups=("legal", "records", "staff"))
    assert roles_for(both, role_map) == frozenset({"officer", "legal"})
    root = resolve_actor({}, 0, FakeUsers(process_gids=[0]))
    assert roles_for(root, role_map) == frozenset()  # nothing implied for root


def test_actor_is_frozen() -> None:
    actor = Actor(user="alice", uid=1000)
    with pytest.raises(AttributeError):
        actor.user = "bob"  # type: ignore[misc]


def test_current_actor_matches_the_process() -> None:
    actor = current_actor()
    expected = resolve_actor(os.environ, os.getuid())
    assert actor == expected
    if not actor.via_sudo:
        assert actor.uid == os.getuid()
        assert actor.user == pwd.getpwuid(os.getuid()).pw_name


def test_current_actor_through_sudo_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root: only root or the service account trust SUDO_USER")
    someone = next((p for p in pwd.getpwall() if p.pw_uid != 0 and p.pw_name != "nobody"), None)
    if someone is None:
        pytest.skip("no non-root user on this machine")
    monkeypatch.setenv("SUDO_USER", someone.pw_name)
    monkeypatch.setenv("SUDO_UID", str(someone.pw_uid))
    actor = current_actor()
    assert actor.via_sudo
    assert actor.user == someone.pw_name
    assert actor.sudo_user == pwd.getpwuid(0).pw_name
    expected = {grp.getgrgid(g).gr_name for g in os.getgrouplist(someone.pw_name, someone.pw_gid)}
    assert set(actor.groups) == expected


def test_system_user_database_reads_the_real_tables() -> None:
    db = SystemUserDatabase()
    me = db.user_by_uid(os.getuid())
    assert me is not None
    assert db.user_by_name(me.name) == me
    assert me.gid in set(db.group_ids_of(me))
    assert os.getgid() in set(db.process_group_ids())
    assert db.user_by_name("no-such-user-archiver-test") is None
