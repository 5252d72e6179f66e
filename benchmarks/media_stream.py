"""Benchmark: one large media download through the archiving path, against a bare baseline.

Runs the path ``archiver.media.MediaFetcher._from_http`` takes for a media file, on a body
of ``--size`` bytes served from 127.0.0.1:

1. ``ArchivingHttpClient.download`` streams the body into a temporary file in the spool
   directory while it feeds the block and payload SHA-256 digests (*download+spool*);
2. ``WarcWriter.append`` appends the request record and the response record (the body is
   gzip-compressed into the WARC file), then ``sync`` (*append+sync*);
3. ``WarcWriter.close`` re-reads the whole file once, checking every digest, and renames it
   (*close/verify*).

The *baseline* is what the machine does with no archiver in the way: raw ``httpx``
streaming (``iter_raw``) of the same body into a file, one ``hashlib.sha256``, one fsync.

Each measurement runs in its own child process, so ``ru_maxrss`` (peak RSS, KiB on Linux) is
that child's own: it is read once right after the imports (before any body byte) and once at
the end; the growth is the difference. The HTTP server is another child process, so that
generating the body competes neither for the GIL nor for the measured process's memory. The
body is deterministic pseudo-random bytes (``random.Random(seed).randbytes``, generated
chunk by chunk, never whole) sent with ``Content-Length`` (variant ``length``) or with
``Transfer-Encoding: chunked`` (variant ``chunked``); the archived payload digest is
checked against the body's own SHA-256. Nothing but 127.0.0.1 is contacted: the children
run without proxy variables.

    .venv/bin/python benchmarks/media_stream.py --size 1GiB [--repeat N]

See benchmarks/README.md for the output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SEED = 20261101
#: Bytes the server generates and sends at a time.
SERVER_CHUNK = 1 << 20
VARIANTS = ("length", "chunked")
KIND_ARCHIVER = "archiver"
KIND_BASELINE = "baseline"
MIB = 1 << 20
MB = 1_000_000
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
}


def emit(line: str = "") -> None:
    """One line on stdout, flushed (progress shows while a long run goes on)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_size(text: str) -> int:
    """``1GiB``, ``256MiB``, ``500MB``, ``1048576`` → bytes (``k``/``m``/``g`` are binary)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB, 256MiB, 500MB)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"the size must be positive, not {text!r}")
    return size


def human(size: int) -> str:
    """A byte count the way ``--size`` takes it back."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def peak_rss_kib() -> int:
    """This process's peak resident set size so far (``ru_maxrss``: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


# --------------------------------------------------------------------------- the body


def generate(size: int, seed: int = SEED, chunk: int = SERVER_CHUNK) -> Iterator[bytes]:
    """The deterministic pseudo-random body, ``chunk`` bytes at a time (never held whole)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not a secret
    remaining = size
    while remaining > 0:
        n = min(chunk, remaining)
        yield rng.randbytes(n)
        remaining -= n


def body_sha256(size: int, seed: int = SEED) -> str:
    """Hex SHA-256 of the body the server sends for ``size`` and ``seed``."""
    digest = hashlib.sha256()
    for block in generate(size, seed):
        digest.update(block)
    return digest.hexdigest()


def hex_to_label(hexdigest: str) -> str:
    """``sha256:<BASE32>``, the WARC digest form of a hex SHA-256."""
    return "sha256:" + base64.b32encode(bytes.fromhex(hexdigest)).decode("ascii")


# --------------------------------------------------------------------------- the server


class _BodyHandler(BaseHTTPRequestHandler):
    """``GET /body?size=N&seed=S&mode=length|chunked``: the generated body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            size = int(query["size"][0])
            seed = int(query.get("seed", [str(SEED)])[0])
            mode = query.get("mode", ["length"])[0]
        except (KeyError, ValueError):
            self.send_error(400, "size (and optional seed, mode) required")
            return
        if mode not in VARIANTS:
            self.send_error(400, f"mode must be one of {', '.join(VARIANTS)}")
            return
        chunked = mode == "chunked"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for block in generate(size, seed):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(block))
                    self.wfile.write(block)
                    self.wfile.write(b"\r\n")
                else:
                    self.wfile.write(block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would only clutter the benchmark's output."""


