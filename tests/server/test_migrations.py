"""The Alembic migration is the schema: it matches the models on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from server_helpers import TABLES, run_sql
from sqlalchemy.engine import Connection

from server.db.engine import create_engine
from server.db.migrate import head_revision
from server.db.models import Base


async def test_migrated_database_matches_the_models_exactly(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: Connection) -> list[object]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_migration_records_its_revision_and_creates_every_table(database_url: str) -> None:
    rows = await run_sql(database_url, "SELECT version_num FROM alembic_version")
    assert rows == [(head_revision(),)]
    assert set(TABLES) == {
        "images",
        "analyses",
        "answers",
        "reports",
        "review_items",
        "review_decisions",
        "api_tokens",
        "audit_log",
        "jobs",
        "workers",
    }


async def test_sqlite_runs_in_wal_mode_with_full_sync(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await engine.dispose()
    assert (mode, sync, fks) == ("wal", 2, 1)
