"""The configuration file: what loads, what is refused, and how refusals point at the file.

Specification (DESIGN.md, "Configuration"): one TOML file, ``config.example.toml`` documents
every key; validated at start; errors name the key path, the file and the line; relative
paths resolve against the config file's directory; secrets are ``{ env = ... }`` or
``{ file = ... }`` references, never values.
"""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from textwrap import dedent
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from archiver.config import (
    Config,
    S3StoreSettings,
    SecretRef,
    embedded_defaults,
    load_config,
    parse_duration,
    parse_size,
)
from archiver.errors import ConfigError
from archiver.identity import Actor, roles_for
from archiver.tomlpos import key_lines, locate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"

MINIMAL = '[archiver]\noperator = "City of Milwaukee"\n'

ACCOUNT = """\
[[accounts]]
id = "mke-facebook"
platform = "facebook"
handle = "CityofMilwaukee"
department = "Office of the Mayor"
series = "social-media"
"""


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The lines of the ConfigError that loading ``path`` raises."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).splitlines()


# --- the example file --------------------------------------------------------------------


def test_example_loads_into_a_working_local_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVER_FB_PAGE_TOKEN", raising=False)  # secrets resolve lazily
    config = load_config(EXAMPLE)

    assert config.archiver.operator == "City of Milwaukee"
    assert config.catalog.url == f"sqlite:///{ROOT / 'var' / 'catalog.sqlite3'}"
    assert config.catalog.is_sqlite
    assert config.store.backend == "local"
    assert config.store.path == ROOT / "var" / "store"
    assert config.spool.path == ROOT / "var" / "spool"
    assert [a.id for a in config.accounts] == ["mke-facebook", "mke-mastodon", "mke-dpw-archive"]
    assert config.accounts[2].archive == ROOT / "examples" / "mastodon-export.zip"
    assert config.accounts[0].credentials == {"page_token": SecretRef(env="ARCHIVER_FB_PAGE_TOKEN")}
    assert config.roles == {
        "archivists": "officer",
        "city-attorney": "legal",
        "archiver-admins": "admin",
    }
    ann = Actor(user="ann", uid=1001, groups=("archivists", "users"))
    assert roles_for(ann, config.roles) == {"officer"}


