"""The benchmark harness: build the corpora, run every measurement, print and save the results.

    .venv/bin/python -m benchmarks.run [--quick | --smoke] [--only NAME ...] [--out FILE]

``make bench`` runs it at full sizes, ``make bench QUICK=1`` with ``--quick``.

1. ``python -m benchmarks.corpus build`` builds (or reuses) the cached corpora under
   ``--work`` (``./var/bench/``) in a process of its own.
2. Each measurement module (:data:`benchmarks.measurement.MODULES`) runs in its own child
   process, ``python -m benchmarks.<name> --json OUT``; it warms up and reports medians.
   The harness reaps the child with ``os.wait4`` and keeps its peak resident memory
   (``ru_maxrss``: the child and the processes it waited for, never the corpus builder).
3. A table (key, value, target, MEETS/MISSES, size) goes to stdout and everything, with the
   machine and the library versions, to ``--out`` (``benchmarks/results.json``).

The exit status is 0 when every module ran, whether or not the targets are met (the table
says MISSES), and 1 when a module failed or did not report one of its keys.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.measurement import DEFAULT_WORK, MODULES

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results.json"
#: Seconds a module may run before it is stopped and recorded as failed.
TIMEOUT = {"smoke": 120, "quick": 600, "full": 7200}


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet (``op`` is "<=" or ">="), and an optional goal beyond it."""

    op: str
    limit: float
    goal: float | None = None

    def meets(self, value: float, bound: float | None = None) -> bool:
        compare: Callable[[float, float], bool] = operator.le if self.op == "<=" else operator.ge
        return compare(value, self.limit if bound is None else bound)

    def text(self) -> str:
        shown = f"{self.op} {self.limit:g}"
        return shown + (f" (goal {self.op} {self.goal:g})" if self.goal is not None else "")


#: Every key each module reports, in table order. None: no target (shown for context).
KEYS: dict[str, dict[str, Target | None]] = {
    "ingest": {
        "ingest_items_s": None,
        "ingest_records_s": None,
        "ingest_vs_warcio": Target(">=", 0.5, goal=1.0),
    },
    "media": {
        "media_mb_s": None,
        "media_vs_limit": Target(">=", 0.5, goal=0.8),
    },
    "restore": {
        "restore_ms_small": None,
        "restore_ms_large": Target("<=", 50.0),
        "restore_scaling": Target("<=", 1.5),
    },
    "search": {
        "search_ms_sqlite": Target("<=", 100.0),
        "search_ms_postgresql": Target("<=", 100.0),
        "search_ms": Target("<=", 100.0),
    },
    "verify": {
        "verify_mb_s": None,
        "verify_vs_sha256": Target(">=", 0.8),
    },
}
PEAK_RSS = "peak_rss_mb"
PEAK_TARGET = Target("<=", 256.0)
#: Keys a module may leave out with a note saying why (no PostgreSQL server installed).
OPTIONAL = {"search_ms_postgresql"}


def all_keys(names: Sequence[str] = MODULES) -> list[str]:
    """Every key of results.json's ``values`` for the modules ``names``, in table order."""
    return [key for name in MODULES if name in names for key in KEYS[name]] + [PEAK_RSS]


@dataclass
class ModuleRun:
    """What one measurement child reported, or why it did not."""

    name: str
    ok: bool = False
    seconds: float = 0.0
    rss_mb: float | None = None  # ru_maxrss from wait4: the child and what it reaped
    self_rss_mb: float | None = None  # ru_maxrss the child reported of itself
    repeat: int = 0
    values: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int | str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    error: str = ""


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- running children -----------------------------------------------------------------------


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Reap ``proc`` with wait4: (exit status, its peak RSS in MiB); kill it on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024.0
        if time.monotonic() > deadline:
            # The child leads its own process group: stop it and whatever it started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise TimeoutError(f"stopped after {timeout:.0f} s")
        time.sleep(0.05)


