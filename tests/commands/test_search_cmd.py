"""``archiver search`` on a captured corpus: table, JSON, CSV, paging, filters, refusals."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver import holds
from archiver.commands.search_cmd import CSV_COLUMNS
from archiver.holds import Recording, Scope
from archiver.search import engine
from tests.commands.clitools import Workspace, describe, make_workspace
from tests.corpus import INFO, PLOW_PHRASE, Corpus, capture_corpus


@dataclass(frozen=True)
class Installed:
    ws: Workspace
    corpus: Corpus


def _install(root: Path, catalog_url: str | None = None) -> Installed:
    ws = make_workspace(root / "install", catalog_url=catalog_url)
    ws.ok("catalog", "upgrade")
    with ws.open_catalog() as catalog:
        corpus = capture_corpus(catalog, ws.store(), root / "corpus")
    return Installed(ws, corpus)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One installation (SQLite) holding the corpus; the tests only read it."""
    return _install(tmp_path_factory.mktemp("search-cli"))


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    installed: Installed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    """``archiver search ARGS`` in this process: (exit code, stdout, stderr)."""

    def go(*args: str) -> tuple[int, str, str]:
        out = installed.ws.in_process(capsys, monkeypatch, "search", *args)
        return out.returncode, out.stdout, out.stderr

    return go


def _json(run: Run, *args: str) -> dict[str, object]:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    report: dict[str, object] = json.loads(out)
    return report


def _ids(report: dict[str, object]) -> set[int]:
    results = report["results"]
    assert isinstance(results, list)
    return {r["id"] for r in results}


def test_a_phrase_in_a_comment_is_shown_in_a_table_with_a_footer(
    run: Run, installed: Installed
) -> None:
    code, out, err = run(f'"{PLOW_PHRASE}"')

    assert code == 0, err
    assert f'search: "{PLOW_PHRASE}"' in out
    row = next(line for line in out.splitlines() if f" {installed.corpus.plow_reply.id} " in line)
    for shown in ("mke-bluesky", "comment", "resident.bsky.social", "2026-01-12 09:02 CST"):
        assert shown in row
    assert "Thanks! But the plow missed Elm Street again this morning." in out
    assert out.rstrip().endswith("page 1, 1 results shown")


def test_json_gives_the_results_and_the_paging(run: Run, installed: Installed) -> None:
    report = _json(run, "plow")

    corpus = installed.corpus
    assert _ids(report) == corpus.ids("plow_reply", "cafe_reply")
    assert report["parsed"] == "plow" and report["query"] == "plow"
    assert (report["page"], report["limit"], report["count"], report["more"]) == (1, 50, 2, False)
    results = report["results"]
    assert isinstance(results, list)
    cafe = next(r for r in results if r["id"] == corpus.cafe_reply.id)
    assert cafe["text"] == "Free coffee for plow drivers at the Café on Main Street."
    assert cafe["created_at"] == "2026-01-12T15:03:00+00:00"
    assert cafe["versions_matched"] == [1] and cafe["state"] == "present"
    assert cafe["author"] == "maria.bsky.social" and cafe["platform"] == "bluesky"


def test_csv_has_a_header_row_then_one_row_per_item(run: Run, installed: Installed) -> None:
    code, out, err = run("street", "--csv")

    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    found = {int(r[0]) for r in rows[1:]}
    assert found == installed.corpus.ids("snow_post", "plow_reply", "cafe_reply", "deleted_reply")
    deleted = next(r for r in rows[1:] if int(r[0]) == installed.corpus.deleted_reply.id)
    assert dict(zip(CSV_COLUMNS, deleted, strict=True))["versions_matched"] == "1;2"
    assert dict(zip(CSV_COLUMNS, deleted, strict=True))["state"] == "deleted"