# A commented-out line of TOML in the example: `# [table]` or `# key = value`. Prose comments
# never start with a bracket or with `word =`.
_CODE = re.compile(r"^#\s*(\[\[?[\w.\"' -]+\]\]?\s*$|[\w\"'.-]+\s*=\s*\S)")
_HEADER = re.compile(r"^\[(\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header_path(match: re.Match[str], counts: dict[tuple[str, ...], int]) -> tuple[Any, ...]:
    keys = tuple(k.strip().strip('"') for k in match.group(2).split("."))
    if match.group(1):  # [[array]]: the next element
        counts[keys] = counts.get(keys, 0) + 1
        return (*keys, counts[keys] - 1)
    return keys


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def example_variants(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The example as loaded, plus one document per commented-out alternative in it.

    A commented-out ``# [table]`` header starts an alternative that *replaces* that table,
    a commented-out ``# [[array]]`` header one that *appends* an element to that array;
    the commented-out keys after it (up to the next header, active or commented) belong to
    it. Commented-out keys under an active header form one alternative that *updates* that
    table (or ``[[array]]`` element). Each alternative is parsed with tomllib, so it must be
    valid TOML, and applied to a copy of the active document.
    """
    active = tomllib.loads(text)
    variants: list[tuple[str, dict[str, Any]]] = [("the example as is", active)]
    counts: dict[tuple[str, ...], int] = {}
    context: tuple[Any, ...] = ()  # the active table
    commented: tuple[str, tuple[Any, ...]] | None = None  # the commented-out table, if any
    groups: dict[tuple[str, tuple[Any, ...]], list[str]] = {}
    first_line: dict[tuple[str, tuple[Any, ...]], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("#"):
            header = _HEADER.match(line.strip())
            if header:
                context, commented = _header_path(header, counts), None
            continue
        if not _CODE.match(line):
            continue  # prose
        body = line[1:].strip()
        header = _HEADER.match(body)
        if header:
            if header.group(1):  # a commented-out [[array]] element: appended to the array
                keys = tuple(k.strip().strip('"') for k in header.group(2).split("."))
                commented = ("append", keys)
            else:
                commented = ("replace", _header_path(header, {}))
            groups.setdefault(commented, [])
            first_line.setdefault(commented, number)
            continue
        group = commented or ("update", context)
        groups.setdefault(group, []).append(body)
        first_line.setdefault(group, number)
    for (kind, path), lines in groups.items():
        document = tomllib.loads("\n".join(lines))
        variant = copy.deepcopy(active)
        if kind == "append":
            _at(variant, path[:-1]).setdefault(path[-1], []).append(document)
        elif kind == "replace":
            _at(variant, path[:-1])[path[-1]] = document
        else:
            _at(variant, path).update(document)
        variants.append((f"line {first_line[kind, path]}: {kind} {path}", variant))
    return variants


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    args = get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def model_settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path the models accept, e.g. ``store.bucket``, ``accounts[].schedule``.

    Union members (the store backends) all count. A ``SecretRef`` is one setting (its form,
    env or file, is the user's choice), and tables of free names (roles, credentials) count
    as the table itself.
    """
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        keys.add(path)
        annotation = field.annotation
        if get_origin(annotation) is list:
            for member in _models_in(get_args(annotation)[0]):
                keys |= model_settings(member, f"{path}[]")
        elif get_origin(annotation) is not dict:
            for member in _models_in(annotation):
                if member is not SecretRef:
                    keys |= model_settings(member, path)
    return keys


def document_keys(data: Any, prefix: str = "") -> set[str]:
    """Every key path present in a parsed TOML document, array indices written ``[]``."""
    keys: set[str] = set()
    if isinstance(data, dict):
        for name, value in data.items():
            path = f"{prefix}.{name}" if prefix else name
            keys.add(path)
            keys |= document_keys(value, path)
    elif isinstance(data, list):
        for item in data:
            keys |= document_keys(item, f"{prefix}[]")
    return keys


def undocumented_settings(text: str) -> set[str]:
    present: set[str] = set()
    for _, variant in example_variants(text):
        present |= document_keys(variant)
    return model_settings(Config) - present


def test_example_shows_every_setting() -> None:
    """Every key the models accept appears in config.example.toml, set or commented out.

    The required keys come from walking the pydantic models (all store backends included).
    The example shows alternatives, such as the S3 store, as commented-out TOML; rather than
    grepping comments for key names, those blocks are uncommented and parsed as TOML (see
    :func:`example_variants`), so a key only counts when it is written as valid TOML in the
    right table. A new setting without an example entry fails this test.
    """
    assert undocumented_settings(EXAMPLE.read_text(encoding="utf-8")) == set()


def test_the_completeness_check_notices_a_missing_setting() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    without = re.sub(r"(?m)^rotate_idle = .*\n", "", text)
    without = re.sub(r"(?m)^# object_lock_mode = .*\n", "", without)
    assert undocumented_settings(without) == {"warc.rotate_idle", "store.object_lock_mode"}


def test_commented_out_alternatives_in_the_example_are_valid(tmp_path: Path) -> None:
    variants = example_variants(EXAMPLE.read_text(encoding="utf-8"))
    descriptions = [d for d, _ in variants]
    assert len(variants) >= 4, descriptions  # as is, [archiver] node, [catalog], S3 store
    for description, variant in variants:
        config = Config.model_validate(variant, context={"config_dir": tmp_path})
        assert config.archiver.operator, description
    s3 = [Config.model_validate(v, context={"config_dir": tmp_path}) for _, v in variants]
    assert any(isinstance(c.store, S3StoreSettings) for c in s3)


def test_every_setting_in_the_example_is_explained_by_a_comment() -> None:
    """The first appearance of each setting (set or commented out) follows a prose comment.

    Entries of tables of free names (the groups in ``[roles]``) are explained by the comment
    on the table.
    """
    settings = model_settings(Config)
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    seen: set[str] = set()
    table = ""
    for index, line in enumerate(lines):
        if line.startswith("#"):
            if not _CODE.match(line):
                continue  # prose
            body = line[1:].strip()
        else:
            body = line.strip()
        header = _HEADER.match(body)
        if header:
            table = header.group(2) + ("[]" if header.group(1) else "")
            continue
        if not body:
            continue
        key = f"{table}.{body.split('=')[0].strip()}"
        if key in settings and key not in seen:
            seen.add(key)
            above = lines[index - 1]
            assert above.startswith("#") and not _CODE.match(above), f"{key} (line {index + 1})"
    tables = {
        "archiver",
        "catalog",
        "store",
        "spool",
        "warc",
        "http",
        "parquet",
        "daemon",
        "retention",
        "retention.rules",
        "logging",
        "roles",
        "accounts",
    }
    assert settings - seen == tables


# --- defaults ----------------------------------------------------------------------------


def test_only_the_operator_is_required(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))

    assert config.catalog.url == f"sqlite:///{tmp_path / 'var' / 'catalog.sqlite3'}"
    assert config.store.backend == "local"
    assert config.store.path == tmp_path / "var" / "store"
    assert config.spool.path == tmp_path / "var" / "spool"
    assert config.spool.max_bytes == 10 * 2**30
    assert config.warc.rotate_size == 2**30
    assert config.warc.rotate_idle == timedelta(hours=1)
    assert config.archiver.time_zone == "America/Chicago"
    assert config.archiver.node  # the host name
    assert config.logging.level == "INFO"
    assert config.roles == {}
    assert config.accounts == []
    assert embedded_defaults(tmp_path, "City of Milwaukee") == config


def test_account_defaults(tmp_path: Path) -> None:
    account = load_config(write(tmp_path, MINIMAL + ACCOUNT)).accounts[0]
    assert account.schedule == timedelta(hours=6)
    assert account.enabled is True
    assert account.credentials == {}
    assert (account.rescan_days, account.full_walk_days) == (14, 30)


def test_store_backend_defaults_to_local(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '[store]\npath = "/srv/archive"\n'))
    assert config.store.backend == "local"
    assert config.store.path == Path("/srv/archive")


