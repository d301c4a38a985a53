"""The job queue in SQL: API processes queue jobs; workers claim, renew and finish them.

Claiming is one statement: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` on
PostgreSQL, so concurrent workers never take the same job and never wait on each other's
rows; on SQLite the write lock serialises claimers. Every state change is guarded by the
worker's id, so a worker whose lease ran out (and whose job went to another) cannot
finish or fail that job afterwards.

On PostgreSQL each queued and finished job is also announced with NOTIFY (`server/db/notify.py`),
which wakes workers and waiting API processes at once; polling covers the rest. A
streamed answer's text so far is kept in the job's `answer` while it runs (`progress`).

A write that meets a dropped connection (a terminated backend, a database failover) is
tried again on a fresh one, with growing pauses, for a budget of seconds (`retry.py`); the
ones retried are safe to repeat. Queueing, which a client waits on, goes on for the
request's budget; a worker's writes (finishing, failing, giving back a job, renewing its
leases) for the worker's, so that a finished job does not run again because its `finish`
met a short outage.

Work is queued once: a request for work that a queued or running job already does (the
same image, model, prompts and explanation; for a question the same prompt) waits for
that job instead of queueing another, whichever API process queued it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Delete, Integer, case, cast, delete, func, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.analyses import Identity
from server.db.database import Database
from server.db.models import Job, Worker
from server.inference.queue_jobs import QueueFullError
from server.jobs.retry import RETRY_BUDGET_S, retry_connection_errors, worker_budget_s
from server.timefmt import as_utc, utcnow

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
QUEUED_CHANNEL = "fakescope_jobs_queued"
FINISHED_CHANNEL = "fakescope_jobs_finished"
PROGRESS_CHANNEL = "fakescope_jobs_progress"  # a streamed answer's text grew
KEEP_FINISHED = timedelta(hours=1)  # finished rows kept for inspection, then deleted
MAX_QUEUED = timedelta(hours=1)  # a job nobody claimed for this long fails (nobody waits)
KEEP_WORKERS = timedelta(days=1)  # rows of workers silent this long go (but the newest)
# pg_advisory_xact_lock key taken by enqueue: counting the queued jobs and adding one is
# then atomic across API processes, so the queue never grows past its bound.
ENQUEUE_LOCK_KEY = 0x66616B65_6A6F6273  # "fakejobs"
# pg_try_advisory_xact_lock key taken by expire: when several processes (workers, API
# processes) run it at once, one does the work and the others skip this round.
EXPIRE_LOCK_KEY = 0x66616B65_65787072  # "fakeexpr"


def delete_finished_before(cutoff: datetime) -> Delete:
    """Delete the jobs finished before `cutoff` (found by `ix_jobs_state_finished_at`)."""
    return delete(Job).where(Job.state.in_((DONE, FAILED)), Job.finished_at < cutoff)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    sha256: str
    explain: bool
    question: dict[str, Any] | None
    image: bytes | None
    attempts: int


@dataclass(frozen=True)
class JobOutcome:
    """A finished job as its waiter sees it: done (with an answer for `ask`) or failed."""

    id: int
    state: str
    answer: str | None = None
    error_status: int | None = None
    error_code: str | None = None
    error_detail: str | None = None
    # `answer` is the text from this character on (`outcomes(read_from=...)`): a streamed
    # answer's waiter reads only what it has not relayed yet.
    answer_from: int = 0


@dataclass(frozen=True)
class Expired:
    requeued: int
    failed: int
    stale: int = 0  # queued too long


def _question_key(question: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What decides a question job's answer: its kind and exact prompt (not `stream`)."""
    if not question:
        return None
    return (question.get("kind"), question.get("text"), question.get("prompt"))


