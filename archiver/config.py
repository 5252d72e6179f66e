"""The configuration file: one TOML file, validated into typed, frozen models at start.

``config.example.toml`` documents every key. :func:`load_config` reads a file and returns a
:class:`Config`; every problem becomes a :class:`~archiver.errors.ConfigError` whose message
has one line per problem, ``<file>:<line>: <key path>: <what is wrong and what is expected>``.

Rules the models enforce:

- Unknown keys are errors, and values are not coerced (``enabled = "yes"`` is refused).
- Relative paths, and the path of a SQLite catalog URL, resolve against the directory of the
  configuration file, never the working directory. Every path in a :class:`Config` is absolute.
- Secrets never sit in the file. Where a secret is expected the file holds a reference,
  ``{ env = "NAME" }`` or ``{ file = "NAME" }`` (read from ``$CREDENTIALS_DIRECTORY``, where
  systemd's ``LoadCredential=`` puts it); a :class:`SecretRef` is resolved only when used.
- Sizes accept integers (bytes) or strings like ``"2 GiB"``/``"500 MB"``; durations accept
  integers (seconds) or strings like ``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"``.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from archiver.errors import ConfigError, UnsafeKeyError
from archiver.layout import check_segment
from archiver.logging import register_secret
from archiver.tomlpos import KeyPath, key_lines, locate

__all__ = [
    "AccountSettings",
    "ArchiverSettings",
    "CatalogSettings",
    "Config",
    "LocalStoreSettings",
    "LoggingSettings",
    "Role",
    "S3StoreSettings",
    "SecretRef",
    "SpoolSettings",
    "StoreSettings",
    "WarcSettings",
    "embedded_defaults",
    "format_key_path",
    "load_config",
    "parse_duration",
    "parse_size",
]

#: The roles a configured OS group can grant (see DESIGN.md, "Who is acting").
Role = Literal["officer", "legal", "admin"]

#: Context key under which the configuration file's directory is passed to validation.
_CONFIG_DIR = "config_dir"

_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- sizes and durations -------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|s)\s*")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_size(value: int | str) -> int:
    """A byte count from an integer or a string such as ``"2 GiB"``, ``"500MB"``, ``"1.5 GiB"``.

    Units: B, kB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024), case-insensitive.
    Raises ``ValueError`` for anything else, and for zero or negative sizes.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a size such as 1073741824 or "1 GiB", got {value!r}')
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(
                f"{value!r} is not a size: write bytes as an integer or a number with a unit "
                '(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. "2 GiB"'
            )
        number = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if number <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return number


def parse_duration(value: int | str, *, allow_zero: bool = False) -> timedelta:
    """A duration from an integer (seconds) or a string such as ``"15m"``, ``"1h30m"``, ``"7d"``.

    Units: w, d, h, m, s. Raises ``ValueError`` for anything else and for zero or negative
    durations.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a duration such as 3600 or "1h", got {value!r}')
    if isinstance(value, int):
        seconds = float(value)
    elif value.strip().isdigit():
        seconds = float(value.strip())
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(_DURATION_PART.sub("", value).split()):
            raise ValueError(
                f"{value!r} is not a duration: write seconds as an integer or numbers with units "
                'w, d, h, m, s, e.g. "90s", "15m", "1h30m", "7d"'
            )
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def _size(value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise PydanticCustomError("size", str(exc)) from None


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


#: A byte count: integer or human size string.
ByteCount = Annotated[int, BeforeValidator(_size)]
#: A positive duration: integer seconds or duration string.
Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _duration_or_zero(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value, allow_zero=True)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


#: A duration that may be zero ("0s" turns the thing off).
OptionalDelay = Annotated[timedelta, BeforeValidator(_duration_or_zero)]


# --- paths and names -----------------------------------------------------------------------


def _config_dir(info: ValidationInfo) -> Path:
    """The directory relative paths resolve against (the working directory without a file)."""
    context = info.context if isinstance(info.context, Mapping) else {}
    base = context.get(_CONFIG_DIR)
    return Path(base) if base is not None else Path.cwd()


def _normal(path: Path) -> Path:
    """``path`` with ``.`` and ``..`` removed lexically (as systemd and most tools do)."""
    return Path(os.path.normpath(path))


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value.strip() and "\0" not in value:
        path = Path(value)
    else:
        raise PydanticCustomError("path", "expected a non-empty path string")
    return _normal(path if path.is_absolute() else _config_dir(info) / path)


#: A filesystem path; relative values resolve against the configuration file's directory.
ConfigPath = Annotated[Path, BeforeValidator(_path)]


def _segment(value: str) -> str:
    try:
        return check_segment(value, "value")
    except UnsafeKeyError:
        raise PydanticCustomError(
            "segment",
            "'{value}' is not a valid name: use letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (at most 128 characters); it becomes part of storage keys",
            {"value": value},
        ) from None


#: A name that becomes one segment of a storage key (account ids, series names).
Segment = Annotated[str, AfterValidator(_segment)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_-]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()-]+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


# --- secrets -------------------------------------------------------------------------------


#: Where systemd keeps the running service's credentials. Staff who run the CLI through sudo
#: as the service account have no ``$CREDENTIALS_DIRECTORY``; this lets ``{ file = ... }``
#: references find the very tokens the daemon uses.
SERVICE_CREDENTIALS = Path("/run/credentials/archiver.service")


def credentials_directory(service_credentials: Path = SERVICE_CREDENTIALS) -> Path | None:
    """``$CREDENTIALS_DIRECTORY`` inside the service; else the service's, when readable."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        return Path(directory)
    try:
        return service_credentials if service_credentials.is_dir() else None
    except OSError:
        return None