def test_s3_store(tmp_path: Path) -> None:
    text = MINIMAL + dedent("""\
        [store]
        backend = "s3"
        bucket = "city-social-archive"
        prefix = "/milwaukee/"
        object_lock_mode = "COMPLIANCE"
        access_key_id = { env = "KEY_ID" }
        secret_access_key = { file = "s3-secret" }
        """)
    store = load_config(write(tmp_path, text)).store
    assert isinstance(store, S3StoreSettings)
    assert store.prefix == "milwaukee"
    assert store.object_lock_mode == "COMPLIANCE"
    assert store.secret_access_key == SecretRef(file="s3-secret")


# --- errors point at the key, the file and the line --------------------------------------


def test_unknown_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [archiver]
        operator = "City of Milwaukee"

        [warc]
        rotate_size = "1 GiB"
        rotate_idel = "1h"
        """,
    )
    assert problems(path) == [
        f"{path}:6: warc.rotate_idel: unknown key; did you mean 'rotate_idle'?",
    ]


def test_unknown_table(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[captures]\nx = 1\n")
    [line] = problems(path)
    assert line.startswith(f"{path}:4: captures: unknown key; expected one of: accounts, ")


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + ACCOUNT + "enabled = 1\nrescan_days = '7'\n")
    assert problems(path) == [
        f"{path}:9: accounts[0].enabled: expected true or false (got 1)",
        f"{path}:10: accounts[0].rescan_days: expected an integer (got '7')",
    ]


def test_missing_required_value_points_at_the_enclosing_table(tmp_path: Path) -> None:
    second = ACCOUNT.replace("mke-facebook", "mke-x").replace('series = "social-media"\n', "")
    path = write(tmp_path, MINIMAL + "\n" + ACCOUNT + "\n" + second)
    assert problems(path) == [
        f"{path}:11: accounts[1].series: required key is missing: the records series its "
        'records belong to, e.g. "social-media-general"',
    ]


def test_missing_operator(tmp_path: Path) -> None:
    path = write(tmp_path, '# comment\n\n[archiver]\ntime_zone = "UTC"\n')
    assert problems(path) == [
        f"{path}:3: archiver.operator: required key is missing: the organisation that "
        'operates the archiver, e.g. "City of Milwaukee"',
    ]
    path = write(tmp_path, '[logging]\nlevel = "DEBUG"\n', "other.toml")
    assert problems(path) == [
        f"{path}:1: archiver: required key is missing: the [archiver] table, with at least "
        'operator = "..."',
    ]


def test_all_problems_are_reported_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [archiver]
        operator = "City of Milwaukee"
        time_zone = "Mars/Olympus"

        [logging]
        level = "verbose"

        [[accounts]]
        id = "../x"
        platform = "facebook"
        handle = "x"
        department = "d"
        series = "s"
        schedule = "often"
        """,
    )
    lines = problems(path)
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:3", "archiver.time_zone"],
        [f"{path}:6", "logging.level"],
        [f"{path}:9", "accounts[0].id"],
        [f"{path}:14", "accounts[0].schedule"],
    ]
    assert "'Mars/Olympus'" in lines[0] and "America/Chicago" in lines[0]
    assert "'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'verbose')" in lines[1]


