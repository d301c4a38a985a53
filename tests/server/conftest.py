"""Fixtures for the server tests: migrated databases (SQLite and PostgreSQL), apps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from server_helpers import TABLES, AppClient, run_sql, running

from server.app import create_app
from server.db.migrate import upgrade_async
from server.settings import Settings


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    asyncio.run(upgrade_async(postgres_url))
    return postgres_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fakescope.db'}"
    asyncio.run(upgrade_async(url))
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    url: str = request.getfixturevalue("migrated_postgres")
    tables = ", ".join(TABLES)
    asyncio.run(run_sql(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Provenance-only settings on the parametrised database, with no rate limit."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url, rate_limit=None)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AppClient]:
    async with running(create_app(settings)) as test_client:
        yield test_client
