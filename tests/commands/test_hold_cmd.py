"""``archiver hold``: create, list, release, close and sync, through the real console script."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from sqlalchemy import select

from archiver.catalog.models import AuditEntry, StoredFile
from archiver.control import read_facts
from tests.commands.clitools import Outcome, Workspace, describe, make_workspace
from tests.corpus import capture_corpus

NOBODY_UID = 65534
ROLES = '\n[roles]\nrecords = "officer"\nnogroup = "legal"\n'


def _nobody_exists() -> bool:
    try:
        return pwd.getpwuid(NOBODY_UID).pw_name == "nobody"
    except KeyError:
        return False


needs_root_and_nobody = pytest.mark.skipif(
    not (os.getuid() == 0 and _nobody_exists()),
    reason="needs to run as root with a 'nobody' user (uid 65534), to act as sudo does",
)
#: What `sudo -u archiver archiver ...` run by the user nobody (group nogroup) looks like.
SUDO_NOBODY = {"SUDO_USER": "nobody", "SUDO_UID": str(NOBODY_UID), "SUDO_GID": str(NOBODY_UID)}


def _upgraded(ws: Workspace, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch) -> None:
    outcome = ws.in_process(capsys, mp, "catalog", "upgrade")
    assert outcome.returncode == 0, describe(outcome)


def _captured(ws: Workspace, root: Path, capsys: Any, mp: pytest.MonkeyPatch) -> None:
    _upgraded(ws, capsys, mp)
    with ws.open_catalog() as catalog:
        capture_corpus(catalog, ws.store(), root / "corpus")


def held_keys(ws: Workspace) -> set[str]:
    """Keys under legal hold in the workspace's store (sidecars), checked against the catalog."""
    store = ws.store()
    with ws.open_catalog() as catalog, catalog.reader() as s:
        rows = s.execute(
            select(StoredFile.key, StoredFile.legal_hold).where(StoredFile.kind != "control")
        ).all()
    held = {key for key, _ in rows if store.head(key).legal_hold}
    assert held == {key for key, flag in rows if flag}
    return held


def one_line_error(result: Outcome | CompletedProcess[str], *fragments: str) -> None:
    """The refusal is one line on stderr (after click's usage lines, for a usage error)."""
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error: ", "Error: ")), result.stderr
    for fragment in fragments:
        assert fragment in last, last


def test_a_hold_is_placed_listed_and_released_and_the_store_follows(
    tmp_path: Path,
    any_workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = any_workspace
    _captured(ws, tmp_path, capsys, monkeypatch)

    def quick(*args: str) -> str:
        """A reading command, in this process (the changes run as the real console script)."""
        outcome = ws.in_process(capsys, monkeypatch, *args)
        assert outcome.returncode == 0, describe(outcome)
        return outcome.stdout

    created = ws.archiver(
        "hold", "create", "--case", "LIT-2026-04", "--reason", "Smith v. City",
        "--account", "mke-bluesky", "--from", "2026-01-01", "--to", "2026-01-31", "--json",
    )  # fmt: skip

    assert created.returncode == 0, describe(created)
    doc = json.loads(created.stdout)
    hold = doc["hold"]
    assert (hold["id"], hold["case"], hold["kind"], hold["accounts"]) == (
        1, "LIT-2026-04", "legal", ["mke-bluesky"],
    )  # fmt: skip
    # Local dates in America/Chicago (CST), the --to day included whole.
    assert hold["created_from"] == "2026-01-01T06:00:00+00:00"
    assert hold["created_to"] == "2026-02-01T05:59:59.999999+00:00"
    assert hold["created_by"] == "root" and hold["status"] == "active"
    assert doc["sync"]["covered_items"] == 4  # the snow post and its three replies
    assert doc["fact"].startswith("control/facts/")
    held = held_keys(ws)
    assert held and sorted(doc["sync"]["placed"]) == sorted(held)

    again = json.loads(quick("hold", "sync", "--json"))
    assert (again["placed"], again["held"], again["covered_items"]) == ([], len(held), 4)

    listed = quick("hold", "list")
    for shown in (
        "LIT-2026-04", "legal", "accounts mke-bluesky; created 2026-01-01 to 2026-01-31",
        "by root", "active",
    ):  # fmt: skip
        assert shown in listed, listed

    released = ws.archiver("hold", "release", "1", "--reason", "case settled")

    assert released.returncode == 0, describe(released)
    assert "hold 1 released (legal hold, case LIT-2026-04)" in released.stdout
    assert f"store legal holds: 0 of 11 stored files held (0 placed, {len(held)} lifted" in (
        released.stdout
    )
    assert held_keys(ws) == set()
    assert "no active holds" in quick("hold", "list")
    everything = json.loads(quick("hold", "list", "--all", "--json"))["holds"]
    assert [(h["id"], h["active"], h["released_by"], h["release_reason"]) for h in everything] == [
        (1, False, "root", "case settled")
    ]
    assert (
        everything[0]["status"].startswith("released ")
        and "case settled" in (everything[0]["status"])
    )
    facts = list(read_facts(ws.store()))
    assert [(f.kind, f.body["hold"]) for f in facts] == [("hold.created", 1), ("hold.released", 1)]
    with ws.open_catalog() as catalog, catalog.reader() as s:
        actions = s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.action.like("hold.%"))
            .order_by(AuditEntry.seq)
        ).all()
    assert actions == ["hold.create", "hold.sync", "hold.release", "hold.sync"]
    quick("audit", "verify")


