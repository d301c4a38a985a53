"""Every analysis acknowledged with 200 survives SIGKILL of the server (SQLite, WAL, full sync)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
from live_server import LiveServer
from server_helpers import unique_png

from server.db.migrate import upgrade_async

REQUESTS = 240
CONCURRENCY = 16
KILL_AFTER_ACKS = 60


async def test_acknowledged_analyses_survive_sigkill_and_the_database_stays_intact(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "fakescope.db"
    url = f"sqlite+aiosqlite:///{db_path}"
    await upgrade_async(url)
    env = {
        "FAKESCOPE_DATA_DIR": str(tmp_path),
        "FAKESCOPE_DATABASE_URL": url,
        "FAKESCOPE_RATE_LIMIT": "off",
        "FAKESCOPE_MODEL": "",
    }
    server = LiveServer(env, tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    images = [unique_png(48) for _ in range(REQUESTS)]
    acknowledged: set[str] = set()
    slots = asyncio.Semaphore(CONCURRENCY)
    killed = asyncio.Event()

    async def send(client: httpx.AsyncClient, data: bytes) -> None:
        async with slots:
            if killed.is_set():
                return
            try:
                response = await client.post(
                    server.base + "/v1/analyze", files={"file": ("x.png", data)}
                )
            except httpx.HTTPError:
                return  # the server died mid-request: not acknowledged
            if response.status_code == 200:
                acknowledged.add(response.json()["sha256"])
                if len(acknowledged) >= KILL_AFTER_ACKS and not killed.is_set():
                    killed.set()
                    server.kill()

    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(send(client, data) for data in images))
    finally:
        server.kill()

    assert killed.is_set() and len(acknowledged) >= KILL_AFTER_ACKS
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT sha256 FROM analyses")}
        orphans = conn.execute(
            "SELECT COUNT(*) FROM analyses a LEFT JOIN images i ON i.sha256 = a.sha256 "
            "WHERE i.sha256 IS NULL"
        ).fetchone()[0]
    assert acknowledged <= stored
    assert orphans == 0

    restarted = LiveServer(env, tmp_path / "server.log", port=server.port)
    await asyncio.to_thread(restarted.start)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            sample = sorted(acknowledged)[:5]
            for sha in sample:
                assert (await client.get(f"{restarted.base}/v1/analyses/{sha}")).status_code == 200
            fresh = await client.post(
                restarted.base + "/v1/analyze", files={"file": ("y.png", unique_png())}
            )
            assert fresh.status_code == 200
    finally:
        restarted.stop()
