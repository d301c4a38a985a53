"""Rate limits and failed logins counted in SQL, shared by every API process on the database.

The store and the failed-login limiter run on SQLite and PostgreSQL; two API apps share one
PostgreSQL database as two processes on two machines would.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from server_helpers import problem, run_sql, running

from server.app import create_app
from server.db.database import Database
from server.db.engine import create_engine
from server.limits import (
    DatabaseFailedAuthLimiter,
    DatabaseStore,
    SharedRateLimitMiddleware,
)
from server.settings import Settings
from server.timefmt import utcnow

UNKNOWN = "/v1/analyses/" + "ab" * 32  # rate-limited, answers 404 without a model


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Pair = tuple[Database, Database]


def _database(url: str) -> Database:
    """A Database as one process builds it (SQLite writers take the lock when they begin)."""
    write = create_engine(url, immediate=True) if url.startswith("sqlite") else None
    return Database(create_engine(url), write)


@pytest.fixture
async def dbs(database_url: str) -> AsyncIterator[Pair]:
    """Two processes' handles on one database."""
    pair = (_database(database_url), _database(database_url))
    yield pair
    for db in pair:
        await db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# -- the store ------------------------------------------------------------------------------


async def test_a_value_reads_back_until_it_expires_then_is_absent(dbs: Pair, clock: Clock) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    await store.set("k", "text", expires_in=10)
    await store.set("forever", b"\x00\xffbytes")
    assert await store.get("k") == b"text" and await store.exists("k")
    assert await store.expires_in("k") == 10
    assert await store.get("forever") == b"\x00\xffbytes"
    assert await store.expires_in("forever") is None  # no expiry set
    clock.advance(10)
    assert await store.get("k") is None and not await store.exists("k")
    assert await store.expires_in("k") is None
    assert await store.get("missing") is None and not await store.exists("missing")
    assert await store.get("forever") == b"\x00\xffbytes"


async def test_setting_again_replaces_the_value_and_its_expiry(dbs: Pair, clock: Clock) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    await store.set("k", b"one", expires_in=5)
    await store.set("k", b"two", expires_in=timedelta(seconds=30))
    assert await store.get("k") == b"two" and await store.expires_in("k") == 30
    await store.set("k", b"three")
    assert await store.get("k") == b"three" and await store.expires_in("k") is None


async def test_renew_for_extends_only_values_that_expire(dbs: Pair, clock: Clock) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    await store.set("expiring", b"1", expires_in=10)
    await store.set("forever", b"2")
    clock.advance(8)
    assert await store.get("expiring", renew_for=10) == b"1"
    assert await store.expires_in("expiring") == 10
    assert await store.get("forever", renew_for=10) == b"2"
    assert await store.expires_in("forever") is None
    clock.advance(9)  # past the first expiry, within the renewed one
    assert await store.get("expiring") == b"1"
    clock.advance(1)
    assert await store.get("expiring", renew_for=10) is None  # expired values stay expired


async def test_delete_and_delete_all_touch_only_their_own_namespace(dbs: Pair) -> None:
    limits, other = DatabaseStore(dbs[0]), DatabaseStore(dbs[1], namespace="other_ns")
    for store in (limits, other):
        await store.set("a", b"1")
        await store.set("b", b"2")
    await limits.delete("a")
    await limits.delete("never-set")
    assert await limits.get("a") is None and await limits.get("b") == b"2"
    await limits.delete_all()
    assert await limits.get("b") is None
    assert await other.get("a") == b"1" and await other.get("b") == b"2"


async def test_keys_the_column_cannot_hold_are_stored_as_distinct_digests(
    dbs: Pair, database_url: str
) -> None:
    store, counter = DatabaseStore(dbs[0]), DatabaseStore(dbs[0], namespace="counts")
    keys = ["x" * 5000, "x" * 5000 + "y", "nul\x00byte", "lone \ud800 surrogate", "é" * 600]
    for i, key in enumerate(keys):
        await store.set(key, str(i), expires_in=60)
        assert (await counter.hit(key, timedelta(minutes=1))).count == 1
    for i, key in enumerate(keys):
        assert await store.get(key) == str(i).encode() and await store.exists(key)
    rows = await run_sql(database_url, "SELECT key FROM limiter_entries")
    assert len(rows) == 2 * len(keys) and all(len(key) <= 512 for (key,) in rows)


