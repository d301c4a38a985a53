"""Writers in several processes share one SQLite file: each write transaction is isolated."""

from __future__ import annotations

import asyncio
import json

from server_helpers import run_sql, unique_png

from fakescope.analysis import build_analysis, inspect_image
from server.db.analyses import Identity, store_analysis
from server.db.database import Database
from server.db.engine import create_engine
from server.db.models import ReviewItem

IDENTITY = Identity(model_key="provenance-only", prompt_version="test")


async def test_read_modify_write_in_two_processes_loses_no_update(sqlite_url: str) -> None:
    # Two Database objects stand for two server processes: separate engines, separate locks.
    first, second = (
        Database(create_engine(sqlite_url), create_engine(sqlite_url, immediate=True))
        for _ in range(2)
    )
    analysis = build_analysis(inspect_image(unique_png(32)), p_fake=None, model_info=None)
    sha = analysis.sha256
    async with first.write() as session:
        await store_analysis(session, {**analysis.to_dict(), "flags": ["uncertain"]}, IDENTITY)

    async def add_reason(db: Database, reason: str) -> None:
        async with db.write() as session:
            item = await session.get(ReviewItem, sha)
            assert item is not None
            await asyncio.sleep(0.05)  # the other process runs meanwhile
            item.reasons = [*item.reasons, reason]

    try:
        await asyncio.gather(add_reason(first, "user_report"), add_reason(second, "c2pa_invalid"))
    finally:
        await first.dispose()
        await second.dispose()
    ((reasons,),) = await run_sql(sqlite_url, "SELECT reasons FROM review_items")
    assert sorted(json.loads(reasons)) == ["c2pa_invalid", "uncertain", "user_report"]
