"""The store contract, written once and run against every backend.

Each test takes ``any_store``, a :class:`Backend`, and runs once per backend:

- ``local``: a ``LocalStore`` on a temporary directory, judged by a clock the test moves;
- ``s3``: an ``S3Store`` on moto's server over HTTP on 127.0.0.1, a fresh bucket with
  Object Lock per test (fixtures from ``tests/store/s3server.py``);
- ``s3-real``: an ``S3Store`` on a real bucket, only when ``ARCHIVER_TEST_S3_BUCKET`` is set.
  Without it these cases are not generated, and the one test that checks the real bucket is
  skipped with "set ARCHIVER_TEST_S3_BUCKET to run against a real bucket" (one line in the
  summary rather than one per contract test).

Time is the backend's business: a test asks for ``now()`` and ``wait_until(moment)``. The
local store's clock is moved by hand; on S3 the server enforces Object Lock by its own clock,
so ``wait_until`` really sleeps. Retention in these tests is therefore seconds long, and only
two tests wait for it to lapse.

Against a real bucket::

    ARCHIVER_TEST_S3_BUCKET=city-archive-test .venv/bin/python -m pytest \\
        tests/store/test_contract.py -k s3-real

(or ``ARCHIVER_TEST_S3_BUCKET=city-archive-test make test`` for the whole suite). The bucket
must already exist with Object Lock enabled. Optional: ``ARCHIVER_TEST_S3_REGION``,
``ARCHIVER_TEST_S3_ENDPOINT`` (MinIO, Ceph, ...) and ``ARCHIVER_TEST_S3_PREFIX`` (default
``archiver-test/<uuid of the run>``). Credentials come from boto3's standard chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role). Each test
writes only under ``<prefix>/<uuid of the test>/``, with GOVERNANCE locks a few seconds long,
and afterwards deletes everything it wrote there: bypassing governance retention where the
credentials allow it, otherwise waiting the seconds out. Anything it could not delete is
reported as a warning naming the keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.store import LocalStore, Store
from archiver.store.base import put_bytes
from archiver.store.s3 import MiB, S3Store
from tests.store.conftest import KEY, START, Clock, PutFn

# The moto server and bucket fixtures.
pytest_plugins = ["tests.store.s3server"]

# moto accepts any credentials; these only prove none of them leak into describe().
MOTO_REGION = "us-east-1"
MOTO_ACCESS_KEY = "AKIATESTSTORECONTRACT"
MOTO_SECRET_KEY = "store-contract-secret-never-shown"
MOTO_PREFIX = "city/archive"

REAL_BUCKET = os.environ.get("ARCHIVER_TEST_S3_BUCKET") or None
REAL_SKIP_REASON = "set ARCHIVER_TEST_S3_BUCKET to run against a real bucket"
#: How long a test waits at most, after the test, for a real bucket's locks to lapse.
REAL_CLEANUP_WAIT = 30.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Backend:
    """One store under test, with a way to store bytes and a way to let time pass."""

    name: str
    store: Store
    put: PutFn
    #: What ``describe()`` must name.
    location: str
    #: Strings ``describe()`` must never show.
    secrets: tuple[str, ...] = ()
    #: The local store's hand-moved clock; ``None`` means real time (S3 keeps its own).
    clock: Clock | None = None
    #: A retention period short enough to wait out in a test.
    lock_for: timedelta = timedelta(seconds=2)
    #: Extra real time allowed for the server's clock to pass a moment after ours has.
    margin: timedelta = timedelta(0)

    def now(self) -> datetime:
        """The time the store judges retention by (whole seconds on S3, as S3 keeps it)."""
        if self.clock is not None:
            return self.clock()
        return datetime.now(UTC).replace(microsecond=0)

    def wait_until(self, moment: datetime) -> None:
        """Return once ``moment`` has come for the store: move its clock, or sleep."""
        if self.clock is not None:
            self.clock.now = max(self.clock.now, moment)
            return
        while (left := (moment + self.margin - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(left)


@pytest.fixture(params=["local", "s3", *(["s3-real"] if REAL_BUCKET else [])])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store under test, once per backend."""
    sources = tmp_path / "sources"
    if request.param == "local":
        clock = Clock(START)
        local = LocalStore(tmp_path / "store", now=clock)
        yield Backend(
            "local", local, PutFn(local, sources), location=local.root.as_uri(), clock=clock
        )
    elif request.param == "s3":
        endpoint: str = request.getfixturevalue("moto_endpoint")
        bucket: str = request.getfixturevalue("lock_bucket")
        moto = S3Store(
            bucket,
            prefix=MOTO_PREFIX,
            region=MOTO_REGION,
            endpoint_url=endpoint,
            access_key_id=MOTO_ACCESS_KEY,
            secret_access_key=MOTO_SECRET_KEY,
        )
        yield Backend(
            "s3",
            moto,
            PutFn(moto, sources),
            location=f"s3://{bucket}/{MOTO_PREFIX}/",
            secrets=(MOTO_ACCESS_KEY, MOTO_SECRET_KEY),
            margin=timedelta(seconds=0.2),
        )
    else:
        real: Backend = request.getfixturevalue("real_s3")
        yield real


