"""``archiver retention report | reports | approve | transfer | receipt`` through the real CLI.

One installation holds the captured corpus, placed in series as in
tests/disposition/test_report.py. Staff act through sudo as the test runs as root: the
users ``daemon`` and ``bin`` are officers (their OS groups map to the role), ``nobody`` is
not; ``ARCHIVER_NOW`` sets the moment decisions are made at.
"""

from __future__ import annotations

import json
import os
import pwd
from dataclasses import dataclass, replace
from pathlib import Path

import bagit
import pytest
from sqlalchemy import select

from archiver.catalog.models import AuditEntry
from archiver.errors import PermissionDenied, RetentionError
from tests.commands.clitools import Workspace, describe, make_workspace
from tests.corpus import Corpus, capture_corpus
from tests.disposition.test_report import (
    AFTER_NOTICE_ENDS,
    COMMENTS,
    NOTICE,
    POSTS,
    place_in_series,
)

CONFIG = """
[roles]
daemon = "officer"
bin = "officer"

[retention]
require_approval = true
report_ttl = "30d"
"""
NOW = {"ARCHIVER_NOW": AFTER_NOTICE_ENDS.isoformat()}
LATER = {"ARCHIVER_NOW": "2034-04-03T12:00:00+00:00"}
EXPIRED = {"ARCHIVER_NOW": "2034-06-01T00:00:00+00:00"}


def _user(name: str) -> dict[str, str]:
    entry = pwd.getpwnam(name)
    return {"SUDO_USER": name, "SUDO_UID": str(entry.pw_uid), "SUDO_GID": str(entry.pw_gid)}


def _users_exist() -> bool:
    try:
        return all(pwd.getpwnam(n) for n in ("daemon", "bin", "nobody"))
    except KeyError:
        return False


pytestmark = pytest.mark.skipif(
    not (os.getuid() == 0 and _users_exist()),
    reason="acts through sudo as the users daemon, bin and nobody: needs root and those users",
)