class SecretRef(BaseModel):
    """Where a secret is found: ``{ env = "NAME" }`` or ``{ file = "NAME" }``.

    The value is read by :meth:`resolve` when it is needed, never at load time, and is never
    stored on the object: ``repr``/``str`` show only the reference, ``SecretRef(env=NAME)``.
    """

    model_config = _MODEL_CONFIG

    env: str | None = Field(default=None, description="name of an environment variable")
    file: str | None = Field(
        default=None, description="name of a file in $CREDENTIALS_DIRECTORY (systemd credential)"
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_only(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise PydanticCustomError(
                "secret_inline",
                'secrets never sit in the configuration file: write { env = "NAME" } to read '
                'the environment variable NAME, or { file = "NAME" } to read the file NAME from '
                "$CREDENTIALS_DIRECTORY (systemd LoadCredential=)",
            )
        if not isinstance(data, Mapping):
            raise PydanticCustomError(
                "secret_ref", 'expected a secret reference: { env = "NAME" } or { file = "NAME" }'
            )
        return data

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise PydanticCustomError(
                "secret_env",
                "'{name}' is not an environment variable name (letters, digits, '_')",
                {"name": value},
            )
        return value

    @field_validator("file")
    @classmethod
    def _file_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or "/" in value or "\\" in value or ".." in value or "\0" in value
        ):
            raise PydanticCustomError(
                "secret_file",
                "'{name}' is not a credential name: give a plain file name in "
                "$CREDENTIALS_DIRECTORY, without '/' or '..'",
                {"name": value},
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError(
                "secret_ref",
                'a secret reference needs exactly one of env or file: { env = "NAME" } or '
                '{ file = "NAME" }',
            )
        return self

    def __repr__(self) -> str:
        return (
            f"SecretRef(env={self.env})" if self.env is not None else f"SecretRef(file={self.file})"
        )

    def __str__(self) -> str:
        return self.__repr__()

    def resolve(self, *, service_credentials: Path | None = None) -> str:
        """Read the secret now. ``ConfigError`` naming the variable or file when it is missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                state = "is empty" if value is not None else "is not set"
                raise ConfigError(
                    f"secret {self}: environment variable {self.env} {state}; set it in the "
                    "service's environment (e.g. an EnvironmentFile= of the systemd unit)"
                )
            register_secret(value)
            return value
        assert self.file is not None
        directory = credentials_directory(service_credentials or SERVICE_CREDENTIALS)
        if directory is None:
            raise ConfigError(
                f"secret {self}: $CREDENTIALS_DIRECTORY is not set, so the credential file "
                f"{self.file!r} cannot be read; pass it with LoadCredential={self.file}:<path> "
                "in the systemd unit (or set CREDENTIALS_DIRECTORY)"
            )
        path = Path(directory) / self.file
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"secret {self}: credential file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"secret {self}: cannot read credential file {path}: {exc}") from None
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"secret {self}: credential file {path} is empty")
        # From now on the value is scrubbed verbatim from every log line.
        register_secret(value)
        return value


# --- sections ------------------------------------------------------------------------------


class _Settings(BaseModel):
    model_config = _MODEL_CONFIG


def _hostname() -> str:
    return socket.gethostname() or "localhost"


class ArchiverSettings(_Settings):
    """``[archiver]``: who runs this archiver and where."""

    operator: NonEmptyStr = Field(
        description='the organisation that operates the archiver, e.g. "City of Milwaukee"'
    )
    node: NonEmptyStr = Field(
        default_factory=_hostname, max_length=255, description="this node's name"
    )
    time_zone: str = Field(default="America/Chicago", description="IANA time zone name")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "time_zone",
                "unknown time zone '{zone}': expected an IANA name such as 'America/Chicago' "
                "(is the system's tzdata installed?)",
                {"zone": value},
            ) from None
        return value

    @field_validator("node")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value.strip() != value:
            raise PydanticCustomError(
                "node", "a node name must be printable, without leading or trailing spaces"
            )
        return value

    @property
    def zone(self) -> ZoneInfo:
        """:attr:`time_zone` as a ``ZoneInfo``."""
        return ZoneInfo(self.time_zone)


def _catalog_url(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("catalog_url", "expected a database URL string")
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise PydanticCustomError(
            "catalog_url",
            "not a SQLAlchemy database URL; expected e.g. 'sqlite:///var/catalog.sqlite3' or "
            "'postgresql+psycopg://archiver@db.example.org/archiver'",
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise PydanticCustomError(
            "catalog_url",
            f"catalog database {url.get_backend_name()!r} is not supported; "
            "use sqlite or postgresql",
        )
    if url.password is not None:
        raise PydanticCustomError(
            "catalog_url",
            "the URL contains a password, but secrets never sit in the configuration file: "
            'remove it from the URL and set catalog.password = { env = "NAME" } or '
            '{ file = "NAME" }',
        )
    database = url.database
    if (
        url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        url = url.set(database=str(_normal(_config_dir(info) / database)))
    return url.render_as_string(hide_password=False)


class CatalogSettings(_Settings):
    """``[catalog]``: the catalog database."""

    url: Annotated[str, BeforeValidator(_catalog_url)] = Field(
        default="sqlite:///var/catalog.sqlite3", validate_default=True
    )
    password: SecretRef | None = None

    @property
    def is_sqlite(self) -> bool:
        """Whether the catalog is a SQLite database."""
        return make_url(self.url).get_backend_name() == "sqlite"

    def sqlalchemy_url(self) -> URL:
        """The URL to connect with, the password resolved and merged in now.

        ``str()`` of the returned URL masks the password; never log
        ``render_as_string(hide_password=False)``.
        """
        url = make_url(self.url)
        if self.password is not None:
            url = url.set(password=self.password.resolve())
        return url


class LocalStoreSettings(_Settings):
    """``[store]`` with ``backend = "local"``: a directory on this machine."""

    backend: Literal["local"] = "local"
    path: ConfigPath = Field(default=Path("var/store"), validate_default=True)


class S3StoreSettings(_Settings):
    """``[store]`` with ``backend = "s3"``: an S3 bucket with Object Lock."""

    backend: Literal["s3"]
    bucket: str = Field(description='an S3 bucket name, e.g. "city-social-archive"')
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value:
            raise PydanticCustomError(
                "bucket",
                "'{bucket}' is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')",
                {"bucket": value},
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        stripped = value.strip("/")
        if stripped and not all(
            _PREFIX_SEGMENT.fullmatch(part) and part not in {".", ".."}
            for part in stripped.split("/")
        ):
            raise PydanticCustomError(
                "prefix",
                "'{prefix}' is not a key prefix: '/'-separated names of letters, digits and "
                "!_.*'()- (no empty, '.' or '..' parts)",
                {"prefix": value},
            )
        return stripped

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
            raise PydanticCustomError(
                "endpoint_url",
                "expected an http(s) URL such as 'https://s3.us-east-2.amazonaws.com', "
                "without credentials",
            )
        return value

    @model_validator(mode="after")
    def _key_pair(self) -> S3StoreSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise PydanticCustomError(
                "s3_keys",
                "set both access_key_id and secret_access_key, or neither (to use the default "
                "AWS credential chain, e.g. an instance role)",
            )
        return self


def _default_backend(value: Any) -> Any:
    if isinstance(value, Mapping) and "backend" not in value:
        return {"backend": "local", **value}
    return value


#: ``[store]``: one of the backends, chosen by ``backend`` (default ``"local"``).
StoreSettings = Annotated[
    LocalStoreSettings | S3StoreSettings,
    Field(discriminator="backend"),
    BeforeValidator(_default_backend),
]


class SpoolSettings(_Settings):
    """``[spool]``: local working space where WARC files are written before upload."""

    path: ConfigPath = Field(default=Path("var/spool"), validate_default=True)
    max_bytes: ByteCount = 10 * 1024**3


class WarcSettings(_Settings):
    """``[warc]``: when WARC files are closed, and how large a media download may be."""

    rotate_size: ByteCount = 1024**3
    rotate_idle: Duration = timedelta(hours=1)
    max_media_bytes: ByteCount = 4 * 1024**3


class HttpSettings(_Settings):
    """``[http]``: how the archiving HTTP client talks to platforms."""

    user_agent: NonEmptyStr = "city-archiver (public-records archiving; +https://github.com/)"
    timeout: Duration = timedelta(seconds=30)
    max_retries: int = Field(default=5, ge=0, le=20)
    max_wait: Duration = timedelta(minutes=15)


class ParquetSettings(_Settings):
    """``[parquet]``: when pending item rows are rolled into a Parquet file."""

    min_rows: int = Field(default=5000, ge=1)
    max_age: Duration = timedelta(days=1)


class DaemonSettings(_Settings):
    """``[daemon]``: how ``archiver run`` schedules captures and housekeeping."""

    workers: int = Field(default=2, ge=1, le=32)
    jitter: OptionalDelay = timedelta(seconds=30)
    stop_timeout: Duration = timedelta(seconds=60)
    heartbeat_every: Duration = timedelta(seconds=30)
    anchor_every: Duration = timedelta(hours=1)
    fixity_every: Duration = timedelta(hours=1)
    fixity_sample: int = Field(default=5, ge=0)
    retry_after: Duration = timedelta(minutes=15)
    lease_ttl: Duration = timedelta(minutes=10)


_MONTH_DAY = re.compile(r"(\d{2})-(\d{2})")


class RetentionRuleSettings(_Settings):
    """``[[retention.rules]]``: which items of which accounts belong to a records series.

    Every rule whose non-empty lists all match an item applies, as does the account's own
    ``series``; the series with the longest retention wins.
    """

    name: Segment = Field(description='a short name for the rule, e.g. "public-comments"')
    series: Segment = Field(description="the code of a series in the retention schedules")
    accounts: list[Segment] = Field(default_factory=list)
    kinds: list[Literal["post", "comment", "reply", "message", "media", "profile"]] = Field(
        default_factory=list
    )
    states: list[Literal["present", "edited", "hidden", "deleted"]] = Field(default_factory=list)


def _month_day(value: Any) -> Any:
    if isinstance(value, str):
        m = _MONTH_DAY.fullmatch(value)
        if m:
            month, day = int(m.group(1)), int(m.group(2))
            try:
                datetime(2001, month, day)  # a year without Feb 29: the start must exist yearly
            except ValueError:
                pass
            else:
                return (month, day)
    raise PydanticCustomError(
        "month_day", 'expected a month and day as "MM-DD" that exists every year, e.g. "07-01"'
    )


MonthDay = Annotated[tuple[int, int], BeforeValidator(_month_day)]


class RetentionSettings(_Settings):
    """``[retention]``: schedules, assignment rules, disposition and object locks."""

    default_lock: OptionalDelay = timedelta(0)
    # None: the schedules shipped with the archiver (schedules/*.toml).
    schedules_dir: ConfigPath | None = None
    fiscal_year_start: MonthDay = (1, 1)
    report_ttl: Duration = timedelta(days=30)
    report_every: OptionalDelay = timedelta(days=7)
    require_approval: bool = False
    rules: list[RetentionRuleSettings] = Field(default_factory=list)


class LoggingSettings(_Settings):
    """``[logging]``: log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) and value.upper() in _LOG_LEVELS else value


def _group_name(value: str) -> str:
    if not value or not value.isprintable() or ":" in value:
        raise PydanticCustomError("group", "'{group}' is not an OS group name", {"group": value})
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]


