"""Bounded memory for media: a large body streams through the archiving path, never held whole.

Each case runs ``benchmarks/media_stream.py`` without its baseline: a body server on
127.0.0.1 and one measuring child, both separate processes, so the ``ru_maxrss`` checked
here is the child's own. The child imports the archiver, reads its peak RSS (the
*import baseline*), then does what ``MediaFetcher._from_http`` does:
``ArchivingHttpClient.download`` into the spool directory, ``WarcWriter.append`` of the
request and response records, ``sync``, ``close`` (the verifying re-read); then it reads
its peak RSS again. The benchmark itself fails when the archived payload digest is not the
body's SHA-256; here the WARC must also pass warcio's own ``check``.

The 256 MiB cases are ``slow`` (``make test-slow``); a 32 MiB case runs under ``make test``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.warctools import assert_all_digests_pass

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "media_stream.py"
MIB = 1 << 20
KIB_PER_MIB = 1024


def stream_through_archiver(tmp_path: Path, size: int, variant: str) -> dict[str, Any]:
    """Run the benchmark's archiver path once on ``size`` bytes; its result (one run)."""
    keep = tmp_path / "spool"
    result = tmp_path / "result.json"
    argv = [
        sys.executable,
        str(BENCHMARK),
        "--size",
        str(size),
        "--variants",
        variant,
        "--no-baseline",
        "--keep",
        str(keep),
        "--json",
        str(result),
        "--timeout",
        "240",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs: list[dict[str, Any]] = json.loads(result.read_text(encoding="utf-8"))["runs"]
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["kind"] == "archiver"
    assert run["digest_ok"], run
    assert run["warc_records"] == 3, run  # warcinfo, request, response
    return run


def check_warc(run: dict[str, Any]) -> None:
    """warcio's ``check`` passes every record of the WARC; then the big file is removed."""
    warc = Path(run["warc_path"])
    try:
        assert warc.name.endswith(".warc.gz"), warc
        assert assert_all_digests_pass([warc]) == 3
    finally:
        shutil.rmtree(warc.parent, ignore_errors=True)


def describe(run: dict[str, Any]) -> str:
    return (
        f"RSS after imports {run['rss_import_kib'] / KIB_PER_MIB:.1f} MiB, "
        f"peak {run['rss_peak_kib'] / KIB_PER_MIB:.1f} MiB, "
        f"growth {run['rss_growth_kib'] / KIB_PER_MIB:.1f} MiB"
    )


def test_32_mib_download_grows_rss_by_less_than_a_copy_of_the_body(tmp_path: Path) -> None:
    run = stream_through_archiver(tmp_path, 32 * MIB, "chunked")
    # A single extra copy of the 32 MiB body in memory would grow RSS by ~36 MiB.
    assert run["rss_growth_kib"] < 24 * KIB_PER_MIB, describe(run)
    check_warc(run)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["length", "chunked"])
def test_256_mib_download_peaks_below_import_rss_plus_64_mib(tmp_path: Path, variant: str) -> None:
    run = stream_through_archiver(tmp_path, 256 * MIB, variant)
    assert run["rss_peak_kib"] < run["rss_import_kib"] + 64 * KIB_PER_MIB, describe(run)
    check_warc(run)