def test_account_needs_handle_or_platform_id(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n" + ACCOUNT.replace('handle = "CityofMilwaukee"\n', ""))
    assert problems(path) == [
        f"{path}:4: accounts[0]: an account needs handle or platform_id (or both) to say "
        "which account it is",
    ]


def test_unknown_store_backend(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[store]\nbackend = "gcs"\n')
    assert problems(path) == [f"{path}:4: store.backend: expected one of 'local', 's3' (got 'gcs')"]


def test_s3_settings_are_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + dedent("""\
            [store]
            backend = "s3"
            path = "var/store"
            object_lock_mode = "governance"
            access_key_id = { env = "KEY_ID" }
            """),
    )
    lines = problems(path)
    assert [line.split(": ")[1] for line in lines] == [
        "store.bucket",
        "store.path",
        "store.object_lock_mode",
    ]
    assert lines[0].startswith(f"{path}:3: store.bucket: required key is missing")
    assert lines[1].startswith(f"{path}:5: store.path: unknown key")


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[warc]\nrotate_size = 1 GiB\n")
    [line] = problems(path)
    assert line.startswith(f"{path}:4: TOML syntax error: ")
    assert "line 4" in line


def test_missing_file_names_the_path_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    [line] = problems(Path("nowhere.toml"))
    assert "nowhere.toml" in line and str(tmp_path / "nowhere.toml") in line


# --- secrets -----------------------------------------------------------------------------


def test_plain_string_secret_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + ACCOUNT + 'credentials = { page_token = "EAAB-s3cr3t" }\n')
    [line] = problems(path)
    assert line.startswith(f"{path}:9: accounts[0].credentials.page_token: secrets never sit")
    assert '{ env = "NAME" }' in line and '{ file = "NAME" }' in line
    assert "s3cr3t" not in line


def test_secret_in_catalog_url_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[catalog]\nurl = "postgresql://a:hunter2@db/archive"\n')
    [line] = problems(path)
    assert line.startswith(f"{path}:4: catalog.url: the URL contains a password")
    assert "hunter2" not in line


def test_secret_reference_needs_exactly_one_form(tmp_path: Path) -> None:
    text = MINIMAL + ACCOUNT + 'credentials = { a = { env = "A", file = "a" }, b = {} }\n'
    path = write(tmp_path, text)
    assert [line.split(": ")[:2] for line in problems(path)] == [
        [f"{path}:9", "accounts[0].credentials.a"],
        [f"{path}:9", "accounts[0].credentials.b"],
    ]


def test_env_secret_resolves_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MKE_TOKEN", raising=False)
    text = MINIMAL + ACCOUNT + 'credentials = { page_token = { env = "MKE_TOKEN" } }\n'
    secret = load_config(write(tmp_path, text)).accounts[0].credentials["page_token"]
    with pytest.raises(ConfigError, match="environment variable MKE_TOKEN is not set"):
        secret.resolve()
    monkeypatch.setenv("MKE_TOKEN", "tok-123")
    assert secret.resolve() == "tok-123"


def test_file_secret_reads_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "fb-token").write_text("tok-456\n", encoding="utf-8")
    secret = SecretRef(file="fb-token")

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY is not set.*fb-token"):
        secret.resolve()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert secret.resolve() == "tok-456"
    with pytest.raises(ConfigError, match=r"credential file .*missing-token does not exist"):
        SecretRef(file="missing-token").resolve()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/etc/passwd"])
def test_file_secret_name_cannot_leave_the_credentials_directory(tmp_path: Path, name: str) -> None:
    text = MINIMAL + ACCOUNT + f"credentials = {{ t = {{ file = '{name}' }} }}\n"
    path = write(tmp_path, text)
    [line] = problems(path)
    assert line.startswith(f"{path}:9: accounts[0].credentials.t.file: '{name}' is not a")


def test_secret_repr_never_shows_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKE_TOKEN", "tok-very-secret")
    secret = SecretRef(env="MKE_TOKEN")
    assert secret.resolve() == "tok-very-secret"
    assert repr(secret) == str(secret) == "SecretRef(env=MKE_TOKEN)"
    assert repr(SecretRef(file="fb-token")) == "SecretRef(file=fb-token)"
    holder = {"page_token": secret}
    assert "tok-very-secret" not in f"{holder} {secret!r} {secret.model_dump()}"


def test_catalog_password_is_merged_at_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL + dedent("""\
        [catalog]
        url = "postgresql+psycopg://archiver@db.example.org/archiver"
        password = { env = "DB_PASSWORD" }
        """)
    catalog = load_config(write(tmp_path, text)).catalog
    monkeypatch.setenv("DB_PASSWORD", "pw-789")
    url = catalog.sqlalchemy_url()
    assert url.password == "pw-789"
    assert "pw-789" not in str(url)
    assert "pw-789" not in repr(catalog)