@dataclass(frozen=True)
class Installed:
    ws: Workspace
    corpus: Corpus

    def run(self, who: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = self.ws.archiver(*args, env={**_user(who), **(env or {})})
        return result.returncode, result.stdout + result.stderr

    def ok(self, who: str, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.ws.archiver(*args, env={**_user(who), **(env or {})})
        assert result.returncode == 0, describe(result)
        assert "Traceback" not in result.stderr
        return result.stdout

    def fast(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        who: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """The CLI's entry point in this process, for commands refused before they start."""
        ws = replace(self.ws, env={**self.ws.env, **_user(who), **(env or {})})
        outcome = ws.in_process(capsys, monkeypatch, *args)
        return outcome.returncode, outcome.stdout + outcome.stderr

    def audit(self, action: str) -> list[AuditEntry]:
        with self.ws.open_catalog() as catalog, catalog.reader() as s:
            entries = s.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            ).all()
            s.expunge_all()
        return list(entries)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("disposition-cli")
    ws = make_workspace(root / "install", extra=CONFIG)
    ws.ok("catalog", "upgrade")  # root acting directly is the service itself
    with ws.open_catalog() as catalog:
        corpus = capture_corpus(catalog, ws.store(), root / "corpus")
        place_in_series(catalog, corpus)
    return Installed(ws, corpus)


def test_someone_without_the_officer_role_is_refused_with_exit_8_and_audited(
    installed: Installed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for args in (
        ("retention", "report"),
        ("retention", "reports"),
        ("retention", "approve", "01J0ANYREPORT0000000000000"),
        ("retention", "transfer", "01J0ANYREPORT0000000000000", "--out", str(tmp_path / "b")),
        ("retention", "receipt", "01J0ANYREPORT0000000000000", "--reference", "R",
         "--received-on", "2034-04-02"),
    ):  # fmt: skip
        code, output = installed.fast(capsys, monkeypatch, "nobody", *args)
        assert code == PermissionDenied.exit_code == 8, output
        assert f"nobody (via sudo as root) may not run `archiver {' '.join(args[:2])}`" in output
    # And through the console script in its own process, as staff would run it.
    code, output = installed.run("nobody", "retention", "approve", "01J0ANYREPORT0000000000000")
    assert code == 8, output
    assert "Traceback" not in output
    denied = installed.audit("permission.denied")
    assert [(e.actor, e.subject) for e in denied][-6:] == [
        ("nobody (via sudo as root)", "retention report"),
        ("nobody (via sudo as root)", "retention reports"),
        ("nobody (via sudo as root)", "retention approve"),
        ("nobody (via sudo as root)", "retention transfer"),
        ("nobody (via sudo as root)", "retention receipt"),
        ("nobody (via sudo as root)", "retention approve"),
    ]
    assert not (tmp_path / "b").exists()


def test_an_officer_sees_the_report_as_a_table_with_groups_notice_and_next_steps(
    installed: Installed,
) -> None:
    out = installed.ok("daemon", "retention", "report", env=NOW)

    assert "disposition report " in out
    rows = {
        tuple(line.split("│")[1:3]): line
        for line in out.splitlines()
        if "EXAMPLE-" in line and "│" in line and "20" in line
    }
    posts = next(
        line for key, line in rows.items() if "EXAMPLE-POSTS" in key[0] and "2026-02" in key[1]
    )
    assert "transfer" in posts and "not required" in posts
    comments = next(
        line for key, line in rows.items() if "EXAMPLE-COMMENTS" in key[0] and "2026-01" in key[1]
    )
    assert "destroy" in comments and f"notice {NOTICE}" in comments
    assert "eligible: 6 items" in out
    assert "kept: 2 awaiting-event, 1 held, 1 retained" in out
    assert "expires 2034-05-01" in out
    assert "needs a second officer's approval: archiver retention approve" in out
    assert "archiver retention transfer" in out


def test_report_approve_transfer_receipt_from_start_to_end(
    installed: Installed, tmp_path: Path
) -> None:
    corpus = installed.corpus
    made = json.loads(installed.ok("daemon", "retention", "report", "--json", env=NOW))
    report_id = made["report"]
    assert set(made["item_ids"]) == corpus.ids(*POSTS, *COMMENTS)
    assert made["created_by"] == "daemon (via sudo as root)"
    assert made["status"] == "open"
    assert made["expires_at"] == "2034-05-01T12:00:00+00:00"
    groups = made["summary"]["groups"]
    assert [(g["series"], g["month"], g["items"]) for g in groups] == [
        ("EXAMPLE-COMMENTS", "2026-01", 3),
        ("EXAMPLE-POSTS", "2026-01", 2),
        ("EXAMPLE-POSTS", "2026-02", 1),
    ]

    # A second officer approves; approving twice is refused.
    assert "approved by bin (via sudo as root)" in installed.ok(
        "bin", "retention", "approve", report_id, "--note", "checked", env=NOW
    )
    code, output = installed.run("bin", "retention", "approve", report_id, env=NOW)
    assert code == RetentionError.exit_code == 7, output
    assert "already approved" in output

    out = installed.ok(
        "daemon", "retention", "transfer", report_id, "--out", str(tmp_path / "whs"), env=NOW
    )
    assert "3 items of series EXAMPLE-POSTS" in out
    assert f"archiver retention receipt {report_id}" in out
    bag = bagit.Bag(str(tmp_path / "whs"))
    bag.validate()
    assert bag.info["Source-Organization"] == "City of Testing"

    out = installed.ok(
        "daemon", "retention", "receipt", report_id,
        "--reference", "WHS-ACC-2034-12", "--received-on", "2034-04-02", env=LATER,
    )  # fmt: skip
    assert "3 transferred items may now be disposed of" in out

    listed = json.loads(installed.ok("bin", "retention", "reports", "--json", env=LATER))
    mine = next(r for r in listed if r["report"] == report_id)
    assert mine["status"] == "open"
    assert mine["items"] == 6
    assert mine["approvals"] == ["bin (via sudo as root)"]
    receipt = mine["transfer_receipt"]
    assert receipt["reference"] == "WHS-ACC-2034-12"
    # The day is the City's: midnight in Chicago.
    assert receipt["received_on"] == "2034-04-02T05:00:00+00:00"
    assert set(receipt["items"]) == corpus.ids(*POSTS)
    table = installed.ok("bin", "retention", "reports", env=LATER)
    assert report_id in table and "WHS-ACC-2034-12" in table

    # Once it has expired, nothing more can be done with it.
    code, output = installed.run("daemon", "retention", "approve", report_id, env=EXPIRED)
    assert code == 7, output
    assert "make a new report: archiver retention report" in output
    listed = json.loads(installed.ok("bin", "retention", "reports", "--json", env=EXPIRED))
    assert next(r for r in listed if r["report"] == report_id)["status"] == "expired"

    actions = {
        action: [(e.actor, e.subject) for e in installed.audit(action)]
        for action in ("retention.approve", "retention.transfer", "retention.receipt")
    }
    assert actions == {
        "retention.approve": [("bin (via sudo as root)", report_id)],
        "retention.transfer": [("daemon (via sudo as root)", report_id)],
        "retention.receipt": [("daemon (via sudo as root)", report_id)],
    }
    assert ("daemon (via sudo as root)", report_id) in [
        (e.actor, e.subject) for e in installed.audit("retention.report")
    ]
    installed.ws.ok("audit", "verify")


def test_a_receipt_dated_in_the_future_or_for_an_unknown_report_is_refused(
    installed: Installed,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(*args: str) -> tuple[int, str]:
        return installed.fast(capsys, monkeypatch, "daemon", "retention", *args, env=NOW)

    code, output = run("receipt", "01J0ANYREPORT0000000000000", "--reference", "R-1",
                       "--received-on", "2034-04-05")  # fmt: skip
    assert code == 7 and "in the future" in output
    code, output = run("receipt", "01J0ANYREPORT0000000000000", "--reference", "R-1",
                       "--received-on", "April 1st")  # fmt: skip
    assert code == 2 and "is not a date such as 2031-05-02" in output
    code, output = run("receipt", "01J0NOSUCHREPORT0000000000", "--reference", "R-1",
                       "--received-on", "2034-04-01")  # fmt: skip
    assert code == 7 and "no disposition report" in output
    code, output = run("approve", "01J0NOSUCHREPORT0000000000")
    assert code == 7 and "no disposition report" in output and "retention reports" in output