def serve() -> None:
    """Serve bodies on 127.0.0.1, a free port (printed first); exit when stdin closes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BodyHandler)
    server.daemon_threads = True
    emit(str(server.server_address[1]))

    def exit_with_parent() -> None:
        sys.stdin.read()  # EOF: the benchmark that started us is gone
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server.serve_forever()


class Server:
    """The body server as a child process (``--serve``)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"the body server did not start (it printed {line!r})")
        self.port = int(line)

    def url(self, size: int, mode: str, seed: int = SEED) -> str:
        return f"http://127.0.0.1:{self.port}/body?size={size}&seed={seed}&mode={mode}"

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child_env() -> dict[str, str]:
    """This environment without proxy settings: the children talk to 127.0.0.1 only."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# --------------------------------------------------------------------------- measurements


def measure_archiver(url: str, size: int, workdir: Path) -> dict[str, Any]:
    """Download ``url`` as the media pipeline does, into a fresh WARC file, and close it."""
    from importlib.metadata import version

    from archiver.config import HttpSettings
    from archiver.http import ArchivingHttpClient
    from archiver.layout import Partition
    from archiver.logging import configure_logging
    from archiver.ratelimit import policy_for
    from archiver.warc import WarcInfo, WarcWriter

    configure_logging("WARNING")
    spool = workdir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    info = WarcInfo(
        "city-archiver benchmark",
        {name: version(name) for name in ("httpx", "warcio")},
        "benchmark",
        "localhost",
    )
    writer = WarcWriter(spool, Partition("general", "bench", "2026-11"), info)
    with ArchivingHttpClient(writer, policy=policy_for("default"), settings=HttpSettings()) as c:
        rss_ready = peak_rss_kib()
        t0 = time.perf_counter()
        download = c.download(url, max_bytes=size, tmp_dir=spool)
        t1 = time.perf_counter()
        with download:
            if download.status_code != 200 or download.response.payload_size != size:
                raise RuntimeError(
                    f"got HTTP {download.status_code} with "
                    f"{download.response.payload_size} bytes, expected 200 with {size}"
                )
            digest = download.response.payload_digest
            for record in download.history:  # none here; the pipeline appends them too
                writer.append(record)
            writer.append(download.request)
            writer.append(download.response.record)
            writer.sync()
        t2 = time.perf_counter()
        closed = writer.close()
        t3 = time.perf_counter()
    return {
        "download_s": t1 - t0,
        "append_s": t2 - t1,
        "close_s": t3 - t2,
        "total_s": t3 - t0,
        "payload_digest": digest,
        "warc_path": str(closed.path),
        "warc_bytes": closed.size,
        "warc_records": closed.record_count,
        "rss_ready_kib": rss_ready,
    }


def measure_baseline(url: str, size: int, workdir: Path) -> dict[str, Any]:
    """Raw ``httpx`` streaming of ``url`` into a file with one SHA-256 and one fsync."""
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "baseline.bin"
    digest = hashlib.sha256()
    received = 0
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        rss_ready = peak_rss_kib()
        t0 = time.perf_counter()
        with client.stream("GET", url) as response, target.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_raw():
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            out.flush()
            t1 = time.perf_counter()
            os.fsync(out.fileno())
        t2 = time.perf_counter()
    target.unlink()
    if received != size:
        raise RuntimeError(f"received {received} bytes, expected {size}")
    return {
        "download_s": t1 - t0,
        "fsync_s": t2 - t1,
        "total_s": t2 - t0,
        "payload_digest": hex_to_label(digest.hexdigest()),
        "rss_ready_kib": rss_ready,
    }


def run_measure(kind: str, url: str, size: int, workdir: Path, result: Path) -> None:
    """The ``--measure`` child: import what the path needs, measure, write JSON to ``result``."""
    if kind == KIND_ARCHIVER:
        import archiver.http
        import archiver.layout
        import archiver.warc  # noqa: F401 - imported before the first RSS reading
    else:
        import httpx  # noqa: F401 - imported before the first RSS reading
    rss_import = peak_rss_kib()
    measure = measure_archiver if kind == KIND_ARCHIVER else measure_baseline
    data = measure(url, size, workdir)
    rss_peak = peak_rss_kib()
    data.update(
        kind=kind,
        size=size,
        rss_import_kib=rss_import,
        rss_peak_kib=rss_peak,
        rss_growth_kib=rss_peak - rss_import,
    )
    result.write_text(json.dumps(data, indent=2), encoding="utf-8")


@dataclass
class Run:
    """One measured child: what it reported, and under which variant and repetition."""

    variant: str
    repeat: int
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["kind"])


def measure_in_child(
    kind: str, url: str, size: int, workdir: Path, timeout: float
) -> dict[str, Any]:
    """Run one ``--measure`` child and return its JSON result."""
    result = workdir / f"{kind}.json"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure",
        kind,
        "--url",
        url,
        "--size",
        str(size),
        "--workdir",
        str(workdir),
        "--result",
        str(result),
    ]
    proc = subprocess.run(
        argv, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(
            f"the {kind} measurement failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return data


# --------------------------------------------------------------------------- reporting


def rate(size: int, seconds: float) -> float:
    """MB/s (10^6 bytes a second) of ``size`` payload bytes in ``seconds``."""
    return size / MB / seconds if seconds > 0 else float("inf")


def describe(run: Run, size: int, baseline: Run | None) -> str:
    """The lines printed as each measurement finishes."""
    d = run.data

    def phase(name: str, key: str) -> str:
        return f"{name} {d[key]:.2f} s {rate(size, d[key]):.1f} MB/s"

    rss = (
        f"RSS after imports {d['rss_import_kib'] / 1024:.1f} MiB, peak "
        f"{d['rss_peak_kib'] / 1024:.1f} MiB, growth {d['rss_growth_kib'] / 1024:.1f} MiB"
    )
    if run.kind == KIND_BASELINE:
        return (
            f"  baseline  {phase('stream+sha256', 'download_s')} | fsync {d['fsync_s']:.2f} s "
            f"| {phase('total', 'total_s')}\n            {rss}"
        )
    lines = [
        f"  archiver  {phase('download+spool', 'download_s')} | "
        f"{phase('append+sync', 'append_s')} | {phase('close/verify', 'close_s')} | "
        f"{phase('total', 'total_s')}",
        f"            {rss}; WARC {d['warc_bytes'] / MIB:.1f} MiB, {d['warc_records']} records",
    ]
    if baseline is not None:
        b = baseline.data
        lines.append(
            f"            archiver/baseline time: download+spool vs stream+sha256 "
            f"{d['download_s'] / b['download_s']:.2f}x, total vs total "
            f"{d['total_s'] / b['total_s']:.2f}x"
        )
    return "\n".join(lines)


TABLE_LEGEND = (
    "MB/s = 10^6 payload bytes/s. dl: archiver download+spool (fetch, 2 digests, temp file), "
    "baseline stream+sha256 to a file. app: archiver append+sync (gzip into the WARC, fsync), "
    "baseline fsync. close: archiver close/verify (one re-read). x dl, x tot: archiver time / "
    "baseline time for dl and total. RSS (MiB): ru_maxrss of each child after its imports, "
    "its peak, and the growth."
)


def table(runs: Sequence[Run], size: int) -> list[str]:
    """The compact summary: one row per run (and a median row per path when repeated)."""
    header = (
        f"{'variant':<8} {'path':<9} {'rep':>3} {'dl s':>7} {'dl MB/s':>8} {'app s':>7} "
        f"{'app MB/s':>8} {'close s':>7} {'cls MB/s':>8} {'total s':>7} {'tot MB/s':>8} "
        f"{'x dl':>6} {'x tot':>6} {'rss0':>6} {'peak':>6} {'growth':>6}"
    )
    rows = [header, "-" * len(header)]

    def row(
        variant: str, kind: str, rep: str, d: dict[str, Any], base: dict[str, Any] | None
    ) -> str:
        def col(key: str) -> str:
            if key not in d:
                return f"{'-':>7} {'-':>8}"
            return f"{d[key]:>7.2f} {rate(size, d[key]):>8.1f}"

        def ratio(key: str) -> str:
            return f"{d[key] / base[key]:>6.2f}" if base is not None else f"{'-':>6}"

        second = "fsync_s" if kind == KIND_BASELINE else "append_s"
        return (
            f"{variant:<8} {kind:<9} {rep:>3} {col('download_s')} {col(second)} "
            f"{col('close_s')} {col('total_s')} {ratio('download_s')} {ratio('total_s')} "
            f"{d['rss_import_kib'] / 1024:>6.1f} {d['rss_peak_kib'] / 1024:>6.1f} "
            f"{d['rss_growth_kib'] / 1024:>6.1f}"
        )

    baselines = {(r.variant, r.repeat): r.data for r in runs if r.kind == KIND_BASELINE}
    for r in runs:
        base = None if r.kind == KIND_BASELINE else baselines.get((r.variant, r.repeat))
        rows.append(row(r.variant, r.kind, str(r.repeat), r.data, base))
    if len({r.repeat for r in runs}) > 1:
        rows.append("-" * len(header))
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in runs:
            groups.setdefault((r.variant, r.kind), []).append(r.data)
        medians = {
            key: {
                k: statistics.median(d[k] for d in group)
                for k in group[0]
                if k.endswith(("_s", "_kib"))
            }
            for key, group in groups.items()
        }
        for (variant, kind), med in medians.items():
            base = None if kind == KIND_BASELINE else medians.get((variant, KIND_BASELINE))
            rows.append(row(variant, kind, "med", med, base))
    return rows


# --------------------------------------------------------------------------- main


def benchmark(args: argparse.Namespace) -> int:
    size: int = args.size
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    kinds = [KIND_ARCHIVER] if args.no_baseline else [KIND_BASELINE, KIND_ARCHIVER]
    emit(
        f"media_stream: {human(size)} ({size} bytes), variants {', '.join(variants)}, "
        f"repeat {args.repeat}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    t = time.perf_counter()
    expected = hex_to_label(body_sha256(size))
    emit(f"body SHA-256 computed locally in {time.perf_counter() - t:.2f} s: {expected}")
    runs: list[Run] = []
    failures = 0
    with Server() as server, tempfile.TemporaryDirectory(prefix="media-stream-") as scratch:
        for rep in range(1, args.repeat + 1):
            for variant in variants:
                emit(f"[{variant}, run {rep}] {server.url(size, variant)}")
                baseline: Run | None = None
                for kind in kinds:
                    keep = args.keep is not None and kind == KIND_ARCHIVER
                    root = Path(args.keep) if keep else Path(scratch)
                    workdir = root / f"{variant}-{rep}-{kind}"
                    data = measure_in_child(
                        kind, server.url(size, variant), size, workdir, args.timeout
                    )
                    data["variant"] = variant
                    data["repeat"] = rep
                    data["digest_ok"] = data["payload_digest"] == expected
                    run = Run(variant, rep, data)
                    runs.append(run)
                    emit(describe(run, size, baseline))
                    if not data["digest_ok"]:
                        failures += 1
                        emit(f"  DIGEST MISMATCH: {data['payload_digest']} != {expected}")
                    if kind == KIND_BASELINE:
                        baseline = run
    emit()
    emit(f"summary, {human(size)}:")
    for line in textwrap.wrap(TABLE_LEGEND, width=100):
        emit(f"  {line}")
    for line in table(runs, size):
        emit(line)
    if args.json is not None:
        doc = {"size": size, "expected_digest": expected, "runs": [r.data for r in runs]}
        Path(args.json).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return 1 if failures else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and measure one large media download through the archiving path."
    )
    parser.add_argument(
        "--size", type=parse_size, default=parse_size("1GiB"), help="body size (default 1GiB)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (default 1)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated: length (Content-Length), chunked (default: both)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw httpx baseline")
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the archiver's spool directories (WARCs) under DIR"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per measurement"
    )
    # Internal: the child processes.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=(KIND_ARCHIVER, KIND_BASELINE), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.measure is not None:
        run_measure(args.measure, args.url, args.size, Path(args.workdir), Path(args.result))
        return 0
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