def _child(argv: list[str], log: Path, timeout: float) -> tuple[int, float, float]:
    """Run ``argv`` from the repository root, its output to ``log``: (status, RSS MiB, s)."""
    started = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=err, stderr=err, start_new_session=True)
        status, rss = _wait(proc, timeout)
    return status, rss, time.perf_counter() - started


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def size_flag(mode: str) -> list[str]:
    return {"smoke": ["--smoke"], "quick": ["--quick"], "full": []}[mode]


def build_corpus(mode: str, work: Path, names: Sequence[str], tmp: Path) -> dict[str, Any]:
    """``benchmarks.corpus build`` in its own process; what it took."""
    out, log = tmp / "corpus.json", tmp / "corpus.log"
    argv = [sys.executable, "-m", "benchmarks.corpus", "build", *size_flag(mode)]
    argv += ["--work", str(work), "--json", str(out), "--only", *names]
    emit(f"building the corpora under {work} ...")
    try:
        status, rss, seconds = _child(argv, log, TIMEOUT["full"])
    except TimeoutError as exc:
        return {"ok": False, "error": str(exc), "log": _tail(log)}
    result: dict[str, Any] = {"ok": status == 0, "seconds": round(seconds, 1)}
    result["rss_mb"] = round(rss, 1)
    if out.exists():
        result["per_module_s"] = json.loads(out.read_text())
    if status != 0:
        result["error"] = f"exit status {status}"
        result["log"] = _tail(log)
    emit(f"  corpora ready in {seconds:.1f} s")
    return result


def run_module(name: str, mode: str, work: Path, tmp: Path) -> ModuleRun:
    """``python -m benchmarks.<name> --json OUT`` in its own process."""
    run = ModuleRun(name)
    out, log = tmp / f"{name}.json", tmp / f"{name}.log"
    if not (REPO / "benchmarks" / f"{name}.py").exists():
        run.error = f"benchmarks/{name}.py does not exist"
        return run
    argv = [sys.executable, "-m", f"benchmarks.{name}", *size_flag(mode)]
    argv += ["--work", str(work), "--json", str(out)]
    emit(f"measuring {name} ...")
    try:
        status, rss, run.seconds = _child(argv, log, TIMEOUT[mode])
    except TimeoutError as exc:
        run.error = f"{exc}\n{_tail(log)}"
        return run
    run.rss_mb = rss
    if status != 0 or not out.exists():
        run.error = f"exit status {status}\n{_tail(log)}"
        return run
    data = json.loads(out.read_text())
    run.values = {k: float(v) for k, v in data.get("values", {}).items()}
    run.sizes = dict(data.get("sizes", {}))
    run.notes = dict(data.get("notes", {}))
    run.repeat = int(data.get("repeat", 0))
    run.self_rss_mb = data.get("peak_rss_mb")
    run.ok = True
    emit(f"  {name} done in {run.seconds:.1f} s, peak RSS {rss:.0f} MiB")
    return run


