"""The S3 store backend against a real S3 endpoint: moto's server over HTTP on 127.0.0.1.

What every backend promises (round trips, write-once, integrity, keys, listing, retention and
holds, with real seconds-long Object Lock periods) is in ``test_contract.py``, which runs
against this backend too. Here: what only S3 has: the layout under the prefix, multipart
uploads, versions and delete markers, the server's own enforcement of Object Lock, start-up
checks and error messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")

from archiver.config import S3StoreSettings, SecretRef
from archiver.errors import (
    IntegrityError,
    RetentionError,
    StoreError,
)
from archiver.store.base import ObjectInfo, put_bytes
from archiver.store.locking import LockingStore
from archiver.store.s3 import MiB, S3Store
from tests.store.conftest import KEY

# The moto server and bucket fixtures.
pytest_plugins = ["tests.store.s3server"]

PREFIX = "city/archive"
# moto accepts any credentials; these only prove none of them leak into messages.
REGION = "us-east-1"
ACCESS_KEY = "AKIATESTS3STORE00001"
SECRET_KEY = "s3-store-test-secret-never-shown"


def make_store(endpoint: str, bucket: str, **kwargs: Any) -> S3Store:
    return S3Store(
        bucket,
        prefix=kwargs.pop("prefix", PREFIX),
        region=REGION,
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        **kwargs,
    )


@pytest.fixture
def s3(moto_endpoint: str, lock_bucket: str) -> S3Store:
    return make_store(moto_endpoint, lock_bucket)


PutS3 = Callable[..., ObjectInfo]


@pytest.fixture
def put_s3(s3: S3Store, tmp_path: Path) -> PutS3:
    counter = iter(range(1_000_000))

    def put(
        key: str,
        data: bytes = b"record bytes",
        *,
        sha256: str | None = None,
        retain_until: datetime | None = None,
        store: S3Store | None = None,
    ) -> ObjectInfo:
        source = tmp_path / f"source-{next(counter)}"
        source.write_bytes(data)
        digest = sha256 or hashlib.sha256(data).hexdigest()
        return (store or s3).put(key, source, digest, retain_until=retain_until)

    return put


def raw_versions(admin: Any, bucket: str) -> list[dict[str, Any]]:
    answer = admin.list_object_versions(Bucket=bucket)
    return list(answer.get("Versions", [])) + list(answer.get("DeleteMarkers", []))


# -- layout ----------------------------------------------------------------------------------


def test_objects_live_under_the_prefix_with_their_sha256_as_metadata(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
    moto_endpoint: str,
) -> None:
    data = b"payload"
    info = put_s3(KEY, data)

    raw = s3_admin.head_object(Bucket=lock_bucket, Key=f"{PREFIX}/{KEY}")
    assert raw["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert info.version_id == raw["VersionId"]
    assert info.created == raw["LastModified"]
    assert s3.describe() == f"s3://{lock_bucket}/{PREFIX}/ at {moto_endpoint}"


# -- write-once and integrity ----------------------------------------------------------------


def test_a_wrong_sha256_leaves_no_version_in_the_bucket(
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    with pytest.raises(IntegrityError, match="nothing was stored"):
        put_s3(KEY, b"actual bytes", sha256="0" * 64)
    assert raw_versions(s3_admin, lock_bucket) == []


def test_a_large_file_is_uploaded_in_parts_and_verified(
    moto_endpoint: str,
    lock_bucket: str,
    s3_admin: Any,
    put_s3: PutS3,
) -> None:
    small = make_store(moto_endpoint, lock_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = hashlib.sha256(b"seed").digest() * (12 * MiB // 32) + b"tail"
    info = put_s3("warc/big.warc.gz", data, store=small)

    assert info.size == len(data)
    raw = s3_admin.head_object(Bucket=lock_bucket, Key=f"{PREFIX}/warc/big.warc.gz")
    assert raw["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert small.get("warc/big.warc.gz", 6 * MiB, 8) == data[6 * MiB : 6 * MiB + 8]
    assert hashlib.sha256(b"".join(small.open("warc/big.warc.gz"))).hexdigest() == info.sha256


def test_a_large_file_with_a_wrong_sha256_leaves_nothing(
    moto_endpoint: str,
    lock_bucket: str,
    s3_admin: Any,
    put_s3: PutS3,
) -> None:
    small = make_store(moto_endpoint, lock_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    with pytest.raises(IntegrityError):
        put_s3("warc/big.warc.gz", b"x" * (11 * MiB), sha256="1" * 64, store=small)
    assert raw_versions(s3_admin, lock_bucket) == []
    assert s3_admin.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == []


# -- retention and holds ---------------------------------------------------------------------


def test_delete_destroys_the_version_rather_than_hiding_it_behind_a_marker(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    put_s3(KEY, b"dispose of me")
    put_s3("warc/other", b"keep me")

    s3.delete(KEY)

    assert [v["Key"] for v in raw_versions(s3_admin, lock_bucket)] == [f"{PREFIX}/warc/other"]


def test_the_server_itself_refuses_to_delete_a_locked_version(
    moto_endpoint: str,
    lock_bucket: str,
    put_s3: PutS3,
) -> None:
    """With the client-side guard fooled by a clock in the future, S3's lock still holds."""
    later = datetime.now(UTC) + timedelta(days=2)
    fooled = make_store(moto_endpoint, lock_bucket, now=lambda: later)
    put_s3(KEY, retain_until=datetime.now(UTC) + timedelta(days=1), store=fooled)

    with pytest.raises(RetentionError, match="S3 refused"):
        fooled.delete(KEY)
    assert fooled.exists(KEY)


