"""Finished jobs are found by `ix_jobs_state_finished_at` (migration 0006).

The expiry deletes the jobs finished over an hour ago every few seconds: with the index it
reads those few rows, not the hour of jobs the table holds. Plans on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.sql import Executable

from server.db.database import Database
from server.db.engine import create_engine
from server.db.models import Job
from server.jobs.store import KEEP_FINISHED, JobStore, delete_finished_before
from server.timefmt import utcnow


def _job(n: int, finished_at: Any) -> dict[str, Any]:
    done = finished_at is not None
    return {
        "kind": "analyze",
        "sha256": f"{n:064x}",
        "model_key": "m",
        "prompt_version": "p",
        "explain": False,
        "state": "done" if done else "queued",
        "attempts": 1,
        "created_at": utcnow() - timedelta(minutes=10),
        "finished_at": finished_at,
    }


async def _fill(database_url: str, jobs: list[dict[str, Any]]) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Job), jobs)
            if engine.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE jobs"))  # as autovacuum does on a busy table
    finally:
        await engine.dispose()


async def _plan(database_url: str, statement: Executable) -> str:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            sql = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
            rows = (await conn.exec_driver_sql(f"{explain} {sql}")).all()
    finally:
        await engine.dispose()
    return "\n".join(str(row[-1]) for row in rows)


async def test_the_delete_of_old_finished_jobs_searches_the_index(database_url: str) -> None:
    # Five thousand jobs of the last hour, a tenth of them still queued: a busy queue.
    recent = utcnow() - timedelta(minutes=5)
    await _fill(database_url, [_job(n, None if n % 10 == 0 else recent) for n in range(5000)])
    plan = await _plan(database_url, delete_finished_before(utcnow() - KEEP_FINISHED))
    assert "ix_jobs_state_finished_at" in plan, plan
    assert "Seq Scan" not in plan and "SCAN jobs" not in plan, plan


async def test_counts_leave_out_jobs_finished_over_an_hour_ago(database_url: str) -> None:
    long_ago = utcnow() - KEEP_FINISHED - timedelta(minutes=1)  # not yet deleted by expire
    await _fill(database_url, [_job(0, None), _job(1, utcnow()), _job(2, long_ago)])
    db = Database(create_engine(database_url))
    try:
        counts = await JobStore(db, lease_s=30, attempts=3).counts()
    finally:
        await db.dispose()
    assert counts == {"queued": 1, "running": 0, "done": 1, "failed": 0}