def test_pages_follow_one_another_and_say_when_there_is_more(
    run: Run, installed: Installed
) -> None:
    pages = [_json(run, "--limit", "4", "--page", str(n)) for n in (1, 2, 3, 4)]
    assert [p["count"] for p in pages] == [4, 4, 2, 0]
    assert [p["next_page"] for p in pages] == [2, 3, None, None]
    seen = [i for p in pages for i in _ids(p)]
    assert sorted(seen) == sorted(installed.corpus.ids())

    code, out, _ = run("--limit", "4", "--page", "2")
    assert code == 0 and out.rstrip().endswith("page 2, 4 results shown, more: --page 3")
    code, out, _ = run("--limit", "4", "--page", "4")
    assert "no items match on this page" in out and "page 4, 0 results shown" in out
    code, out, err = run("--limit", "4", "--csv")
    assert len(out.splitlines()) == 5 and err.strip() == "page 1, 4 results shown, more: --page 2"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--account", "mke-dpw-mastodon"), {"edited_post", "mastodon_reply"}),
        (("--platform", "mastodon", "--kind", "post"), {"edited_post"}),
        (("--author", "@resident.bsky.social"), {"plow_reply", "deleted_reply"}),
        (("--state", "removed"), {"hidden_reply"}),
        (("--state", "deleted", "--state", "edited"), {"deleted_reply", "edited_post"}),
        # Dates are days in the configured zone (America/Chicago): 2026-02-03 10:02 UTC is
        # 04:02 CST on 2026-02-03; 2026-01-12 15:04 UTC is 09:04 CST on 2026-01-12.
        (("--created-from", "2026-02-01"), {"deleted_reply"}),
        (("--created-to", "2026-01-12"), {"snow_post", "plow_reply", "cafe_reply", "hidden_reply"}),
        (
            ("--created-from", "2026-01-20", "--created-to", "2026-01-20"),
            {"edited_post", "mastodon_reply"},
        ),
        (("--created-from", "2026-01-20T11:00Z"), {"deleted_reply", "mastodon_reply"}),
        (("--created-to", "2026-01-12T09:03"), {"snow_post", "plow_reply", "cafe_reply"}),
        (("--captured-to", "2000-01-01"), set()),
    ],
)
def test_each_filter_option_narrows_the_results(
    run: Run, installed: Installed, args: tuple[str, ...], expected: set[str]
) -> None:
    base = ("street OR brush OR bestdeals",)
    assert len(_ids(_json(run, *base))) == 7
    assert _ids(_json(run, *base, *args)) == {installed.corpus.item(n).id for n in expected}


def test_a_malformed_query_exits_2_with_one_line_saying_what_to_fix(installed: Installed) -> None:
    result = installed.ws.archiver("search", '"plow missed')

    assert result.returncode == 2, describe(result)
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        'error: search query: the quote at character 1 is never closed: add the closing " '
        '(a phrase is written "like this")'
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("snow OR",), "error: search query: OR at character 6 needs a term after it"),
        (("plow", "--account", "mke-nowhere"), "error: no account 'mke-nowhere' in the catalog"),
        (("plow", "--platform", "myspace"), "error: no account on platform 'myspace'"),
        (("plow", "--created-from", "2026-13-01"), "is neither a date (YYYY-MM-DD)"),
        (("plow", "--created-from", "2026-02-01", "--created-to", "2026-01-01"), "is after"),
        (("plow", "--json", "--csv"), "choose one of --json and --csv"),
        (("plow", "--kind", "tweet"), "Invalid value for '--kind'"),
        (("plow", "--limit", "0"), "Invalid value for '--limit'"),
    ],
)
def test_mistakes_are_refused_with_exit_2(run: Run, args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert message in err and out == ""


def test_a_catalog_without_the_schema_is_refused_with_what_to_run(workspace: Workspace) -> None:
    result = workspace.archiver("search", "plow")
    assert result.returncode == 5, describe(result)
    assert "run `archiver catalog upgrade`" in result.stderr


def test_the_same_search_answers_the_same_on_each_database(
    tmp_path: Path, catalog_url: str
) -> None:
    here = _install(tmp_path, catalog_url)
    result = here.ws.ok("search", "street NOT (elm OR main)", "--json")
    assert _ids(json.loads(result.stdout)) == here.corpus.ids("snow_post", "deleted_reply")


# --- holds and retention ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The corpus with two active holds: LIT-1 (legal) over the Mastodon account, PRR-2 (a
    public-records request) over the items matching "Elm Street"; the tests only read it."""
    installed = _install(tmp_path_factory.mktemp("search-held"))
    with installed.ws.open_catalog() as catalog:
        for case, kind, scope in (
            ("LIT-1", "legal", Scope(accounts=(installed.corpus.mastodon_account,))),
            ("PRR-2", "prr", Scope(query='"Elm Street"')),
        ):
            holds.create(
                catalog,
                installed.ws.store(),
                case=case,
                reason="test",
                kind=kind,  # type: ignore[arg-type]
                scope=scope,
                recording=Recording("alice", INFO),
                now=datetime(2026, 6, 1, tzinfo=UTC),
            )
    return installed


@pytest.fixture
def run_held(
    held: Installed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``archiver search ARGS`` on the held installation; ``now=`` sets ARCHIVER_NOW."""

    def go(*args: str, now: str | None = None) -> tuple[int, str, str]:
        if now is not None:
            monkeypatch.setitem(held.ws.env, "ARCHIVER_NOW", now)
        out = held.ws.in_process(capsys, monkeypatch, "search", *args)
        return out.returncode, out.stdout, out.stderr

    return go


