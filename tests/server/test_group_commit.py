"""Concurrent writes commit together; a failing write fails alone and leaves no half rows;
a dropped connection is tried again, with the writes queued meanwhile, for a budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from db_faults import DroppedWrites, LostCommitReplies
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.database import Database, is_transient
from server.db.engine import create_engine
from server.db.group_commit import GroupCommit
from server.db.inserts import insert_ignoring_duplicates
from server.db.models import Image


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    engine = create_engine(database_url)
    write_engine = (
        create_engine(database_url, immediate=True) if "sqlite" in engine.dialect.name else None
    )
    database = Database(engine, write_engine)
    yield database
    await database.dispose()


def image_row(sha: str, *, fail: bool = False) -> Callable[[AsyncSession], Awaitable[None]]:
    async def write(session: AsyncSession) -> None:
        await session.execute(
            insert(Image).values(
                sha256=sha, pdq="0" * 64, pdq_quality=100, format="PNG", width=1, height=1, bytes=1
            )
        )
        if fail:
            raise IntegrityError("insert", {}, Exception("someone stored it first"))

    return write


async def stored(db: Database) -> list[str]:
    async with db.read() as session:
        rows = await session.execute(select(Image.sha256).order_by(Image.sha256))
        return list(rows.scalars())


async def test_concurrent_writes_share_one_transaction(db: Database) -> None:
    writes = GroupCommit(db)
    shas = [f"{i:064x}" for i in range(12)]
    await asyncio.gather(*(writes.run(image_row(sha)) for sha in shas))
    assert await stored(db) == shas
    assert writes.groups == 1  # one commit for all twelve


async def test_a_failing_write_fails_alone_and_the_others_commit(db: Database) -> None:
    writes = GroupCommit(db)
    shas = [f"{i:064x}" for i in range(5)]
    outcomes = await asyncio.gather(
        *(writes.run(image_row(sha, fail=i == 2)) for i, sha in enumerate(shas)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 2 + ["IntegrityError"] + [
        "NoneType"
    ] * 2
    assert await stored(db) == shas[:2] + shas[3:]  # the failed one left nothing
    assert writes.groups == 0  # the group rolled back; each ran alone


async def test_a_lone_write_and_groups_larger_than_the_limit(db: Database) -> None:
    writes = GroupCommit(db, max_group=4)
    await writes.run(image_row("a" * 64))
    assert writes.groups == 0
    shas = [f"{i:064x}" for i in range(10)]
    await asyncio.gather(*(writes.run(image_row(sha)) for sha in shas))
    assert sorted(await stored(db)) == sorted(["a" * 64, *shas])
    assert writes.groups == 3  # 4 + 4 + 2


async def test_a_caller_that_leaves_does_not_cancel_the_group(db: Database) -> None:
    writes = GroupCommit(db)
    staying = asyncio.ensure_future(writes.run(image_row("b" * 64)))
    leaving = asyncio.ensure_future(writes.run(image_row("c" * 64)))
    await asyncio.sleep(0)
    leaving.cancel()
    await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving
    for _ in range(50):  # the group's commit finishes on its own
        if len(await stored(db)) == 2:
            break
        await asyncio.sleep(0.01)
    assert await stored(db) == ["b" * 64, "c" * 64]


async def test_a_group_whose_connection_dropped_commits_on_a_later_try(db: Database) -> None:
    writes = GroupCommit(db, retry_s=30)
    shas = [f"{i:064x}" for i in range(6)]
    faults = DroppedWrites(db, times=3)
    try:
        await asyncio.gather(*(writes.run(image_row(sha)) for sha in shas))
    finally:
        faults.remove()
    assert await stored(db) == shas
    assert faults.dropped == 3 and writes.groups == 1  # tried again as one group


async def test_writes_queued_during_an_outage_join_the_group_tried_again(db: Database) -> None:
    writes = GroupCommit(db, retry_s=30)
    later: list[asyncio.Future[None]] = []

    def queue_another() -> None:  # while the first try meets the dropped connection
        if not later:
            later.append(asyncio.ensure_future(writes.run(image_row("b" * 64))))

    faults = DroppedWrites(db, times=2, on_drop=queue_another)
    try:
        await writes.run(image_row("a" * 64))
        await asyncio.gather(*later)
    finally:
        faults.remove()
    assert await stored(db) == ["a" * 64, "b" * 64]
    assert writes.groups == 1


async def test_writes_of_a_database_that_stays_away_fail_after_their_budget(db: Database) -> None:
    writes = GroupCommit(db, retry_s=0.3)
    faults = DroppedWrites(db, times=None)
    try:
        outcomes = await asyncio.gather(
            *(writes.run(image_row(f"{i:064x}")) for i in range(3)), return_exceptions=True
        )
    finally:
        faults.remove()
    assert all(isinstance(o, DBAPIError) and is_transient(o) for o in outcomes), outcomes
    assert faults.dropped > 1  # tried again before giving up
    assert await stored(db) == []


async def test_a_commit_whose_reply_was_lost_is_tried_again_without_doubling_rows(
    db: Database,
) -> None:
    # The first commit stores the rows, but its reply is lost: the group is tried again.
    # A write that tolerates its row existing (as storing an image does) succeeds; one that
    # does not gets the IntegrityError, which tells its caller the row is stored (the
    # analyses' insert: "another process stored it first, keep theirs").
    def tolerant_row(sha: str) -> Callable[[AsyncSession], Awaitable[None]]:
        async def write(session: AsyncSession) -> None:
            await session.execute(
                insert_ignoring_duplicates(session, Image).values(
                    sha256=sha,
                    pdq="0" * 64,
                    pdq_quality=100,
                    format="PNG",
                    width=1,
                    height=1,
                    bytes=1,
                )
            )

        return write

    writes = GroupCommit(db, retry_s=30)
    faults = LostCommitReplies(db, times=1)
    try:
        outcomes = await asyncio.gather(
            writes.run(tolerant_row("a" * 64)),
            writes.run(tolerant_row("b" * 64)),
            writes.run(image_row("c" * 64)),
            return_exceptions=True,
        )
    finally:
        faults.remove()
    assert outcomes[:2] == [None, None] and isinstance(outcomes[2], IntegrityError), outcomes
    assert await stored(db) == ["a" * 64, "b" * 64, "c" * 64]  # each once
    assert faults.lost == 1
