"""The Alembic migration is the schema: it matches the models on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from server_helpers import TABLES, run_sql
from sqlalchemy.engine import Connection

from server.db.engine import create_engine
from server.db.migrate import head_revision
from server.db.models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
        "stored_images",
        "limiter_entries",
        "auth_failures",
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


@pytest.mark.postgres
def test_machines_starting_together_migrate_one_at_a_time(postgres_url: str) -> None:
    """Four `fakescope db upgrade` processes on one empty PostgreSQL database all succeed."""
    fresh = f"{postgres_url}_upgrade_race"
    name = fresh.rsplit("/", 1)[1]
    admin = POSTGRES_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "FAKESCOPE_DATABASE_URL": fresh}
        command = [sys.executable, "-m", "fakescope.cli", "db", "upgrade"]
        processes = [
            subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else b"") for p in processes]
        assert [code for code, _ in outcomes] == [0] * 4, outcomes
        rows = asyncio.run(run_sql(fresh, "SELECT version_num FROM alembic_version"))
        assert rows == [(head_revision(),)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
