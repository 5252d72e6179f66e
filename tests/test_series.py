"""Loading retention schedules: the shipped Wisconsin file, and every mistake a City's own
schedule file can make reported at its file and line with what to write instead."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.retention import NoticeRule, Period
from archiver.series import Schedules, load_schedule_dirs, load_schedules, shipped_schedules_dir

ROOT = Path(__file__).resolve().parent.parent

DEFAULT = """\
[[series]]
code = "GENERAL"
title = "Records not otherwise scheduled"
period = { years = 7 }
trigger = "created"
disposition = "destroy"
notice = { required = true }
authority = "Wis. Stat. § 19.21(4)"
default = true
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def marked_line(text: str) -> int:
    """The 1-based line carrying the ``# <-`` marker: where the error must point."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if "# <-" in line)


# --- the shipped schedule ---------------------------------------------------------------------


def test_the_shipped_schedule_loads_with_one_default_reflecting_wis_stat_19_21_4() -> None:
    schedules = load_schedules()
    assert isinstance(schedules, Schedules)
    assert schedules.files == (shipped_schedules_dir() / "wisconsin-municipal.toml",)
    default = schedules.default_series
    assert [s.code for s in schedules.values() if s.default] == [default.code]
    assert default.code == "social-media" and not default.example and default.confirm is None
    assert default.period == Period(years=7) and default.trigger == "created"
    assert default.disposition == "destroy"
    assert default.notice == NoticeRule(required=True, days=60, to="Wisconsin Historical Society")
    assert "Wis. Stat. § 19.21(4)" in default.authority
    path, line = default.source.rsplit(":", 1)
    text = Path(path).read_text(encoding="utf-8").splitlines()
    assert text[int(line) - 1] == "[[series]]" and text[int(line)].startswith("code = ")


def test_every_example_series_is_labelled_and_asks_the_records_officer_to_confirm_it() -> None:
    schedules = load_schedules()
    examples = schedules.examples
    assert {s.code for s in examples} >= {
        "EXAMPLE-POSTS",
        "EXAMPLE-COMMENTS",
        "EXAMPLE-MODERATED",
        "EXAMPLE-TRANSITORY",
    }
    assert set(schedules) == {schedules.default, *(s.code for s in examples)}
    for s in examples:
        assert s.title.startswith("EXAMPLE") and s.authority.startswith("EXAMPLE")
        assert s.confirm is not None and "records officer" in s.confirm and not s.default
    # Between them they show every trigger and disposition the schedules can express.
    assert {s.trigger for s in schedules.values()} == {"created", "captured", "cutoff", "event"}
    assert {s.cutoff for s in schedules.values()} >= {"calendar", "fiscal"}
    assert {s.disposition for s in schedules.values()} >= {"destroy", "transfer"}
    assert schedules["EXAMPLE-TRANSITORY"].period == Period(days=90)


def test_the_schedules_ship_with_the_installed_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.toml" in pyproject["tool"]["setuptools"]["package-data"]["schedules"]
    assert (shipped_schedules_dir() / "__init__.py").is_file()


def test_every_series_the_example_configuration_names_is_a_shipped_series() -> None:
    config = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    # The example rule is commented out; read it as the officer would once uncommented.
    named = [
        line.split("=", 1)[1].strip().strip('"')
        for line in config.splitlines()
        if line.lstrip("# ").startswith("series = ")
    ]
    assert named and set(named) <= set(load_schedules())


# --- a City's own schedules -------------------------------------------------------------------


def test_a_schedules_directory_replaces_the_shipped_one_and_may_span_files(tmp_path: Path) -> None:
    write(tmp_path, "a-general.toml", DEFAULT)
    write(
        tmp_path,
        "b-posts.toml",
        """\
[schedule]
title = "Posts"