# -- a real bucket ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_run_prefix() -> str:
    """Where this run's tests write in the real bucket; each test adds its own part."""
    return (os.environ.get("ARCHIVER_TEST_S3_PREFIX") or f"archiver-test/{uuid.uuid4()}").strip("/")


@pytest.fixture
def real_s3(real_run_prefix: str, tmp_path: Path) -> Iterator[Backend]:
    """An S3Store on the real bucket under a prefix of its own, emptied afterwards."""
    bucket = REAL_BUCKET
    if bucket is None:
        pytest.skip(REAL_SKIP_REASON)
    region = os.environ.get("ARCHIVER_TEST_S3_REGION") or None
    endpoint = os.environ.get("ARCHIVER_TEST_S3_ENDPOINT") or None
    prefix = f"{real_run_prefix}/{uuid.uuid4().hex[:12]}"
    store = S3Store(bucket, prefix=prefix, region=region, endpoint_url=endpoint)
    store.check()  # a bucket that is unreachable or lacks Object Lock fails the test, loudly
    admin = boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint)
    try:
        yield Backend(
            "s3-real",
            store,
            PutFn(store, tmp_path / "sources"),
            location=f"s3://{bucket}/{prefix}/",
            lock_for=timedelta(seconds=5),
            margin=timedelta(seconds=1.5),
        )
    finally:
        left = remove_everything_under(admin, bucket, f"{prefix}/")
        if left:
            warnings.warn(
                f"the store tests could not delete from s3://{bucket}/: {', '.join(left)}; "
                "delete them by hand (their locks last seconds)",
                stacklevel=1,
            )


