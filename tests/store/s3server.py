"""A real S3 endpoint for the S3 store tests: moto's standalone server in a subprocess.

The server listens on 127.0.0.1 on a free port for the whole test session; every test talks
to it over real HTTP, as the archiver talks to AWS or MinIO. Each test gets a fresh bucket
with versioning and Object Lock enabled (``ObjectLockEnabledForBucket=True``). Use them with
``pytest_plugins = ["tests.store.s3server"]``; do not import this module from a test module
(it would then be imported before pytest can rewrite its asserts).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"  # moto accepts any credentials
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if not with 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server running for this session (``http://127.0.0.1:<port>``)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The server logs every request to stderr. A file, not a pipe: a pipe nobody reads fills
    # up after a few hundred requests and the server then blocks, answering nothing.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                pytest.fail(f"moto server exited with {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer on {url} within {START_TIMEOUT}s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client on the moto server, for setting up and inspecting buckets."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def s3_admin(moto_endpoint: str) -> Any:
    """A raw boto3 S3 client on the moto server (to inspect what the store really did)."""
    return s3_client(moto_endpoint)


@pytest.fixture
def lock_bucket(s3_admin: Any) -> Iterator[str]:
    """A fresh bucket with Object Lock (and so versioning) enabled; emptied afterwards."""
    name = f"archive-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    # Best effort: governance locks can be bypassed; anything left dies with the server.
    with contextlib.suppress(Exception):
        pages = s3_admin.get_paginator("list_object_versions").paginate(Bucket=name)
        for page in pages:
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                with contextlib.suppress(Exception):
                    s3_admin.put_object_legal_hold(
                        Bucket=name,
                        Key=entry["Key"],
                        VersionId=entry["VersionId"],
                        LegalHold={"Status": "OFF"},
                    )
                with contextlib.suppress(Exception):
                    s3_admin.delete_object(
                        Bucket=name,
                        Key=entry["Key"],
                        VersionId=entry["VersionId"],
                        BypassGovernanceRetention=True,
                    )


@pytest.fixture
def closed_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens (a wrong endpoint)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def plain_bucket(s3_admin: Any) -> str:
    """A fresh bucket without versioning or Object Lock (which ``check()`` must refuse)."""
    name = f"plain-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=name)
    return name
