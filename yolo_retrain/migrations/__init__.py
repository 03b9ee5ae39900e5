"""The correction store's schema, versioned with Alembic: revisions in ``versions/``, run when a store opens.

A store opens by calling :func:`upgrade`: a database already at the head revision costs one query; otherwise
every missing revision runs in one transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: under an advisory
lock), so two processes opening the same new store never both migrate it, and a failed migration leaves the
database as it was. A store written before the schema was versioned (a ``corrections`` table and no version
table) is stamped with the baseline revision first, then upgraded.

The version table is ``corrections_schema_version``, not Alembic's default ``alembic_version``: the database may
be shared with MLflow or Prefect, which keep their own Alembic versions.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

VERSION_TABLE = "corrections_schema_version"
BASELINE = "0001_baseline"  # the schema of the release before versioning: corrections + flags
_PG_LOCK_KEY = 7_310_250_012  # pg_advisory_xact_lock key: one migrator per PostgreSQL database at a time
_HERE = Path(__file__).parent


def config(connection: Connection | None = None) -> Config:
    """An Alembic config without alembic.ini: the scripts are this package; the connection is the caller's."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = connection
    return config


@cache
def head() -> str:
    """The newest revision id (read from ``versions/`` once per process)."""
    current = ScriptDirectory.from_config(config()).get_current_head()
    assert current is not None, "no revisions in yolo_retrain/migrations/versions"
    return current


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None: not versioned yet, or empty)."""
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, writer: Engine | None = None) -> str | None:
    """Bring the store's schema to the head revision; returns the revision it was at (None: new or unversioned).

    ``writer`` is the engine whose transactions take the write lock up front (SQLite ``BEGIN IMMEDIATE``).
    """
    with engine.connect() as conn:
        if current_revision(conn) == head():
            return head()
    with (writer or engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
        before = current_revision(conn)  # again, under the lock: another opener may have migrated meanwhile
        if before == head():
            return before
        alembic_config = config(conn)
        if before is None and inspect(conn).has_table("corrections"):
            command.stamp(alembic_config, BASELINE)  # written by the release before versioning: the baseline schema
        command.upgrade(alembic_config, "head")
    return before