async def test_concurrent_sets_of_one_key_from_two_processes_never_fail(dbs: Pair) -> None:
    stores = [DatabaseStore(db) for db in dbs]
    values = [str(i).encode() for i in range(40)]
    await asyncio.gather(
        *(stores[i % 2].set("same", value, expires_in=60) for i, value in enumerate(values))
    )
    assert await stores[0].get("same") in values


async def test_hits_from_two_processes_are_each_counted_once(dbs: Pair) -> None:
    stores = [DatabaseStore(db) for db in dbs]
    hits = await asyncio.gather(
        *(stores[i % 2].hit("client", timedelta(minutes=1)) for i in range(60))
    )
    assert sorted(hit.count for hit in hits) == list(range(1, 61))  # no count lost or shared
    assert len({hit.window_ends for hit in hits}) == 1  # the first hit's window, for all


async def test_a_hit_after_the_window_starts_a_new_one(dbs: Pair, clock: Clock) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    first = await store.hit("client", timedelta(seconds=60))
    clock.advance(30)
    assert (await store.hit("client", timedelta(seconds=60))).count == 2
    clock.advance(30)
    fresh = await store.hit("client", timedelta(seconds=60))
    assert fresh.count == 1 and fresh.window_ends == first.window_ends + timedelta(seconds=60)


async def test_past_its_limit_a_window_is_refused_from_memory_until_it_ends(
    dbs: Pair, clock: Clock, database_url: str
) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    counts = [(await store.hit("client", timedelta(seconds=60), limit=2)).count for _ in range(3)]
    assert counts == [1, 2, 3]
    clock.advance(30)
    for _ in range(5):
        refused = await store.hit("client", timedelta(seconds=60), limit=2)
        assert refused.count == 3 and refused.window_ends == clock.now + timedelta(seconds=30)
    stored = await run_sql(database_url, "SELECT value FROM limiter_entries")
    assert [bytes(value) for (value,) in stored] == [b"3"]  # no write for the refused ones
    clock.advance(30)
    assert (await store.hit("client", timedelta(seconds=60), limit=2)).count == 1


async def test_expired_entries_are_deleted_on_a_later_write(
    dbs: Pair, clock: Clock, database_url: str
) -> None:
    store = DatabaseStore(dbs[0], clock=clock, purge_every_s=0)
    await store.set("short", b"1", expires_in=5)
    await store.hit("client", timedelta(seconds=5))
    await store.set("forever", b"2")
    clock.advance(5)
    await store.set("new", b"3", expires_in=60)
    rows = await run_sql(database_url, "SELECT key FROM limiter_entries ORDER BY key")
    assert [key for (key,) in rows] == ["rate_limit:forever", "rate_limit:new"]


async def test_expired_entries_are_purged_at_most_once_a_minute_by_default(
    dbs: Pair, clock: Clock, database_url: str
) -> None:
    store = DatabaseStore(dbs[0], clock=clock)
    await store.set("short", b"1", expires_in=5)  # the first write purges (nothing is due)
    clock.advance(5)
    await store.set("new", b"2")
    assert len(await run_sql(database_url, "SELECT key FROM limiter_entries")) == 2


# -- failed logins in SQL -------------------------------------------------------------------


async def test_failures_in_one_process_block_the_client_in_another(dbs: Pair, clock: Clock) -> None:
    here, there = (
        DatabaseFailedAuthLimiter(db, max_failures=3, window_s=60, clock=clock) for db in dbs
    )
    for _ in range(3):
        assert await there.retry_after("10.0.0.1") is None
        await here.record_failure("10.0.0.1")
        clock.advance(1)
    # The first failure leaves the window 60 s after it: 57 s from now.
    assert await there.retry_after("10.0.0.1") == 57
    assert await here.retry_after("10.0.0.1") == 57
    assert await there.retry_after("10.0.0.2") is None  # other clients are not affected
    clock.advance(57)
    assert await there.retry_after("10.0.0.1") is None


