"""``archiver verify``: stored files re-read, each check a fixity event, damage exits 90.

The archive is a real capture of the fake Bluesky by ``archiver capture`` (WARC files and
their Parquet roll). Most tests work on a copy of one SQLite installation captured once per
module; the ones where the catalog matters run on SQLite and PostgreSQL with their own
capture. Damage is done to the stored objects on disk.
"""

from __future__ import annotations

import grp
import json
import os
import pty
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.catalog.models import AuditEntry, FixityEvent, StoredFile, WarcRecord
from archiver.errors import IntegrityError, PermissionDenied
from tests.commands.clitools import ARCHIVER, Outcome, Workspace, describe, make_workspace
from tests.connectors.fake_bluesky import FakeBluesky
from tests.daemontools import bluesky_account, fake_bluesky_server

NOBODY_UID = 65534
PARQUET = "\n[parquet]\nmin_rows = 1\n"
ME = pwd.getpwuid(os.getuid()).pw_name


@dataclass(frozen=True)
class Template:
    """One captured installation that tests copy: its directory and its accounts table."""

    root: Path
    accounts: str


def _post(fake: FakeBluesky) -> None:
    root = fake.post("Snow emergency declared", images=[("Map of snow routes", "image/png")])
    fake.reply(root, "Thanks for the update")
    fake.post("Leaf pickup schedule", links=["https://city.example.gov/leaves"])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    root = tmp_path_factory.mktemp("verify") / "ws"
    with fake_bluesky_server() as fake:
        _post(fake)
        accounts = bluesky_account("mke-bluesky", fake)
        ws = make_workspace(root, accounts=accounts, extra=PARQUET)
        ws.ok("catalog", "upgrade")
        ws.ok("capture", "mke-bluesky")
    yield Template(root, accounts)


@pytest.fixture
def ws(template: Template, tmp_path: Path) -> Workspace:
    """A fresh copy of the captured SQLite installation."""
    root = tmp_path / "ws"
    shutil.copytree(template.root, root, symlinks=True)
    return make_workspace(root, accounts=template.accounts, extra=PARQUET)


@pytest.fixture
def any_ws(
    tmp_path: Path,
    catalog_url: str,
    httpserver: HTTPServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Workspace:
    """A captured installation on each catalog database."""
    fake = FakeBluesky(httpserver)
    fake.now = datetime.now(UTC) - timedelta(days=3)
    _post(fake)
    ws = make_workspace(
        tmp_path / "ws",
        catalog_url=catalog_url,
        accounts=bluesky_account("mke-bluesky", fake),
        extra=PARQUET,
    )
    for command in (("catalog", "upgrade"), ("capture", "mke-bluesky")):
        outcome = ws.in_process(capsys, monkeypatch, *command)
        assert outcome.returncode == 0, describe(outcome)
    return ws


def stored(ws: Workspace) -> list[StoredFile]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        files = list(s.scalars(select(StoredFile).order_by(StoredFile.key)))
        s.expunge_all()
    assert {f.kind for f in files} == {"warc", "parquet"}
    return files


def biggest_warc(ws: Workspace) -> tuple[StoredFile, list[WarcRecord]]:
    """The WARC file with most records, and its records in file order."""
    warc = max((f for f in stored(ws) if f.kind == "warc"), key=lambda f: f.records)
    with ws.open_catalog() as catalog, catalog.reader() as s:
        records = list(
            s.scalars(
                select(WarcRecord).where(WarcRecord.file_id == warc.id).order_by(WarcRecord.offset)
            )
        )
        s.expunge_all()
    return warc, records


def events(ws: Workspace) -> list[FixityEvent]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        found = list(s.scalars(select(FixityEvent).order_by(FixityEvent.id)))
        s.expunge_all()
    return found


def audits(ws: Workspace) -> list[AuditEntry]:
    with ws.open_catalog() as catalog, catalog.reader() as s:
        found = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "fixity.verify")))
        s.expunge_all()
    return found


def run(
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    ok: bool = True,
) -> Outcome:
    """``archiver verify *args`` in this process (no child start-up: for quick cases)."""
    outcome = ws.in_process(capsys, monkeypatch, "verify", *args)
    if ok:
        assert outcome.returncode == 0, describe(outcome)
    return outcome


def writable(ws: Workspace, file: StoredFile) -> Path:
    """The stored object's path, made writable (stored objects are read-only: 0444)."""
    path = ws.store_root / file.key
    os.chmod(path, 0o644)
    return path


