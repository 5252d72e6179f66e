"""The record every measurement module returns, and the child-side plumbing they share.

Each module `benchmarks.<name>` defines `measure(quick: bool, work: Path) -> Measurement`
and calls `run_main(measure, description)` from its `main()`, so that it runs standalone as
`python -m benchmarks.<name> [--quick] [--smoke] [--json OUT] [--work DIR]`. A
module reads `smoke()` to shrink its sizes for the harness's own test.

A module whose corpus takes long to build may also define
`prepare(quick: bool, work: Path) -> None`, which builds it under `work` once (and reuses
it later). `python -m benchmarks.corpus build [--quick]` calls every module's `prepare` in
its own process before the harness starts the measurement children, so the corpus
generator's memory never counts in `peak_rss_mb`. `measure` should still build what is
missing itself (cheaply checking the cache first), so a module also runs standalone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_WORK = Path("var/bench")
#: Every measurement module, run by name (`python -m benchmarks.<name>`) in this order.
MODULES = ("ingest", "media", "restore", "search", "verify")
SMOKE_ENV = "ARCHIVER_BENCH_SMOKE"


def smoke() -> bool:
    """True under `--smoke` (the harness's own test): use tiny sizes and one repetition.

    It is an environment variable so that `measure(quick, work)` keeps its signature; a
    module that ignores it still works, only slower.
    """
    return os.environ.get(SMOKE_ENV, "") == "1"


@dataclass
class Measurement:
    """Figures measured by one module (medians), what size each was measured at, and notes."""

    values: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int | str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    #: N: timed runs behind each median (after the warm-up); 0 when not reported.
    repeat: int = 0

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict: the three maps plus this process's own peak RSS in MiB."""
        data: dict[str, object] = asdict(self)
        data["peak_rss_mb"] = peak_rss_mb()
        return data


def peak_rss_mb() -> float:
    """This process's own peak resident set size, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_median(run: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `repeat` calls of `run`, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_main(
    measure: Callable[[bool, Path], Measurement],
    description: str,
    argv: list[str] | None = None,
) -> int:
    """Parse the standard options, run `measure`, write `--json` or the figures to stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="the QUICK sizes")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="corpus directory")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (implies --quick)")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ[SMOKE_ENV] = "1"
        args.quick = True
    args.work.mkdir(parents=True, exist_ok=True)
    result = measure(args.quick, args.work)
    text = json.dumps(result.to_json(), indent=2, sort_keys=True)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0
