"""A GPU worker's writes through database outages: a finished job is finished once.

Finishing, failing and giving back a job and renewing leases used to try three times
within about 0.6 s: a `finish` that met a longer outage left the job to lapse and run
again (its attempts counted, its waiter kept waiting for a lease). Now they go on with
growing pauses for the worker's budget (up to 4 s, at most a sixth of the lease). The
faults are real: the backend under the write is terminated just before it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from db_faults import LostCommitReplies, TerminatedBackends
from server_helpers import AppClient, run_sql, running, running_worker, unique_png, until, upload

from server.app import create_app
from server.db.analyses import Identity
from server.db.database import Database
from server.db.engine import create_engine
from server.jobs.retry import worker_budget_s
from server.jobs.store import JobStore
from server.settings import Settings

MODEL = Identity(model_key="tiny@-:none", prompt_version="p1")
TERMINATIONS = 5  # more than the three tries of old, well within the worker's budget


def worker_write(statement: str) -> bool:
    """A worker's write to a job it holds: finish, fail, give back, renew."""
    return statement.startswith("UPDATE jobs") and "jobs.worker_id =" in statement


def finish(statement: str) -> bool:
    return worker_write(statement) and "finished_at" in statement


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    engine = create_engine(database_url)
    write = create_engine(database_url, immediate=True) if "sqlite" in database_url else None
    db = Database(engine, write)
    yield JobStore(db, lease_s=30, attempts=3)
    await db.dispose()


async def _running_job(store: JobStore) -> int:
    job_id = await store.enqueue("analyze", "a" * 64, MODEL, image=b"x", max_queued=10)
    [claimed] = await store.claim("w1", MODEL, 1)
    assert claimed.id == job_id
    return job_id


def test_a_workers_budget_is_seconds_and_under_a_sixth_of_its_lease() -> None:
    assert worker_budget_s(30) == 4.0
    assert worker_budget_s(6) == 1.0


WRITES: dict[str, tuple[Callable[[JobStore, int], Awaitable[Any]], Any, str, int]] = {
    # name: (the write, what it returns, the job's state after it, its attempts after it)
    "finish": (lambda store, job: store.finish(job, "w1"), True, "done", 1),
    "fail": (
        lambda store, job: store.fail(job, "w1", status=400, code="bad", detail="no"),
        True,
        "failed",
        1,
    ),
    "requeue": (lambda store, job: store.requeue(job, "w1"), True, "queued", 1),
    "release": (lambda store, _job: store.release("w1"), 1, "queued", 0),
    "renew": (lambda store, job: store.renew("w1", [job]), 1, "running", 1),
}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("write", list(WRITES))
async def test_a_workers_writes_go_on_through_repeated_backend_terminations(
    store: JobStore, database_url: str, write: str
) -> None:
    run, returns, state, attempts = WRITES[write]
    job_id = await _running_job(store)
    faults = TerminatedBackends(store.db.engine, worker_write, times=TERMINATIONS)
    try:
        assert await run(store, job_id) == returns
    finally:
        faults.remove()
    assert faults.seen == TERMINATIONS + 1
    rows = await run_sql(database_url, "SELECT state, attempts FROM jobs WHERE id = :id", id=job_id)
    assert rows == [(state, attempts)]


async def test_a_finish_whose_reply_was_lost_reports_the_job_finished(store: JobStore) -> None:
    # The first try committed; the retry finds the job ended by that very try (its
    # finished_at), not taken by another worker.
    job_id = await _running_job(store)
    faults = LostCommitReplies(store.db, times=1)
    try:
        assert await store.finish(job_id, "w1", answer="yes") is True
    finally:
        faults.remove()
    assert faults.lost == 1
    outcome = (await store.outcomes([job_id]))[job_id]
    assert (outcome.state, outcome.answer) == ("done", "yes")
    # A job this worker no longer holds is still reported as not finished by it.
    other = await store.enqueue("analyze", "b" * 64, MODEL, image=b"x", max_queued=10)
    await store.claim("w2", MODEL, 1)
    assert await store.finish(other, "w1") is False


@pytest.fixture
async def worker(settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    async with running_worker(settings, tiny_model) as client:
        yield client


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_job_whose_finish_meets_terminated_backends_is_done_once(
    settings: Settings, tmp_path: Path, worker: AppClient, database_url: str
) -> None:
    api_settings = replace(settings, role="api", data_dir=tmp_path / "api-data")
    async with running(create_app(api_settings)) as api:
        await until(lambda: api.app.state.model_host.has_workers)
        faults = TerminatedBackends(worker.app.state.db.engine, finish, times=TERMINATIONS)
        try:
            response = await api.post("/v1/analyze", **upload(unique_png()))
        finally:
            faults.remove()
    assert response.status_code == 200, response.text
    sha = response.json()["sha256"]
    assert faults.seen == TERMINATIONS + 1
    jobs = await run_sql(database_url, "SELECT state, attempts FROM jobs WHERE sha256 = :s", s=sha)
    assert jobs == [("done", 1)]  # not run again
    analyses = await run_sql(database_url, "SELECT count(*) FROM analyses WHERE sha256 = :s", s=sha)
    assert analyses == [(1,)]
