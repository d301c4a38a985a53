"""The PDQ index's first load: the rows read in bulk (COPY on PostgreSQL, streamed on SQLite)
make the index the rows themselves make, malformed ones skipped; and the app starts that
load in the background, so lookups find it loaded or wait for it, never load twice."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from server_helpers import running, until
from sqlalchemy import insert, text

from server.app import create_app
from server.db.database import Database
from server.db.engine import create_engine
from server.db.models import Image
from server.lookup import live_index
from server.lookup.live_index import LivePdqIndex, build_index, copy_rows, stream_rows
from server.lookup.pdq_index import near_matches, sha_sorted
from server.lookup.pdq_rows import parse_rows
from server.settings import Settings
from server.timefmt import utcnow

NEAR = 31
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pdq.py"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url))
    try:
        yield database
    finally:
        await database.dispose()


def _random_rows(seed: int, n: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(rng.bytes(32).hex(), rng.bytes(32).hex()) for _ in range(n)]


def _near(pdq: str, bits: int = 3) -> str:
    """A hash `bits` bits away from `pdq` (its lowest bits flipped)."""
    return f"{int(pdq, 16) ^ ((1 << bits) - 1):064x}"


async def _store_rows(database_url: str, rows: list[tuple[str, str]], quality: int = 100) -> None:
    engine = create_engine(database_url)
    stamp = utcnow() - timedelta(hours=1)
    values = [
        {
            "sha256": sha,
            "pdq": pdq,
            "pdq_quality": quality,
            "format": "PNG",
            "width": 1,
            "height": 1,
            "bytes": 1,
            "n_frames": 1,
            "first_seen_at": stamp,
        }
        for sha, pdq in rows
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Image), values)
    finally:
        await engine.dispose()


# -- reading the rows in bulk ------------------------------------------------------------


async def test_the_first_load_holds_every_good_row_and_answers_like_the_brute_force_scan(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY's output is parsed in blocks (small here: 7 rows and a bit) cut at line ends;
    a block holding a malformed row falls back to parsing row by row and skips only it."""
    monkeypatch.setattr(live_index, "COPY_BLOCK", 130 * 7 + 20)
    good = _random_rows(11, 300)
    flat = _random_rows(12, 20)  # PDQ quality under 50: not indexed
    malformed = [("cd" * 31, "0f" * 32), ("ef" * 32, "zz" * 32), ("ab" * 32, "0f" * 31 + "0 ")]
    await _store_rows(database_url, good[:150] + malformed + good[150:])
    await _store_rows(database_url, flat, quality=20)

    live = LivePdqIndex(db)
    assert await live.refresh() == len(good)
    assert live.full_loads == 1 and len(live.index) == len(good) and live.index.pending == 0
    queries = [_near(pdq, bits) for (_, pdq), bits in zip(good[::10], range(40), strict=False)]
    queries += [pdq for _, pdq in flat[:3]]
    expected = near_matches(queries, sha_sorted(good), max_distance=NEAR)
    assert len(expected) == 30
    assert await live.search(queries, max_distance=NEAR) == expected


ONLY_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.mark.postgres
@ONLY_POSTGRES
async def test_copy_and_streamed_rows_build_the_same_index(db: Database, database_url: str) -> None:
    rows = _random_rows(13, 500)
    await _store_rows(database_url, [*rows, ("ab" * 31, "00" * 32)])
    async with db.connect() as conn:
        copied = build_index(await copy_rows(conn))
    async with db.connect() as conn:
        streamed = build_index(await stream_rows(conn))
    expected = build_index([parse_rows(rows)])
    queries = [_near(pdq, 5) for _, pdq in rows[:50]]
    for index in (copied, streamed):
        assert len(index) == len(rows)
        assert index.search(queries, max_distance=NEAR) == expected.search(
            queries, max_distance=NEAR
        )