def remove_everything_under(client: Any, bucket: str, prefix: str) -> list[str]:
    """Delete every version and delete marker under ``prefix``; name what is left."""

    def delete(key: str, version: str) -> bool:
        for bypass in ({}, {"BypassGovernanceRetention": True}):
            try:
                client.delete_object(Bucket=bucket, Key=key, VersionId=version, **bypass)
            except (ClientError, BotoCoreError):
                continue
            return True
        return False

    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    entries = [
        (entry["Key"], entry["VersionId"])
        for page in pages
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    left = []
    for key, version in entries:
        if delete(key, version):
            continue
        with contextlib.suppress(ClientError, BotoCoreError):
            client.put_object_legal_hold(
                Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"}
            )
        if not delete(key, version):
            left.append((key, version))
    if left:
        # Still locked (COMPLIANCE, or no s3:BypassGovernanceRetention): the locks these tests
        # set last seconds, so wait out those that end soon, once.
        soon = datetime.now(UTC) + timedelta(seconds=REAL_CLEANUP_WAIT)
        ends = []
        for key, version in left:
            with contextlib.suppress(ClientError, BotoCoreError):
                head = client.head_object(Bucket=bucket, Key=key, VersionId=version)
                ends.append(head.get("ObjectLockRetainUntilDate") or datetime.now(UTC))
        if waitable := [end for end in ends if end <= soon]:
            time.sleep(max(0.0, (max(waitable) - datetime.now(UTC)).total_seconds() + 1.5))
        left = [(key, version) for key, version in left if not delete(key, version)]
    return [f"{key} (version {version})" for key, version in left]


@pytest.mark.parametrize(
    "backend",
    [pytest.param("s3-real", marks=pytest.mark.skipif(not REAL_BUCKET, reason=REAL_SKIP_REASON))],
)
def test_the_real_bucket_has_object_lock_and_nothing_under_the_test_prefix(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """The one test that stands for the real-bucket cases when no bucket is configured."""
    real: Backend = request.getfixturevalue("real_s3")
    assert real.name == backend
    assert isinstance(real.store, S3Store)
    real.store.check()
    assert list(real.store.list()) == []


# -- round trip ------------------------------------------------------------------------------


def test_every_backend_is_a_store(any_store: Backend) -> None:
    assert isinstance(any_store.store, Store)


def test_check_accepts_a_store_set_up_as_required_and_leaves_it_empty(
    any_store: Backend,
) -> None:
    any_store.store.check()
    any_store.store.check()  # and again: checking changes nothing

    assert list(any_store.store.list()) == []


def test_put_then_head_get_open_and_exists_return_what_was_stored(any_store: Backend) -> None:
    store = any_store.store
    data = b"WARC/1.1\r\n" * 1000
    info = any_store.put(KEY, data)

    assert (info.key, info.size, info.sha256) == (KEY, len(data), sha(data))
    assert (info.retain_until, info.legal_hold) == (None, False)
    assert info.created is not None and info.created.utcoffset() == timedelta(0)
    assert store.head(KEY) == info
    assert store.get(KEY) == data
    assert b"".join(store.open(KEY)) == data
    assert store.exists(KEY)
    assert store.list_versions(KEY) == [info]


def test_open_streams_a_multi_megabyte_object_back_whole(any_store: Backend) -> None:
    data = os.urandom(2 * MiB + 17)
    any_store.put(KEY, data)

    chunks = list(any_store.store.open(KEY))

    assert all(chunks), "no empty chunks"
    assert b"".join(chunks) == data


def test_get_reads_a_byte_range(any_store: Backend) -> None:
    store = any_store.store
    any_store.put(KEY, b"0123456789")

    assert store.get(KEY, 0, 3) == b"012"
    assert store.get(KEY, 4, 2) == b"45"
    assert store.get(KEY, 7) == b"789"
    assert store.get(KEY, 8, 100) == b"89"
    assert store.get(KEY, 10) == b""
    assert store.get(KEY, 50, 5) == b""
    assert store.get(KEY, 3, 0) == b""
    assert store.get(KEY, 0, 10**15) == b"0123456789"
    with pytest.raises(ValueError, match="must not be negative"):
        store.get(KEY, -1)
    with pytest.raises(ValueError, match="must not be negative"):
        store.get(KEY, 0, -1)


def test_an_empty_object_round_trips(any_store: Backend) -> None:
    store = any_store.store
    info = any_store.put("control/empty", b"")

    assert (info.size, info.sha256) == (0, sha(b""))
    assert store.head("control/empty") == info
    assert store.get("control/empty") == b""
    assert store.get("control/empty", 0, 10) == b""
    assert list(store.open("control/empty")) == []


def test_put_bytes_stores_a_small_object_held_in_memory(any_store: Backend, tmp_path: Path) -> None:
    info = put_bytes(any_store.store, "layout-version", b"1\n", tmp_dir=tmp_path)

    assert (info.key, info.size, info.sha256) == ("layout-version", 2, sha(b"1\n"))
    assert any_store.store.get("layout-version") == b"1\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".put-")] == []


def test_absent_objects_are_reported_as_not_found(any_store: Backend) -> None:
    store = any_store.store
    until = any_store.now() + any_store.lock_for

    assert not store.exists(KEY)
    assert store.list_versions(KEY) == []
    assert store.delete_all_versions(KEY) == 0
    for call in (
        lambda: store.head(KEY),
        lambda: store.get(KEY),
        lambda: store.open(KEY),  # raised at the call, not at the first chunk
        lambda: store.delete(KEY),
        lambda: store.set_legal_hold(KEY, True),
        lambda: store.set_retention(KEY, until),
    ):
        with pytest.raises(ObjectNotFoundError, match=f"'{KEY}'"):
            call()


def test_a_prefix_of_a_stored_key_is_not_an_object(any_store: Backend) -> None:
    store = any_store.store
    any_store.put("warc/a/b")

    assert not store.exists("warc/a")
    with pytest.raises(ObjectNotFoundError, match="'warc/a'"):
        store.get("warc/a")
    with pytest.raises(ObjectNotFoundError, match="'warc/a'"):
        store.head("warc/a")


def test_describe_names_the_location_in_one_line_without_secrets(any_store: Backend) -> None:
    any_store.put(KEY)
    described = any_store.store.describe()

    assert any_store.location in described
    assert "\n" not in described
    assert not [s for s in any_store.secrets if s in described], "describe() shows a credential"


# -- integrity and write-once ----------------------------------------------------------------


def test_a_key_is_written_once_and_the_first_object_stays(any_store: Backend) -> None:
    store = any_store.store
    first = any_store.put(KEY, b"first")

    with pytest.raises(StoreError, match="write-once"):
        any_store.put(KEY, b"second")
    with pytest.raises(StoreError, match="write-once"):
        any_store.put(KEY, b"first")  # even the same bytes

    assert store.get(KEY) == b"first"
    assert store.head(KEY) == first
    assert store.list_versions(KEY) == [first]


def test_concurrent_puts_to_one_key_store_exactly_one(any_store: Backend, tmp_path: Path) -> None:
    if any_store.name == "s3":
        pytest.skip(
            "moto makes a new key visible before it sets the key's metadata, so a racing "
            "writer can see a half-made object; real S3 does not (s3-real runs this test)"
        )
    store = any_store.store
    writers = [PutFn(store, tmp_path / f"writer-{n}") for n in range(8)]
    start = threading.Barrier(len(writers))
    outcomes: list[str] = []

    def write(n: int) -> None:
        start.wait()
        try:
            writers[n](KEY, f"writer {n}".encode())
            outcomes.append("stored")
        except StoreError as exc:
            outcomes.append("refused" if "write-once" in str(exc) else f"failed: {exc}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused"] * 7 + ["stored"]
    assert len(store.list_versions(KEY)) == 1
    assert sha(store.get(KEY)) == store.head(KEY).sha256


def test_a_wrong_sha256_is_refused_and_nothing_is_stored(any_store: Backend) -> None:
    store = any_store.store
    with pytest.raises(IntegrityError, match="nothing was stored"):
        any_store.put(KEY, b"the real bytes", sha256=sha(b"other bytes"))

    assert not store.exists(KEY)
    assert store.list_versions(KEY) == []
    assert list(store.list()) == []


def test_a_malformed_sha256_is_a_programming_error(any_store: Backend) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        any_store.put(KEY, sha256="abc")
    assert not any_store.store.exists(KEY)


def test_an_uppercase_sha256_is_accepted_and_reported_lowercase(any_store: Backend) -> None:
    info = any_store.put(KEY, b"x", sha256=sha(b"x").upper())

    assert info.sha256 == sha(b"x")
    assert any_store.store.head(KEY).sha256 == sha(b"x")


def test_a_missing_source_file_is_a_store_error(any_store: Backend, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read"):
        any_store.store.put(KEY, tmp_path / "nope", "0" * 64)
    assert not any_store.store.exists(KEY)


# -- keys ------------------------------------------------------------------------------------

UNSAFE_KEYS = [
    "../x",
    "a/../../b",
    "/abs",
    "a//b",
    "a/",
    "a/./b",
    "a\\b",
    "a\x00b",
    "a\nb",
    "",
    ".meta/x",
]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused_by_every_operation(any_store: Backend, key: str) -> None:
    store = any_store.store
    until = any_store.now() + any_store.lock_for
    operations: dict[str, Callable[[], object]] = {
        "put": lambda: any_store.put(key),
        "get": lambda: store.get(key),
        "open": lambda: store.open(key),
        "head": lambda: store.head(key),
        "exists": lambda: store.exists(key),
        "delete": lambda: store.delete(key),
        "set_retention": lambda: store.set_retention(key, until),
        "set_legal_hold": lambda: store.set_legal_hold(key, True),
        "list_versions": lambda: store.list_versions(key),
        "delete_all_versions": lambda: store.delete_all_versions(key),
    }
    refused = []
    for name, call in operations.items():
        try:
            call()
        except UnsafeKeyError:
            refused.append(name)

    assert refused == list(operations)
    assert list(store.list()) == []


# -- listing ---------------------------------------------------------------------------------


def test_list_is_in_key_order_and_filters_by_prefix(any_store: Backend) -> None:
    store = any_store.store
    for key in ["b", "a/b", "a-c", "a/a/z", "ab", "layout-version"]:
        any_store.put(key, key.encode())

    listed = list(store.list())
    assert [i.key for i in listed] == ["a-c", "a/a/z", "a/b", "ab", "b", "layout-version"]
    assert listed == [store.head(i.key) for i in listed]
    assert [i.key for i in store.list("a/")] == ["a/a/z", "a/b"]
    assert [i.key for i in store.list("a")] == ["a-c", "a/a/z", "a/b", "ab"]
    assert [i.key for i in store.list("a/a")] == ["a/a/z"]
    assert [i.key for i in store.list("nothing/")] == []


def test_list_never_shows_reserved_names_and_refuses_to_list_them(any_store: Backend) -> None:
    store = any_store.store
    any_store.put(KEY)
    store.set_legal_hold(KEY, True)  # a metadata change, too, leaves nothing to list
    store.set_legal_hold(KEY, False)

    assert [i.key for i in store.list()] == [KEY]
    for prefix in (".", ".meta/", ".tmp/", ".t"):
        with pytest.raises(UnsafeKeyError, match="reserved"):
            list(store.list(prefix))


@pytest.mark.parametrize("prefix", ["a/../", "a//", "a/./", "a\\b/", "/a", "a\nb/"])
def test_a_prefix_no_safe_key_can_start_with_lists_nothing(any_store: Backend, prefix: str) -> None:
    any_store.put("a/b")

    assert list(any_store.store.list(prefix)) == []


def test_listing_an_empty_store_yields_nothing(any_store: Backend) -> None:
    assert list(any_store.store.list()) == []
    assert list(any_store.store.list("warc/")) == []


# -- deletion --------------------------------------------------------------------------------


def test_an_unretained_object_can_be_deleted_and_only_it_goes(any_store: Backend) -> None:
    store = any_store.store
    any_store.put(KEY, b"dispose of me")
    other = any_store.put("warc/other", b"keep me")

    store.delete(KEY)

    assert not store.exists(KEY)
    with pytest.raises(ObjectNotFoundError):
        store.get(KEY)
    assert store.list_versions(KEY) == []
    assert list(store.list()) == [other]
    assert store.get("warc/other") == b"keep me"


def test_delete_all_versions_removes_the_object_and_counts_what_it_deleted(
    any_store: Backend,
) -> None:
    store = any_store.store
    info = any_store.put(KEY)
    other = any_store.put("warc/other")
    assert store.list_versions(KEY) == [info]

    assert store.delete_all_versions(KEY) == 1

    assert not store.exists(KEY)
    assert store.list_versions(KEY) == []
    assert list(store.list()) == [other]
    assert store.delete_all_versions(KEY) == 0


# -- retention and legal holds ---------------------------------------------------------------


def test_a_retained_object_cannot_be_deleted_before_its_date_but_can_after(
    any_store: Backend,
) -> None:
    store = any_store.store
    until = any_store.now() + any_store.lock_for
    info = any_store.put(KEY, b"keep me", retain_until=until)
    assert info.retain_until == until

    with pytest.raises(RetentionError, match="retained until"):
        store.delete(KEY)
    with pytest.raises(RetentionError, match="retained until"):
        store.delete_all_versions(KEY)
    assert store.get(KEY) == b"keep me"
    assert store.head(KEY) == info

    any_store.wait_until(until)
    store.delete(KEY)

    assert not store.exists(KEY)
    assert store.list_versions(KEY) == []


def test_retention_can_be_extended_but_never_shortened(any_store: Backend) -> None:
    store = any_store.store
    until = any_store.now() + any_store.lock_for
    any_store.put(KEY, retain_until=until)
    later = until + timedelta(seconds=1)

    extended = store.set_retention(KEY, later)
    assert extended.retain_until == later
    assert store.head(KEY) == extended

    with pytest.raises(RetentionError, match="never shortened"):
        store.set_retention(KEY, until)
    assert store.head(KEY).retain_until == later

    assert store.set_retention(KEY, later) == extended  # the same date again shortens nothing


def test_retention_can_be_set_on_an_object_stored_without_one(any_store: Backend) -> None:
    store = any_store.store
    any_store.put(KEY, b"now retained")
    until = any_store.now() + any_store.lock_for

    info = store.set_retention(KEY, until)

    assert info.retain_until == until
    assert store.head(KEY).retain_until == until
    with pytest.raises(RetentionError, match="retained until"):
        store.delete(KEY)
    assert store.get(KEY) == b"now retained"


def test_retention_given_in_any_time_zone_is_reported_in_utc(any_store: Backend) -> None:
    until = any_store.now() + any_store.lock_for
    info = any_store.put(KEY, retain_until=until.astimezone(ZoneInfo("America/Chicago")))

    assert info.retain_until == until
    assert info.retain_until is not None and info.retain_until.tzinfo is UTC
    head = any_store.store.head(KEY).retain_until
    assert head == until
    assert head is not None and head.tzinfo is UTC


def test_naive_datetimes_are_refused(any_store: Backend) -> None:
    store = any_store.store
    naive = (any_store.now() + any_store.lock_for).replace(tzinfo=None)

    with pytest.raises(ValueError, match="timezone-aware"):
        any_store.put(KEY, retain_until=naive)
    assert not store.exists(KEY)

    any_store.put(KEY)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.set_retention(KEY, naive)
    assert store.head(KEY).retain_until is None


def test_a_legal_hold_blocks_deletion_until_it_is_released(any_store: Backend) -> None:
    store = any_store.store
    any_store.put(KEY, b"evidence")

    held = store.set_legal_hold(KEY, True)
    assert held.legal_hold
    assert store.head(KEY).legal_hold
    with pytest.raises(RetentionError, match="legal hold"):
        store.delete(KEY)
    with pytest.raises(RetentionError, match="legal hold"):
        store.delete_all_versions(KEY)
    assert store.get(KEY) == b"evidence"

    released = store.set_legal_hold(KEY, False)
    assert not released.legal_hold
    assert not store.head(KEY).legal_hold
    store.delete(KEY)
    assert not store.exists(KEY)


def test_a_legal_hold_outlasts_retention(any_store: Backend) -> None:
    store = any_store.store
    until = any_store.now() + any_store.lock_for
    any_store.put(KEY, retain_until=until)
    assert store.set_legal_hold(KEY, True).retain_until == until

    any_store.wait_until(until)  # retention is over: the hold alone keeps the object
    with pytest.raises(RetentionError, match="legal hold"):
        store.delete(KEY)
    with pytest.raises(RetentionError, match="legal hold"):
        store.delete_all_versions(KEY)
    assert store.exists(KEY)

    store.set_legal_hold(KEY, False)
    assert store.delete_all_versions(KEY) == 1
    assert store.delete_all_versions(KEY) == 0
    assert not store.exists(KEY)
