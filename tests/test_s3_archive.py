"""The archiver on an S3 store: what it writes there is intact, locked, and readable by range.

The store is moto's S3 server on 127.0.0.1 with an Object Lock bucket; the archiver runs as
the real ``archiver`` command, capturing the sample Mastodon export. What it stored is then
downloaded with a plain S3 client and checked with tools we did not write (``warcio check``).
A wrong endpoint or a missing bucket stops ``archiver run`` at once with one line, and the
files waiting in the spool are left exactly as they were.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.catalog import Catalog
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.retrieve import read_record
from archiver.store.s3 import S3Store
from archiver.warc_records import label_to_hex
from tests.commands.clitools import Workspace, describe, make_workspace, toml_str
from tests.warctools import assert_all_digests_pass

pytest.importorskip("boto3")

# The moto server and bucket fixtures.
pytest_plugins = ["tests.store.s3server"]

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
KEY_ENV, SECRET_ENV = "ARCHIVER_TEST_S3_KEY", "ARCHIVER_TEST_S3_SECRET"
ACCESS_KEY = "AKIAS3ARCHIVETEST001"
SECRET_KEY = "s3-archive-test-secret-never-logged"
PREFIX = "milwaukee"

EXPORT_ACCOUNT = """
[[accounts]]
id = "mke-dpw-archive"
platform = "mastodon_export"
handle = "mkedpw@mastodon.example"
department = "Department of Public Works"
series = "social-media"
archive = "mastodon-export.zip"
schedule = "1d"
"""


def s3_workspace(
    root: Path, endpoint: str, bucket: str, *, extra: str = "", lock: str = "1d"
) -> Workspace:
    store = (
        "[store]\n"
        'backend = "s3"\n'
        f"bucket = {toml_str(bucket)}\n"
        f"prefix = {toml_str(PREFIX)}\n"
        f"region = {toml_str(REGION)}\n"
        f"endpoint_url = {toml_str(endpoint)}\n"
        f'access_key_id = {{ env = "{KEY_ENV}" }}\n'
        f'secret_access_key = {{ env = "{SECRET_ENV}" }}\n'
        "\n[retention]\n"
        f"default_lock = {toml_str(lock)}\n"
        f"{extra}"
    )
    ws = make_workspace(root, accounts=EXPORT_ACCOUNT, extra=store)
    shutil.copy(REPO / "examples" / "mastodon-export.zip", root / "mastodon-export.zip")
    ws.env.update({KEY_ENV: ACCESS_KEY, SECRET_ENV: SECRET_KEY})
    ws.secrets.append(SECRET_KEY)
    return ws


def download(admin: Any, bucket: str, key: str, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    admin.download_file(bucket, f"{PREFIX}/{key}", str(to))
    return to


def spool_snapshot(spool: Path) -> dict[str, str]:
    """Every file in the spool and the sha256 of its bytes."""
    return {
        str(p.relative_to(spool)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(spool.rglob("*"))
        if p.is_file()
    }


def test_warcs_stored_on_s3_pass_warcio_check_and_a_ranged_record_read_matches_its_digest(
    tmp_path: Path, moto_endpoint: str, lock_bucket: str, s3_admin: Any
) -> None:
    ws = s3_workspace(tmp_path / "node", moto_endpoint, lock_bucket)
    ws.ok("catalog", "upgrade")
    before = datetime.now(UTC)
    captured = ws.archiver("capture", "mke-dpw-archive")
    assert captured.returncode == 0, describe(captured)
    for secret in ws.secrets:
        assert secret not in captured.stdout + captured.stderr

    with ws.open_catalog() as catalog, catalog.reader() as s:
        files = list(s.scalars(select(StoredFile).where(StoredFile.kind == "warc")))
        record = s.scalars(
            select(WarcRecord).where(WarcRecord.warc_type == "resource").limit(1)
        ).one()
    assert files and all(f.state == "stored" for f in files)
    # Nothing was left behind in the spool: every file reached the bucket.
    assert not list((ws.var / "spool").glob("*.warc.gz"))

    downloaded = [
        download(s3_admin, lock_bucket, f.key, tmp_path / "downloaded" / f.key) for f in files
    ]
    assert assert_all_digests_pass(downloaded) >= 25
    for f, path in zip(files, downloaded, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256

    # Every object is locked (GOVERNANCE) until its series lets it go: 7 years from its
    # partition's month for "social-media", and never less than the default of one day.
    for f in files:
        head = s3_admin.head_object(Bucket=lock_bucket, Key=f"{PREFIX}/{f.key}")
        assert head["ObjectLockMode"] == "GOVERNANCE"
        until = head["ObjectLockRetainUntilDate"]
        month = datetime.strptime(f.key.split("/")[3], "%Y-%m").replace(tzinfo=UTC)
        floor = month.replace(year=month.year + 7)
        if floor > datetime.now(UTC) + timedelta(days=1):
            assert until == floor, f.key
        else:
            assert before + timedelta(days=1) - timedelta(minutes=1) <= until
            assert until <= datetime.now(UTC) + timedelta(days=1)
        assert f.retain_until is not None

    # One record, read back with one ranged GET, matches its block digest.
    store = S3Store(
        lock_bucket,
        prefix=PREFIX,
        region=REGION,
        endpoint_url=moto_endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    catalog = Catalog.open(ws.direct_url)
    try:
        got = read_record(catalog, store, record.record_id)
    finally:
        catalog.dispose()
    assert len(got.member) == record.length
    assert label_to_hex(record.block_digest) == hashlib.sha256(got.block).hexdigest()
    assert got.headers["WARC-Type"] == "resource"
    assert got.headers["WARC-Block-Digest"] == record.block_digest


def test_a_missing_bucket_at_start_is_one_clear_line_and_the_spool_is_untouched(
    tmp_path: Path, moto_endpoint: str, closed_endpoint: str, lock_bucket: str
) -> None:
    s3_workspace(tmp_path / "node", moto_endpoint, lock_bucket).ok("catalog", "upgrade")
    # A capture while the endpoint is down: its WARC files wait in the spool.
    down = s3_workspace(tmp_path / "node", closed_endpoint, lock_bucket)
    first = down.archiver("capture", "mke-dpw-archive")
    spool = down.var / "spool"
    waiting = spool_snapshot(spool)
    assert any(name.endswith(".warc.gz") for name in waiting), describe(first)

    for endpoint, bucket, says in (
        (closed_endpoint, lock_bucket, "cannot be reached"),
        (moto_endpoint, f"missing-{uuid.uuid4().hex[:12]}", "does not exist"),
    ):
        ws = s3_workspace(tmp_path / "node", endpoint, bucket)
        result = ws.archiver("run", timeout=60)
        assert result.returncode == 6, describe(result)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and says in lines[0], lines[0]
        assert bucket in lines[0]
        assert SECRET_KEY not in result.stderr + result.stdout
        assert ACCESS_KEY not in result.stderr + result.stdout
        assert spool_snapshot(spool) == waiting
