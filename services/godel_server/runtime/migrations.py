"""Alembic, driven programmatically: each service has its own `migrations/` folder and its own
database, and runs `upgrade head` at start (or `godel-server migrate ROLE up|down REV`).

On PostgreSQL a migration holds a transaction-level advisory lock: N replicas (or a migration Job and
the replicas) starting at once migrate one after the other, and the later ones find the database at
head and do nothing. The whole migration is one transaction (PostgreSQL has transactional DDL), so
the lock is released by its commit or rollback, also when the process dies. SQLite is one process's
file: no lock is needed there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from godel_server.runtime.db import Database


def _config(script_location: Path, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


# Key of the advisory lock (advisory locks are per database, and each service has its own).
MIGRATION_LOCK_KEY = 0x60DE1_1A7E


def _locked(conn: Connection) -> None:
    """Waits for, then holds until the transaction ends, the database's migration lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


async def upgrade(db: Database, script_location: Path, revision: str = "head") -> None:
    def run(conn: Connection) -> None:
        _locked(conn)
        command.upgrade(_config(script_location, conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def downgrade(db: Database, script_location: Path, revision: str = "base") -> None:
    def run(conn: Connection) -> None:
        _locked(conn)
        command.downgrade(_config(script_location, conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    def run(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(run)


async def require_head(db: Database, script_location: Path, role: str) -> None:
    """Raises unless the database is at this release's revision (for GODEL_MIGRATE_ON_START=false,
    where a migration Job migrates before the replicas start)."""
    current, head = await current_revision(db), head_revision(script_location)
    if current != head:
        raise RuntimeError(
            f"the {role} database is at revision {current or 'base'}, this release needs {head}: "
            f"run `godel-server migrate {role} up` first (the Helm chart's migration Job does)"
        )


def head_revision(script_location: Path) -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return ScriptDirectory.from_config(cfg).get_current_head()


def run_env(context: Any) -> None:
    """Body of every service's `migrations/env.py` (online mode on the connection we hand in)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `godel-server migrate ROLE`, not the alembic CLI")
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