HELD = ("edited_post", "mastodon_reply", "mastodon_profile", "plow_reply")


def test_held_and_not_held_split_the_items_by_the_active_holds_covering_them(
    run_held: Run, held: Installed
) -> None:
    corpus = held.corpus

    held_ids = _ids(_json(run_held, "--held"))
    not_held = _ids(_json(run_held, "--not-held"))

    assert held_ids == corpus.ids(*HELD)
    assert not_held == corpus.ids() - held_ids
    assert _ids(_json(run_held, "street", "--held")) == corpus.ids("plow_reply")
    assert _ids(_json(run_held, "--retention", "held")) == held_ids


def test_each_result_shows_its_series_covering_holds_and_retention(
    run_held: Run, held: Installed
) -> None:
    corpus = held.corpus
    results = _json(run_held, "plow")["results"]
    assert isinstance(results, list)
    by_id = {r["id"]: r for r in results}

    plow, cafe = by_id[corpus.plow_reply.id], by_id[corpus.cafe_reply.id]
    assert plow["series"] == cafe["series"] == "social-media"
    assert plow["holds"] == [{"id": 2, "case": "PRR-2", "kind": "prr"}] and cafe["holds"] == []
    assert plow["retention"]["outcome"] == "held"
    assert "held by public-records-request hold 2 (case PRR-2)" in plow["retention"]["reason"]
    assert cafe["retention"]["outcome"] == "retained"
    assert cafe["retention"]["eligible_on"] == "2033-01-12T15:03:00+00:00"  # 7 years
    assert cafe["retention"]["rule"] == "default" and cafe["retention"]["action"] == "destroy"

    code, out, err = run_held("plow", "--csv")
    assert code == 0, err
    header, *body = csv.reader(io.StringIO(out))
    rows = {int(r[0]): dict(zip(header, r, strict=True)) for r in body}
    plow_row = rows[corpus.plow_reply.id]
    assert (plow_row["series"], plow_row["hold"], plow_row["retention"]) == (
        "social-media",
        "PRR-2",
        "held",
    )
    assert rows[corpus.cafe_reply.id]["eligible_on"] == "2033-01-12T15:03:00+00:00"

    code, out, err = run_held(f'"{PLOW_PHRASE}"')
    assert code == 0, err
    row = next(line for line in out.splitlines() if f" {corpus.plow_reply.id} " in line)
    for shown in ("social-media", "PRR-2", "held, eligible 2033-01-12"):
        assert shown in row, row


def test_retention_outcomes_follow_the_clock_and_filter_the_results(
    run_held: Run, held: Installed
) -> None:
    corpus = held.corpus
    free = corpus.ids() - corpus.ids(*HELD)

    assert _ids(_json(run_held, "--retention", "retained")) == free
    in_2034 = functools.partial(run_held, now="2034-01-01T00:00:00+00:00")
    # Seven years on, the default series waits for the historical society's notice.
    assert _ids(_json(in_2034, "--retention", "awaiting-notice")) == free
    assert _ids(_json(in_2034, "--retention", "retained")) == set()
    assert _ids(_json(in_2034, "--retention", "held")) == corpus.ids(*HELD)
    assert _ids(_json(in_2034, "--retention", "eligible", "--retention", "permanent")) == set()


def test_the_series_filter_names_a_records_series(run_held: Run, held: Installed) -> None:
    assert _ids(_json(run_held, "--series", "social-media")) == held.corpus.ids()
    assert _ids(_json(run_held, "--series", "EXAMPLE-POSTS")) == set()
    code, out, err = run_held("--series", "no-such-series")
    assert code == 2 and "no series 'no-such-series'" in err and out == ""


def test_retention_filters_page_through_the_candidates_in_batches(
    run_held: Run, held: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SCAN_BATCH", 2)

    pages = [_json(run_held, "--not-held", "--limit", "2", "--page", str(n)) for n in (1, 2, 3, 4)]

    monkeypatch.undo()
    whole = _json(run_held, "--not-held", "--limit", "50")
    assert [p["count"] for p in pages] == [2, 2, 2, 0]
    assert [p["more"] for p in pages] == [True, True, False, False]
    results = whole["results"]
    assert isinstance(results, list)
    assert [i for p in pages for i in _ordered(p)] == [r["id"] for r in results]


def _ordered(report: dict[str, object]) -> list[int]:
    results = report["results"]
    assert isinstance(results, list)
    return [r["id"] for r in results]
