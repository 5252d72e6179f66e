"""Schema revisions: upgrade under a lock, and refuse to work on a mismatched schema.

Only ``archiver run`` and ``archiver catalog upgrade`` migrate. Every other command calls
:func:`require_current` and stops with a message naming the command to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select

from archiver.catalog.db import Catalog, redacted
from archiver.errors import SchemaMismatchError

# Arbitrary but fixed: every archiver process contending for the migration uses this key.
_PG_MIGRATION_LOCK = 0x61726368_69766572 & 0x7FFF_FFFF_FFFF_FFFF


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("archiver") / "migrations"))
    return cfg


def head_revision() -> str:
    """The schema revision this code expects."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_state(catalog: Catalog) -> SchemaState:
    with catalog.connect() as conn:
        return SchemaState(current=_current(conn), head=head_revision())


def _known(revision: str) -> bool:
    script = ScriptDirectory.from_config(_alembic_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def upgrade(catalog: Catalog) -> SchemaState:
    """Bring the schema to the code's head revision, serialized across processes.

    SQLite: the migration runs inside one ``BEGIN IMMEDIATE`` transaction, which holds the
    database's write lock throughout. PostgreSQL: a transaction-scoped advisory lock.
    Either way a second process waits, then finds nothing left to do.
    """
    cfg = _alembic_config()
    with catalog.connect(begin=True) as conn:
        if catalog.dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        current = _current(conn)
        if current is not None and not _known(current):
            raise SchemaMismatchError(
                f"the catalog at {redacted(catalog.engine.url)} is at schema revision {current}, "
                "newer than this archiver knows: upgrade the archiver package"
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return schema_state(catalog)


def require_current(catalog: Catalog) -> None:
    """Raise ``SchemaMismatchError`` unless the catalog is at the code's head revision."""
    state = schema_state(catalog)
    if state.up_to_date:
        return
    where = redacted(catalog.engine.url)
    if state.current is None:
        raise SchemaMismatchError(
            f"the catalog at {where} has no archiver schema yet: run `archiver catalog upgrade` "
            "(or start `archiver run`, which upgrades it)"
        )
    if not _known(state.current):
        raise SchemaMismatchError(
            f"the catalog at {where} is at schema revision {state.current}, newer than this "
            "archiver knows: upgrade the archiver package"
        )
    raise SchemaMismatchError(
        f"the catalog at {where} is at schema revision {state.current} but this archiver needs "
        f"{state.head}: run `archiver catalog upgrade`"
    )
