"""``archiver search`` on a captured corpus: table, JSON, CSV, paging, filters, refusals."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.commands.search_cmd import CSV_COLUMNS
from tests.commands.clitools import Workspace, describe, make_workspace
from tests.corpus import PLOW_PHRASE, Corpus, capture_corpus


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