class AccountSettings(_Settings):
    """``[[accounts]]``: one official account to capture."""

    id: Segment = Field(description='a short unique id for the account, e.g. "mke-facebook"')
    platform: str = Field(description='the connector\'s platform name, e.g. "facebook"')
    handle: NonEmptyStr | None = None
    platform_id: NonEmptyStr | None = None
    department: NonEmptyStr = Field(
        description='the department that owns the account, e.g. "Mayor\'s Office"'
    )
    series: Segment = Field(
        description='the records series its records belong to, e.g. "social-media-general"'
    )
    schedule: Duration = timedelta(hours=6)
    max_staleness: Duration | None = None
    enabled: bool = True
    credentials: dict[NonEmptyStr, SecretRef] = Field(default_factory=dict)
    rescan_days: int = Field(default=14, ge=0)
    full_walk_days: int = Field(default=30, ge=1)
    api_base: str | None = None
    archive: ConfigPath | None = None
    options: dict[NonEmptyStr, str | int | bool] = Field(default_factory=dict)

    @field_validator("platform")
    @classmethod
    def _platform_name(cls, value: str) -> str:
        if not _PLATFORM.fullmatch(value):
            raise PydanticCustomError(
                "platform",
                "'{platform}' is not a platform name: lowercase letters, digits, '_' or '-' "
                "(e.g. 'facebook', 'mastodon')",
                {"platform": value},
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/@?#]+(/[^\s?#]*)?", value):
            raise PydanticCustomError(
                "api_base",
                "expected the platform's http(s) base URL such as 'https://mastodon.social', "
                "without credentials, query or fragment",
            )
        return None if value is None else value.rstrip("/")

    @field_validator("schedule")
    @classmethod
    def _not_too_often(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=10):
            raise PydanticCustomError(
                "schedule", 'capture at most every ten seconds (schedule >= "10s")'
            )
        return value

    @property
    def staleness_limit(self) -> timedelta:
        """How old the last good run may be before ``status --check`` fails."""
        return (
            self.max_staleness
            if self.max_staleness is not None
            else 2 * self.schedule + timedelta(hours=1)
        )

    @model_validator(mode="after")
    def _identified(self) -> AccountSettings:
        if self.handle is None and self.platform_id is None:
            raise PydanticCustomError(
                "account_identity",
                "an account needs handle or platform_id (or both) to say which account it is",
            )
        return self


# --- the whole file ------------------------------------------------------------------------

_SECTIONS = (
    "catalog",
    "store",
    "spool",
    "warc",
    "http",
    "parquet",
    "daemon",
    "retention",
    "logging",
)


class _Problems(ConfigError):
    """Cross-field problems found after each section validated; carries their key paths."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        super().__init__("\n".join(f"{format_key_path(p)}: {m}" for p, m in problems))
        self.problems = problems


class Config(_Settings):
    """The whole configuration. Build it with :func:`load_config`."""

    archiver: ArchiverSettings = Field(
        description='the [archiver] table, with at least operator = "..."'
    )
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    store: StoreSettings = Field(default_factory=LocalStoreSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    warc: WarcSettings = Field(default_factory=WarcSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    parquet: ParquetSettings = Field(default_factory=ParquetSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    roles: dict[GroupName, Role] = Field(default_factory=dict)
    accounts: list[AccountSettings] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _sections_default(cls, data: Any) -> Any:
        # Omitted sections are validated from {} so their paths resolve against the file's
        # directory (field defaults would be built without the validation context).
        if isinstance(data, Mapping):
            return {**{name: {} for name in _SECTIONS}, **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        problems: list[tuple[KeyPath, str]] = []
        seen: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.id in seen:
                problems.append(
                    (
                        ("accounts", index, "id"),
                        f"duplicate account id {account.id!r} (also accounts[{seen[account.id]}])",
                    )
                )
            seen.setdefault(account.id, index)
        rule_names: dict[str, int] = {}
        for index, rule in enumerate(self.retention.rules):
            if rule.name in rule_names:
                problems.append(
                    (
                        ("retention", "rules", index, "name"),
                        f"duplicate rule name {rule.name!r} "
                        f"(also retention.rules[{rule_names[rule.name]}])",
                    )
                )
            rule_names.setdefault(rule.name, index)
        if self.catalog.password is not None and self.catalog.is_sqlite:
            problems.append((("catalog", "password"), "a SQLite catalog takes no password"))
        if self.spool.max_bytes < self.warc.rotate_size:
            problems.append(
                (
                    ("spool", "max_bytes"),
                    f"the spool ({self.spool.max_bytes} bytes) must hold at least one WARC "
                    f"file (warc.rotate_size = {self.warc.rotate_size} bytes)",
                )
            )
        if problems:
            # Not a ValueError: pydantic lets it through with the key paths intact.
            raise _Problems(problems)
        return self

    def account(self, account_id: str) -> AccountSettings:
        """The account with id ``account_id``; ``ConfigError`` if there is none."""
        for account in self.accounts:
            if account.id == account_id:
                return account
        known = ", ".join(a.id for a in self.accounts) or "none are configured"
        raise ConfigError(f"no account {account_id!r} in the configuration (accounts: {known})")


# --- loading -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_LINE = re.compile(r"at line (\d+)")
_ECHO_TYPES = frozenset({"literal_error"})
#: Friendlier messages for type errors: (what is expected, whether a string input is shown).
_EXPECTED: dict[str, tuple[str, bool]] = {
    "bool_type": ("expected true or false", True),
    "int_type": ("expected an integer", True),
    "string_type": ("expected a string", False),
    "list_type": ("expected an array", False),
    "dict_type": ("expected a table", False),
    "model_type": ("expected a table", False),
    "model_attributes_type": ("expected a table", False),
}


def format_key_path(path: Iterable[str | int]) -> str:
    """``("accounts", 1, "series")`` → ``accounts[1].series`` (TOML-quoting odd keys)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{key}" if out else key
    return out or "(top level)"


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    args = get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _walk(loc: tuple[str | int, ...]) -> tuple[KeyPath, type[BaseModel] | None]:
    """Follow a pydantic error location through the models.

    Returns the location as a key path of the file (without the union tags and ``[key]``
    markers pydantic adds) and the settings model of the table it ends in, if any.
    """
    path: list[str | int] = []
    model: type[BaseModel] | None = Config
    tags: dict[str, type[BaseModel]] | None = None  # expecting a union tag
    dict_values: list[type[BaseModel]] | None = None  # expecting a dict key
    for part in loc:
        if part == "[key]":
            continue
        if tags is not None:
            model, tags = tags.get(str(part)), None
            if model is not None:
                continue
        if isinstance(part, int):
            path.append(part)
            continue
        path.append(part)
        if dict_values is not None:
            model = dict_values[0] if len(dict_values) == 1 else None
            dict_values = None
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = None
        if field is None:
            continue
        annotation = field.annotation
        if get_origin(annotation) is dict:
            dict_values = _models_in(get_args(annotation)[1])
            continue
        members = _models_in(annotation)
        if len(members) == 1:
            model = members[0]
        elif members and isinstance(field.discriminator, str):
            name = field.discriminator
            tags = {get_args(m.model_fields[name].annotation)[0]: m for m in members}
    return tuple(path), model


def _problem(error: ErrorDetails) -> tuple[KeyPath, str]:
    raw = tuple(error["loc"])
    path, _ = _walk(raw)
    kind = error["type"]
    message = error["msg"]
    value = error.get("input")
    if kind == "missing":
        model = _walk(raw[:-1])[1]
        field = model.model_fields.get(str(raw[-1])) if model else None
        what = field.description if field is not None and field.description else None
        message = "required key is missing" + (f": {what}" if what else "")
    elif kind == "extra_forbidden":
        model = _walk(raw[:-1])[1]
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(raw[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(allowed)
        message = f"unknown key; {hint}" if allowed else "unknown key"
    elif kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        path = (*path, str(ctx.get("discriminator", "")).strip("'"))
        message = f"expected one of {ctx.get('expected_tags')} (got {_describe(ctx.get('tag'))})"
    elif kind in _EXPECTED:
        # Echo the input only where it cannot plausibly be a secret: never a string given
        # where a table was expected (e.g. `catalog = "postgresql://user:password@..."`).
        expected, echo_strings = _EXPECTED[kind]
        shown = echo_strings or not isinstance(value, str)
        message = expected + (f" (got {_describe(value)})" if shown else "")
    elif kind in _ECHO_TYPES or (
        not isinstance(value, str) and kind.startswith(("greater", "less"))
    ):
        message = f"{message} (got {_describe(value)})"
    return path, message


def _validate(data: Mapping[str, Any], config_dir: Path) -> Config:
    return Config.model_validate(data, context={_CONFIG_DIR: config_dir})


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises ``ConfigError`` listing every problem, one per line, as
    ``<path>:<line>: <key path>: <message>``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found (looked for {path.absolute()}); "
            "pass --config or start from config.example.toml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not valid UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else text.count("\n") + 1
        raise ConfigError(f"{path}:{line}: TOML syntax error: {exc}") from None

    problems: list[tuple[KeyPath, str]]
    try:
        config = _validate(data, path.absolute().parent)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
    except _Problems as exc:
        problems = exc.problems
    else:
        problems = unknown_series(config)
        if not problems:
            return config
    lines = key_lines(text)
    located = sorted(
        ((locate(lines, key), key, message) for key, message in problems),
        key=lambda item: item[0],
    )
    raise ConfigError(
        "\n".join(f"{path}:{line}: {format_key_path(key)}: {msg}" for line, key, msg in located)
    )


def unknown_series(config: Config) -> list[tuple[KeyPath, str]]:
    """Every ``accounts[].series`` and ``retention.rules[].series`` that names no series of
    the retention schedules (``[retention] schedules_dir``, or the shipped ones).

    A problem in a schedule file itself raises ``ConfigError`` naming that file and line.
    """
    # Imported here: the schedules loader needs nothing from this module, and only a file
    # that validated has series worth checking.
    from archiver.series import load_schedules

    directory = config.retention.schedules_dir
    if directory is not None and not directory.is_dir():
        return [
            (
                ("retention", "schedules_dir"),
                f"{directory} is not a directory of retention schedules (*.toml); fix the "
                "path, or remove the key to use the shipped Wisconsin schedule",
            )
        ]
    schedules = load_schedules(directory)
    where = ", ".join(str(f) for f in schedules.files)
    named: list[tuple[KeyPath, str]] = [
        (("accounts", i, "series"), a.series) for i, a in enumerate(config.accounts)
    ]
    named += [
        (("retention", "rules", i, "series"), r.series)
        for i, r in enumerate(config.retention.rules)
    ]
    problems = []
    for key, code in named:
        if code in schedules:
            continue
        close = difflib.get_close_matches(code, list(schedules), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            (
                key,
                f"unknown records series {code!r}; {hint}the retention schedules ({where}) "
                f"define: {', '.join(schedules)}",
            )
        )
    return problems


def embedded_defaults(config_dir: Path, operator: str) -> Config:
    """The configuration every default makes: what a file holding only ``[archiver]
    operator = ...`` in ``config_dir`` loads to (SQLite catalog, local store under ./var/).
    """
    try:
        return _validate({"archiver": {"operator": operator}}, config_dir.absolute())
    except ValidationError as exc:
        first = _problem(exc.errors(include_url=False)[0])
        raise ConfigError(f"{format_key_path(first[0])}: {first[1]}") from None