[[series]]
code = "POSTS"
title = "City posts"
description = "  Kept for good.  "
trigger = "created"
disposition = "permanent"
authority = "City ordinance 2-14"
""",
    )
    write(tmp_path, "notes.txt", "not a schedule")
    schedules = load_schedules(tmp_path)
    assert list(schedules) == ["GENERAL", "POSTS"] and schedules.default == "GENERAL"
    posts = schedules["POSTS"]
    assert posts.period == Period() and posts.notice == NoticeRule(required=False)
    assert (
        posts.description == "Kept for good." and posts.source == f"{tmp_path / 'b-posts.toml'}:4"
    )
    assert schedules["GENERAL"].notice.days == 60


def test_several_directories_load_as_one_set(tmp_path: Path) -> None:
    write(tmp_path / "one", "general.toml", DEFAULT)
    write(
        tmp_path / "two",
        "short.toml",
        DEFAULT.replace('"GENERAL"', '"SHORT"').replace("default = true\n", ""),
    )
    schedules = load_schedule_dirs([tmp_path / "one", tmp_path / "two"])
    assert list(schedules) == ["GENERAL", "SHORT"] and len(schedules) == 2


def test_a_missing_or_empty_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist or is not a directory"):
        load_schedules(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"holds no \*\.toml schedule files"):
        load_schedules(tmp_path)


MALFORMED = {
    "an unknown key, with the likely one suggested": (
        DEFAULT.replace("period = { years = 7 }", "period = { years = 7 }\nperod = 8 # <-"),
        "series[0].perod: unknown key; did you mean 'period'?",
    ),
    "an unknown trigger": (
        DEFAULT.replace('trigger = "created"', 'trigger = "creation" # <-'),
        'series[0].trigger: expected one of "created", "captured", "cutoff", "event" '
        "(got 'creation')",
    ),
    "a cutoff trigger without its cutoff": (
        DEFAULT.replace('trigger = "created"', 'trigger = "cutoff" # <-'),
        'series[0].cutoff: required when trigger = "cutoff": "calendar" or "fiscal"',
    ),
    "a cutoff that is neither calendar nor fiscal": (
        DEFAULT.replace('trigger = "created"', 'trigger = "cutoff"\ncutoff = "annual" # <-'),
        'series[0].cutoff: expected one of "calendar", "fiscal" (got \'annual\')',
    ),
    "a cutoff on a series with another trigger": (
        DEFAULT.replace('trigger = "created"', 'trigger = "created"\ncutoff = "fiscal" # <-'),
        'series[0].cutoff: only applies when trigger = "cutoff"; remove it',
    ),
    "an event trigger without its event": (
        DEFAULT.replace('trigger = "created"', 'trigger = "event" # <-'),
        'series[0].event: required when trigger = "event": the event kind',
    ),
    "an event kind that cannot be named on the command line": (
        DEFAULT.replace('trigger = "created"', 'trigger = "event"\nevent = "closed/deleted" # <-'),
        "series[0].event: 'closed/deleted' is not a valid event kind",
    ),
    "a zero period for records that are destroyed": (
        DEFAULT.replace("period = { years = 7 }", "period = { years = 0, days = 0 } # <-"),
        "series[0].period: a series that destroys records needs a period longer than 0",
    ),
    "a negative period": (
        DEFAULT.replace("period = { years = 7 }", "period = { years = 7, days = -1 } # <-"),
        "series[0].period.days: expected a whole number, 0 or more (got -1)",
    ),
    "a series code that cannot be part of a storage key": (
        DEFAULT.replace('code = "GENERAL"', 'code = "general records" # <-'),
        "series[0].code: 'general records' is not a valid series code: use letters, digits",
    ),
    "a series without a title": (
        DEFAULT.replace("[[series]]", "[[series]] # <-").replace(
            'title = "Records not otherwise scheduled"\n', ""
        ),
        "series[0].title: required key is missing: the series' title",
    ),
    "a destroy series that does not say whether notice is required": (
        DEFAULT.replace("notice = { required = true }\n", "").replace(
            'disposition = "destroy"', 'disposition = "destroy" # <-'
        ),
        "series[0].notice: required for a series that destroys records",
    ),
    "an unknown key in the notice": (
        DEFAULT.replace(
            "notice = { required = true }", "notice = { required = true, day = 60 } # <-"
        ),
        "series[0].notice.day: unknown key; did you mean 'days'?",
    ),
    "an example series with nothing for the records officer to confirm": (
        DEFAULT.replace("default = true", "default = true\nexample = true # <-"),
        "series[0].confirm: required key is missing: what the City's records officer must confirm",
    ),
    "a confirm text on a series that is no example": (
        DEFAULT.replace("default = true", 'default = true\nconfirm = "check" # <-'),
        "series[0].confirm: only example series (example = true) carry a confirm text",
    ),
    "a disposition the archiver does not know": (
        DEFAULT.replace('disposition = "destroy"', 'disposition = "shred" # <-'),
        'series[0].disposition: expected one of "destroy", "transfer", "permanent"',
    ),
    "two defaults": (
        DEFAULT
        + "\n"
        + DEFAULT.replace('"GENERAL"', '"OTHER"').replace("default = true", "default = true # <-"),
        "series[1].default: series 'OTHER' is marked default = true, and so is 'GENERAL' (",
    ),
    "no default": (
        DEFAULT.replace("default = true\n", "").replace("[[series]]", "# <-\n[[series]]"),
        "no series has default = true; mark exactly one series",
    ),
    "no series at all": (
        '# <-\n[schedule]\ntitle = "Empty"\n',
        "series: expected one or more [[series]] tables",
    ),
    "a TOML syntax error": (
        DEFAULT.replace('title = "Records', "title = Records # <-"),
        "TOML syntax error: Invalid value",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_schedule_is_refused_naming_its_file_line_and_key(
    tmp_path: Path, case: str
) -> None:
    text, message = MALFORMED[case]
    path = write(tmp_path, "city.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_schedules(tmp_path)
    assert f"{path}:{marked_line(text)}: {message}" in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_code_defined_twice_across_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", DEFAULT)
    again = DEFAULT.replace("default = true\n", "").replace(
        'code = "GENERAL"', 'code = "GENERAL" # <-'
    )
    second = write(tmp_path, "b.toml", again)
    with pytest.raises(ConfigError) as caught:
        load_schedules(tmp_path)
    assert str(caught.value) == (
        f"{second}:{marked_line(again)}: series[0].code: code 'GENERAL' is already defined at "
        f"{first}:1; series codes must be unique across all schedule files"
    )


def test_every_problem_is_reported_at_once_in_file_and_line_order(tmp_path: Path) -> None:
    text = DEFAULT.replace('trigger = "created"', 'trigger = "later"').replace(
        'disposition = "destroy"', 'disposition = "burn"'
    )
    path = write(tmp_path, "city.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_schedules(tmp_path)
    lines = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:5", f"{path}:6"]