def flip(ws: Workspace, file: StoredFile, at: int) -> None:
    path = writable(ws, file)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def test_verify_all_passes_every_file_records_one_event_each_and_audits_the_run(
    any_ws: Workspace,
) -> None:
    files = stored(any_ws)

    result = any_ws.ok("verify", "--all")

    first, second = result.stdout.splitlines()[:2]
    assert first.startswith(f"checked {len(files)} files (every stored file): ")
    assert first.endswith(" MB/s)")
    assert second == f"{len(files)} passed, 0 failed, 0 missing"
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    found = events(any_ws)
    assert sorted(e.file_id for e in found) == sorted(f.id for f in files)
    assert {(e.outcome, e.algorithm, e.actor) for e in found} == {("pass", "sha256", ME)}
    (audit,) = audits(any_ws)
    assert (audit.actor, audit.subject) == (ME, "all")
    assert audit.detail["checked"] == audit.detail["passed"] == len(files)
    assert audit.detail["failed"] == audit.detail["missing"] == 0
    assert audit.detail["bytes"] == sum(f.size for f in files)


def test_a_changed_byte_and_a_truncated_file_exit_90_naming_file_key_record_and_offset(
    any_ws: Workspace,
) -> None:
    warc, records = biggest_warc(any_ws)
    hit = max(records, key=lambda r: r.length)
    flip(any_ws, warc, hit.offset + hit.length // 2)
    other = next(f for f in stored(any_ws) if f.kind == "warc" and f.id != warc.id)
    os.truncate(writable(any_ws, other), other.size - 3)

    result = any_ws.archiver("verify", "--all")

    assert result.returncode == IntegrityError.exit_code == 90, describe(result)
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(
            f"FAIL {warc.id} {warc.key}: record {hit.record_id} at offset {hit.offset}:"
        )
        for line in lines
    ), result.stderr
    assert any(
        line.startswith(f"FAIL {other.id} {other.key}: record <urn:uuid:") and "truncated" in line
        for line in lines
    ), result.stderr
    assert lines[-1].startswith("error: 2 of ")
    assert "Traceback" not in result.stderr
    assert "2 failed, 0 missing" in result.stdout
    failed = {e.file_id for e in events(any_ws) if e.outcome == "fail"}
    assert failed == {warc.id, other.id}
    (audit,) = audits(any_ws)
    assert sorted(audit.detail["bad_files"]) == sorted([warc.id, other.id])


def test_a_changed_byte_in_a_gzip_member_header_is_caught(ws: Workspace) -> None:
    warc, records = biggest_warc(ws)
    hit = records[1]
    flip(ws, warc, hit.offset + 4)  # MTIME: zlib never looks at it

    result = ws.archiver("verify", "--file", warc.id)

    assert result.returncode == 90, describe(result)
    assert f"FAIL {warc.id} {warc.key}: record {hit.record_id} at offset {hit.offset}: " in (
        result.stderr
    )
    assert "gzip header" in result.stderr


def test_a_file_missing_from_the_store_exits_90_as_missing(ws: Workspace) -> None:
    gone = stored(ws)[0]
    writable(ws, gone).unlink()

    result = ws.archiver("verify", "--all", "--json")

    assert result.returncode == 90, describe(result)
    report = json.loads(result.stdout)
    assert (report["ok"], report["missing"], report["failed"]) == (False, 1, 0)
    assert f"MISSING {gone.id} {gone.key}: " in result.stderr
    assert [e.outcome for e in events(ws) if e.file_id == gone.id] == ["missing"]


def test_a_store_error_stops_the_run_with_exit_6_recording_nothing_for_that_file(
    ws: Workspace,
) -> None:
    """A store that refuses a read (here: a symbolic link where an object should be) is not
    a fixity result; the run stops and its audit entry says why."""
    warc, _ = biggest_warc(ws)
    path = writable(ws, warc)
    path.rename(path.with_name("moved-away"))
    path.symlink_to("moved-away")

    result = ws.archiver("verify", "--all")

    assert result.returncode == 6, describe(result)
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert warc.id not in {e.file_id for e in events(ws)}
    (audit,) = audits(ws)
    assert audit.detail["stopped"] is not None and "symbolic link" in audit.detail["stopped"]


