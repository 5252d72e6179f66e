"""Benchmark: a phrase search with a date filter over a large catalog, on SQLite and PostgreSQL.

Keys: ``search_ms_sqlite``, ``search_ms_postgresql`` (when PostgreSQL server binaries are
installed) and ``search_ms`` (the larger of the two). Each is the median milliseconds of
:func:`archiver.search.search` for ``"rainbow crosswalk"`` (a phrase planted in 100 items
spread over the catalog) created between the 10th and the 90th percentile of the catalog's
creation times (about 80 items), a 50-row page. Size: the large catalog of
:mod:`benchmarks.restore` (1,000,000 items; QUICK: 100,000), whose filler items each have
their own text and creation time and are indexed by the archiver's own
:func:`archiver.search.index.reindex`. Target: at most 100 ms on each database.

PostgreSQL: a throw-away cluster (``tests/pgcluster.py``) is started for the run and
removed afterwards. The catalog's schema is created by the archiver's migrations; the
``accounts``, ``items`` and ``item_versions`` rows are copied from the SQLite catalog with
``COPY``, and each search document is built from the same normalized segments the SQLite
index holds by the same SQL function the archiver's indexer calls
(``archiver_search_document``), in one ``INSERT ... SELECT``. Then ``ANALYZE``.

    .venv/bin/python -m benchmarks.search [--quick] [--json OUT]
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import restore
from benchmarks.measurement import Measurement, run_main

REPO = Path(__file__).resolve().parent.parent
QUERY = f'"{restore.PHRASE}"'
LIMIT = 50
REPEAT = {"full": 20, "quick": 20, "smoke": 3}
TARGET_MS = 100.0
#: Tables copied to PostgreSQL, in foreign-key order (a search reads only these).
COPIED = ("accounts", "items", "item_versions")


def emit(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _filters(n: int) -> Any:
    from archiver.search import SearchFilters

    return SearchFilters(
        created_from=restore.filler_created(n // 10),
        created_before=restore.filler_created(n * 9 // 10),
    )


def time_search(url: str, n: int, repeat: int) -> tuple[float, tuple[int, ...]]:
    """Median ms of the search on the catalog at ``url`` after one warm-up, and the ids found."""
    from archiver.catalog import Catalog
    from archiver.search import search

    catalog = Catalog.open(url)
    filters = _filters(n)
    try:
        found: tuple[int, ...] = ()

        def once() -> None:
            nonlocal found
            page = search(catalog, QUERY, filters, limit=LIMIT)
            found = tuple(r.id for r in page.results)

        once()  # warm-up
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            once()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        catalog.dispose()
    return statistics.median(times), found


# -- PostgreSQL -----------------------------------------------------------------------------


def _pgcluster() -> Any:
    # The throw-away cluster helper lives in the test package, which is not installed.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests import pgcluster

    return pgcluster


def load_postgresql(url: str, sqlite_path: Path) -> float:
    """Create the catalog schema at ``url`` and copy the search's rows; seconds taken."""
    import psycopg

    from archiver.catalog import Catalog, upgrade
    from archiver.search.sqlite import GAP

    started = time.perf_counter()
    catalog = Catalog.open(url)
    try:
        upgrade(catalog)
    finally:
        catalog.dispose()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    src = sqlite3.connect(sqlite_path)
    try:
        with psycopg.connect(conninfo) as pg, pg.cursor() as cur:
            # The rows come from a consistent catalog; skip the FK triggers (capture_runs,
            # media and WARC pointers are not copied) and read SQLite's naive times as UTC.
            cur.execute("SET session_replication_role = replica")
            cur.execute("SET TIME ZONE 'UTC'")
            for table in COPIED:
                rows = src.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
                columns = ", ".join(d[0] for d in rows.description)
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cur.execute(
                "CREATE TEMP TABLE staged (version_id bigint, item_id bigint, segments jsonb)"
            )
            separator = f" {GAP} "
            with cur.copy("COPY staged FROM STDIN") as copy:
                for version_id, item_id, document in src.execute(
                    "SELECT rowid, item_id, document FROM search_index"
                ):
                    segments = [s for s in document.split(separator) if s]
                    copy.write_row((version_id, item_id, json.dumps(segments)))
            # Building the GIN index once after the load is twice as fast as growing it row
            # by row; it is recreated from its own definition, as the migration made it.
            found = cur.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_search_index_document'"
            ).fetchone()
            if found is None:
                raise RuntimeError("the migrated catalog has no ix_search_index_document")
            cur.execute("DROP INDEX ix_search_index_document")
            cur.execute(
                "INSERT INTO search_index (version_id, item_id, document) "
                "SELECT version_id, item_id, archiver_search_document(segments) FROM staged"
            )
            cur.execute("SET maintenance_work_mem = '256MB'")
            cur.execute(found[0])
            cur.execute("DROP TABLE staged")
            pg.commit()
            pg.autocommit = True
            cur.execute("VACUUM ANALYZE")
    finally:
        src.close()
    return time.perf_counter() - started


