"""A kill -9 in the middle of a disposition rolls forward to the end state of a whole run.

The real ``archiver retention dispose`` runs in a child process with the test hook
``ARCHIVER_TEST_CRASH_AT``, which SIGKILLs it right after the first compaction or the first
deletion is recorded. Then ``dispose --resume`` (or ``archiver run``, at start) finishes
the journal. The end state is the one an uninterrupted run reaches: every record the plan
names is gone and nothing else, no file is left both old and new, the kept items verify and
restore, exactly one certificate is written and the audit chain verifies.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archiver.catalog.models import AuditEntry, Certificate, DispositionRun, DispositionStep
from archiver.restore import plan_restore
from tests.commands.clitools import Outcome, describe
from tests.disposition.disposing import (
    KEPT,
    NOW,
    PLOW,
    Installation,
    catalogued_records,
    certificate,
    installation,
    records_containing,
    stored_files,
    stored_warcs,
)

ENV = {"ARCHIVER_NOW": NOW.isoformat()}


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Installation]:
    found = installation(tmp_path, extra="[daemon]\nfixity_sample = 0\n", accounts="")
    try:
        yield found
    finally:
        found.close()


def crash(inst: Installation, at: str) -> tuple[str, dict[str, str]]:
    """Make a report, dispose of it with the crash hook; the report and the records before."""
    report_id = inst.report(NOW)
    before = catalogued_records(inst.catalog)
    inst.app.catalog.dispose()  # the child process has the catalog to itself
    killed = inst.ws.archiver(
        "retention", "dispose", report_id, env={**ENV, "ARCHIVER_TEST_CRASH_AT": at}
    )
    assert killed.returncode == -signal.SIGKILL, describe(killed)
    kind = at.split(":")[0]
    with inst.catalog.reader() as s:
        run = s.scalars(select(DispositionRun)).one()
        assert run.state == "running"
        done = s.scalars(select(DispositionStep.kind).where(DispositionStep.state == "done")).all()
    assert done.count(kind) == 1, done
    return report_id, before


def assert_rolled_forward(
    inst: Installation, before: dict[str, str], cli: Callable[..., Outcome]
) -> None:
    with inst.catalog.reader() as s:
        run = s.scalars(select(DispositionRun)).one()
        assert run.state == "done" and run.certificate_id
        assert s.scalar(select(func.count()).select_from(Certificate)) == 1
        undone = s.scalars(select(DispositionStep).where(DispositionStep.state != "done")).all()
        assert undone == []
        disposed = s.scalars(
            select(AuditEntry.subject).where(AuditEntry.action == "retention.disposed")
        ).all()
    assert disposed == [run.certificate_id]
    certs = list((inst.ws.store_root / "control" / "certificates").glob("*.json"))
    assert [c.stem for c in certs] == [run.certificate_id]
    cert = certificate(inst.ws.store_root, run.certificate_id)
    listed = {r["record_id"] for r in cert["records_destroyed"]}  # type: ignore[union-attr]
    assert set(catalogued_records(inst.catalog)) == set(before) - listed
    files = stored_files(inst.catalog)
    on_disk = {str(p.relative_to(inst.ws.store_root)) for p in stored_warcs(inst.ws.store_root)}
    assert {k for k, st in files.values() if st == "stored" and k.startswith("warc/")} == on_disk
    for c in cert["files_compacted"]:  # type: ignore[union-attr]
        assert files[c["old_file_id"]][1] == "disposed" and c["old_key"] not in on_disk
        assert files[c["new_file_id"]][1] == "stored" and c["new_key"] in on_disk
    kept_exchanges = {e["record_id"] for e in cert["exchanges_kept"]}  # type: ignore[union-attr]
    assert {f.record_id for f in records_containing(inst.ws.store_root, PLOW)} <= kept_exchanges
    for item_id in inst.ids(*KEPT):
        assert plan_restore(inst.catalog, inst.app.store, item_id).files
    verified = cli("verify", "--all")
    assert verified.returncode == 0, describe(verified)
    verified = cli("audit", "verify")
    assert verified.returncode == 0, describe(verified)


@pytest.fixture
def cli(
    inst: Installation, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Outcome]:
    """The CLI's entry point in this process, with the workspace's environment and clock."""
    ws = replace(inst.ws, env={**inst.ws.env, **ENV})

    def run(*args: str) -> Outcome:
        return ws.in_process(capsys, monkeypatch, *args)

    return run


@pytest.mark.parametrize("at", ["compact:1", "delete:1"])
def test_dispose_resume_after_a_kill_ends_as_an_uninterrupted_run(
    inst: Installation, at: str, cli: Callable[..., Outcome]
) -> None:
    report_id, before = crash(inst, at)
    refused = cli("retention", "dispose", report_id)
    assert refused.returncode == 7 and "--resume" in refused.stderr, describe(refused)
    resumed = cli("retention", "dispose", report_id, "--resume")
    assert resumed.returncode == 0, describe(resumed)
    assert "finished" in resumed.stdout
    assert_rolled_forward(inst, before, cli)
    again = cli("retention", "dispose", report_id, "--resume", "--json")
    assert again.returncode == 0 and '"state": "done"' in again.stdout, describe(again)


def test_the_daemon_finishes_an_interrupted_disposition_at_start(
    inst: Installation, cli: Callable[..., Outcome]
) -> None:
    _report_id, before = crash(inst, "compact:1")
    with inst.ws.running() as run:
        run.wait_until_running()
        code, _seconds = run.stop()
    assert code == 0, run.output()
    assert "interrupted disposition finished" in run.stderr, run.output()
    assert_rolled_forward(inst, before, cli)
