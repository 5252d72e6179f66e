"""The S3 store under faults: throttling, resets and corrupted answers, injected on loopback.

Every test talks to moto's S3 server through :mod:`tests.store.faultproxy`, a proxy on
127.0.0.1 that forwards requests byte for byte and, when told, answers ``503 SlowDown``,
resets the connection in the middle of an upload, flips a byte in S3's answer, loses S3's
answer after S3 did the work, or breaks a download off in the middle. The proxy's log proves
the retries really happened; the bucket itself (read with a plain client straight from moto)
proves what was stored.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("boto3")

from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.errors import IntegrityError, StoreError
from archiver.retrieve import read_record
from archiver.store.s3 import PART_SIZE, READ_CHUNK, MiB, S3Store
from tests.store.conftest import KEY

if TYPE_CHECKING:
    from tests.store.faultproxy import FaultProxy

# The moto server, bucket and fault proxy fixtures.
pytest_plugins = ["tests.store.s3server", "tests.store.faultproxy"]

PREFIX = "city/archive"
NAME = f"{PREFIX}/{KEY}"
REGION = "us-east-1"
ACCESS_KEY = "AKIATESTS3FAULTS0001"
SECRET_KEY = "s3-fault-test-secret-never-shown"
FILE_ID = "01HQZX3Y4W5V6T7S8R9P0N1M2K"


def make_store(endpoint: str, bucket: str, **kwargs: Any) -> S3Store:
    return S3Store(
        bucket,
        prefix=PREFIX,
        region=REGION,
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        **kwargs,
    )


@pytest.fixture
def store(fault_proxy: FaultProxy, lock_bucket: str) -> S3Store:
    """An S3 store whose every request goes through the fault proxy."""
    return make_store(fault_proxy.url, lock_bucket)


@pytest.fixture
def parts_store(fault_proxy: FaultProxy, lock_bucket: str) -> S3Store:
    """The same, uploading anything of 5 MiB or more in 5 MiB parts."""
    return make_store(fault_proxy.url, lock_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)


def source_file(tmp_path: Path, size: int, name: str = "source") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_bytes(admin: Any, bucket: str) -> bytes:
    """The current version under KEY, read straight from moto (not through the proxy)."""
    body: bytes = admin.get_object(Bucket=bucket, Key=NAME)["Body"].read()
    return body


def versions(admin: Any, bucket: str) -> list[dict[str, Any]]:
    answer = admin.list_object_versions(Bucket=bucket)
    return list(answer.get("Versions", [])) + list(answer.get("DeleteMarkers", []))


# -- 503 SlowDown ----------------------------------------------------------------------------


def test_a_slow_down_on_a_single_put_is_retried_and_the_object_is_intact(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 300 * 1024)
    fault_proxy.slow_down("PUT")

    info = store.put(KEY, source, sha(data))

    puts = fault_proxy.requests("PUT")
    assert [p.fault for p in puts] == ["slow_down", None]
    assert info.sha256 == sha(data) and info.size == len(data)
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert len(versions(s3_admin, lock_bucket)) == 1


def test_a_slow_down_on_one_part_of_a_multipart_upload_retries_that_part(
    parts_store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 12 * MiB + 77)  # parts of 5, 5 and 2 MiB
    fault_proxy.slow_down("PUT", query="partNumber", nth=2)

    info = parts_store.put(KEY, source, sha(data))

    parts = fault_proxy.requests("PUT", query="partNumber")
    assert [(p.query["partNumber"], p.fault) for p in parts] == [
        (["1"], None),
        (["2"], "slow_down"),
        (["2"], None),
        (["3"], None),
    ]
    assert info.sha256 == sha(data)
    assert s3_admin.head_object(Bucket=lock_bucket, Key=NAME)["ETag"].strip('"').endswith("-3")
    assert stored_bytes(s3_admin, lock_bucket) == data


def test_a_slow_down_on_a_ranged_get_is_retried_and_the_bytes_are_right(
    store: S3Store, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 256 * 1024)
    store.put(KEY, source, sha(data))
    fault_proxy.slow_down("GET", header="Range")

    assert store.get(KEY, 1000, 5000) == data[1000:6000]

    ranged = fault_proxy.requests("GET", header="Range")
    assert [r.fault for r in ranged[-2:]] == ["slow_down", None]
    assert ranged[-1].headers["range"] == "bytes=1000-5999"


# -- connection reset in the middle of an upload ---------------------------------------------


def test_a_connection_reset_in_the_middle_of_a_single_put_is_retried(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 3 * MiB)
    fault_proxy.reset("PUT")

    info = store.put(KEY, source, sha(data))

    assert [p.fault for p in fault_proxy.requests("PUT")] == ["reset", None]
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert len(versions(s3_admin, lock_bucket)) == 1  # the torn upload left nothing


def test_a_connection_reset_in_the_middle_of_a_part_is_retried(
    parts_store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 11 * MiB)
    fault_proxy.reset("PUT", query="partNumber", nth=2)

    info = parts_store.put(KEY, source, sha(data))

    parts = fault_proxy.requests("PUT", query="partNumber")
    assert [(p.query["partNumber"], p.fault) for p in parts] == [
        (["1"], None),
        (["2"], "reset"),
        (["2"], None),
        (["3"], None),
    ]
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data


# -- a download broken off in the middle ----------------------------------------------------


def test_a_ranged_get_cut_off_in_the_middle_is_read_again(
    store: S3Store, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """botocore retries a request that fails, not a body that breaks off after the headers."""
    source, data = source_file(tmp_path, 256 * 1024)
    store.put(KEY, source, sha(data))
    fault_proxy.cut_answer("GET", header="Range")

    assert store.get(KEY, 100) == data[100:]

    ranged = fault_proxy.requests("GET", header="Range")
    assert [r.fault for r in ranged[-2:]] == ["cut_answer", None]


def test_a_read_back_cut_off_in_the_middle_is_read_again_and_the_put_succeeds(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 256 * 1024)
    fault_proxy.cut_answer("GET", header="Range")

    info = store.put(KEY, source, sha(data))

    assert [r.fault for r in fault_proxy.requests("GET", header="Range")] == ["cut_answer", None]
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data


def test_a_download_that_keeps_breaking_off_is_one_clear_store_error(
    fault_proxy: FaultProxy, lock_bucket: str, tmp_path: Path
) -> None:
    store = make_store(fault_proxy.url, lock_bucket, max_attempts=2)
    source, data = source_file(tmp_path, 256 * 1024)
    store.put(KEY, source, sha(data))
    fault_proxy.cut_answer("GET", header="Range", times=2)

    with pytest.raises(StoreError, match="broke off 2 times in a row") as caught:
        store.get(KEY)

    message = str(caught.value)
    assert "\n" not in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message
    assert [r.fault for r in fault_proxy.requests("GET", header="Range")][-2:] == [
        "cut_answer",
        "cut_answer",
    ]


# -- an answer lost after S3 did the work ---------------------------------------------------


def test_a_put_whose_answer_was_lost_is_retried_and_finds_its_own_object_in_the_way(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    """S3 stored it, the answer never came: the retry's If-None-Match refusal is not a
    second writer, and the put succeeds (after the usual read-back)."""
    source, data = source_file(tmp_path, 300 * 1024)
    fault_proxy.lose_answer("PUT")

    info = store.put(KEY, source, sha(data))

    assert [p.fault for p in fault_proxy.requests("PUT")] == ["lose_answer", None]
    assert info.sha256 == sha(data) and info.size == len(data)
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert len(versions(s3_admin, lock_bucket)) == 1
    assert fault_proxy.requests("GET", header="Range")  # it was read back all the same


def test_a_multipart_completion_whose_answer_was_lost_is_retried_and_succeeds(
    parts_store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 11 * MiB)
    fault_proxy.lose_answer("POST", query="uploadId")  # CompleteMultipartUpload

    info = parts_store.put(KEY, source, sha(data))

    completes = fault_proxy.requests("POST", query="uploadId")
    assert [p.fault for p in completes] == ["lose_answer", None]
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert len(versions(s3_admin, lock_bucket)) == 1


# -- a byte flipped on the way back ----------------------------------------------------------


def test_a_byte_flipped_in_the_read_back_is_caught_and_the_read_back_repeated(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    """One bad answer is the network's fault, not the object's: a second read decides."""
    source, data = source_file(tmp_path, 200 * 1024)
    fault_proxy.flip("GET", header="Range")

    info = store.put(KEY, source, sha(data))

    assert [r.fault for r in fault_proxy.requests("GET", header="Range")] == ["flip", None]
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert len(versions(s3_admin, lock_bucket)) == 1


def test_a_read_back_that_keeps_disagreeing_fails_the_put_and_leaves_nothing(
    store: S3Store, fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    source, data = source_file(tmp_path, 200 * 1024)
    before = source.stat()
    fault_proxy.flip("GET", header="Range", times=2)

    with pytest.raises(IntegrityError, match="it was removed") as caught:
        store.put(KEY, source, sha(data))

    assert "\n" not in str(caught.value)
    assert [r.fault for r in fault_proxy.requests("GET", header="Range")] == ["flip", "flip"]
    assert source.read_bytes() == data
    assert source.stat().st_mtime_ns == before.st_mtime_ns
    assert versions(s3_admin, lock_bucket) == []  # no version, no delete marker
    assert not store.exists(KEY)
    # The spool tries again later, and this time the read-back agrees.
    info = store.put(KEY, source, sha(data))
    assert info.sha256 == sha(data)
    assert stored_bytes(s3_admin, lock_bucket) == data


def test_a_locked_object_that_fails_its_read_back_is_hidden_so_the_key_can_be_stored_again(
    fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    """COMPLIANCE retention forbids removing the bad version; it must not pass as stored."""
    store = make_store(fault_proxy.url, lock_bucket, object_lock_mode="COMPLIANCE")
    source, data = source_file(tmp_path, 200 * 1024)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    fault_proxy.flip("GET", header="Range", times=2)

    with pytest.raises(IntegrityError, match="hidden behind a delete marker") as caught:
        store.put(KEY, source, sha(data), retain_until=until)

    assert "\n" not in str(caught.value)
    bad = [v for v in versions(s3_admin, lock_bucket) if "Size" in v]
    assert len(bad) == 1 and bad[0]["VersionId"] in str(caught.value)
    # What the spool asks after a failed put: is it stored? No, so it puts again.
    assert not store.exists(KEY)
    info = store.put(KEY, source, sha(data), retain_until=until)
    assert info.sha256 == sha(data)
    assert info.version_id != bad[0]["VersionId"]
    assert store.head(KEY) == info
    assert stored_bytes(s3_admin, lock_bucket) == data
    assert [v.version_id for v in store.list_versions(KEY)] == [
        info.version_id,
        bad[0]["VersionId"],
    ]


# -- S3 that keeps refusing ------------------------------------------------------------------


def test_persistent_slow_downs_give_one_clear_secret_free_line_and_store_nothing(
    fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    store = make_store(fault_proxy.url, lock_bucket, max_attempts=3)
    source, data = source_file(tmp_path, 100 * 1024)
    fault_proxy.slow_down("PUT", times=3)

    with pytest.raises(StoreError) as caught:
        store.put(KEY, source, sha(data))

    message = str(caught.value)
    assert message.startswith(f"cannot store {KEY!r} in s3://{lock_bucket}/")
    assert "SlowDown (HTTP 503) to all 3 attempts" in message
    assert "\n" not in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message
    assert [p.fault for p in fault_proxy.requests("PUT")] == ["slow_down"] * 3
    assert versions(s3_admin, lock_bucket) == []


def test_persistent_slow_downs_on_a_part_abort_the_upload_and_store_nothing(
    fault_proxy: FaultProxy, s3_admin: Any, lock_bucket: str, tmp_path: Path
) -> None:
    store = make_store(
        fault_proxy.url, lock_bucket, max_attempts=3, multipart_threshold=5 * MiB, part_size=5 * MiB
    )
    source, data = source_file(tmp_path, 6 * MiB)
    fault_proxy.slow_down("PUT", query="partNumber", nth=2, times=3)

    with pytest.raises(StoreError) as caught:
        store.put(KEY, source, sha(data))

    message = str(caught.value)
    assert "SlowDown (HTTP 503) to all 3 attempts" in message
    assert "\n" not in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message
    parts = fault_proxy.requests("PUT", query="partNumber")
    assert [p.fault for p in parts] == [None, "slow_down", "slow_down", "slow_down"]
    assert fault_proxy.requests("DELETE", query="uploadId")  # aborted
    assert versions(s3_admin, lock_bucket) == []
    assert s3_admin.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == []


# -- a byte flipped in an ordinary read ------------------------------------------------------


def warc_member(record_id: str, block: bytes) -> tuple[bytes, str]:
    """One gzipped WARC record as the archiver stores them (a gzip member), and its digest."""
    label = "sha256:" + base64.b32encode(hashlib.sha256(block).digest()).decode("ascii")
    head = (
        "WARC/1.1\r\nWARC-Type: resource\r\n"
        f"WARC-Record-ID: {record_id}\r\nWARC-Block-Digest: {label}\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    )
    return gzip.compress(head.encode() + block + b"\r\n\r\n"), label


def test_a_byte_flipped_in_a_ranged_read_is_caught_by_the_record_digest_check(
    store: S3Store, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """``get`` returns the bytes as S3's answer brought them (a ranged GET carries no
    checksum); the readers that matter check digests: here, reading a record back."""
    record_id = "<urn:uuid:4a1d4bf0-8f7e-4a47-9b61-3a4f0c1a7e52>"
    first, _ = warc_member("<urn:uuid:0f6d1c1e-8f7e-4a47-9b61-3a4f0c1a7e52>", b"x" * 4000)
    member, label = warc_member(record_id, os.urandom(20_000))  # random: gzip cannot shrink it
    source = tmp_path / "file.warc.gz"
    source.write_bytes(first + member)
    info = store.put(KEY, source, sha(first + member))

    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    try:
        upgrade(catalog)
        now = datetime.now(UTC)
        with catalog.session() as session:
            session.add(
                StoredFile(
                    id=FILE_ID,
                    key=KEY,
                    kind="warc",
                    partition="general/city-hall/2024-03",
                    sha256=info.sha256,
                    size=info.size,
                    records=2,
                    created_at=now,
                    stored_at=now,
                    retain_until=None,
                )
            )
            session.add(
                WarcRecord(
                    record_id=record_id,
                    file_id=FILE_ID,
                    offset=len(first),
                    length=len(member),
                    warc_type="resource",
                    target_uri=None,
                    block_digest=label,
                    payload_digest=None,
                    recorded_at=now,
                )
            )

        fault_proxy.flip("GET", header="Range")
        altered = store.get(KEY, len(first), len(member))
        assert altered != member and len(altered) == len(member)  # no check in get itself

        fault_proxy.flip("GET", header="Range")
        with pytest.raises(IntegrityError, match=r"record <urn:uuid:4a1d4bf0"):
            read_record(catalog, store, record_id)

        assert read_record(catalog, store, record_id).member == member  # the object is fine
    finally:
        catalog.dispose()
    assert [r.fault for r in fault_proxy.requests("GET", header="Range")][-3:] == [
        "flip",
        "flip",
        None,
    ]


# -- a large file: in parts, in bounded memory -----------------------------------------------

#: Runs in a child process, so the peak memory measured is the upload's alone (not pytest's).
#: Loading boto3 and building a client peaks higher than the steady state, so the kernel's
#: high-water mark is reset first (writing 5 to /proc/self/clear_refs, Linux >= 4.0).
UPLOAD_AND_MEASURE = """
import json, sys
from pathlib import Path
from archiver.store.s3 import S3Store

def kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

endpoint, bucket, source, digest, key, secret = sys.argv[1:7]
store = S3Store(bucket, prefix="big", region="us-east-1", endpoint_url=endpoint,
                access_key_id=key, secret_access_key=secret)
store.check()  # boto3 loaded, the client built, a connection open: the baseline
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = kib("VmRSS")
info = store.put("warc/big.warc.gz", Path(source), digest)
peak = kib("VmHWM")
sys.stdout.write(json.dumps({"before_kib": before, "peak_kib": peak, "sha256": info.sha256}))
"""


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs"
)
def test_a_200_mib_file_is_uploaded_in_parts_in_bounded_memory(
    fault_proxy: FaultProxy, lock_bucket: str, tmp_path: Path
) -> None:
    """200 MiB in 16 MiB parts (and read back in 8 MiB ranges) never holds the whole file:
    the upload's peak memory grows by a few parts, far less than the file."""
    source = tmp_path / "big.warc.gz"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(200):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    size = source.stat().st_size

    args = [fault_proxy.url, lock_bucket, str(source), digest.hexdigest(), ACCESS_KEY, SECRET_KEY]
    child = subprocess.run(
        [sys.executable, "-c", UPLOAD_AND_MEASURE, *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    measured = json.loads(child.stdout)
    grew = (measured["peak_kib"] - measured["before_kib"]) * 1024

    assert measured["sha256"] == digest.hexdigest()  # put read it back and checked it
    parts = fault_proxy.requests("PUT", query="partNumber")
    assert len(parts) == -(-size // PART_SIZE) == 13  # 12 parts of 16 MiB and one of 8
    assert len(fault_proxy.requests("GET", header="Range")) == size // READ_CHUNK
    # Measured: about 32 MiB, two parts' worth. Holding the whole file would add at least
    # 200 MiB; the bound of 4 parts (64 MiB) leaves room for allocator slack.
    assert grew < 4 * PART_SIZE, f"the upload grew the process by {grew / MiB:.0f} MiB"