async def test_a_blocked_client_is_refused_from_memory_until_its_window_ends(
    dbs: Pair, clock: Clock
) -> None:
    # A flood of sign-ins past the limit must not cost a database read each.
    limiter = DatabaseFailedAuthLimiter(dbs[0], max_failures=2, window_s=60, clock=clock)
    for _ in range(2):
        await limiter.record_failure("10.0.0.5")
    assert await limiter.retry_after("10.0.0.5") == 60
    database = limiter.db

    class NoReads:
        def connect(self) -> Any:
            raise AssertionError("a blocked client's check read the database")

    limiter.db = NoReads()  # type: ignore[assignment]
    clock.advance(30)
    assert await limiter.retry_after("10.0.0.5") == 30
    limiter.db = database
    clock.advance(30)
    assert await limiter.retry_after("10.0.0.5") is None


async def test_failures_older_than_the_window_are_deleted(
    dbs: Pair, clock: Clock, database_url: str
) -> None:
    limiter = DatabaseFailedAuthLimiter(dbs[0], window_s=60, clock=clock, prune_every_s=0)
    for client in ("10.0.0.1", "10.0.0.2", "x" * 300):
        await limiter.record_failure(client)
    clock.advance(60)
    await limiter.record_failure("10.0.0.3")
    rows = await run_sql(database_url, "SELECT client FROM auth_failures")
    assert [client for (client,) in rows] == ["10.0.0.3"]


async def test_concurrent_failures_from_two_processes_are_all_counted(
    dbs: Pair, database_url: str
) -> None:
    limiters = [DatabaseFailedAuthLimiter(db, max_failures=30) for db in dbs]
    await asyncio.gather(*(limiters[i % 2].record_failure("10.0.0.9") for i in range(30)))
    assert (await run_sql(database_url, "SELECT COUNT(*) FROM auth_failures"))[0][0] == 30
    assert await limiters[0].retry_after("10.0.0.9") is not None


# -- two API processes on one PostgreSQL database -------------------------------------------


def _api_settings(settings: Settings, tmp_path: Path, name: str, limits: str) -> Settings:
    return replace(
        settings,
        role="api",
        limits_store=limits,
        rate_limit=("minute", 5),
        data_dir=tmp_path / name,  # its own disk, as on another machine
    )


