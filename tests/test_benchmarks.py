"""The benchmark harness does not rot: it runs, reports every key, and notices a broken module.

The benchmarks themselves are not part of ``make test`` (``make bench``). Here the harness
runs for real at its ``--smoke`` size on the two measurements that are fast at that size
(restore and search: a real capture, real SQLite catalogs, a real throw-away PostgreSQL),
in a temporary work directory; the other modules' keys are checked against their source.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import run
from benchmarks.measurement import MODULES

REPO = Path(__file__).resolve().parents[1]


def test_the_harness_knows_the_keys_of_every_measurement_module_and_nothing_else() -> None:
    assert set(run.KEYS) == set(MODULES)
    for name, keys in run.KEYS.items():
        source = (REPO / "benchmarks" / f"{name}.py").read_text()
        tree = ast.parse(source)
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"measure", "main"} <= functions, name
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        assert set(keys) <= strings, f"benchmarks/{name}.py does not report {set(keys) - strings}"


def test_a_smoke_run_of_restore_and_search_writes_each_key_with_size_target_and_machine(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", "restore", "search"]
    argv += ["--work", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    expected = [*run.KEYS["restore"], *run.KEYS["search"], run.PEAK_RSS]
    assert sorted(report["values"]) == sorted(expected)
    for key in expected:
        entry = report["results"][key]
        assert entry["value"] > 0
        assert entry["size"]
    assert report["results"]["restore_ms_large"]["size"] == 1000
    assert report["results"]["restore_scaling"]["status"] in ("MEETS", "MISSES")
    assert report["results"]["search_ms"]["value"] == max(
        report["values"]["search_ms_sqlite"], report["values"]["search_ms_postgresql"]
    )
    assert report["mode"] == "smoke"
    assert report["machine"]["cores"] >= 1
    assert report["versions"]["sqlite"] and report["versions"]["warcio"]
    assert report["modules"]["restore"]["n"] >= 1
    # The table on stdout has a row per key.
    for key in expected:
        assert key in done.stdout


def test_a_module_that_failed_leaves_its_keys_missing_with_the_error_and_fails_the_run() -> None:
    broken = run.ModuleRun("verify", error="exit status 1\nTraceback: boom")
    fine = run.ModuleRun(
        "restore",
        ok=True,
        rss_mb=64.0,
        values={"restore_ms_small": 4.0, "restore_ms_large": 5.0, "restore_scaling": 1.25},
        sizes={"restore_ms_small": 1000, "restore_ms_large": 100_000, "restore_scaling": "x"},
    )
    results, missing, complete = run.collate([broken, fine])
    assert not complete
    assert set(missing) == {"verify_mb_s", "verify_vs_sha256"}
    assert "boom" in missing["verify_vs_sha256"]
    assert results["restore_scaling"]["status"] == "MEETS"
    assert results["peak_rss_mb"]["value"] == 64.0
    rows = run.table(results, missing)
    assert any(r.startswith("verify_vs_sha256") and "MISSING" in r for r in rows)


def test_a_search_without_postgresql_binaries_is_complete_when_the_module_says_why() -> None:
    search = run.ModuleRun(
        "search",
        ok=True,
        rss_mb=80.0,
        values={"search_ms_sqlite": 7.0, "search_ms": 7.0},
        sizes={"search_ms_sqlite": 1000, "search_ms": 1000},
        notes={"search_ms_postgresql": "not measured: no PostgreSQL server binaries installed"},
    )
    results, missing, complete = run.collate([search])
    assert complete
    assert "no PostgreSQL" in missing["search_ms_postgresql"]
    assert results["search_ms"]["status"] == "MEETS"
