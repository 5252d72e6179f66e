"""What ``archiver catalog rebuild`` and ``compare`` print: plain lines for a records officer."""

from __future__ import annotations

from collections.abc import Iterator

from archiver.rebuild.compare import Comparison, lines
from archiver.rebuild.pipeline import RebuildReport

#: Most differences, orphans or problems printed as text (``--json`` gives them all).
SHOWN = 50


def rebuild_lines(report: RebuildReport, into: str) -> Iterator[str]:
    """The outcome of a rebuild; ``into`` is the target's URL, password already hidden."""
    yield (
        f"rebuilt the catalog at {into} from {report.warc_files} WARC, "
        f"{report.parquet_files} Parquet and {report.control_files} control file(s): "
        f"{len(report.accounts)} account(s), {report.items} item(s), {report.versions} "
        f"version(s), {report.media} media, {report.records} record(s)"
    )
    yield from retention_lines(report)
    if report.orphans:
        yield f"dropped {len(report.orphans)} orphan record(s) (written, never committed):"
        for o in report.orphans[:SHOWN]:
            yield f"  {o.record_id} {o.warc_type} of {o.item}: {o.why}"
    if report.damaged:
        yield f"LEFT OUT {len(report.damaged)} damaged file(s) (--skip-damaged):"
        for d in report.damaged:
            yield f"  {d.key}: {d.problem}"
    if report.problems:
        yield f"{len(report.problems)} problem(s) found in the records:"
        for p in report.problems[:SHOWN]:
            yield f"  {p}"
    if report.unknown_objects:
        yield f"{len(report.unknown_objects)} object(s) in the store this archiver does not know:"
        for key in report.unknown_objects[:SHOWN]:
            yield f"  {key}"
    if report.other_metadata:
        yield f"{report.other_metadata} metadata record(s) of other kinds were indexed only"
    if report.anchors:
        last = report.anchors[-1]
        yield (
            f"{len(report.anchors)} anchored audit head(s) found, the latest entry {last.seq}; "
            f"the rebuilt audit log continues the chain at entry {report.audit_seq}"
        )
    else:
        yield "no anchored audit head in the store; the rebuilt audit log starts at entry 1"
    yield f"search index: {report.search_index}"


def retention_lines(report: RebuildReport) -> Iterator[str]:
    """What the replay of the control facts recreated, and the items it could not find."""
    r = report.retention
    if not r.facts:
        yield "no control fact in the store: no hold, event, notice, reassignment or certificate"
        return
    yield (
        f"replayed {r.facts} control fact(s) from {report.fact_files} file(s): {r.holds} "
        f"hold(s) ({r.holds_released} released, {r.holds_closed} request(s) closed), "
        f"{r.events} event(s), {r.notices} notice(s), {r.reassigned} item(s) reassigned, "
        f"{r.certificates} certificate(s) of destruction with {r.stubs} destroyed item "
        "stub(s)"
    )
    if r.unmatched:
        yield (
            f"{len(r.unmatched)} item(s) named by a fact are not in the store's records "
            "(a fact written before a commit that did not happen, or a file left out):"
        )
        for line in r.unmatched[:SHOWN]:
            yield f"  {line}"
    if r.superseded:
        yield f"{len(r.superseded)} fact(s) replaced by a later fact about the same id:"
        for line in r.superseded[:SHOWN]:
            yield f"  {line}"


def comparison_lines(comparison: Comparison, live: str, rebuilt: str) -> Iterator[str]:
    """A comparison's summary, then its differences (at most :data:`SHOWN`)."""
    if comparison.clean:
        yield f"no differences between {live} (live) and {rebuilt} (rebuilt)"
        return
    yield f"{len(comparison.differences)} difference(s) between {live} (live) and {rebuilt}:"
    for table, s in comparison.tables.items():
        if s.only_live or s.only_rebuilt or s.differing_rows:
            yield (
                f"  {table}: {s.only_live} only in live, {s.only_rebuilt} only in rebuilt, "
                f"{s.differing_rows} differing row(s) (of {s.live} live, {s.rebuilt} rebuilt)"
            )
    yield from lines(comparison, limit=SHOWN)
