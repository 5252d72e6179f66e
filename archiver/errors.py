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
