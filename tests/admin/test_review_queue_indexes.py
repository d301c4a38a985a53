"""The review queue at scale (migration 0007): each item keeps the label it is served with now
in `served_label`, so filtering by label reads an index instead of two subqueries per item,
and every page, filtered or not, is read from an index in queue order, not sorted.

The label served now is the latest decision's, else the latest analysis's: a newer analysis
(another model or prompt version) changes it, unless a reviewer decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.admin.principal import Principal
from server.admin.review_items import record_decision
from server.admin.review_queue import QueueFilters, page_before, read_queue
from server.admin.roles import Role
from server.db.analyses import Identity, store_analysis
from server.db.engine import create_engine
from server.db.models import AnalysisRow, Image, ReviewItem
from server.db.review import USER_REPORT, flag_for_review
from server.timefmt import utcnow

REVIEWER = Principal(token_id=None, name="Rita", role=Role.REVIEWER)


def _sha(n: int) -> str:
    return f"{n:064x}"


def _analysis(sha: str, label: str, flags: list[str] | None = None) -> dict[str, Any]:
    """What the analysis service stores for one image (a 64x64 PNG)."""
    return {
        "sha256": sha,
        "image": {
            "format": "PNG",
            "width": 64,
            "height": 64,
            "bytes": 1000,
            "pdq": "0" * 64,
            "pdq_quality": 100,
        },
        "label": label,
        "p_fake": {"fake": 0.9, "real": 0.1}.get(label, 0.5),
        "decided_by": "model",
        "mode": "model",
        "evidence": [],
        "explanation": None,
        "model": None,
        "flags": flags or [],
        "timings_ms": {},
    }


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def _in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Coroutine[Any, Any, Any]],
) -> Any:
    async with sessions() as session, session.begin():
        return await work(session)


async def _served_label(sessions: async_sessionmaker[AsyncSession], sha: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(select(ReviewItem.served_label).where(ReviewItem.sha256 == sha))


async def _queue(sessions: async_sessionmaker[AsyncSession], **filters: Any) -> list[str]:
    async with sessions() as session:
        page = await read_queue(session, QueueFilters(**filters), limit=50)
    return [entry.sha256 for entry in page.entries]


async def test_the_served_label_follows_newer_analyses_until_a_reviewer_decides(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sha = _sha(1)
    first_model = Identity("model-a", "v1")
    await _in_transaction(
        sessions,
        lambda s: store_analysis(s, _analysis(sha, "uncertain", ["uncertain"]), first_model),
    )
    assert await _served_label(sessions, sha) == "uncertain"

    # A newer model's analysis, with no flags of its own: the item now serves its label.
    await asyncio.sleep(0.01)  # a later created_at than the first analysis
    await _in_transaction(
        sessions, lambda s: store_analysis(s, _analysis(sha, "fake"), Identity("model-b", "v1"))
    )
    assert await _served_label(sessions, sha) == "fake"
    assert await _queue(sessions, label="fake") == [sha]
    assert await _queue(sessions, label="uncertain") == []

    # A decision wins over every analysis, newer ones too.
    await _in_transaction(
        sessions,
        lambda s: record_decision(s, sha, label="real", note=None, principal=REVIEWER),
    )
    await asyncio.sleep(0.01)
    await _in_transaction(
        sessions, lambda s: store_analysis(s, _analysis(sha, "fake"), Identity("model-c", "v1"))
    )
    assert await _served_label(sessions, sha) == "real"
    assert await _queue(sessions, status=None, label="real") == [sha]
    assert await _queue(sessions, status=None, label="fake") == []


async def test_an_item_made_by_a_report_or_a_decision_serves_its_label_from_the_start(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reported, decided = _sha(2), _sha(3)
    identity = Identity("model-a", "v1")
    for sha in (reported, decided):  # analysed, nothing to flag: no review item yet
        await _in_transaction(
            sessions, lambda s, sha=sha: store_analysis(s, _analysis(sha, "fake"), identity)
        )
    await _in_transaction(
        sessions, lambda s: flag_for_review(s, reported, [USER_REPORT], reopen=True)
    )
    await _in_transaction(
        sessions,
        lambda s: record_decision(s, decided, label="real", note=None, principal=REVIEWER),
    )
    assert await _served_label(sessions, reported) == "fake"
    assert await _served_label(sessions, decided) == "real"


async def _fill_queue(database_url: str, n: int) -> None:
    """`n` flagged images: every third decided, labels fake/real/uncertain in turn."""
    now = utcnow()
    images = [
        {
            "sha256": _sha(n_),
            "pdq": "0" * 64,
            "pdq_quality": 100,
            "format": "PNG",
            "width": 64,
            "height": 64,
            "bytes": 1000,
            "n_frames": 1,
            "first_seen_at": now,
        }
        for n_ in range(n)
    ]
    items = [
        {
            "sha256": _sha(n_),
            "reasons": ["uncertain"],
            "status": "decided" if n_ % 3 == 0 else "open",
            "served_label": ("fake", "real", "uncertain")[n_ % 3],
            "created_at": now - timedelta(seconds=n_),
            "updated_at": now,
        }
        for n_ in range(n)
    ]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Image), images)
            await conn.execute(insert(ReviewItem), items)
            analyze = "ANALYZE review_items" if engine.dialect.name == "postgresql" else "ANALYZE"
            await conn.execute(text(analyze))  # as autovacuum does on a busy table
    finally:
        await engine.dispose()


async def _plans_of(
    database_url: str, read: Callable[[AsyncSession], Coroutine[Any, Any, Any]]
) -> list[str]:
    """The query plan of every statement `read` sends that reads items in queue order
    (ORDER BY), as the database would run it."""
    engine = create_engine(database_url)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with async_sessionmaker(engine)() as session:
            await read(session)
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        postgres = engine.dialect.name == "postgresql"
        plans = []
        async with engine.connect() as conn:
            for statement, parameters in sent:
                if "ORDER BY review_items.created_at" not in statement:
                    continue
                explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
                rows = (await conn.exec_driver_sql(f"{explain} {statement}", parameters)).all()
                plans.append(_outer_plan(rows, postgres))
        return plans
    finally:
        await engine.dispose()


def _outer_plan(rows: list[Any], postgres: bool) -> str:
    """The plan of the statement itself, without its per-row subqueries (which sort the
    few analyses or decisions of one image, newest first)."""
    if postgres:
        lines = [str(row[0]) for row in rows]
        cut = next((i for i, line in enumerate(lines) if "SubPlan" in line), len(lines))
        return "\n".join(lines[:cut])
    # SQLite: (id, parent, notused, detail); the statement's own steps have parent 0.
    return "\n".join(str(row[3]) for row in rows if row[1] == 0)


def _reads_in_queue_order(plan: str, index: str) -> bool:
    """The plan walks `index` and sorts nothing (PostgreSQL: no Sort node; SQLite: no
    temporary B-tree for the ORDER BY)."""
    return index in plan and "Sort" not in plan and "TEMP B-TREE" not in plan


QUEUE_READS: dict[str, tuple[QueueFilters, str]] = {
    "open items": (QueueFilters(), "ix_review_items_status_created"),
    "open items served as fake": (
        QueueFilters(label="fake"),
        "ix_review_items_status_label_created",
    ),
    "items of any status": (QueueFilters(status=None), "ix_review_items_created"),
}


@pytest.mark.parametrize("read", QUEUE_READS)
async def test_each_queue_page_is_read_from_an_index_in_queue_order(
    database_url: str, read: str
) -> None:
    await _fill_queue(database_url, 3000)
    filters, index = QUEUE_READS[read]
    plans = await _plans_of(database_url, lambda s: read_queue(s, filters, limit=50))
    assert len(plans) == 1 and _reads_in_queue_order(plans[0], index), plans


async def test_stepping_back_a_page_reads_an_index_too(database_url: str) -> None:
    await _fill_queue(database_url, 3000)
    anchor = _sha(1500)
    plans = await _plans_of(
        database_url, lambda s: page_before(s, QueueFilters(label="real"), anchor, limit=50)
    )
    assert len(plans) == 1, plans
    assert _reads_in_queue_order(plans[0], "ix_review_items_status_label_created"), plans


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_of_two_processes_storing_analyses_of_one_image_the_later_sets_its_label(
    database_url: str,
) -> None:
    """Two API processes store new analyses of one flagged image at the same moment (a rolling
    upgrade: two models). The one that stored first (the older analysis) reaches the item's
    label last: it waits for the other's lock, then reads both analyses, and the item serves the
    newer one's label. Read in the same statement as the update, its label would have missed the
    analysis committed while it waited."""
    from server.db.database import Database
    from server.db.review import refresh_served_label

    sha = _sha(7)
    one, other = Database(create_engine(database_url)), Database(create_engine(database_url))
    try:
        async with one.write() as session:
            await store_analysis(
                session, _analysis(sha, "uncertain", ["uncertain"]), Identity("old", "v1")
            )
        async with other.write() as racing:
            # The older analysis: inserted as store_analysis does, its label not set yet.
            older = _analysis(sha, "real")
            await racing.execute(
                insert(AnalysisRow).values(
                    sha256=sha,
                    model_key="model-c",
                    prompt_version="v1",
                    label="real",
                    p_fake=older["p_fake"],
                    decided_by="model",
                    mode="model",
                    evidence=[],
                    flags=[],
                    timings={},
                    created_at=utcnow(),
                )
            )
            await asyncio.sleep(0.01)
            async with one.write() as session:  # the newer analysis, stored whole
                await store_analysis(session, _analysis(sha, "fake"), Identity("model-b", "v1"))
                waiting = asyncio.create_task(refresh_served_label(racing, sha))
                await asyncio.sleep(0.5)
                assert not waiting.done(), "the older writer did not wait for the item's lock"
            await waiting
        async with one.read() as session:
            served = await session.scalar(
                select(ReviewItem.served_label).where(ReviewItem.sha256 == sha)
            )
        assert served == "fake"  # model-b's analysis is the newer one
    finally:
        await one.dispose()
        await other.dispose()