def test_sqlite_catalog_takes_no_password(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[catalog]\npassword = { env = "DB_PASSWORD" }\n')
    assert problems(path) == [f"{path}:4: catalog.password: a SQLite catalog takes no password"]


# --- paths -------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = MINIMAL + dedent("""\
        [catalog]
        url = "sqlite:///data/catalog.db"
        [store]
        path = "../archive"
        [spool]
        path = "/var/tmp/spool"
        """)
    write(tmp_path, text, "etc/config.toml")
    config = load_config(Path("../etc/config.toml"))

    assert config.catalog.url == f"sqlite:///{tmp_path / 'etc' / 'data' / 'catalog.db'}"
    assert config.store.path == tmp_path / "archive"
    assert config.spool.path == Path("/var/tmp/spool")


# --- accounts ----------------------------------------------------------------------------


def test_duplicate_account_ids_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + ACCOUNT + ACCOUNT)
    assert problems(path) == [
        f"{path}:10: accounts[1].id: duplicate account id 'mke-facebook' (also accounts[0])",
    ]


@pytest.mark.parametrize(
    ("key", "value"), [("id", "../x"), ("id", "a b"), ("series", ".."), ("series", "")]
)
def test_names_used_in_storage_keys_are_checked(tmp_path: Path, key: str, value: str) -> None:
    text = MINIMAL + ACCOUNT.replace(f'{key} = "', f'{key} = "{value}" #"')
    path = write(tmp_path, text)
    [line] = problems(path)
    line_number = 4 if key == "id" else 8
    assert line.startswith(f"{path}:{line_number}: accounts[0].{key}: '{value}' is not a valid")


# --- sizes and durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("2 GiB", 2 * 2**30),
        ("2GiB", 2 * 2**30),
        ("1.5 GiB", 3 * 2**29),
        ("500 MB", 500 * 10**6),
        ("10 kb", 10_000),
        ("64 KiB", 65536),
        ("1 TiB", 2**40),
        ("7 B", 7),
    ],
)
def test_sizes(text: int | str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "2 gigs", "-1", 0, True, "1 GiB 2 MiB", 1.5])
def test_bad_sizes(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1w", 604800),
    ],
)
def test_durations(text: int | str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "often", "1x", "0s", 0, -5, "1h and 5m", False])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes_and_durations_in_the_file(tmp_path: Path) -> None:
    text = (
        MINIMAL + '[warc]\nrotate_size = "512 MiB"\nrotate_idle = "15m"\nmax_media_bytes = 1000\n'
    )
    warc = load_config(write(tmp_path, text)).warc
    assert (warc.rotate_size, warc.rotate_idle, warc.max_media_bytes) == (
        512 * 2**20,
        timedelta(minutes=15),
        1000,
    )
    path = write(tmp_path, MINIMAL + '[spool]\nmax_bytes = "1 MiB"\n', "small.toml")
    [line] = problems(path)
    assert line.startswith(f"{path}:4: spool.max_bytes: the spool (1048576 bytes) must hold")


# --- the line locator --------------------------------------------------------------------


def test_locator_follows_toml_structure() -> None:
    text = dedent('''\
        top = 1
        [a]
        b.c = { d = 1, "e.f" = [1, 2] }
        s = """
        x = 1
        """
        [[arr]]
        k = 1
        [arr.sub]
        m = 1
        [[arr]]
        list = [
          1,
          { q = 2 },
        ]
        ''')
    lines = key_lines(text)
    assert locate(lines, ("top",)) == 1
    assert locate(lines, ("a", "b", "c", "d")) == 3
    assert locate(lines, ("a", "b", "c", "e.f", 1)) == 3
    assert locate(lines, ("a", "s")) == 4
    assert locate(lines, ("a", "x")) == 2  # not a key: inside a string; the table's line
    assert locate(lines, ("arr", 0, "sub", "m")) == 10
    assert locate(lines, ("arr", 1)) == 11
    assert locate(lines, ("arr", 1, "missing")) == 11
    assert locate(lines, ("arr", 1, "list", 1, "q")) == 14
    assert locate(lines, ("nowhere", "at", "all")) == 1


def test_jitter_may_be_zero_but_other_durations_may_not(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[archiver]\noperator = "x"\n\n[daemon]\njitter = "0s"\n')
    assert load_config(path).daemon.jitter.total_seconds() == 0
    path.write_text('[archiver]\noperator = "x"\n\n[daemon]\nstop_timeout = "0s"\n')
    with pytest.raises(ConfigError, match=r"daemon\.stop_timeout"):
        load_config(path)