# -- describing the machine -----------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and kernel of this machine."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def versions() -> dict[str, str]:
    """Python's, SQLite's and the libraries' versions."""
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name, dist in (
        ("archiver", "city-archiver"),
        ("warcio", "warcio"),
        ("pyarrow", "pyarrow"),
        ("sqlalchemy", "sqlalchemy"),
        ("psycopg", "psycopg"),
        ("httpx", "httpx"),
    ):
        try:
            found[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- the report -----------------------------------------------------------------------------


def collate(runs: Sequence[ModuleRun]) -> tuple[dict[str, Any], dict[str, str], bool]:
    """(results per key, missing key → why, whether every expected key was reported)."""
    results: dict[str, Any] = {}
    missing: dict[str, str] = {}
    complete = True
    for run in runs:
        for key, target in KEYS[run.name].items():
            if key not in run.values:
                why = run.error.strip() or run.notes.get(key, "") or "the module did not report it"
                missing[key] = why
                if not (run.ok and key in OPTIONAL and key in run.notes):
                    complete = False
                continue
            value = run.values[key]
            entry: dict[str, Any] = {
                "value": round(value, 4),
                "size": run.sizes.get(key, ""),
                "module": run.name,
                "n": run.repeat,
            }
            if target is not None:
                entry["target"] = target.text()
                entry["status"] = "MEETS" if target.meets(value) else "MISSES"
                if target.goal is not None:
                    entry["goal"] = "MEETS" if target.meets(value, target.goal) else "MISSES"
            results[key] = entry
    measured = [r for r in runs if r.rss_mb is not None]
    if measured:
        worst = max(measured, key=lambda r: r.rss_mb or 0.0)
        peak = worst.rss_mb or 0.0
        results[PEAK_RSS] = {
            "value": round(peak, 1),
            "size": f"largest of the measurement children ({worst.name})",
            "module": worst.name,
            "n": 1,
            "target": PEAK_TARGET.text(),
            "status": "MEETS" if PEAK_TARGET.meets(peak) else "MISSES",
        }
    else:
        missing[PEAK_RSS] = "no measurement child ran"
        complete = False
    return results, missing, complete


def table(
    results: dict[str, Any], missing: dict[str, str], names: Sequence[str] = MODULES
) -> list[str]:
    """The results of the modules ``names`` as fixed-width rows, in :func:`all_keys` order."""
    rows = [("key", "value", "target", "status", "size")]
    for key in all_keys(names):
        if key in results:
            r = results[key]
            status = r.get("status", "")
            if "goal" in r:
                status += f" (goal {r['goal']})"
            size = r["size"]
            size = f"{size:,}" if isinstance(size, int) else str(size)
            rows.append((key, shown(r["value"]), r.get("target", ""), status, size))
        else:
            reason = missing.get(key, "").strip().splitlines()
            rows.append((key, "-", "", "MISSING", reason[0][:60] if reason else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def shown(value: float) -> str:
    """A figure with 4 significant digits, thousands separated."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the benchmarks (see benchmarks/README.md).")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="the QUICK sizes (< 1 minute)")
    sizes.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these modules")
    parser.add_argument("--work", type=Path, default=REPO / DEFAULT_WORK, help="corpus cache")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    names = list(args.only or MODULES)
    work: Path = args.work.resolve()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archiver-bench-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = build_corpus(mode, work, names, tmp)
        runs = [run_module(name, mode, work, tmp) for name in names]
    elapsed = time.perf_counter() - started
    results, missing, complete = collate(runs)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "quick": mode != "full",
        "reproduce": "make bench QUICK=1" if mode == "quick" else "make bench",
        "elapsed_s": round(elapsed, 1),
        "machine": machine(),
        "versions": versions(),
        "values": {key: entry["value"] for key, entry in results.items()},
        "results": results,
        "missing": missing,
        "corpus": corpus,
        "modules": {
            r.name: {
                "ok": r.ok,
                "seconds": round(r.seconds, 1),
                "rss_mb": round(r.rss_mb, 1) if r.rss_mb is not None else None,
                "self_rss_mb": round(r.self_rss_mb, 1) if r.self_rss_mb is not None else None,
                "n": r.repeat,
                "notes": r.notes,
                "error": r.error,
            }
            for r in runs
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    emit()
    for line in table(results, missing, names):
        emit(line)
    misses = [k for k, r in results.items() if r.get("status") == "MISSES"]
    emit()
    emit(
        f"{mode} run: {elapsed:.1f} s (corpora {corpus.get('seconds', '?')} s); "
        f"results in {args.out}"
    )
    if misses:
        emit(f"MISSES the target: {', '.join(misses)}")
    failed = [r for r in runs if not r.ok]
    for run in failed:
        emit(f"FAILED: benchmarks.{run.name}: {run.error.strip()}")
    if not corpus.get("ok", False):
        emit(f"FAILED: the corpus build: {corpus.get('error')}\n{corpus.get('log', '')}")
    if failed or not complete or not corpus.get("ok", False):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
