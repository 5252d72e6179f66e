"""The one exception hierarchy of the archiver.

Every error a user can cause or meet ends as one of these, and the CLI turns it into
its message and its exit code, never a traceback.

- ``ArchiverError`` (exit 2): base; its message says what went wrong and what to do.
  - ``ConfigError`` (exit 3): the configuration file is missing, unreadable or invalid.
  - ``CatalogError`` (exit 4): the catalog cannot be reached or used.
    - ``SchemaMismatchError`` (exit 5): the catalog schema is not the one this code
      expects; run ``archiver catalog upgrade``.
  - ``StoreError`` (exit 6): the store refused or failed an operation.
    - ``ObjectNotFoundError``: no object under that key.
    - ``RetentionError`` (exit 7): the object is retained or held and cannot be changed.
    - ``UnsafeKeyError``: a key would escape the store root or is malformed.
    - ``LayoutVersionError``: the store's layout version is unknown to this code.
  - ``IntegrityError`` (exit 90): a digest or a hash chain does not match what was
    recorded. Data may be damaged; nothing is changed.
  - ``PermissionDenied`` (exit 8): the caller's role does not allow the command.
  - ``CaptureError`` (exit 10): a capture could not finish; the run is recorded incomplete.
    - ``RateLimitedError``: the platform kept refusing for rate limits past our patience.
    - ``PlatformUnavailableError``: 5xx or network failures persisted past the retries.
    - ``MalformedResponseError``: the platform answered something we cannot parse.
    - ``ConnectorNotFoundError``: no installed connector for the account's platform.
  - ``ExportArchiveError`` (exit 11): an export archive is unsafe or unreadable (zip slip,
    links, size bombs); nothing from it is imported.
  - ``SearchQueryError`` (exit 2): a search query does not follow the grammar (an unclosed
    quote or parenthesis, an operator without a term); the message says what and where.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the archiver reports to its user."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ArchiverError):
    """The configuration is invalid; the message names the key path, file and line."""

    exit_code = 3


class CatalogError(ArchiverError):
    """The catalog database cannot be reached or used."""

    exit_code = 4


class SchemaMismatchError(CatalogError):
    """The catalog's schema revision differs from the code's."""

    exit_code = 5


class StoreError(ArchiverError):
    """The store failed or refused an operation."""

    exit_code = 6


class ObjectNotFoundError(StoreError):
    """No object is stored under the key."""


class RetentionError(StoreError):
    """The object is under retention or legal hold; the operation is refused."""

    exit_code = 7


class UnsafeKeyError(StoreError):
    """The key is malformed or would escape the store root."""


class LayoutVersionError(StoreError):
    """The store root carries a layout version this code does not know."""


class IntegrityError(ArchiverError):
    """Stored bytes or a hash chain disagree with what was recorded."""

    exit_code = 90


class PermissionDenied(ArchiverError):
    """The calling user's role does not allow this command."""

    exit_code = 8


class CaptureError(ArchiverError):
    """A capture run could not finish; what it committed stays, the run is incomplete."""

    exit_code = 10


class RateLimitedError(CaptureError):
    """The platform's rate limit outlasted the retry budget."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PlatformUnavailableError(CaptureError):
    """Server errors or network failures persisted past the retries."""


class MalformedResponseError(CaptureError):
    """The platform's answer is not what its API documents."""


class ConnectorNotFoundError(CaptureError):
    """No connector is installed for the platform."""


class ExportArchiveError(ArchiverError):
    """An export archive is unsafe or unreadable; nothing from it was imported."""

    exit_code = 11


class SearchQueryError(ArchiverError):
    """A search query does not follow the search grammar; the message says where."""
