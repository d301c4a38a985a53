"""The Alembic migration is the schema: it matches the models on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from server_helpers import TABLES, run_sql
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from server.db.engine import create_engine
from server.db.migrate import alembic_config, head_revision, upgrade_async
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
        "admin_sessions",
    }


async def _downgrade(database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:

            def run(sync_connection: Connection) -> None:
                config.attributes["connection"] = sync_connection
                command.downgrade(config, revision)

            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_the_admin_sessions_migration_downgrades_and_upgrades_again(
    database_url: str,
) -> None:
    await run_sql(
        database_url,
        "INSERT INTO api_tokens (name, role, token_hash, prefix, created_at) "
        "VALUES ('kept', 'reviewer', :hash, 'fs_kept', CURRENT_TIMESTAMP)",
        hash="0" * 64,
    )
    try:
        await _downgrade(database_url, "0004")
        assert await run_sql(database_url, "SELECT version_num FROM alembic_version") == [("0004",)]
        assert await _tables(database_url) == (set(TABLES) - {"admin_sessions"}) | {
            "alembic_version"
        }
    finally:
        await upgrade_async(database_url)
    assert await run_sql(database_url, "SELECT version_num FROM alembic_version") == [
        (head_revision(),)
    ]
    assert await run_sql(database_url, "SELECT name FROM api_tokens") == [("kept",)]
    await run_sql(
        database_url,
        "INSERT INTO admin_sessions (session_hash, token_id, created_at, last_seen_at, "
        "expires_at) SELECT :hash, id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
        "FROM api_tokens",
        hash="1" * 64,
    )
    assert await run_sql(database_url, "SELECT count(*) FROM admin_sessions") == [(1,)]


async def _job_indexes(database_url: str) -> dict[str, list[str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: inspect(c).get_indexes("jobs"))
    finally:
        await engine.dispose()
    return {str(index["name"]): list(index["column_names"]) for index in found}


async def test_the_finished_jobs_index_downgrades_and_upgrades_again(database_url: str) -> None:
    finished = {"ix_jobs_state_finished_at": ["state", "finished_at"]}
    assert await _job_indexes(database_url) == {"ix_jobs_state": ["state"], **finished}
    try:
        await _downgrade(database_url, "0005")
        assert await run_sql(database_url, "SELECT version_num FROM alembic_version") == [("0005",)]
        assert await _job_indexes(database_url) == {"ix_jobs_state": ["state"]}
    finally:
        await upgrade_async(database_url)
    assert await _job_indexes(database_url) == {"ix_jobs_state": ["state"], **finished}
    assert await run_sql(database_url, "SELECT version_num FROM alembic_version") == [
        (head_revision(),)
    ]


async def test_the_review_queue_migration_fills_the_served_labels_and_downgrades(
    database_url: str,
) -> None:
    # Three flagged images: one analysed twice (the newer analysis serves), one decided
    # after its analysis (the decision serves), one analysed and never decided.
    await run_sql(
        database_url,
        "INSERT INTO images (sha256, pdq, pdq_quality, format, width, height, bytes, n_frames, "
        "first_seen_at) SELECT s, :pdq, 100, 'PNG', 8, 8, 100, 1, CURRENT_TIMESTAMP FROM "
        "(SELECT :a AS s UNION ALL SELECT :b UNION ALL SELECT :c) AS shas",
        pdq="0" * 64,
        a="a" * 64,
        b="b" * 64,
        c="c" * 64,
    )
    analyses = [("a", "m1", "uncertain", 1), ("a", "m2", "fake", 2), ("b", "m1", "fake", 1)]
    analyses.append(("c", "m1", "real", 1))
    for sha, model, label, minute in analyses:
        await run_sql(
            database_url,
            "INSERT INTO analyses (sha256, model_key, prompt_version, label, decided_by, mode, "
            "evidence, flags, timings, created_at) VALUES (:sha, :model, 'v1', :label, 'model', "
            "'model', '[]', '[]', '{}', :at)",
            sha=sha * 64,
            model=model,
            label=label,
            at=datetime(2026, 11, 28, 12, minute, tzinfo=UTC),
        )
    try:
        await _downgrade(database_url, "0006")  # review items as they were before 0007
        for sha in "abc":
            await run_sql(
                database_url,
                "INSERT INTO review_items (sha256, reasons, status, created_at, updated_at) "
                "VALUES (:sha, '[\"uncertain\"]', 'open', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                sha=sha * 64,
            )
        await run_sql(
            database_url,
            "INSERT INTO review_decisions (sha256, label, created_at) VALUES (:sha, 'real', :at)",
            sha="b" * 64,
            at=datetime(2026, 11, 28, 13, 0, tzinfo=UTC),
        )
    finally:
        await upgrade_async(database_url)
    served = await run_sql(
        database_url, "SELECT sha256, served_label FROM review_items ORDER BY sha256"
    )
    assert served == [("a" * 64, "fake"), ("b" * 64, "real"), ("c" * 64, "real")]
    try:
        await _downgrade(database_url, "0006")
        assert await run_sql(database_url, "SELECT count(*) FROM review_items") == [(3,)]
    finally:
        await upgrade_async(database_url)
    assert await run_sql(database_url, "SELECT version_num FROM alembic_version") == [
        (head_revision(),)
    ]


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