def does_the_same_work(
    kind: str,
    explain: bool,
    question: dict[str, Any] | None,
    job_explain: bool,
    job_question: dict[str, Any] | None,
) -> bool:
    """Whether a job (of the same kind, image and model) answers this request as well.

    An analysis must match on `explain` (one without an explanation would leave an
    explain=true request without one, and one with it would make a plain verdict wait
    for a generation). A question must ask the same prompt; a streamed request takes
    only a streamed job, whose text grows in its row, but a plain one takes either.
    """
    if kind == "analyze":
        return bool(job_explain) == explain
    if kind == "ask":
        asked = _question_key(question)
        if asked is None or asked != _question_key(job_question):
            return False
        streams = bool(question and question.get("stream"))
        return not streams or bool(job_question and job_question.get("stream"))
    return False


class JobStore:
    def __init__(self, db: Database, *, lease_s: float, attempts: int) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_s)
        self.attempts = attempts
        self.worker_retry_s = worker_budget_s(lease_s)  # a worker's writes, through outages
        self.notifies = not db.is_sqlite

    async def _notify(self, session: AsyncSession, channel: str, payload: str = "") -> None:
        if self.notifies:  # delivered when the transaction commits, not before
            await session.execute(select(func.pg_notify(channel, payload)))

    async def enqueue(
        self,
        kind: str,
        sha256: str,
        identity: Identity,
        *,
        image: bytes | None,
        explain: bool = False,
        question: dict[str, Any] | None = None,
        max_queued: int,
        retry_s: float = RETRY_BUDGET_S,
    ) -> int:
        """Queue one job and return its id, or the id of a queued or running job that
        already does this work (`does_the_same_work`: the request waits for that one and
        takes no room in the queue). Raises QueueFullError when `max_queued` jobs wait
        for this model (jobs left for another model's workers do not count).

        Finding the twin and inserting are one step across processes: the advisory lock
        on PostgreSQL, the write lock (BEGIN IMMEDIATE) on SQLite. Tried again after a
        dropped connection for up to `retry_s` seconds: if the lost reply was the commit's,
        the retry finds the job the first try queued and returns it.
        """
        return await retry_connection_errors(
            lambda: self._enqueue(
                kind,
                sha256,
                identity,
                image=image,
                explain=explain,
                question=question,
                max_queued=max_queued,
            ),
            budget_s=retry_s,
        )

    async def _enqueue(
        self,
        kind: str,
        sha256: str,
        identity: Identity,
        *,
        image: bytes | None,
        explain: bool,
        question: dict[str, Any] | None,
        max_queued: int,
    ) -> int:
        async with self.db.write() as session:
            if self.notifies:  # PostgreSQL: concurrent enqueuers count one after another
                await session.execute(select(func.pg_advisory_xact_lock(ENQUEUE_LOCK_KEY)))
            twin = await self._twin(session, kind, sha256, identity, explain, question)
            if twin is not None:
                return twin
            # Bounded per model: a backlog left for a model whose workers are gone (a
            # rolling upgrade) stays queued for an hour, and must not refuse the work of
            # the model that replaced it as "overloaded" all that time.
            waiting = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.state == QUEUED,
                    Job.model_key == identity.model_key,
                    Job.prompt_version == identity.prompt_version,
                )
            )
            if (waiting or 0) >= max_queued:
                raise QueueFullError(f"{waiting} jobs are waiting for a GPU worker")
            job = Job(
                kind=kind,
                sha256=sha256,
                model_key=identity.model_key,
                prompt_version=identity.prompt_version,
                explain=explain,
                question=question,
                image=image,
                state=QUEUED,
                attempts=0,
            )
            session.add(job)
            await session.flush()
            await self._notify(session, QUEUED_CHANNEL)
            return int(job.id)

    @staticmethod
    async def _twin(
        session: AsyncSession,
        kind: str,
        sha256: str,
        identity: Identity,
        explain: bool,
        question: dict[str, Any] | None,
    ) -> int | None:
        """The oldest queued or running job that does this request's work, if any."""
        statement = (
            select(Job.id, Job.explain, Job.question)
            .where(
                Job.state.in_((QUEUED, RUNNING)),
                Job.kind == kind,
                Job.sha256 == sha256,
                Job.model_key == identity.model_key,
                Job.prompt_version == identity.prompt_version,
            )
            .order_by(Job.id)
        )
        for job_id, job_explain, job_question in (await session.execute(statement)).all():
            if does_the_same_work(kind, explain, question, job_explain, job_question):
                return int(job_id)
        return None

    async def claim(self, worker_id: str, identity: Identity, limit: int) -> list[ClaimedJob]:
        """Up to `limit` of the oldest queued jobs for this model, now running under a lease."""
        if limit <= 0:
            return []
        mine = (
            Job.state == QUEUED,
            Job.model_key == identity.model_key,
            Job.prompt_version == identity.prompt_version,
        )
        # A read first: an idle worker polls, and on SQLite every claim would otherwise
        # take the database's one write lock, 50 times a second, for nothing.
        async with self.db.connect() as conn:
            if await conn.scalar(select(Job.id).where(*mine).limit(1)) is None:
                return []
        now = utcnow()
        oldest = (
            select(Job.id)
            .where(*mine)
            .order_by(Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # ignored on SQLite, whose writers take turns
        )
        statement = (
            update(Job)
            .where(Job.id.in_(oldest.scalar_subquery()))
            .values(
                state=RUNNING,
                worker_id=worker_id,
                lease_until=now + self.lease,
                attempts=Job.attempts + 1,
            )
            .returning(
                Job.id,
                Job.kind,
                Job.sha256,
                Job.explain,
                Job.question,
                Job.image,
                Job.attempts,
            )
            .execution_options(synchronize_session=False)
        )
        async with self.db.write() as session:
            rows = (await session.execute(statement)).all()
        jobs = [ClaimedJob(*row) for row in rows]
        return sorted(jobs, key=lambda job: job.id)

    async def finish(self, job_id: int, worker_id: str, *, answer: str | None = None) -> bool:
        return await self._end(job_id, worker_id, state=DONE, answer=answer)

    async def fail(
        self, job_id: int, worker_id: str, *, status: int, code: str, detail: str
    ) -> bool:
        return await self._end(
            job_id,
            worker_id,
            state=FAILED,
            error_status=status,
            error_code=code,
            error_detail=detail,
        )

    async def _end(self, job_id: int, worker_id: str, *, state: str, **values: Any) -> bool:
        """Finish a job this worker still holds; False when it lost the job meanwhile.

        Tried again after a dropped connection for the worker's budget. Every try writes
        the same `finished_at`: a try that finds the job ended with it knows that an earlier
        try, whose reply was lost, ended it.
        """
        values["finished_at"] = utcnow()
        return await retry_connection_errors(
            lambda: self._end_once(job_id, worker_id, state, values), budget_s=self.worker_retry_s
        )

    async def _end_once(
        self, job_id: int, worker_id: str, state: str, values: dict[str, Any]
    ) -> bool:
        mine = (Job.id == job_id, Job.worker_id == worker_id)
        statement = (
            update(Job)
            .where(*mine, Job.state == RUNNING)
            .values(state=state, image=None, lease_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        async with self.db.write() as session:
            if (await session.execute(statement)).rowcount > 0:  # type: ignore[attr-defined]
                await self._notify(session, FINISHED_CHANNEL, str(job_id))
                return True
            ended_before = select(Job.id).where(
                *mine, Job.state == state, Job.finished_at == values["finished_at"]
            )
            return await session.scalar(ended_before) is not None

    async def progress(self, job_id: int, worker_id: str, text: str) -> bool:
        """Record a streamed answer's text so far (the API process relays the new part)."""
        statement = (
            update(Job)
            .where(Job.id == job_id, Job.worker_id == worker_id, Job.state == RUNNING)
            .values(answer=text)
            .execution_options(synchronize_session=False)
        )
        async with self.db.write() as session:
            kept = (await session.execute(statement)).rowcount > 0  # type: ignore[attr-defined]
            if kept:
                await self._notify(session, PROGRESS_CHANNEL, str(job_id))
        return bool(kept)

    async def renew(self, worker_id: str, job_ids: Collection[int]) -> int:
        """Extend the lease of the jobs this worker is running; the number renewed.

        Only the jobs named: a job the worker holds in the table but no longer runs (its
        `finish` failed on a dropped connection, a claim whose reply was lost) must lapse
        and go back to the queue, not stay 'running' for as long as the worker lives.
        """
        if not job_ids:
            return 0
        return await retry_connection_errors(
            lambda: self._renew(worker_id, job_ids), budget_s=self.worker_retry_s
        )

    async def _renew(self, worker_id: str, job_ids: Collection[int]) -> int:
        statement = (
            update(Job)
            .where(Job.worker_id == worker_id, Job.state == RUNNING, Job.id.in_(list(job_ids)))
            .values(lease_until=utcnow() + self.lease)
            .execution_options(synchronize_session=False)
        )
        async with self.db.write() as session:
            return int((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def release(self, worker_id: str) -> int:
        """Queue again the jobs of a worker that is stopping (this claim does not count)."""
        return await retry_connection_errors(
            lambda: self._release(worker_id), budget_s=self.worker_retry_s
        )

    async def requeue(self, job_id: int, worker_id: str) -> bool:
        """Give one job back to the queue (its run met a dropped database connection); this
        claim counts toward its attempts. False when the worker no longer held it."""
        return bool(
            await retry_connection_errors(
                lambda: self._release(worker_id, job_id), budget_s=self.worker_retry_s
            )
        )

    async def _release(self, worker_id: str, job_id: int | None = None) -> int:
        mine = [Job.worker_id == worker_id, Job.state == RUNNING]
        given_back: dict[str, Any] = {"attempts": Job.attempts - 1}
        if job_id is not None:
            mine.append(Job.id == job_id)
            given_back = {}
        statement = (
            update(Job)
            .where(*mine)
            .values(state=QUEUED, worker_id=None, lease_until=None, **given_back)
            .execution_options(synchronize_session=False)
        )
        async with self.db.write() as session:
            released = int((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]
            if released:
                await self._notify(session, QUEUED_CHANNEL)
        return released

    async def expire(self) -> Expired:
        """Jobs whose worker stopped renewing: queued again, or failed after `attempts` tries.

        Also fails jobs queued for over an hour (for a model no worker serves any more, or
        while no worker ran), dropping their image bytes, and deletes jobs finished more
        than an hour ago (nobody waits that long) and the rows of workers silent for a day
        (but the newest).

        Workers and API processes all run it (a few UPDATEs). On PostgreSQL one at a time
        does the work: a process that finds another expiring skips this round (nothing
        expired); on SQLite writers take turns anyway.
        """
        now = utcnow()
        lapsed = (Job.state == RUNNING, Job.lease_until < now)
        async with self.db.write() as session:
            if self.notifies and not await session.scalar(
                select(func.pg_try_advisory_xact_lock(EXPIRE_LOCK_KEY))
            ):
                return Expired(requeued=0, failed=0)
            stale = await session.execute(
                update(Job)
                .where(Job.state == QUEUED, Job.created_at < now - MAX_QUEUED)
                .values(
                    state=FAILED,
                    image=None,
                    finished_at=now,
                    error_status=503,
                    error_code="expired",
                    error_detail="no GPU worker took this job within an hour",
                )
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            stale_ids = list(stale.scalars())
            failed = await session.execute(
                update(Job)
                .where(*lapsed, Job.attempts >= self.attempts)
                .values(
                    state=FAILED,
                    image=None,
                    lease_until=None,
                    finished_at=now,
                    error_status=503,
                    error_code="worker-lost",
                    error_detail=(
                        f"the GPU worker running this job stopped answering "
                        f"{self.attempts} times; try again later"
                    ),
                )
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            failed_ids = list(failed.scalars())
            requeued = await session.execute(
                update(Job)
                .where(*lapsed)
                .values(state=QUEUED, worker_id=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            count = int(requeued.rowcount)  # type: ignore[attr-defined]
            await session.execute(delete_finished_before(now - KEEP_FINISHED))
            # Each worker start adds a row: those silent for a day go, except the newest,
            # whose model an API process serves the cache by while no worker runs.
            newest = select(Worker.id).order_by(Worker.started_at.desc()).limit(1)
            await session.execute(
                delete(Worker).where(
                    Worker.heartbeat_at < now - KEEP_WORKERS,
                    Worker.id.not_in(newest.scalar_subquery()),
                )
            )
            if count:
                await self._notify(session, QUEUED_CHANNEL)
            for job_id in failed_ids + stale_ids:
                await self._notify(session, FINISHED_CHANNEL, str(job_id))
        return Expired(requeued=count, failed=len(failed_ids), stale=len(stale_ids))

    async def outcomes(
        self,
        ids: Sequence[int],
        *,
        finished_only: bool = True,
        read_from: Mapping[int, int] | None = None,
    ) -> dict[int, JobOutcome]:
        """The finished jobs among `ids`; with `finished_only=False` every one found (the
        `answer` of a running job is its streamed text so far).

        `read_from` maps job ids to the characters of their text the caller already has:
        their `answer` is then only the rest, from that character on (`answer_from`), so
        that relaying a growing text costs what is new, not all of it on every poll.
        """
        if not ids:
            return {}
        answer: Any = Job.answer
        start: Any = literal(0, Integer)
        read_from = {job_id: n for job_id, n in (read_from or {}).items() if n > 0}
        if read_from:
            # One CASE for all: the offsets are bound parameters, typed (asyncpg cannot
            # infer them in a CASE). substr counts characters on SQLite and on PostgreSQL
            # (a UTF8 database), as Python's slicing does; past the end it is ''.
            start = cast(case(read_from, value=Job.id, else_=0), Integer)
            answer = func.substr(Job.answer, start + 1)
        statement = select(
            Job.id,
            Job.state,
            answer,
            Job.error_status,
            Job.error_code,
            Job.error_detail,
            start,
        ).where(Job.id.in_(list(ids)))
        if finished_only:
            statement = statement.where(Job.state.in_((DONE, FAILED)))
        async with self.db.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return {
            int(row[0]): JobOutcome(
                int(row[0]), row[1], row[2], row[3], row[4], row[5], answer_from=int(row[6])
            )
            for row in rows
        }

    async def oldest_queued_age_s(self) -> float | None:
        """How long the oldest queued job has waited (None: none waits)."""
        async with self.db.connect() as conn:
            oldest = await conn.scalar(select(func.min(Job.created_at)).where(Job.state == QUEUED))
        return None if oldest is None else (utcnow() - as_utc(oldest)).total_seconds()

    async def counts(self) -> dict[str, int]:
        """How many jobs are in each state (finished ones for the last hour).

        Each half can be counted from an index (`ix_jobs_state`; the finished half from
        `ix_jobs_state_finished_at` alone), and finished jobs the expiry has not deleted
        yet are not counted.
        """
        unfinished = (
            select(Job.state, func.count())
            .where(Job.state.in_((QUEUED, RUNNING)))
            .group_by(Job.state)
        )
        finished = (
            select(Job.state, func.count())
            .where(Job.state.in_((DONE, FAILED)), Job.finished_at >= utcnow() - KEEP_FINISHED)
            .group_by(Job.state)
        )
        statement = union_all(unfinished, finished)
        async with self.db.connect() as conn:
            rows = (await conn.execute(statement)).all()
        found = {str(state): int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in (QUEUED, RUNNING, DONE, FAILED)}

    async def queued_by_model(self) -> dict[tuple[str, str], int]:
        """Queued jobs by the (model key, prompt version) a worker must serve to take them."""
        statement = (
            select(Job.model_key, Job.prompt_version, func.count())
            .where(Job.state == QUEUED)
            .group_by(Job.model_key, Job.prompt_version)
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return {(str(key), str(prompts)): int(count) for key, prompts, count in rows}
