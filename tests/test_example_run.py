"""What `make run` does on a fresh clone: the example configuration captures the sample export.

No network, no credentials: the example's only enabled account imports
``examples/mastodon-export.zip``. The WARCs it writes pass ``warcio check``, DuckDB reads the
Parquet, and the catalog shows the items.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from tests.warctools import assert_all_digests_pass

REPO = Path(__file__).resolve().parents[1]
ARCHIVER = Path(sys.executable).with_name("archiver")


def test_the_example_configuration_captures_the_sample_export(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.example.toml", tmp_path / "config.example.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    config = tmp_path / "config.example.toml"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    with (tmp_path / "run.log").open("wb") as log:
        proc = subprocess.Popen(
            [ARCHIVER, "--config", config, "run"], stdout=log, stderr=log, env=env, cwd=tmp_path
        )
        try:
            deadline = time.monotonic() + 60
            while "capture finished" not in (tmp_path / "run.log").read_text():
                assert proc.poll() is None, (tmp_path / "run.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()

    store = tmp_path / "var" / "store"
    warcs = sorted(p for p in store.glob("warc/**/*.warc.gz"))
    assert assert_all_digests_pass(warcs) >= 25
    parquet = [str(p) for p in store.glob("parquet/**/*.parquet")]
    kinds = dict(
        duckdb.sql(f"SELECT kind, count(*) FROM read_parquet({parquet!r}) GROUP BY kind").fetchall()
    )
    assert kinds["post"] >= 10 and kinds["profile"] == 1
    status = subprocess.run(
        [ARCHIVER, "--config", config, "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    counts = json.loads(status.stdout)["counts"]
    assert counts["items"] == sum(kinds.values()) and counts["capture_runs"] == 1