def test_a_public_records_request_is_closed_and_listed_until_60_days_after_its_denial(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    _upgraded(ws, capsys, monkeypatch)

    def listed(moment: str, *args: str) -> str:
        monkeypatch.setitem(ws.env, "ARCHIVER_NOW", moment)
        outcome = ws.in_process(capsys, monkeypatch, "hold", "list", *args)
        assert outcome.returncode == 0, describe(outcome)
        return outcome.stdout

    def at(moment: str) -> dict[str, str]:
        return {"ARCHIVER_NOW": moment}

    created = ws.archiver(
        "hold", "create", "--type", "prr", "--case", "PRR-2027-001",
        "--reason", "request from J. Doe", "--account", "mke-facebook",
        env=at("2027-01-02T15:00:00+00:00"),
    )  # fmt: skip
    assert created.returncode == 0, describe(created)
    assert "status: prr: open" in created.stdout

    closed = ws.archiver(
        "hold", "close", "1", "--denied-on", "2027-01-05", env=at("2027-01-06T15:00:00+00:00")
    )

    assert closed.returncode == 0, describe(closed)
    assert "status: prr: denied 2027-01-05, holds until 2027-03-06" in closed.stdout
    during = listed("2027-02-01T12:00:00+00:00")
    assert "prr: denied 2027-01-05, holds until 2027-03-06" in during
    assert "no active holds" in listed("2027-03-07T12:00:00+00:00")
    (h,) = json.loads(listed("2027-03-07T12:00:00+00:00", "--all", "--json"))["holds"]
    assert h["denied_on"] == "2027-01-05T06:00:00+00:00"  # local midnight in Chicago
    assert h["holds_until"] == "2027-03-06T06:00:00+00:00"
    assert (h["active"], h["status"]) == (False, "prr: denied 2027-01-05, ended 2027-03-06")

    monkeypatch.setitem(ws.env, "ARCHIVER_NOW", "2027-01-08T15:00:00+00:00")
    again = ws.in_process(capsys, monkeypatch, "hold", "close", "1", "--granted-on", "2027-01-07")
    assert again.returncode == 2
    one_line_error(again, "hold 1 (case PRR-2027-001) was already closed", "denied")
    assert [f.kind for f in read_facts(ws.store())] == ["hold.created", "hold.closed"]


def test_mistakes_are_refused_with_one_line_and_exit_2(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    _upgraded(ws, capsys, monkeypatch)

    def run(*args: str) -> Outcome:
        return ws.in_process(capsys, monkeypatch, "hold", *args)

    legal = ("--case", "LIT-1", "--reason", "audit")
    assert run("create", *legal, "--account", "mke-facebook").returncode == 0

    cases = [
        (("release", "9", "--reason", "x"), ("there is no hold 9", "hold list --all")),
        (("close", "1", "--granted-on", "2026-01-02"), ("is a legal hold", "hold release 1")),
        (("create", *legal, "--from", "2026-02-01", "--to", "2026-01-01"),
         ("--from 2026-02-01 is after --to 2026-01-01",)),
        (("create", *legal, "--account", "mke-nowhere"), ("no account 'mke-nowhere'",)),
        (("create", *legal, "--query", '"Elm'), ("quote",)),
        (("close", "1"), ("exactly one of --granted-on DATE and --denied-on DATE",)),
        (("close", "1", "--denied-on", "01/05/2027"), ("is not a date (YYYY-MM-DD)",)),
    ]  # fmt: skip
    for args, fragments in cases:
        outcome = run(*args)
        assert outcome.returncode == 2, (args, describe(outcome))
        one_line_error(outcome, *fragments)

    assert run("release", "1", "--reason", "closed").returncode == 0
    twice = run("release", "1", "--reason", "closed")
    assert twice.returncode == 2
    one_line_error(twice, "hold 1 (case LIT-1) was already released")
    assert [f.kind for f in read_facts(ws.store())] == ["hold.created", "hold.released"]


@needs_root_and_nobody
def test_legal_staff_may_place_a_hold_but_releasing_it_is_refused_with_exit_8_and_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path, extra=ROLES)
    _upgraded(ws, capsys, monkeypatch)

    created = ws.archiver(
        "hold", "create", "--case", "PRR-5", "--type", "prr", "--reason", "request",
        env=SUDO_NOBODY,
    )  # fmt: skip
    refused = ws.archiver("hold", "release", "1", "--reason", "done", env=SUDO_NOBODY)

    assert created.returncode == 0, describe(created)
    assert refused.returncode == 8, describe(refused)
    one_line_error(refused, "nobody (via sudo as root) may not run `archiver hold release`")
    assert "needs the role officer" in refused.stderr
    with ws.open_catalog() as catalog, catalog.reader() as s:
        entries = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action.in_(("hold.create", "hold.release", "permission.denied"))
            )
        ).all()
    assert [(e.action, e.actor, e.subject) for e in entries] == [
        ("hold.create", "nobody (via sudo as root)", "hold:1"),
        ("permission.denied", "nobody (via sudo as root)", "hold release"),
    ]
    assert entries[1].detail["needs"] == ["officer"] and entries[1].detail["holds"] == ["legal"]
    listed = ws.in_process(capsys, monkeypatch, "hold", "list", "--json")
    assert json.loads(listed.stdout)["holds"][0]["active"] is True
    (fact,) = read_facts(ws.store())
    assert fact.actor == "nobody (via sudo as root)"
