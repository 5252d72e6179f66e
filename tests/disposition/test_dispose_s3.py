"""Disposition on S3 with Object Lock: GOVERNANCE is bypassed, COMPLIANCE is waited for.

The corpus is captured into a bucket with Object Lock on moto's S3 server (real HTTP).
Before the disposition, two stored WARCs get real, seconds-long locks, set with a plain S3
client: the partly eligible January file of the Bluesky account GOVERNANCE (two minutes),
the wholly eligible February one COMPLIANCE (a few seconds). The disposition compacts the
first and deletes the old object at once, bypassing its governance lock, while the new
object keeps the lock; it cannot delete the second, so it records it as pending in the
certificate. Once the COMPLIANCE lock has passed, ``dispose --resume`` deletes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.catalog.models import AuditEntry, ItemVersion, StoredFile
from archiver.disposition.execute import dispose
from archiver.errors import RetentionError
from tests.commands.clitools import toml_str
from tests.disposition.disposing import NOW, Installation, installation

pytest.importorskip("boto3")
pytest_plugins = ["tests.store.s3server"]

PREFIX = "city"
REGION = "us-east-1"
ACCESS_KEY, SECRET_KEY = "AKIADISPOSITIONTEST1", "disposition-test-secret"  # moto takes any
KEY_ENV, SECRET_ENV = "ARCHIVER_TEST_S3_KEY", "ARCHIVER_TEST_S3_SECRET"
COMPLIANCE_SECONDS = 12  # outlasts the disposition even on a busy machine


@dataclass
class OnS3:
    inst: Installation
    admin: Any
    bucket: str

    def name(self, key: str) -> str:
        return f"{PREFIX}/{key}"

    def versions(self, key: str) -> list[dict[str, Any]]:
        answer = self.admin.list_object_versions(Bucket=self.bucket, Prefix=self.name(key))
        return [v for v in answer.get("Versions", []) if v["Key"] == self.name(key)]

    def lock(self, key: str, mode: str, until: datetime) -> None:
        self.admin.put_object_retention(
            Bucket=self.bucket,
            Key=self.name(key),
            Retention={"Mode": mode, "RetainUntilDate": until},
        )

    def file_of(self, item: str) -> StoredFile:
        """The stored file holding the first version of the named item."""
        with self.inst.catalog.reader() as s:
            file_id = s.scalars(
                select(ItemVersion.warc_file_id).where(
                    ItemVersion.item_id.in_(self.inst.ids(item)), ItemVersion.version_no == 1
                )
            ).one()
            row = s.get(StoredFile, file_id)
        assert row is not None
        return row

    def certificate(self, key: str | None) -> dict[str, Any]:
        assert key is not None
        body = self.admin.get_object(Bucket=self.bucket, Key=self.name(key))["Body"].read()
        doc: dict[str, Any] = json.loads(body)
        return doc


@pytest.fixture
def on_s3(tmp_path: Path, moto_endpoint: str, lock_bucket: str, s3_admin: Any) -> Iterator[OnS3]:
    store = (
        "[store]\n"
        'backend = "s3"\n'
        f"bucket = {toml_str(lock_bucket)}\n"
        f"prefix = {toml_str(PREFIX)}\n"
        f"region = {toml_str(REGION)}\n"
        f"endpoint_url = {toml_str(moto_endpoint)}\n"
        f'access_key_id = {{ env = "{KEY_ENV}" }}\n'
        f'secret_access_key = {{ env = "{SECRET_ENV}" }}\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, ACCESS_KEY)
        mp.setenv(SECRET_ENV, SECRET_KEY)
        inst = installation(tmp_path, extra=store)
        try:
            yield OnS3(inst, s3_admin, lock_bucket)
        finally:
            inst.close()


def test_governance_locks_are_bypassed_and_compliance_locks_waited_for(on_s3: OnS3) -> None:
    inst = on_s3.inst
    report_id = inst.report(NOW)
    january = on_s3.file_of("plow_reply")  # partly eligible: the moderated reply stays
    february = on_s3.file_of("images_post")  # every record in it goes
    now = datetime.now(UTC)
    governed_until = (now + timedelta(minutes=2)).replace(microsecond=0)
    complied_until = (now + timedelta(seconds=COMPLIANCE_SECONDS)).replace(microsecond=0)
    on_s3.lock(january.key, "GOVERNANCE", governed_until)
    on_s3.lock(february.key, "COMPLIANCE", complied_until)
    with pytest.raises(RetentionError):
        inst.app.store.delete(january.key)  # the lock is real: no bypass, no delete

    result = dispose(inst.app, report_id, now=NOW)

    assert datetime.now(UTC) < complied_until, "the disposition outlasted the test's lock"
    assert result.state == "pending"
    compacted = {c["old_key"]: c for c in result.files_compacted}
    assert january.key in compacted
    assert on_s3.versions(january.key) == []  # gone well before its governance lock ends
    assert datetime.now(UTC) < governed_until
    new_key = compacted[january.key]["new_key"]
    head = on_s3.admin.head_object(Bucket=on_s3.bucket, Key=on_s3.name(new_key))
    # The records that stay keep (at least) the lock they had.
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] >= governed_until
    assert [p["key"] for p in result.pending] == [february.key]
    assert on_s3.versions(february.key), "a COMPLIANCE-locked object stays until its date"
    cert = on_s3.certificate(result.certificate_json)
    assert [p["file_id"] for p in cert["pending"]] == [february.id]
    assert cert["pending"][0]["retain_until"] == complied_until.isoformat()
    with inst.catalog.reader() as s:
        row = s.get(StoredFile, february.id)
        assert row is not None and row.state == "pending" and row.pending_until == complied_until

    time.sleep(max(0.0, (complied_until - datetime.now(UTC)).total_seconds()) + 1.0)
    finished = dispose(inst.app, report_id, resume=True, now=NOW)

    assert finished.state == "done" and finished.pending == []
    assert on_s3.versions(february.key) == []
    with inst.catalog.reader() as s:
        row = s.get(StoredFile, february.id)
        assert row is not None and row.state == "disposed" and row.pending_until is None
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
    assert actions[-1] == "retention.pending.deleted"
    assert actions.count("retention.disposed") == 1