def _two_apps(settings: Settings, tmp_path: Path, limits: str) -> tuple[Litestar, Litestar]:
    return (
        create_app(_api_settings(settings, tmp_path, "a", limits)),
        create_app(_api_settings(settings, tmp_path, "b", limits)),
    )


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_rate_limit_is_shared_by_api_processes_on_one_database(
    settings: Settings, tmp_path: Path
) -> None:
    one, other = _two_apps(settings, tmp_path, "database")
    async with running(one) as first, running(other) as second:
        answers = [await (first, second)[i % 2].get(UNKNOWN) for i in range(5)]
        assert [r.status_code for r in answers] == [404] * 5
        assert [r.headers["ratelimit-remaining"] for r in answers] == ["4", "3", "2", "1", "0"]
        for client in (first, second):  # the sixth and later requests, on either process
            limited = await client.get(UNKNOWN)
            assert limited.status_code == 429
            problem(limited)
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.headers["ratelimit-remaining"] == "0"
            assert (await client.get("/healthz")).status_code == 200  # not limited
        for client in (first, second):  # each process now refuses from memory
            assert (await client.get(UNKNOWN)).status_code == 429
    stored = await run_sql(settings.database_url, "SELECT value FROM limiter_entries")
    assert [bytes(value) for (value,) in stored] == [b"7"]  # 5 let through, one refused each


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_limits_in_memory_are_counted_by_each_process_alone(
    settings: Settings, tmp_path: Path
) -> None:
    one, other = _two_apps(settings, tmp_path, "memory")
    async with running(one) as first, running(other) as second:
        codes = [(await (first, second)[i % 2].get(UNKNOWN)).status_code for i in range(10)]
        assert codes == [404] * 10  # five each: neither process reached its limit
        assert (await first.get(UNKNOWN)).status_code == 429


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_concurrent_requests_on_two_processes_are_each_counted(
    settings: Settings, tmp_path: Path
) -> None:
    one, other = _two_apps(settings, tmp_path, "database")
    async with running(one) as first, running(other) as second:
        answers = await asyncio.gather(*((first, second)[i % 2].get(UNKNOWN) for i in range(30)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [404] * 5 + [429] * 25  # no request slipped through a lost count


# -- database failures let requests through ------------------------------------------------


class Recorded(logging.Handler):
    """The messages logged to one logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def server_log() -> Iterator[Recorded]:
    handler, logger = Recorded(), logging.getLogger("fakescope.server")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_a_broken_limits_table_lets_requests_through_not_500(
    sqlite_url: str, tmp_path: Path, server_log: Recorded
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=("minute", 2),
        limits_store="database",
    )
    async with running(create_app(settings)) as client:
        await run_sql(sqlite_url, "DROP TABLE limiter_entries")
        await run_sql(sqlite_url, "DROP TABLE auth_failures")
        codes = [(await client.get(UNKNOWN)).status_code for _ in range(5)]
        guesses = [
            (await client.get("/v1/admin/queue", headers={"Authorization": "Bearer no"}))
            for _ in range(12)
        ]
    assert codes == [404] * 5
    assert [r.status_code for r in guesses] == [401] * 12
    warnings = [m for m in server_log.messages if "the limit is not applied" in m]
    # Logged, but not once per request: one line per limit (its first failure).
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("rate_limit store: the database failed (OperationalError")
    assert warnings[1].startswith("failed-login limit: the database failed (OperationalError")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@get("/ping", sync_to_thread=False)
def _ping() -> dict[str, Any]:
    return {"ok": True}


async def test_an_unreachable_database_fails_open() -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/fakescope"
    db = Database(create_engine(nowhere, pool_pre_ping=False))
    limit = RateLimitConfig(rate_limit=("minute", 1), middleware_class=SharedRateLimitMiddleware)
    app = Litestar([_ping], middleware=[limit.middleware], stores={"rate_limit": DatabaseStore(db)})
    try:
        async with AsyncTestClient(app=app) as client:
            answers = [await client.get("/ping") for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3
        assert "ratelimit-remaining" not in answers[0].headers
        limiter = DatabaseFailedAuthLimiter(db, max_failures=1)
        await limiter.record_failure("10.0.0.1")
        assert await limiter.retry_after("10.0.0.1") is None
        assert limiter.fail_open.failures == 2
    finally:
        await db.dispose()


async def test_an_api_app_counts_on_the_database_by_default(
    settings: Settings, tmp_path: Path
) -> None:
    api = replace(settings, role="api", rate_limit=("minute", 1), data_dir=tmp_path / "api")
    async with running(create_app(api)) as client:
        assert isinstance(client.app.stores.get("rate_limit"), DatabaseStore)
        assert (await client.get(UNKNOWN)).status_code == 404
        assert (await client.get(UNKNOWN)).status_code == 429
    rows = await run_sql(settings.database_url, "SELECT key FROM limiter_entries")
    assert len(rows) == 1 and rows[0][0].startswith("rate_limit:")


async def test_an_all_in_one_app_counts_in_memory(settings: Settings) -> None:
    async with running(create_app(replace(settings, rate_limit=("minute", 1)))) as client:
        assert isinstance(client.app.stores.get("rate_limit"), MemoryStore)
        assert [(await client.get(UNKNOWN)).status_code for _ in range(2)] == [404, 429]
    assert not await run_sql(settings.database_url, "SELECT key FROM limiter_entries")
