"""`fakescope jobs`: the queue and its workers, read from the database as a process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from server_helpers import run_sql

from server.db.analyses import Identity
from server.db.database import Database
from server.db.engine import create_engine
from server.jobs import registry
from server.jobs.store import JobStore
from server.timefmt import utcnow

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = Identity(model_key="tiny@-:none", prompt_version="p1")
OLD = Identity(model_key="old@-:none", prompt_version="p1")


def _jobs(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakescope.cli", "jobs", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "FAKESCOPE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_jobs_reports_the_queue_and_the_live_workers(database_url: str) -> None:
    db = Database(create_engine(database_url))
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        await registry.register(db, "w" * 32, MODEL, {"id": "tiny"}, 16)
        await registry.register(db, "d" * 32, MODEL, {"id": "tiny"}, 16)
        await registry.stopped(db, "d" * 32)  # gone: not live
        for i in range(3):
            await store.enqueue("analyze", f"{i:064x}", MODEL, image=b"x", max_queued=9)
        await store.claim("w" * 32, MODEL, 1)
        old = utcnow() - timedelta(seconds=90)
        await run_sql(database_url, "UPDATE jobs SET created_at = :t WHERE state = 'queued'", t=old)
    finally:
        await db.dispose()
    result = _jobs(database_url, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["jobs"] == {"queued": 2, "running": 1, "done": 0, "failed": 0}
    assert 85 < report["oldest_queued_s"] < 600
    assert [w["id"] for w in report["workers"]] == ["w" * 32]
    assert report["workers"][0]["capacity"] == 16
    text = _jobs(database_url)
    assert "2 queued (oldest" in text.stdout and "live workers: 1" in text.stdout


def test_jobs_on_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    result = _jobs(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 2
    assert "fakescope db upgrade" in result.stderr and "Traceback" not in result.stderr


async def test_jobs_names_a_backlog_no_live_worker_can_take(database_url: str) -> None:
    # After a rolling upgrade the old model's backlog stays queued: the operator must see
    # that no live worker will take it, not a queue that seems stuck.
    await run_sql(database_url, "DELETE FROM jobs")
    await run_sql(database_url, "DELETE FROM workers")
    db = Database(create_engine(database_url))
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        await registry.register(db, "w" * 32, MODEL, {"id": "tiny"}, 16)
        for i in range(2):
            await store.enqueue("analyze", f"{i:064x}", OLD, image=b"x", max_queued=9)
        await store.enqueue("analyze", "f" * 64, MODEL, image=b"x", max_queued=9)
    finally:
        await db.dispose()
    report = json.loads(_jobs(database_url, "--json").stdout)
    assert report["queued_by_model"] == {"old@-:none": 2, "tiny@-:none": 1}
    assert report["unserved_queued"] == {"old@-:none": 2}
    text = _jobs(database_url).stdout
    assert "2 queued for old@-:none, which no live worker serves" in text
    await run_sql(database_url, "DELETE FROM jobs")
    await run_sql(database_url, "DELETE FROM workers")
