"""Review queue pages on PostgreSQL with a large queue, with migration 0007 and as before it.

    .venv/bin/python benchmarks/bench_review_queue.py            # 150,000 items, about a minute
    .venv/bin/python benchmarks/bench_review_queue.py --quick    # 5,000 items (smoke run)
    .venv/bin/python benchmarks/bench_review_queue.py --json out.json

A scratch database (on the server of FAKESCOPE_TEST_POSTGRES_URL, dropped at the end)
gets N flagged images, each with an analysis; a quarter of them decided. Each read the review
page and API make (`read_queue`, `page_before`) is timed, best of 5, first as the code reads
the migrated database, then "before 0007": the queue's indexes replaced by the single index on
`status` it had, and the label filter computed per item from the latest decision and analysis
(two subqueries each), as the code did. Both run in one process on one database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from bench_scale_out import create_database, drop_database

from server.admin import review_queue
from server.admin.review_queue import QueueFilters, page_before, read_queue
from server.db.engine import create_engine
from server.db.migrate import upgrade_async
from server.db.models import AnalysisRow, ReviewItem

ROUNDS = 5
QUEUE_INDEXES = (
    "ix_review_items_status_created",
    "ix_review_items_status_label_created",
    "ix_review_items_created",
)

# N images flagged for review, each analysed once (labels in turn), one in four decided.
FILL = """
INSERT INTO images (sha256, pdq, pdq_quality, format, width, height, bytes, n_frames,
                    first_seen_at)
SELECT md5(i::text) || md5((-i)::text), md5((i * 7)::text) || md5((i * 11)::text), 100, 'PNG',
       64, 64, 1000, 1, now() - i * interval '1 second'
FROM generate_series(1, :n) AS i;
INSERT INTO analyses (sha256, model_key, prompt_version, label, p_fake, decided_by, mode,
                      evidence, flags, timings, created_at)
SELECT md5(i::text) || md5((-i)::text), 'bench-model', 'v1',
       (ARRAY['fake', 'real', 'uncertain'])[1 + i % 3], (i % 100) / 100.0, 'model', 'model',
       '[]', '["uncertain"]', '{}', now() - i * interval '1 second'
FROM generate_series(1, :n) AS i;
INSERT INTO review_items (sha256, reasons, status, served_label, created_at, updated_at)
SELECT md5(i::text) || md5((-i)::text),
       CASE WHEN i % 5 = 0 THEN '["user_report"]' ELSE '["uncertain"]' END::json,
       CASE WHEN i % 4 = 0 THEN 'decided' ELSE 'open' END,
       CASE WHEN i % 4 = 0 THEN 'real' ELSE (ARRAY['fake', 'real', 'uncertain'])[1 + i % 3] END,
       now() - i * interval '1 second', now()
FROM generate_series(1, :n) AS i;
INSERT INTO review_decisions (sha256, label, created_at)
SELECT md5(i::text) || md5((-i)::text), 'real', now()
FROM generate_series(4, :n, 4) AS i;
"""


async def _fill(url: str, n: int) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in filter(str.strip, FILL.split(";")):
                await conn.execute(text(statement), {"n": n})
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))  # as autovacuum would
    finally:
        await engine.dispose()


async def _best_ms(read: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await read()
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def _computed_label_page(session: AsyncSession, label: str) -> Any:
    """A page of open items filtered by a label computed per item, as before 0007."""
    served = func.coalesce(
        review_queue._latest_decision_label(), review_queue._latest_analysis(AnalysisRow.label)
    )
    conditions = [ReviewItem.status == "open", served == label]
    total = await session.scalar(select(func.count()).select_from(ReviewItem).where(*conditions))
    rows = await session.execute(
        select(ReviewItem.sha256, served)
        .where(*conditions)
        .order_by(ReviewItem.created_at, ReviewItem.sha256)
        .limit(51)
    )
    return total, rows.all()


async def _measure(url: str, *, before: bool) -> dict[str, float]:
    engine = create_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    figures: dict[str, float] = {}
    try:
        async with sessions() as session:
            deep = await session.scalar(
                text(
                    "SELECT sha256 FROM review_items WHERE status = 'open' "
                    "ORDER BY created_at, sha256 OFFSET (SELECT count(*) / 2 FROM review_items "
                    "WHERE status = 'open') LIMIT 1"
                )
            )
            reads: dict[str, Callable[[], Awaitable[Any]]] = {
                "first page of open items": lambda: read_queue(session, QueueFilters(), limit=50),
                "a page halfway, with its position": lambda: read_queue(
                    session, QueueFilters(), limit=50, cursor=deep, count_before=True
                ),
                "the page before it": lambda: page_before(session, QueueFilters(), deep, limit=50),
                "open items served as fake": (
                    (lambda: _computed_label_page(session, "fake"))
                    if before
                    else (lambda: read_queue(session, QueueFilters(label="fake"), limit=50))
                ),
                "items of any status": lambda: read_queue(
                    session, QueueFilters(status=None), limit=50
                ),
            }
            for name, read in reads.items():
                figures[name] = await _best_ms(read)
    finally:
        await engine.dispose()
    return figures


async def _as_before(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for index in QUEUE_INDEXES:
                await conn.execute(text(f"DROP INDEX {index}"))
            await conn.execute(text("CREATE INDEX ix_review_items_status ON review_items (status)"))
            await conn.execute(text("ANALYZE review_items"))
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=150_000, help="flagged images")
    parser.add_argument("--quick", action="store_true", help="5,000 items (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.items
    name, url = create_database()
    try:
        print(f"filling a scratch database with {n:,} flagged images ...", flush=True)
        started = time.perf_counter()
        asyncio.run(upgrade_async(url))
        asyncio.run(_fill(url, n))
        print(f"  filled in {time.perf_counter() - started:.1f} s", flush=True)
        now = asyncio.run(_measure(url, before=False))
        asyncio.run(_as_before(url))
        before = asyncio.run(_measure(url, before=True))
    finally:
        drop_database(name)
    open_items = n - n // 4
    print(f"\n{n:,} review items ({open_items:,} open), best of {ROUNDS}, milliseconds:")
    print(f"{'read':38} {'before 0007':>12} {'now':>9} {'ratio':>8}")
    for read, ms in now.items():
        print(f"{read:38} {before[read]:12.1f} {ms:9.1f} {before[read] / ms:7.1f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "review_queue",
                    "items": n,
                    "open_items": open_items,
                    "rounds": ROUNDS,
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "before_ms": before,
                    "now_ms": now,
                    "speedup": {read: before[read] / now[read] for read in now},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