def test_sample_n_checks_n_random_files_and_reports_them_as_json(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = stored(ws)

    report = json.loads(run(ws, capsys, monkeypatch, "--sample", "2", "--json").stdout)

    assert (report["selection"], report["stored_files"], report["checked"]) == (
        "sample",
        len(files),
        2,
    )
    assert report["ok"] is True and report["passed"] == 2
    checked = {f["file_id"] for f in report["files"]}
    assert checked <= {f.id for f in files} and len(checked) == 2
    assert {e.file_id for e in events(ws)} == checked
    one = report["files"][0]
    assert one["outcome"] == "pass" and one["first_bad_record"] is None
    assert one["bytes"] == next(f.size for f in files if f.id == one["file_id"])


def test_without_an_option_a_sample_of_ten_is_checked(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = stored(ws)

    report = json.loads(run(ws, capsys, monkeypatch, "--json").stdout)

    assert report["selection"] == "sample"
    assert report["checked"] == min(10, len(files))


def test_file_checks_just_the_files_named(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    warc, _ = biggest_warc(ws)
    parquet = next(f for f in stored(ws) if f.kind == "parquet")

    args = ("--file", warc.id, "--file", parquet.id, "--json")
    report = json.loads(run(ws, capsys, monkeypatch, *args).stdout)

    assert [f["file_id"] for f in report["files"]] == [warc.id, parquet.id]
    by_kind = {f["kind"]: f for f in report["files"]}
    assert by_kind["warc"]["records"] == warc.records
    assert by_kind["parquet"]["records"] == 0
    (audit,) = audits(ws)
    assert audit.subject == "files"
    assert audit.detail["files"] == [warc.id, parquet.id]


def test_an_unknown_file_id_is_refused_before_anything_is_checked(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    warc, _ = biggest_warc(ws)

    result = run(ws, capsys, monkeypatch, "--file", warc.id, "--file", "01NOSUCHFILE", ok=False)

    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("error: no stored file '01NOSUCHFILE' in the catalog")
    assert events(ws) == []


def test_two_selections_at_once_are_a_usage_error(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(ws, capsys, monkeypatch, "--all", "--sample", "3", ok=False)
    assert result.returncode == 2, describe(result)
    assert "use only one of --all, --sample N and --file ID" in result.stderr
    assert run(ws, capsys, monkeypatch, "--sample", "0", ok=False).returncode == 2
    assert events(ws) == []


def test_on_a_terminal_a_progress_bar_shows_the_throughput(ws: Workspace) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(ARCHIVER), "--config", str(ws.config), "verify", "--all"],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**ws.env, "TERM": "xterm", "COLUMNS": "120"},
        cwd=ws.cwd,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(leader)

    assert proc.returncode == 0, seen.decode(errors="replace")
    shown = seen.decode(errors="replace")
    assert "verifying" in shown and "B/s" in shown
    assert b"passed, 0 failed" in out


needs_root_and_nobody = pytest.mark.skipif(
    os.getuid() != 0 or not any(p.pw_uid == NOBODY_UID for p in pwd.getpwall()),
    reason="needs to run as root with a 'nobody' user (uid 65534), to act as sudo does",
)


@needs_root_and_nobody
def test_legal_staff_may_verify_and_staff_without_a_role_are_refused(
    template: Template, tmp_path: Path
) -> None:
    """Root with SUDO_USER is what `sudo -u archiver archiver ...` run by staff looks like."""
    sudo = {"SUDO_USER": "nobody", "SUDO_UID": str(NOBODY_UID), "SUDO_GID": str(NOBODY_UID)}
    root = tmp_path / "ws"
    shutil.copytree(template.root, root, symlinks=True)
    group = pwd.getpwuid(NOBODY_UID).pw_gid
    officers_only = '\n[roles]\nrecords = "officer"\n'
    ws = make_workspace(root, accounts=template.accounts, extra=PARQUET + officers_only)
    refused = ws.archiver("verify", env=sudo)
    assert refused.returncode == PermissionDenied.exit_code == 8, describe(refused)
    assert "may not run `archiver verify`: it needs the role legal or officer" in refused.stderr

    legal = f'\n[roles]\n{grp.getgrgid(group).gr_name} = "legal"\n'
    ws = make_workspace(root, accounts=template.accounts, extra=PARQUET + legal)
    allowed = ws.archiver("verify", "--sample", "1", env=sudo)

    assert allowed.returncode == 0, describe(allowed)
    (event,) = events(ws)
    assert event.actor == "nobody (via sudo as root)"
