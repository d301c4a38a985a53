"""Apply and check Alembic migrations from code (the CLI and the startup check use these)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Held by an upgrade on PostgreSQL until it commits: machines starting together (API
# processes, GPU workers, each running `fakescope db upgrade`) migrate one at a time, and
# the later ones find the database already at head.
UPGRADE_LOCK_KEY = 0x46414B45  # "FAKE"


class DatabaseNotMigratedError(RuntimeError):
    """The database is missing tables or is behind the code's migrations."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY}
                )

            def run(sync_connection: Connection) -> None:
                config.attributes["connection"] = sync_connection
                command.upgrade(config, revision)

            await connection.run_sync(run)
    finally:
        await engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    asyncio.run(upgrade_async(database_url, revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:

        def read(sync_connection: Connection) -> str | None:
            return MigrationContext.configure(sync_connection).get_current_revision()

        return await connection.run_sync(read)


async def ensure_migrated(engine: AsyncEngine) -> None:
    """Raise DatabaseNotMigratedError unless the database is at the newest migration."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        url = engine.url.render_as_string(hide_password=True)
        state = "has no FakeScope tables" if current is None else f"is at revision {current}"
        raise DatabaseNotMigratedError(
            f"The database {url} {state}, but this server needs revision {head}. "
            "Run `fakescope db upgrade` (same FAKESCOPE_DATABASE_URL) and start again."
        )
