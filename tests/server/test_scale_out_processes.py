"""Scale-out as deployed: one API process and two GPU-worker processes sharing PostgreSQL.

Real processes (`fakescope serve` with FAKESCOPE_ROLE=api|worker), real HTTP, the tiny
checkpoint on the CPU. Work spreads over both workers; a worker killed with SIGKILL
mid-job loses nothing (its jobs run again on the other once its lease lapses).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer
from server_helpers import run_sql, unique_png

pytestmark = pytest.mark.postgres

# Short, so that the killed worker's jobs come back within seconds; long enough that a
# worker starved of CPU on a loaded 2-core machine still renews in time.
LEASE_S = 5.0


def _env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "FAKESCOPE_DATA_DIR": str(data_dir),
        "FAKESCOPE_DATABASE_URL": database_url,
        "FAKESCOPE_RATE_LIMIT": "off",
        "FAKESCOPE_DEVICE": "cpu",
        "FAKESCOPE_BATCH_SIZE": "2",
        "FAKESCOPE_MAX_NEW_TOKENS": "8",
        "FAKESCOPE_JOB_LEASE_S": str(LEASE_S),
        "FAKESCOPE_JOB_ATTEMPTS": "5",
        **extra,
    }


def _failures(responses: list[httpx.Response]) -> list[str]:
    return [f"{r.status_code}: {r.text}" for r in responses if r.status_code != 200]


def _wait_for_workers(api: LiveServer, count: int, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(api.base + "/readyz", timeout=5).json()
        if body.get("workers") == count:
            return body
        time.sleep(0.1)
    raise AssertionError(f"the API never saw {count} workers: {body}")


async def test_an_api_process_spreads_work_over_two_worker_processes(
    migrated_postgres: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The session's database: other tests' jobs and workers would count here.
    await run_sql(migrated_postgres, "DELETE FROM jobs")
    await run_sql(migrated_postgres, "DELETE FROM workers")
    data_dir = tmp_path / "shared-data"  # one volume for all: images for /v1/ask
    worker_env = _env(
        migrated_postgres, data_dir, FAKESCOPE_ROLE="worker", FAKESCOPE_MODEL=str(tiny_model_dir)
    )
    workers = [LiveServer(worker_env, tmp_path / f"worker{i}.log") for i in range(2)]
    api = LiveServer(_env(migrated_postgres, data_dir, FAKESCOPE_ROLE="api"), tmp_path / "api.log")
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start) for w in workers))
        await asyncio.to_thread(api.start)
        ready = await asyncio.to_thread(_wait_for_workers, api, 2)
        assert ready["mode"] == "api" and ready["model"]["untrained"] is True

        images = [unique_png(48) for _ in range(16)]
        async with httpx.AsyncClient(base_url=api.base, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/analyze", files={"file": ("x.png", i)}) for i in images)
            )
            assert [r.status_code for r in responses] == [200] * 16, _failures(responses)
            assert all(r.json()["mode"] == "model" for r in responses)
            sha = responses[0].json()["sha256"]
            asked = await client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
            assert asked.status_code == 200, asked.text
            assert asked.json()["answer"]

        rows = await run_sql(migrated_postgres, "SELECT state, worker_id, error_detail FROM jobs")
        assert {state for state, _, _ in rows} == {"done"}, rows
        assert len({worker for _, worker, _ in rows}) == 2, "one worker did all the work"

        # SIGKILL one worker while it holds jobs: the other finishes them.
        victim, survivor = workers
        more = [unique_png(48) for _ in range(10)]
        async with httpx.AsyncClient(base_url=api.base, timeout=60) as client:
            pending = [
                asyncio.create_task(client.post("/v1/analyze", files={"file": ("x.png", i)}))
                for i in more
            ]
            for _ in range(200):
                held = await run_sql(
                    migrated_postgres,
                    "SELECT count(*) FROM jobs j JOIN workers w ON w.id = j.worker_id"
                    " WHERE j.state = 'running' AND w.pid = :pid",
                    pid=victim.process.pid if victim.process else -1,
                )
                if held[0][0]:
                    break
                await asyncio.sleep(0.01)
            victim.kill()
            responses = await asyncio.gather(*pending)
        assert [r.status_code for r in responses] == [200] * 10, _failures(responses)
        retried = await run_sql(migrated_postgres, "SELECT count(*) FROM jobs WHERE attempts > 1")
        assert retried[0][0] >= 1  # at least one job went back to the queue and ran again
        assert await asyncio.to_thread(survivor.stop) is None
        stopped = await run_sql(
            migrated_postgres, "SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL"
        )
        assert stopped[0][0] == 1  # the survivor said goodbye; the victim could not
    finally:
        for process in (*workers, api):
            process.stop()