def on_postgresql(
    sqlite_path: Path, n: int, repeat: int
) -> tuple[float, tuple[int, ...], str] | str:
    """(median ms, ids found, what was measured) on a throw-away cluster, or why not."""
    pgcluster = _pgcluster()
    bindir = pgcluster.find_bindir()
    if bindir is None:
        return "no PostgreSQL server binaries installed"
    server = pgcluster.start_cluster(bindir)
    try:
        seconds = load_postgresql(server.url, sqlite_path)
        emit(f"  PostgreSQL {server.version}: {n:,} items loaded in {seconds:.1f} s")
        median, found = time_search(server.url, n, repeat)
        return median, found, f"PostgreSQL {server.version}, loaded in {seconds:.1f} s (untimed)"
    finally:
        server.stop()


# -- the measurement ------------------------------------------------------------------------


def prepare(quick: bool, work: Path) -> None:
    """The large catalog of :mod:`benchmarks.restore` (shared with it)."""
    restore.prepare(quick, work)


def measure(quick: bool, work: Path) -> Measurement:
    """Time the search on SQLite, then on PostgreSQL when its binaries are installed."""
    size = restore.mode(quick)
    n = restore.SIZES[size][1]
    repeat = REPEAT[size]
    _, (path,) = restore.catalogs(work / restore.SUBDIR, (n,))
    values: dict[str, float] = {}
    sizes: dict[str, int | str] = {}
    notes: dict[str, str] = {}
    median, on_sqlite = time_search(f"sqlite:///{path}", n, repeat)
    _check(on_sqlite, on_sqlite, "SQLite")
    values["search_ms_sqlite"], sizes["search_ms_sqlite"] = median, n
    pg = on_postgresql(path, n, repeat)
    if isinstance(pg, str):
        notes["search_ms_postgresql"] = f"not measured: {pg}"
    else:
        median, found, what = pg
        _check(found, on_sqlite, "PostgreSQL")
        values["search_ms_postgresql"], sizes["search_ms_postgresql"] = median, n
        notes["search_ms_postgresql"] = f"{what} into a throw-away cluster"
    values["search_ms"] = max(values.values())
    sizes["search_ms"] = n
    notes["search"] = (
        f"{QUERY} ({restore.PLANTED} planted items), created in the middle 80% of the "
        f"catalog's range, {LIMIT}-row page; median of {repeat} after 1 warm-up"
    )
    return Measurement(values=values, sizes=sizes, notes=notes, repeat=repeat)


def _check(found: tuple[int, ...], on_sqlite: tuple[int, ...], where: str) -> None:
    # A search that finds nothing, or something else, would be fast for the wrong reason.
    if len(found) != LIMIT:
        raise RuntimeError(f"the search on {where} found {len(found)} items, not {LIMIT}")
    if found != on_sqlite:
        raise RuntimeError(f"the search on {where} found other items than on SQLite")


def main(argv: list[str] | None = None) -> int:
    return run_main(measure, "A phrase search with a date filter on a large catalog.", argv)


if __name__ == "__main__":
    raise SystemExit(main())