def test_versions_are_listed_and_all_deleted(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    put_s3(KEY, b"v1")
    # A second version written behind the store's back (as a replication or an operator might).
    s3_admin.put_object(
        Bucket=lock_bucket,
        Key=f"{PREFIX}/{KEY}",
        Body=b"v2",
        Metadata={"sha256": hashlib.sha256(b"v2").hexdigest()},
    )
    versions = s3.list_versions(KEY)
    assert [v.size for v in versions] == [2, 2]
    assert versions[0].sha256 == hashlib.sha256(b"v2").hexdigest()
    assert versions[1].sha256 == hashlib.sha256(b"v1").hexdigest()

    assert s3.delete_all_versions(KEY) == 2
    assert s3.list_versions(KEY) == []
    assert raw_versions(s3_admin, lock_bucket) == []


# -- listing ---------------------------------------------------------------------------------


def test_list_shows_only_keys_under_the_prefix_that_the_store_could_have_written(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    put_s3("warc/a/1", b"ours")
    sha256 = {"sha256": hashlib.sha256(b"x").hexdigest()}
    # Written behind the store's back: outside its prefix, beside it, or under names that
    # no key can have.
    for name in ["other/warc/a/1", f"{PREFIX}-old/warc/a/1", f"{PREFIX}/.meta/x", f"{PREFIX}/a//b"]:
        s3_admin.put_object(Bucket=lock_bucket, Key=name, Body=b"x", Metadata=sha256)

    assert [i.key for i in s3.list()] == ["warc/a/1"]
    assert [i.key for i in s3.list("warc/")] == ["warc/a/1"]


def test_list_without_a_prefix_setting(
    moto_endpoint: str,
    lock_bucket: str,
    put_s3: PutS3,
) -> None:
    bare = make_store(moto_endpoint, lock_bucket, prefix="")
    put_s3("a/b", store=bare)
    assert [i.key for i in bare.list()] == ["a/b"]
    assert bare.describe().startswith(f"s3://{lock_bucket}/ ")


# -- start-up checks and errors --------------------------------------------------------------


def test_check_refuses_a_missing_bucket(moto_endpoint: str) -> None:
    store = make_store(moto_endpoint, "no-such-bucket-here")
    with pytest.raises(StoreError, match="does not exist") as caught:
        store.check()
    assert "\n" not in str(caught.value)


def test_check_accepts_only_a_bucket_with_versioning_and_object_lock(
    moto_endpoint: str,
    plain_bucket: str,
    lock_bucket: str,
    s3_admin: Any,
) -> None:
    make_store(moto_endpoint, lock_bucket).check()

    store = make_store(moto_endpoint, plain_bucket)
    with pytest.raises(StoreError, match="versioning is not enabled"):
        store.check()
    s3_admin.put_bucket_versioning(
        Bucket=plain_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    with pytest.raises(StoreError, match="Object Lock is not enabled"):
        store.check()
    store.check(object_lock=False)


def test_a_closed_port_gives_one_clear_line(closed_endpoint: str) -> None:
    store = S3Store(
        "archive",
        endpoint_url=closed_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        max_attempts=1,
        connect_timeout=2,
    )
    with pytest.raises(StoreError, match="cannot be reached") as caught:
        store.check()
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message
    with pytest.raises(StoreError, match="cannot be reached"):
        store.head("a/b")


def test_built_from_settings_with_secret_refs(
    moto_endpoint: str,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ARCHIVER_TEST_S3_KEY", ACCESS_KEY)
    monkeypatch.setenv("ARCHIVER_TEST_S3_SECRET", SECRET_KEY)
    settings = S3StoreSettings(
        backend="s3",
        bucket=lock_bucket,
        prefix="/records/",
        region=REGION,
        endpoint_url=moto_endpoint,
        object_lock_mode="COMPLIANCE",
        access_key_id=SecretRef(env="ARCHIVER_TEST_S3_KEY"),
        secret_access_key=SecretRef(env="ARCHIVER_TEST_S3_SECRET"),
    )
    store = S3Store.from_settings(settings)
    store.check()
    assert store.describe() == f"s3://{lock_bucket}/records/ at {moto_endpoint}"
    put_bytes(store, "a/b", b"hello", tmp_dir=tmp_path)
    assert store.get("a/b") == b"hello"


def test_write_once_holds_even_when_the_head_check_is_raced(
    s3: S3Store, put_s3: PutS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that slips in between our head and our upload loses: If-None-Match: *."""
    put_s3(KEY, b"first")
    monkeypatch.setattr(s3, "exists", lambda key: False)
    with pytest.raises(StoreError, match="write-once"):
        put_s3(KEY, b"second")
    assert s3.get(KEY) == b"first"


def test_the_app_builds_an_s3_store_from_its_configuration(
    moto_endpoint: str,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from archiver.app import App

    monkeypatch.setenv("ARCHIVER_TEST_S3_KEY", ACCESS_KEY)
    monkeypatch.setenv("ARCHIVER_TEST_S3_SECRET", SECRET_KEY)
    config = tmp_path / "config.toml"
    config.write_text(
        '[archiver]\noperator = "City of Milwaukee"\n\n'
        '[store]\nbackend = "s3"\n'
        f'bucket = "{lock_bucket}"\nprefix = "app"\nregion = "{REGION}"\n'
        f'endpoint_url = "{moto_endpoint}"\n'
        'access_key_id = { env = "ARCHIVER_TEST_S3_KEY" }\n'
        'secret_access_key = { env = "ARCHIVER_TEST_S3_SECRET" }\n',
        encoding="utf-8",
    )
    store = App(config).store
    assert isinstance(store, LockingStore)  # the retention seam wraps every backend
    assert isinstance(store.inner, S3Store)
    assert store.describe() == f"s3://{lock_bucket}/app/ at {moto_endpoint}"
    store.check()
