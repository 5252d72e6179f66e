"""Benchmark: restoring one item does not slow down as the catalog grows (any two sizes).

The standalone form of :mod:`benchmarks.restore` (which ``make bench`` runs): the same seed
capture, the same filled catalogs (cached under ``--work``), and the same timed restores,
but with the sizes and repetitions on the command line, and each size measured in its own
child process so that neither inherits the other's caches.

    .venv/bin/python benchmarks/restore_scaling.py [--small 1000] [--large 1000000] [--repeat 20]

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _restore() -> ModuleType:
    # Run as a script, this file's directory is on sys.path, not the repository root.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("benchmarks.restore")


def emit(line: str = "") -> None:
    """One line on stdout, flushed (progress shows while a long build goes on)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_child(db: Path, store_root: Path, item_id: int, repeat: int) -> dict[str, Any]:
    """The timed restores in a fresh interpreter, so no cache carries over between sizes."""
    argv = [sys.executable, __file__, "--measure", str(db), "--store", str(store_root)]
    argv += ["--item", str(item_id), "--repeat", str(repeat)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"the measuring child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="items in the small catalog")
    parser.add_argument("--large", type=int, default=1_000_000, help="items in the large one")
    parser.add_argument("--repeat", type=int, default=20, help="timed restores per size")
    parser.add_argument(
        "--work", type=Path, default=REPO / "var" / "bench" / "restore", help="cache directory"
    )
    parser.add_argument("--rebuild", action="store_true", help="recapture and rebuild")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--item", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.small < 1 or args.large < 1:
        parser.error("--small, --large and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    restore = _restore()
    if args.measure is not None:
        emit(json.dumps(restore.time_restore(args.measure, args.store, args.item, args.repeat)))
        return 0
    work: Path = args.work.resolve()
    item_id, dbs = restore.catalogs(work, (args.small, args.large), args.rebuild)
    results = {}
    for label, db in zip(("small", "large"), dbs, strict=True):
        results[label] = run_child(db, work / "seed" / "store", item_id, args.repeat)
        emit(f"  {label}: {results[label]['median_ms']:.2f} ms median")
    small, large = results["small"], results["large"]
    ratio = large["median_ms"] / small["median_ms"]
    ok = ratio <= restore.TARGET_RATIO and large["median_ms"] <= restore.TARGET_MS
    emit()
    emit(f"{'catalog':>8} {'items':>11} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for label, r in results.items():
        emit(
            f"{label:>8} {r['items']:>11,} {r['median_ms']:>10.2f} "
            f"{r['min_ms']:>8.2f} {r['max_ms']:>8.2f}"
        )
    emit(
        f"ratio large/small: {ratio:.2f} (target <= {restore.TARGET_RATIO}); large median "
        f"{large['median_ms']:.2f} ms (target <= {restore.TARGET_MS:.0f} ms): "
        f"{'MEETS' if ok else 'MISSES'} the target; {large['bytes_written']:,} bytes restored"
    )
    emit(
        json.dumps(
            {
                "benchmark": "restore_scaling",
                "small": small,
                "large": large,
                "ratio": round(ratio, 3),
                "meets_target": ok,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
