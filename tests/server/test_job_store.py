"""The SQL job queue on SQLite and PostgreSQL: claims, leases, outcomes, bounds, NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from server_helpers import run_sql
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from server.db.analyses import Identity
from server.db.database import Database, is_transient
from server.db.engine import create_engine
from server.db.notify import Wakeups, asyncpg_connect_args
from server.inference.queue_jobs import QueueFullError
from server.jobs.store import FINISHED_CHANNEL, PROGRESS_CHANNEL, QUEUED_CHANNEL, JobStore
from server.timefmt import utcnow

MODEL = Identity(model_key="tiny@-:none", prompt_version="p1")
OTHER = Identity(model_key="other@-:nf4", prompt_version="p1")


def _database(url: str) -> Database:
    engine = create_engine(url)
    write = create_engine(url, immediate=True) if url.startswith("sqlite") else None
    return Database(engine, write)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    db = _database(database_url)
    yield JobStore(db, lease_s=30, attempts=3)
    await db.dispose()


async def _queue(store: JobStore, n: int, identity: Identity = MODEL) -> list[int]:
    return [
        await store.enqueue("analyze", f"{i:064x}", identity, image=b"bytes %d" % i, max_queued=100)
        for i in range(n)
    ]


async def test_claimed_jobs_run_once_and_finish_with_their_image_dropped(store, database_url):
    ids = await _queue(store, 3)
    claimed = await store.claim("w1", MODEL, 2)
    assert [job.id for job in claimed] == ids[:2]  # oldest first
    assert [job.image for job in claimed] == [b"bytes 0", b"bytes 1"]
    assert all(job.attempts == 1 and job.kind == "analyze" for job in claimed)
    assert [job.id for job in await store.claim("w2", MODEL, 5)] == ids[2:]
    assert await store.claim("w3", MODEL, 5) == []

    assert await store.finish(ids[0], "w1")
    assert await store.fail(ids[1], "w1", status=400, code="bad", detail="no")
    outcomes = await store.outcomes(ids)
    assert set(outcomes) == {ids[0], ids[1]}  # the third still runs
    assert outcomes[ids[0]].state == "done"
    assert (outcomes[ids[1]].state, outcomes[ids[1]].error_status) == ("failed", 400)
    rows = await run_sql(database_url, "SELECT id, image FROM jobs ORDER BY id")
    assert [row[1] for row in rows] == [None, None, b"bytes 2"]
    assert await store.counts() == {"queued": 0, "running": 1, "done": 1, "failed": 1}


async def test_an_idle_claim_takes_no_write_lock(store) -> None:
    """Idle workers poll; on SQLite each write transaction takes the one write lock."""
    writes = []
    original = store.db.write

    def counted() -> Any:
        writes.append(1)
        return original()

    store.db.write = counted
    await _queue(store, 1, OTHER)  # one write: queued for another model
    assert await store.claim("w1", MODEL, 8) == []
    assert writes == [1]
    await _queue(store, 1)
    assert len(await store.claim("w1", MODEL, 8)) == 1
    assert len(writes) == 3


async def test_a_worker_claims_only_jobs_for_its_own_model(store) -> None:
    mine = await _queue(store, 2)
    theirs = await _queue(store, 1, OTHER)
    assert [job.id for job in await store.claim("w1", MODEL, 10)] == mine
    assert [job.id for job in await store.claim("w2", OTHER, 10)] == theirs


async def test_concurrent_claimers_never_share_a_job(database_url: str) -> None:
    stores = [JobStore(_database(database_url), lease_s=30, attempts=3) for _ in range(4)]
    try:
        ids = await _queue(stores[0], 40)
        taken: list[int] = []

        async def drain(store: JobStore, worker: str) -> None:
            while claimed := await store.claim(worker, MODEL, 3):
                taken.extend(job.id for job in claimed)

        await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
        assert sorted(taken) == ids  # every job exactly once
    finally:
        for store in stores:
            await store.db.dispose()


async def test_a_lapsed_lease_requeues_the_job_until_its_attempts_run_out(database_url) -> None:
    db = _database(database_url)
    store = JobStore(db, lease_s=0.05, attempts=2)
    try:
        [job_id] = await _queue(store, 1)
        assert [j.id for j in await store.claim("dead", MODEL, 1)] == [job_id]
        await asyncio.sleep(0.1)
        expired = await store.expire()
        assert (expired.requeued, expired.failed) == (1, 0)
        # The worker that lost it cannot finish it any more.
        assert not await store.finish(job_id, "dead")
        [again] = await store.claim("also-dead", MODEL, 1)
        assert again.attempts == 2
        await asyncio.sleep(0.1)
        expired = await store.expire()
        assert (expired.requeued, expired.failed) == (0, 1)
        outcome = (await store.outcomes([job_id]))[job_id]
        assert (outcome.state, outcome.error_status, outcome.error_code) == (
            "failed",
            503,
            "worker-lost",
        )
    finally:
        await db.dispose()


class LeaseClock:
    """The job store's clock (leases are stamped and checked by it), moved by hand: a
    lease's seconds are then the test's, not a busy machine's database round trips."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = utcnow()
        monkeypatch.setattr("server.jobs.store.utcnow", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_renewing_keeps_a_lease_and_release_gives_jobs_back(
    database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renewed every half lease for a lease and a half. In real time (sleeps of 0.15 s), a
    # busy machine's 0.3 s between the last renewal and the expiry would lapse the lease.
    clock = LeaseClock(monkeypatch)
    db = _database(database_url)
    store = JobStore(db, lease_s=0.3, attempts=3)
    try:
        ids = await _queue(store, 2)
        await store.claim("w1", MODEL, 2)
        for _ in range(3):
            clock.advance(0.15)
            assert await store.renew("w1", ids) == 2
        assert (await store.expire()).requeued == 0
        assert await store.release("w1") == 2
        claimed = await store.claim("w2", MODEL, 2)
        assert [job.id for job in claimed] == ids
        assert all(job.attempts == 1 for job in claimed)  # a clean stop costs no attempt
    finally:
        await db.dispose()


async def test_a_job_the_worker_no_longer_runs_is_not_renewed_but_lapses(
    database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker whose `finish` failed on a dropped connection (or whose claim's reply was
    # lost) still holds the row; renewing only what it runs lets the lease lapse, so the
    # job goes back to the queue instead of staying 'running' while the worker lives.
    clock = LeaseClock(monkeypatch)
    db = _database(database_url)
    store = JobStore(db, lease_s=0.3, attempts=3)
    try:
        running, orphan = await _queue(store, 2)
        await store.claim("w1", MODEL, 2)
        for _ in range(3):
            clock.advance(0.15)
            assert await store.renew("w1", [running]) == 1
        assert await store.renew("w1", []) == 0
        expired = await store.expire()
        assert (expired.requeued, expired.failed) == (1, 0)
        rows = await run_sql(database_url, "SELECT id, state, worker_id FROM jobs ORDER BY id")
        assert rows == [(running, "running", "w1"), (orphan, "queued", None)]
        [again] = await store.claim("w2", MODEL, 2)
        assert (again.id, again.attempts) == (orphan, 2)
    finally:
        await db.dispose()


async def test_a_job_given_back_after_a_database_error_keeps_its_attempt(store) -> None:
    [job_id] = await _queue(store, 1)
    await store.claim("w1", MODEL, 1)
    assert not await store.requeue(job_id, "someone else")
    assert await store.requeue(job_id, "w1")
    [again] = await store.claim("w2", MODEL, 1)
    assert (again.id, again.attempts) == (job_id, 2)  # this run counts toward the limit


def _dropped_connection() -> DBAPIError:
    return DBAPIError("INSERT", {}, ConnectionResetError("reset"), connection_invalidated=True)


async def test_only_connection_level_errors_count_as_transient() -> None:
    assert is_transient(_dropped_connection())
    assert is_transient(OperationalError("SELECT", {}, Exception("gone")))
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("a bug"))


@pytest.mark.postgres
async def test_the_queue_bound_holds_for_concurrent_enqueuers(migrated_postgres: str) -> None:
    # Several API processes counting the queued jobs at once must not all see room.
    await run_sql(migrated_postgres, "DELETE FROM jobs")
    dbs = [_database(migrated_postgres) for _ in range(4)]
    stores = [JobStore(db, lease_s=30, attempts=3) for db in dbs]
    try:

        async def enqueue(i: int) -> bool:
            try:
                await stores[i % 4].enqueue("analyze", f"{i:064x}", MODEL, image=b"x", max_queued=5)
            except QueueFullError:
                return False
            return True

        accepted = await asyncio.gather(*(enqueue(i) for i in range(24)))
        assert sum(accepted) == 5
        assert await run_sql(migrated_postgres, "SELECT count(*) FROM jobs") == [(5,)]
    finally:
        await run_sql(migrated_postgres, "DELETE FROM jobs")
        for db in dbs:
            await db.dispose()


@pytest.mark.postgres
async def test_the_queue_works_on_after_its_connections_are_terminated(
    migrated_postgres: str,
) -> None:
    db = _database(migrated_postgres)
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        [first] = await _queue(store, 1)
        await run_sql(
            migrated_postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name NOT LIKE 'pg_%'",
        )
        job_id = await store.enqueue("analyze", "f" * 64, MODEL, image=b"x", max_queued=100)
        claimed = await store.claim("w1", MODEL, 100)
        assert {job.id for job in claimed} >= {first, job_id}
        assert all([await store.finish(job.id, "w1") for job in claimed])
    finally:
        await run_sql(migrated_postgres, "DELETE FROM jobs")
        await db.dispose()


async def test_jobs_nobody_claims_for_an_hour_fail_and_finished_ones_go(
    store, database_url
) -> None:
    old, fresh = await _queue(store, 2, OTHER)  # a model no worker serves any more
    long_ago = utcnow() - timedelta(hours=2)
    await run_sql(
        database_url, "UPDATE jobs SET created_at = :t WHERE id = :id", t=long_ago, id=old
    )
    expired = await store.expire()
    assert (expired.requeued, expired.failed, expired.stale) == (0, 0, 1)
    outcome = (await store.outcomes([old]))[old]
    assert (outcome.state, outcome.error_code) == ("failed", "expired")
    assert await store.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 1}
    rows = await run_sql(database_url, "SELECT id, image FROM jobs ORDER BY id")
    assert rows == [(old, None), (fresh, b"bytes 1")]
    await run_sql(
        database_url, "UPDATE jobs SET finished_at = :t WHERE id = :id", t=long_ago, id=old
    )
    await store.expire()
    assert [row[0] for row in await run_sql(database_url, "SELECT id FROM jobs")] == [fresh]


async def test_rows_of_workers_long_gone_are_deleted_but_the_newest_stays(
    store, database_url
) -> None:
    # Every worker start adds a row (autoscaled or restarted workers: thousands a month);
    # rows of workers silent for a day go, but the newest stays: an API process started
    # while no worker runs reads its model from it to serve the cache.
    from server.jobs import registry

    await run_sql(database_url, "DELETE FROM workers")
    for i, age in enumerate((timedelta(days=3), timedelta(days=2), timedelta(minutes=1))):
        await registry.register(store.db, f"w{i}", MODEL, {"id": "tiny"}, 2)
        await run_sql(
            database_url,
            "UPDATE workers SET started_at = :t, heartbeat_at = :t WHERE id = :id",
            t=utcnow() - age,
            id=f"w{i}",
        )
    await store.expire()
    assert await run_sql(database_url, "SELECT id FROM workers ORDER BY id") == [("w2",)]
    await run_sql(
        database_url,
        "UPDATE workers SET started_at = :t, heartbeat_at = :t",
        t=utcnow() - timedelta(days=5),
    )
    await store.expire()
    assert await run_sql(database_url, "SELECT id FROM workers") == [("w2",)]
    assert await registry.newest_identity(store.db) is not None
    await run_sql(database_url, "DELETE FROM workers")


async def test_the_queue_is_bounded(store) -> None:
    for i in range(2):
        await store.enqueue("analyze", f"{i:064x}", MODEL, image=b"x", max_queued=2)
    with pytest.raises(QueueFullError):
        await store.enqueue("analyze", "f" * 64, MODEL, image=b"x", max_queued=2)
    await store.claim("w1", MODEL, 1)  # running jobs do not count against the bound
    await store.enqueue("analyze", "e" * 64, MODEL, image=b"x", max_queued=2)


async def test_jobs_left_for_a_model_no_worker_serves_do_not_fill_the_queue(store) -> None:
    # A rolling upgrade under load: the old model's workers leave a backlog queued (it
    # stays an hour, for a worker of that model that may come back). The new model's
    # workers are idle: their requests must not be refused as "overloaded" for that hour.
    for i in range(2):
        await store.enqueue("analyze", f"{i:064x}", OTHER, image=b"x", max_queued=2)
    await store.enqueue("analyze", "a" * 64, MODEL, image=b"x", max_queued=2)
    await store.enqueue("analyze", "b" * 64, MODEL, image=b"x", max_queued=2)
    with pytest.raises(QueueFullError):  # each model's own backlog is still bounded
        await store.enqueue("analyze", "c" * 64, MODEL, image=b"x", max_queued=2)


@pytest.mark.postgres
async def test_postgres_notifies_workers_and_waiters(migrated_postgres: str) -> None:
    await run_sql(migrated_postgres, "DELETE FROM jobs")  # other tests' jobs
    db = _database(migrated_postgres)
    store = JobStore(db, lease_s=30, attempts=3)
    workers = Wakeups(migrated_postgres, [QUEUED_CHANNEL])
    waiters = Wakeups(migrated_postgres, [FINISHED_CHANNEL, PROGRESS_CHANNEL])
    for wakeups in (workers, waiters):
        wakeups.start()
    try:
        for wakeups in (workers, waiters):
            await asyncio.wait_for(wakeups.connected.wait(), 10)
            wakeups.event.clear()
        [job_id] = await _queue(store, 1)
        # Only a notification sets an event (no polling involved here).
        await asyncio.wait_for(workers.event.wait(), 10)
        assert not waiters.event.is_set()
        assert [job.id for job in await store.claim("w1", MODEL, 1)] == [job_id]
        assert await store.progress(job_id, "w1", "half an answer")
        await asyncio.wait_for(waiters.event.wait(), 10)
        waiters.event.clear()
        assert await store.finish(job_id, "w1", answer="a whole answer")
        await asyncio.wait_for(waiters.event.wait(), 10)
    finally:
        for wakeups in (workers, waiters):
            await wakeups.stop()
        await run_sql(migrated_postgres, "DELETE FROM jobs")
        await db.dispose()


async def test_listening_resumes_after_any_error_of_a_dying_connection(monkeypatch) -> None:
    # A backend terminated while LISTEN is being set up makes asyncpg raise errors that
    # are neither OSError nor PostgresError (InternalClientError: "cannot switch to state
    # 12; another operation is in progress", InterfaceError: "connection is closed").
    # The listener must reconnect, not end for the rest of the process's life.
    import asyncpg
    from asyncpg.exceptions import _base as asyncpg_errors

    from server.db import notify

    failures: list[Exception] = [
        asyncpg_errors.InternalClientError("cannot switch to state 12"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    ]

    class DyingConnection:
        async def add_listener(self, _channel: str, _callback: Any) -> None:
            if failures:
                raise failures.pop(0)

        def add_termination_listener(self, _callback: Any) -> None:
            pass

        async def close(self) -> None:
            pass

    async def connect(**_kwargs: Any) -> DyingConnection:
        return DyingConnection()

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(notify, "RECONNECT_S", 0.01)
    wakeups = Wakeups("postgresql+asyncpg://fs@db.invalid/fakescope", [QUEUED_CHANNEL])
    wakeups.start()
    try:
        await asyncio.wait_for(wakeups.connected.wait(), 5)
        assert failures == []
    finally:
        await wakeups.stop()


async def test_a_streamed_answer_is_visible_while_it_grows(store) -> None:
    [job_id] = await _queue(store, 1)
    await store.claim("w1", MODEL, 1)
    assert await store.outcomes([job_id]) == {}  # not finished
    assert await store.progress(job_id, "w1", "Hel")
    running = (await store.outcomes([job_id], finished_only=False))[job_id]
    assert (running.state, running.answer) == ("running", "Hel")
    assert not await store.progress(job_id, "someone else", "Help")
    assert await store.finish(job_id, "w1", answer="Hello")
    assert (await store.outcomes([job_id]))[job_id].answer == "Hello"
    assert not await store.progress(job_id, "w1", "Hello again")  # finished: no change


async def test_a_streamed_answer_is_read_from_where_its_reader_is(store) -> None:
    # The API process's poll read each waiting stream's whole text every time (streams x
    # length per poll); it now asks for the part past what its streams have, counted in
    # characters on both databases (as Python counts them), multi-byte ones included.
    streamed, other = await _queue(store, 2)
    await store.claim("w1", MODEL, 2)
    text = "Ça va 🙂 — l'ombre est nette"
    assert await store.progress(streamed, "w1", text)
    assert await store.progress(other, "w1", "Whole")
    for n in (1, 5, 7, 8, len(text) - 1):
        found = await store.outcomes(
            [streamed, other], finished_only=False, read_from={streamed: n}
        )
        assert (found[streamed].answer_from, found[streamed].answer) == (n, text[n:])
        assert (found[other].answer_from, found[other].answer) == (0, "Whole")  # not asked
    past = await store.outcomes([streamed], finished_only=False, read_from={streamed: len(text)})
    assert (past[streamed].answer_from, past[streamed].answer) == (len(text), "")
    beyond = await store.outcomes([streamed], finished_only=False, read_from={streamed: 99})
    assert beyond[streamed].answer == ""  # the text shrank (a job run again): nothing new
    assert await store.finish(streamed, "w1", answer=text + ".")
    finished = (await store.outcomes([streamed], read_from={streamed: len(text)}))[streamed]
    assert (finished.state, finished.answer_from, finished.answer) == ("done", len(text), ".")


def test_asyncpg_arguments_come_from_the_sqlalchemy_url() -> None:
    args = asyncpg_connect_args("postgresql+asyncpg://fs:s3cret@db.internal:6432/fakescope")
    assert args == {
        "user": "fs",
        "password": "s3cret",
        "host": "db.internal",
        "port": 6432,
        "database": "fakescope",
    }


QUESTION = {"sha256": "a" * 64, "kind": "aspect", "text": "texture", "prompt": "Texture?"}


async def test_a_twin_request_waits_for_the_job_already_doing_its_work(store) -> None:
    sha = "1" * 64

    async def enqueue(kind: str = "analyze", identity: Identity = MODEL, **kw: Any) -> int:
        image = b"x" if kind == "analyze" else None
        return await store.enqueue(kind, sha, identity, image=image, max_queued=100, **kw)

    plain = await enqueue()
    assert await enqueue() == plain
    explained = await enqueue(explain=True)  # a plain verdict's job has no explanation
    assert explained != plain and await enqueue(explain=True) == explained
    other_model = await enqueue(identity=OTHER)
    assert other_model not in (plain, explained)
    await store.claim("w1", MODEL, 1)  # running: still attached to
    assert await enqueue() == plain

    asked = await enqueue("ask", question=QUESTION)
    assert asked not in (plain, explained) and await enqueue("ask", question=QUESTION) == asked
    streamed = await enqueue("ask", question={**QUESTION, "stream": True})
    assert streamed != asked  # a stream needs a job that writes its text as it grows
    assert await enqueue("ask", question={**QUESTION, "stream": True}) == streamed
    assert await enqueue("ask", question=QUESTION) == asked  # the oldest twin
    edge = {**QUESTION, "text": "edge", "prompt": "Edges?"}
    assert await enqueue("ask", question=edge) not in (asked, streamed)

    assert await store.finish(plain, "w1")
    again = await enqueue()  # finished: a new request queues a new job (a cache miss
    assert again != plain  # there means the result was not kept: do the work again)
    assert await store.counts() == {"queued": 6, "running": 0, "done": 1, "failed": 0}


async def test_a_twin_request_takes_no_room_in_a_full_queue(store) -> None:
    first = await store.enqueue("analyze", "1" * 64, MODEL, image=b"x", max_queued=1)
    assert await store.enqueue("analyze", "1" * 64, MODEL, image=b"x", max_queued=1) == first
    with pytest.raises(QueueFullError):
        await store.enqueue("analyze", "2" * 64, MODEL, image=b"x", max_queued=1)


async def test_concurrent_enqueuers_of_the_same_work_share_one_job(database_url: str) -> None:
    # Several API processes asking for the same new image at once: one job, one GPU run.
    dbs = [_database(database_url) for _ in range(4)]
    stores = [JobStore(db, lease_s=30, attempts=3) for db in dbs]
    await run_sql(database_url, "DELETE FROM jobs")
    try:

        async def enqueue(i: int) -> int:
            sha = f"{i % 3:064x}"
            return await stores[i % 4].enqueue("analyze", sha, MODEL, image=b"x", max_queued=99)

        ids = await asyncio.gather(*(enqueue(i) for i in range(24)))
        assert len(set(ids)) == 3
        assert await run_sql(database_url, "SELECT count(*) FROM jobs") == [(3,)]
    finally:
        await run_sql(database_url, "DELETE FROM jobs")
        for db in dbs:
            await db.dispose()


@pytest.mark.postgres
async def test_one_process_expires_at_a_time(migrated_postgres: str) -> None:
    # Workers and API processes all run expire(): one that finds another at it skips.
    from sqlalchemy import func, select

    from server.jobs.store import EXPIRE_LOCK_KEY

    await run_sql(migrated_postgres, "DELETE FROM jobs")
    dbs = [_database(migrated_postgres) for _ in range(2)]
    stores = [JobStore(db, lease_s=0.05, attempts=3) for db in dbs]
    try:
        await _queue(stores[0], 1)
        await stores[0].claim("dead", MODEL, 1)
        await asyncio.sleep(0.1)
        async with dbs[0].write() as session:  # another process is expiring right now
            await session.execute(select(func.pg_advisory_xact_lock(EXPIRE_LOCK_KEY)))
            skipped = await stores[1].expire()
        assert (skipped.requeued, skipped.failed, skipped.stale) == (0, 0, 0)
        results = await asyncio.gather(*(s.expire() for s in stores for _ in range(3)))
        assert sum(r.requeued for r in results) == 1
        assert await run_sql(migrated_postgres, "SELECT state FROM jobs") == [("queued",)]
    finally:
        await run_sql(migrated_postgres, "DELETE FROM jobs")
        for db in dbs:
            await db.dispose()