@pytest.mark.postgres
@ONLY_POSTGRES
async def test_a_load_cancelled_at_its_last_rows_leaves_no_broken_connection_behind(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled as COPY's last rows are handed over: the database has finished, the cancel
    request finds nothing to cancel, and asyncpg would wait for its answer for ever on that
    connection. The connection is thrown away: the cancel ends the load, the next works."""
    rows = _random_rows(14, 3000)  # COPY's output arrives in several chunks
    await _store_rows(database_url, rows)
    copy_from_query = asyncpg.Connection.copy_from_query

    async def cancelled_at_the_last_rows(self: Any, query: str, *, output: Any) -> Any:
        received = 0

        async def receive(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if received == 130 * len(rows):
                raise asyncio.CancelledError  # as a cancellation arriving just then
            await output(data)

        return await copy_from_query(self, query, output=receive)

    monkeypatch.setattr(asyncpg.Connection, "copy_from_query", cancelled_at_the_last_rows)
    live = LivePdqIndex(db)
    load = asyncio.create_task(live.refresh())
    await asyncio.wait([load], timeout=60)  # a hang, not a speed: it takes milliseconds
    assert load.cancelled(), "the cancelled load never ended"
    monkeypatch.undo()
    assert await live.refresh() == len(rows)
    assert live.full_loads == 2


# -- warmed at startup -------------------------------------------------------------------


Release = Callable[[], Awaitable[None]]


@asynccontextmanager
async def _loads_held(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Release]:
    """Full loads of the index cannot finish until `release` is awaited (or the block ends).

    On PostgreSQL a lock on `images` holds them inside the database; SQLite lets readers
    through any writer (WAL), so there the reading of the rows waits for an event.
    """
    if "postgresql" in database_url:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("LOCK TABLE images IN ACCESS EXCLUSIVE MODE"))
                yield conn.rollback
                await conn.rollback()
        finally:
            await engine.dispose()
        return
    released = asyncio.Event()

    def held(read: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def wait_then_read(conn: Any) -> Any:
            await released.wait()
            return await read(conn)

        return wait_then_read

    async def release() -> None:
        released.set()

    monkeypatch.setattr(live_index, "stream_rows", held(live_index.stream_rows))
    try:
        yield release
    finally:
        released.set()


@pytest.mark.parametrize("role", ["all", "api"])
async def test_the_app_loads_the_index_at_startup_and_the_first_lookup_uses_that_load(
    settings: Settings, database_url: str, role: str
) -> None:
    rows = _random_rows(21, 200)
    await _store_rows(database_url, rows)
    async with running(create_app(replace(settings, role=role))) as client:
        index: LivePdqIndex = client.app.state.pdq_index
        assert index.warming is not None
        await index.warming
        assert index.full_loads == 1 and len(index.index) == len(rows)

        sha, pdq = rows[7]
        query = _near(pdq)
        found = (await client.post("/v1/lookup", json={"pdq": [query]})).json()
        assert found["near"] == [{"pdq": query, "sha256": sha, "distance": 3}]
        assert index.full_loads == 1


async def test_lookups_during_the_warm_up_wait_for_it_and_nothing_loads_twice(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _random_rows(22, 200)
    await _store_rows(database_url, rows)
    queries = [_near(pdq) for _, pdq in rows[:5]]
    async with (
        _loads_held(database_url, monkeypatch) as release,
        running(create_app(settings)) as client,
    ):
        index: LivePdqIndex = client.app.state.pdq_index
        await until(lambda: index.full_loads == 1)
        index.start_warm_up()  # the app started one already: this is not a second
        assert (await client.get("/readyz")).status_code == 200  # ready while it loads
        lookups = [
            asyncio.create_task(client.post("/v1/lookup", json={"pdq": [q]})) for q in queries
        ]
        await asyncio.sleep(0.2)
        assert index.warming is not None and not index.warming.done()
        assert not any(lookup.done() for lookup in lookups)
        await release()
        answers = [(await lookup).json()["near"] for lookup in lookups]
        assert index.warming.done() and index.full_loads == 1
    assert answers == [
        [{"pdq": q, "sha256": sha, "distance": 3}]
        for q, (sha, _) in zip(queries, rows, strict=False)
    ]


async def test_shutdown_cancels_a_warm_up_still_running_without_errors(
    settings: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _store_rows(database_url, _random_rows(23, 50))
    caplog.set_level(logging.WARNING)
    async with _loads_held(database_url, monkeypatch):
        async with running(create_app(settings)) as client:
            index: LivePdqIndex = client.app.state.pdq_index
            await until(lambda: index.full_loads == 1)
            warming = index.warming
        assert warming is not None and warming.cancelled()
    assert len(index.index) == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_failed_warm_up_is_logged_and_the_first_search_loads_the_index(
    db: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = _random_rows(24, 100)
    await _store_rows(database_url, rows)
    live = LivePdqIndex(db)
    async with db.engine.begin() as conn:  # the table is away for a while
        await conn.execute(text("ALTER TABLE images RENAME TO images_away"))
    with caplog.at_level(logging.WARNING, logger="fakescope.server"):
        live.start_warm_up()
        assert live.warming is not None
        await live.warming
    assert "the load at startup failed" in caplog.text
    assert live.full_loads == 1 and len(live.index) == 0
    async with db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE images_away RENAME TO images"))
    sha, pdq = rows[3]
    found = await live.search([_near(pdq)], max_distance=NEAR)
    assert [(m.sha256, m.distance) for m in found] == [(sha, 3)]
    assert live.full_loads == 2 and len(live.index) == len(rows)


@pytest.mark.postgres
def test_bench_pdq_load_quick_times_each_load_and_they_agree(
    postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--load", "--quick", "--json", str(out)],
        cwd=BENCH.parents[1],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "every load holds the same images and chunk tables" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["images"] == 20_000 and 0 < figures["indexed"] < 20_000
    assert set(figures["median_s"]) == {"before", "after", "after_stages", "streamed"}
    assert set(figures["median_s"]["before"]) == {
        "total_s",
        "query_s",
        "transfer_s",
        "parse_s",
        "build_s",
    }
    assert figures["ratio"] > 0
