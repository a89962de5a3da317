"""Alembic, driven programmatically: each service has its own `migrations/` folder and its own
database, and runs `upgrade head` at start (or `godel-server migrate ROLE up|down REV`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from godel_server.runtime.db import Database


def _config(script_location: Path, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, script_location: Path, revision: str = "head") -> None:
    def run(conn: Connection) -> None:
        command.upgrade(_config(script_location, conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def downgrade(db: Database, script_location: Path, revision: str = "base") -> None:
    def run(conn: Connection) -> None:
        command.downgrade(_config(script_location, conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    def run(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(run)


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
