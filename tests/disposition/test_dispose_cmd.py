"""``archiver retention dispose REPORT [--resume] [--json]`` through the real CLI.

One installation holds the captured corpus placed in series (tests/disposition/
disposing.py). Staff act through sudo as the test runs as root: ``daemon`` is an officer
(its OS group maps to the role), ``nobody`` is not. ``ARCHIVER_NOW`` is the moment the
command decides at. The refusals come first, on the untouched archive; then an officer
carries the report out, with the logs at DEBUG level, and what the command said and logged
is checked for the destroyed items' words.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archiver.catalog.models import AuditEntry, DispositionRun
from tests.commands.clitools import Outcome, describe
from tests.disposition.disposing import (
    BEFORE_NOTICE_ENDS,
    BRUSH,
    ELIGIBLE,
    LEAVES_ALT,
    NOTICE,
    NOW,
    OAK,
    PLOW,
    Installation,
    catalogued_records,
    installation,
    stored_files,
)

ROLES = """
[roles]
daemon = "officer"
"""


def _user(name: str) -> dict[str, str]:
    entry = pwd.getpwnam(name)
    return {"SUDO_USER": name, "SUDO_UID": str(entry.pw_uid), "SUDO_GID": str(entry.pw_gid)}


def _users_exist() -> bool:
    try:
        return all(pwd.getpwnam(n) for n in ("daemon", "nobody"))
    except KeyError:
        return False


pytestmark = pytest.mark.skipif(
    not (os.getuid() == 0 and _users_exist()),
    reason="acts through sudo as the users daemon and nobody: needs root and those users",
)


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("dispose-cli")
    found = installation(root, extra=ROLES, logging_level="DEBUG")
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="module")
def report_id(inst: Installation) -> str:
    return inst.report(NOW)


def fast(
    inst: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    who: str,
    *args: str,
    now: str = NOW.isoformat(),
) -> Outcome:
    """The CLI's entry point in this process (for what is refused before it starts)."""
    ws = replace(inst.ws, env={**inst.ws.env, **_user(who), "ARCHIVER_NOW": now})
    return ws.in_process(capsys, monkeypatch, *args)


def audit_actions(inst: Installation, action: str) -> list[AuditEntry]:
    with inst.catalog.reader() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        s.expunge_all()
    return entries


def test_someone_without_the_officer_role_is_refused_with_exit_8_and_audited(
    inst: Installation,
    report_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = fast(inst, capsys, monkeypatch, "nobody", "retention", "dispose", report_id)
    assert refused.returncode == 8, describe(refused)
    assert "officer" in refused.stderr
    denied = audit_actions(inst, "permission.denied")
    assert any(e.subject == "retention dispose" for e in denied)


def test_disposition_before_the_notice_period_ends_is_refused_and_destroys_nothing(
    inst: Installation,
    report_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records, files = catalogued_records(inst.catalog), stored_files(inst.catalog)
    on_disk = sorted(p for p in inst.ws.store_root.rglob("*") if p.is_file())
    refused = fast(
        inst,
        capsys,
        monkeypatch,
        "daemon",
        "retention",
        "dispose",
        report_id,
        now=BEFORE_NOTICE_ENDS.isoformat(),
    )
    assert refused.returncode == 7, describe(refused)
    message = " ".join(refused.stderr.split())
    assert "EXAMPLE-COMMENTS" in message and "nothing was destroyed" in message
    assert f"notice {NOTICE} was sent on 2034-01-15" in message
    assert "may proceed from 2034-03-16" in message
    assert catalogued_records(inst.catalog) == records
    assert stored_files(inst.catalog) == files
    assert sorted(p for p in inst.ws.store_root.rglob("*") if p.is_file()) == on_disk
    with inst.catalog.reader() as s:
        assert s.scalar(select(func.count()).select_from(DispositionRun)) == 0
    assert [e.subject for e in audit_actions(inst, "retention.dispose.refused")] == [report_id]


def test_resume_with_no_interrupted_run_is_refused(
    inst: Installation,
    report_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = fast(
        inst, capsys, monkeypatch, "daemon", "retention", "dispose", report_id, "--resume"
    )
    assert refused.returncode == 7, describe(refused)
    assert "nothing to resume" in refused.stderr


def test_a_copy_crash_recovery_set_aside_in_the_spool_stops_the_disposition(
    inst: Installation,
    report_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A certificate must be true: records still in spool/damaged/ were not destroyed."""
    damaged = inst.app.spool_dir / "damaged"
    damaged.mkdir(exist_ok=True)
    for warc in sorted(inst.ws.store_root.glob("warc/**/*.warc.gz")):
        shutil.copy(warc, damaged / f"{warc.name}.open.before-repair")
    (damaged / "01J000000000000000000000XX.json").write_text("{}")  # a sidecar: no records
    records, files = catalogued_records(inst.catalog), stored_files(inst.catalog)

    refused = fast(inst, capsys, monkeypatch, "daemon", "retention", "dispose", report_id)

    assert refused.returncode == 7, describe(refused)
    message = " ".join(refused.stderr.split())
    assert (
        "damaged/" in message and "before-repair" in message and "Nothing was destroyed" in message
    )
    assert ".json" not in message
    assert catalogued_records(inst.catalog) == records and stored_files(inst.catalog) == files
    with inst.catalog.reader() as s:
        assert s.scalar(select(func.count()).select_from(DispositionRun)) == 0
    # Once the officer has dealt with them, the disposition may go ahead (the next test).
    for path in damaged.glob("*.before-repair"):
        path.unlink()


def test_an_officer_disposes_of_a_report_and_is_told_what_went_and_where_the_proof_is(
    inst: Installation, report_id: str, tmp_path: Path
) -> None:
    inst.app.catalog.dispose()
    env = {**_user("daemon"), "ARCHIVER_NOW": NOW.isoformat()}
    done = inst.ws.archiver("retention", "dispose", report_id, "--json", env=env)
    assert done.returncode == 0, describe(done)
    result = json.loads(done.stdout)
    assert result["state"] == "done" and result["items"] == len(ELIGIBLE)
    assert {s["code"]: s["count"] for s in result["series"]} == {
        "EXAMPLE-COMMENTS": 4,
        "social-media": 3,
    }
    assert result["files_deleted"] and result["files_compacted"] and not result["excluded"]
    cert = inst.ws.store_root / result["certificate_json"]
    assert cert.is_file() and (inst.ws.store_root / result["certificate_html"]).is_file()
    assert json.loads(cert.read_text())["executed_by"].startswith("daemon")
    # What the command printed and logged (JSON lines at DEBUG level on stderr).
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "disposition step done" for e in logged), done.stderr
    for phrase in (PLOW, BRUSH, OAK, LEAVES_ALT):
        assert phrase not in done.stdout + done.stderr
    again = inst.ws.archiver("retention", "dispose", report_id, env=env)
    assert again.returncode == 7 and "already carried out" in again.stderr, describe(again)
    shown = inst.ws.archiver("retention", "dispose", report_id, "--resume", env=env)
    assert shown.returncode == 0, describe(shown)
    text = " ".join(shown.stdout.split())
    assert "EXAMPLE-COMMENTS" in text and "files deleted:" in text
    assert f"certificate of destruction {result['certificate_id']}" in text
    assert result["certificate_json"] in text
