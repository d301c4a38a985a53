"""The database connection pool: sized by settings, watched in /metrics, and a request that
finds every connection in use for FAKESCOPE_DB_POOL_TIMEOUT_S answers 503 `database-busy`
with Retry-After (it was a 500 `internal-error`), writing nothing; once connections are free
again the same requests succeed.

The pool is filled for real: the test checks out every connection the app's engine may open
and holds them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from server_helpers import AppClient, count_rows, problem, running, unique_png, upload
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.app import create_app
from server.settings import Settings, SettingsError


def _small_pool(settings: Settings) -> Settings:
    # Two connections at most, a short wait for one, no cache of served analyses (every read
    # goes to the database).
    return replace(
        settings, db_pool_size=1, db_pool_overflow=1, db_pool_timeout_s=0.3, cache_ttl_s=0
    )


@asynccontextmanager
async def _all_connections_held(engine: AsyncEngine, n: int) -> AsyncIterator[None]:
    held: list[AsyncConnection] = []
    try:
        for _ in range(n):
            held.append(await engine.connect())
        yield
    finally:
        for connection in held:
            await connection.close()


def _pool_gauges(metrics: str) -> dict[tuple[str, str], float]:
    return {
        (pool, state): float(value)
        for pool, state, value in re.findall(
            r'^fakescope_db_pool_connections\{pool="(\w+)",state="(\w+)"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    }


async def test_requests_that_find_no_free_connection_get_503_database_busy_and_write_nothing(
    settings: Settings,
) -> None:
    async with running(create_app(_small_pool(settings))) as client:
        known = await client.post("/v1/analyze", **upload(unique_png()))
        assert known.status_code == 200, known.text
        sha = known.json()["sha256"]
        new_image = unique_png()
        before = await count_rows(settings.database_url)
        engine = client.app.state.db.engine
        async with _all_connections_held(engine, 2):
            busy = [
                await client.get(f"/v1/analyses/{sha}"),
                await client.post("/v1/lookup", json={"sha256": [sha]}),
                await client.post("/v1/analyze", **upload(new_image)),
            ]
        for response in busy:
            assert response.status_code == 503, response.text
            body = problem(response)
            assert body["type"].endswith(":database-busy") and "try again" in body["detail"]
            assert response.headers["retry-after"] == "2"
        assert await count_rows(settings.database_url) == before  # nothing half-written
        # The connections are free again: the same requests are answered.
        assert (await client.get(f"/v1/analyses/{sha}")).json()["sha256"] == sha
        looked_up = await client.post("/v1/lookup", json={"sha256": [sha]})
        assert sha in looked_up.json()["results"]
        stored = await client.post("/v1/analyze", **upload(new_image))
        assert stored.status_code == 200, stored.text


async def _metrics(client: AppClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_metrics_show_the_connections_in_use_and_the_pool_limit(settings: Settings) -> None:
    async with running(create_app(_small_pool(settings))) as client:
        engine = client.app.state.db.engine
        assert engine.pool.size() == 1  # FAKESCOPE_DB_POOL_SIZE reaches the engine
        async with _all_connections_held(engine, 2):
            held = _pool_gauges(await _metrics(client))
        assert held[("main", "in_use")] == 2
        free = _pool_gauges(await _metrics(client))
        assert free[("main", "in_use")] == 0 and free[("main", "idle")] >= 1
        text = await _metrics(client)
        assert 'fakescope_db_pool_limit{pool="main"} 2.0' in text
        if settings.is_sqlite:  # SQLite writes through a second engine, sized the same
            assert ("writes", "in_use") in free
            assert 'fakescope_db_pool_limit{pool="writes"} 2.0' in text


def test_pool_settings_are_read_from_the_environment_and_checked() -> None:
    defaults = Settings.from_env({})
    assert (defaults.db_pool_size, defaults.db_pool_overflow, defaults.db_pool_timeout_s) == (
        5,
        10,
        30.0,
    )
    settings = Settings.from_env(
        {
            "FAKESCOPE_DATABASE_URL": "postgresql+asyncpg://u@db/fs",
            "FAKESCOPE_DB_POOL_SIZE": "20",
            "FAKESCOPE_DB_POOL_OVERFLOW": "0",
            "FAKESCOPE_DB_POOL_TIMEOUT_S": "2.5",
        }
    )
    assert settings.pool_options == {"pool_size": 20, "max_overflow": 0, "pool_timeout": 2.5}
    with pytest.raises(SettingsError, match="FAKESCOPE_DB_POOL_SIZE must be >= 1"):
        Settings.from_env({"FAKESCOPE_DB_POOL_SIZE": "0"})
    with pytest.raises(SettingsError, match="FAKESCOPE_DB_POOL_OVERFLOW must be >= 0"):
        Settings.from_env({"FAKESCOPE_DB_POOL_OVERFLOW": "-1"})
    with pytest.raises(SettingsError, match="FAKESCOPE_DB_POOL_TIMEOUT_S must be > 0"):
        Settings.from_env({"FAKESCOPE_DB_POOL_TIMEOUT_S": "0"})
    memory = Settings(database_url="sqlite+aiosqlite:///:memory:")
    assert memory.pool_options == {}  # no pool to size


async def test_an_in_memory_sqlite_url_without_memory_in_it_gets_no_pool_arguments() -> None:
    # SQLAlchemy's own spelling of an in-memory database opens one static connection, as
    # ":memory:" does: pool sizes were passed to it and create_engine refused them
    # (TypeError), so the app could not start.
    from server.db.engine import create_engine

    settings = Settings(database_url="sqlite+aiosqlite://")
    assert settings.pool_options == {}
    engine = create_engine(settings.database_url, **settings.pool_options)
    await engine.dispose()
