"""Concurrent writes commit together; a failing write fails alone and leaves no half rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.database import Database
from server.db.engine import create_engine
from server.db.group_commit import GroupCommit
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
