"""The S3 store backend against a real S3 endpoint: moto's server over HTTP on 127.0.0.1.

Retention is tested with real, seconds-long Object Lock periods: moto's server keeps the
lock and refuses to delete a locked version, and the store's own guard refuses before asking.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")

from archiver.config import S3StoreSettings, SecretRef
from archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.store import Store
from archiver.store.base import ObjectInfo, put_bytes
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


# -- round trip ------------------------------------------------------------------------------


def test_the_s3_store_is_a_store(s3: S3Store) -> None:
    assert isinstance(s3, Store)
    s3.check()


def test_put_then_get_head_and_ranged_get(s3: S3Store, put_s3: PutS3) -> None:
    data = bytes(range(256)) * 400
    info = put_s3(KEY, data)

    assert info.key == KEY
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.retain_until is None
    assert info.legal_hold is False
    assert info.version_id
    assert s3.head(KEY) == info
    assert s3.get(KEY) == data
    assert s3.get(KEY, 1000, 10) == data[1000:1010]
    assert s3.get(KEY, len(data) - 5) == data[-5:]
    assert s3.get(KEY, len(data) - 5, 100) == data[-5:]
    assert s3.get(KEY, len(data)) == b""
    assert s3.get(KEY, 3, 0) == b""
    assert b"".join(s3.open(KEY)) == data
    assert s3.exists(KEY)


def test_objects_live_under_the_prefix_with_their_sha256_as_metadata(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    data = b"payload"
    put_s3(KEY, data)

    raw = s3_admin.head_object(Bucket=lock_bucket, Key=f"{PREFIX}/{KEY}")
    assert raw["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert s3.describe() == f"s3://{lock_bucket}/{PREFIX}/ at {s3._endpoint}"
    assert SECRET_KEY not in s3.describe() and ACCESS_KEY not in s3.describe()


def test_empty_object_round_trips(s3: S3Store, put_s3: PutS3) -> None:
    info = put_s3("control/empty", b"")
    assert info.size == 0
    assert s3.get("control/empty") == b""
    assert list(s3.open("control/empty")) == []


def test_put_bytes_works_on_s3(s3: S3Store, tmp_path: Path) -> None:
    info = put_bytes(s3, "layout-version", b"1\n", tmp_dir=tmp_path)
    assert s3.get("layout-version") == b"1\n"
    assert info.size == 2


def test_missing_objects_raise_object_not_found(s3: S3Store) -> None:
    assert not s3.exists("nothing/here")
    for call in (
        lambda: s3.head("nothing/here"),
        lambda: s3.get("nothing/here"),
        lambda: s3.open("nothing/here"),
        lambda: s3.delete("nothing/here"),
        lambda: s3.set_legal_hold("nothing/here", True),
    ):
        with pytest.raises(ObjectNotFoundError, match="nothing/here"):
            call()
    assert s3.list_versions("nothing/here") == []
    assert s3.delete_all_versions("nothing/here") == 0


# -- write-once and integrity ----------------------------------------------------------------


def test_a_second_put_under_the_same_key_is_refused(s3: S3Store, put_s3: PutS3) -> None:
    put_s3(KEY, b"first")
    with pytest.raises(StoreError, match="write-once"):
        put_s3(KEY, b"second")
    assert s3.get(KEY) == b"first"
    assert len(s3.list_versions(KEY)) == 1


def test_a_wrong_sha256_is_refused_and_nothing_is_left(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    with pytest.raises(IntegrityError, match="nothing was stored"):
        put_s3(KEY, b"actual bytes", sha256="0" * 64)
    assert not s3.exists(KEY)
    assert raw_versions(s3_admin, lock_bucket) == []


def test_a_malformed_sha256_is_a_value_error(put_s3: PutS3) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        put_s3(KEY, b"x", sha256="abc")


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


def test_delete_is_refused_while_retained_and_allowed_after(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    info = put_s3(KEY, retain_until=until)
    assert info.retain_until == until

    with pytest.raises(RetentionError, match="retained until"):
        s3.delete(KEY)
    assert s3.exists(KEY)

    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.1)
    s3.delete(KEY)
    assert not s3.exists(KEY)
    assert raw_versions(s3_admin, lock_bucket) == []  # destroyed, not hidden by a marker


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


def test_retention_can_be_extended_but_not_shortened(s3: S3Store, put_s3: PutS3) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    put_s3(KEY, retain_until=until)

    extended = s3.set_retention(KEY, until + timedelta(days=30))
    assert extended.retain_until == until + timedelta(days=30)
    assert s3.head(KEY).retain_until == until + timedelta(days=30)

    with pytest.raises(RetentionError, match="never shortened"):
        s3.set_retention(KEY, until)
    assert s3.head(KEY).retain_until == until + timedelta(days=30)


def test_retention_can_be_set_on_an_unretained_object(s3: S3Store, put_s3: PutS3) -> None:
    put_s3(KEY)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    assert s3.set_retention(KEY, until).retain_until == until
    with pytest.raises(RetentionError):
        s3.delete(KEY)


def test_a_legal_hold_blocks_delete_until_released(s3: S3Store, put_s3: PutS3) -> None:
    put_s3(KEY)
    held = s3.set_legal_hold(KEY, True)
    assert held.legal_hold is True
    assert s3.head(KEY).legal_hold is True

    with pytest.raises(RetentionError, match="legal hold"):
        s3.delete(KEY)
    with pytest.raises(RetentionError, match="legal hold"):
        s3.delete_all_versions(KEY)
    assert s3.exists(KEY)

    assert s3.set_legal_hold(KEY, False).legal_hold is False
    s3.delete(KEY)
    assert not s3.exists(KEY)


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


def test_list_returns_keys_under_a_prefix_in_order(
    s3: S3Store,
    put_s3: PutS3,
    s3_admin: Any,
    lock_bucket: str,
) -> None:
    keys = ["warc/b/2", "warc/a/1", "parquet/a/1", "warc/a/10", "warc/ab"]
    for key in keys:
        put_s3(key, key.encode())
    # Outside our prefix: never listed.
    s3_admin.put_object(Bucket=lock_bucket, Key="other/warc/a/1", Body=b"x")

    assert [i.key for i in s3.list()] == sorted(keys)
    assert [i.key for i in s3.list("warc/a/")] == ["warc/a/1", "warc/a/10"]
    assert [i.key for i in s3.list("warc/a")] == ["warc/a/1", "warc/a/10", "warc/ab"]
    assert list(s3.list("nothing/")) == []
    assert [i.size for i in s3.list("parquet/")] == [len("parquet/a/1")]


def test_list_without_a_prefix_setting(
    moto_endpoint: str,
    lock_bucket: str,
    put_s3: PutS3,
) -> None:
    bare = make_store(moto_endpoint, lock_bucket, prefix="")
    put_s3("a/b", store=bare)
    assert [i.key for i in bare.list()] == ["a/b"]
    assert bare.describe().startswith(f"s3://{lock_bucket}/ ")


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "a//b", ".meta/x", "a\\b", ""])
def test_unsafe_keys_are_refused(s3: S3Store, put_s3: PutS3, key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        put_s3(key)
    with pytest.raises(UnsafeKeyError):
        s3.head(key)
    with pytest.raises(UnsafeKeyError):
        s3.get(key)


# -- start-up checks and errors --------------------------------------------------------------


def test_check_refuses_a_missing_bucket(moto_endpoint: str) -> None:
    store = make_store(moto_endpoint, "no-such-bucket-here")
    with pytest.raises(StoreError, match="does not exist") as caught:
        store.check()
    assert "\n" not in str(caught.value)


def test_check_refuses_a_bucket_without_versioning_or_object_lock(
    moto_endpoint: str,
    plain_bucket: str,
    s3_admin: Any,
) -> None:
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
    assert isinstance(store, S3Store)
    assert store.describe() == f"s3://{lock_bucket}/app/ at {moto_endpoint}"
    store.check()
