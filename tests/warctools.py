"""Checking WARC files with tools we did not write: warcio's own ``check`` and ``index``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

WARCIO = Path(sys.executable).with_name("warcio")


def warcio(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WARCIO, *map(str, args)], capture_output=True, text=True)


def assert_all_digests_pass(paths: Sequence[Path]) -> int:
    """``warcio check -v`` passes every record of every file, and every digest is SHA-256.

    Returns the number of records checked. A revisit is "present but not checked" by warcio
    (its payload digest names another record); everything else must say "digest pass".
    """
    assert paths, "no WARC files to check"
    check = warcio("check", "-v", *paths)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = [line.strip() for line in check.stdout.splitlines()]
    verdicts = [
        (lines[i].split()[-1], lines[i + 1])
        for i in range(len(lines) - 1)
        if lines[i].startswith("offset ")
    ]
    assert verdicts
    for warc_type, verdict in verdicts:
        expected = (
            "digest present but not checked (revisit)" if warc_type == "revisit" else "digest pass"
        )
        assert verdict == expected, (warc_type, verdict)
    for path in paths:
        index = warcio("index", "-f", "warc-type,warc-block-digest,warc-payload-digest", path)
        assert index.returncode == 0, index.stderr
        for line in index.stdout.splitlines():
            entry = json.loads(line)
            assert entry["warc-block-digest"].startswith("sha256:"), entry
            if "warc-payload-digest" in entry:
                assert entry["warc-payload-digest"].startswith("sha256:"), entry
    return len(verdicts)
