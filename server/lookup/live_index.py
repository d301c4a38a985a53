"""The PDQ index of every image in the database, held per server process, kept in step.

The first search loads every (sha256, pdq) from the `images` table; each later search first
fetches only the rows that may have arrived since. That table only grows (the service never
deletes or changes a row), so "arrived since" is a question of time: a row's
`first_seen_at` is stamped by the writing process inside its transaction, a moment before
the commit. A row can therefore become visible after rows stamped later than it (another
process, or another request here, committing later), and a plain `first_seen_at > last
seen` would miss it. So each refresh asks again for everything stamped within
`margin_s` (60 s) before the newest stamp it has seen (or before its own clock, if that is
earlier), and the index drops the rows it already holds (by sha256). That is correct as long
as a write commits within the margin of stamping its row and the writers' clocks agree to
within it; re-reading the last minute of rows costs a little per lookup, nothing else.

Migration 0002 indexes `images.first_seen_at`, so a refresh reads only the new rows: about
4 ms on PostgreSQL with a million images (110 ms when the column had no index and each
refresh scanned the table).

The first load reads every row once per process. On PostgreSQL (asyncpg) it runs as one
`COPY ... TO STDOUT`: the rows arrive as text of fixed width, hex-decoded a few megabytes
at a time in a worker thread while the rest is still arriving, with no Python object per
row; other databases stream rows through SQLAlchemy. A million images load in about a
second (3.7 s before; `benchmarks/bench_pdq.py --load`). The app starts that load in the
background at startup (`start_warm_up`), so the first lookups of a new process find the
index loaded or wait for that load, never start a second one.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.database import Database
from server.db.models import Image
from server.lookup.pdq_index import DEFAULT_MERGE_THRESHOLD, NearMatch, PdqIndex
from server.lookup.pdq_rows import Parsed, parse_records, parse_rows
from server.timefmt import as_utc, utcnow

log = logging.getLogger("fakescope.server")
DEFAULT_MARGIN_S = 60.0
# PDQ's own quality score (0-100) says how much structure the hash rests on. Flat or nearly
# blank images score low and hash alike (all zeros, for a blank one), so they would be
# reported as exact near matches of each other; PDQ's authors advise against matching
# hashes under 50. Such images are left out of the index: their verdicts are still found
# by SHA-256.
MIN_PDQ_QUALITY = 50
# Rows per fetch while loading; the most new rows, and (queries x images), handled on the
# event loop (well under a millisecond of numpy): above that, the work goes to a thread.
LOAD_PARTITION = 50_000
INLINE_ROWS = 2_000
INLINE_PAIRS = 200_000
# COPY's output is parsed in blocks of about this many bytes (130 per row: 50,000 rows).
COPY_BLOCK = 130 * LOAD_PARTITION
COPY_LINE = 130  # 64 hex digits, a tab, 64 hex digits, a newline


def indexed_rows() -> Select[str, str]:
    """The (sha256, pdq) of every image the index holds."""
    return select(Image.sha256, Image.pdq).where(Image.pdq_quality >= MIN_PDQ_QUALITY)


def parse_copy_text(block: bytes) -> Parsed:
    """COPY's text output, a line per row (sha256, a tab, pdq, a newline), → parsed rows.

    When every 130 bytes are 64 characters, a tab, 64 characters and a newline, and those
    128 characters are all hex digits (`a2b_hex` refuses anything else, whitespace too),
    every line is a well-formed row: they are parsed in one go. Otherwise the lines go one
    by one through `parse_rows`, which skips the malformed ones (as reading rows would).
    """
    if len(block) % COPY_LINE == 0:
        cells = np.frombuffer(block, dtype=np.uint8).reshape(-1, COPY_LINE)
        if (cells[:, 64] == ord("\t")).all() and (cells[:, 129] == ord("\n")).all():
            digits = np.concatenate([cells[:, :64], cells[:, 65:129]], axis=1)
            with contextlib.suppress(binascii.Error):
                return parse_records(binascii.a2b_hex(digits.data))
    lines = block.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return parse_rows([(sha, pdq) for sha, _, pdq in (line.partition("\t") for line in lines)])


async def copy_rows(conn: AsyncConnection) -> list[Parsed]:
    """Every indexed (sha256, pdq) through PostgreSQL's COPY (asyncpg's connection)."""
    literal = {"literal_binds": True}
    query = str(indexed_rows().compile(dialect=conn.dialect, compile_kwargs=literal))
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    pending = bytearray()
    parsing: list[asyncio.Future[Parsed]] = []

    def parse_pending(end: int) -> None:
        block = bytes(pending[:end])
        del pending[:end]
        parsing.append(asyncio.ensure_future(asyncio.to_thread(parse_copy_text, block)))

    async def receive(data: bytes) -> None:
        pending.extend(data)
        end = pending.rfind(b"\n") + 1 if len(pending) >= COPY_BLOCK else 0
        if end:
            parse_pending(end)

    try:
        try:
            await driver.copy_from_query(query, output=receive)
        except BaseException:
            # A COPY cut short (cancelled, say) leaves asyncpg's connection in the middle of
            # it, unusable: it must not go back to the pool.
            await conn.invalidate()
            raise
        if pending:
            parse_pending(len(pending))
        return list(await asyncio.gather(*parsing))
    finally:
        for future in parsing:  # on an error or a cancellation: nobody waits for them
            future.cancel()


async def stream_rows(conn: AsyncConnection) -> list[Parsed]:
    """Every indexed (sha256, pdq), streamed in partitions parsed off the event loop."""
    result = await conn.stream(indexed_rows().execution_options(yield_per=LOAD_PARTITION))
    return [
        await asyncio.to_thread(parse_rows, partition)
        async for partition in result.partitions(LOAD_PARTITION)
    ]


def build_index(parts: list[Parsed], merge_threshold: int = DEFAULT_MERGE_THRESHOLD) -> PdqIndex:
    """An index of the rows read in parts, merged (nothing left in its recent buffer)."""
    if not parts:
        return PdqIndex(merge_threshold)
    shas = np.concatenate([shas for shas, _ in parts])
    words = np.concatenate([words for _, words in parts])
    return PdqIndex.of((shas, words), merge_threshold)


class LivePdqIndex:
    """`PdqIndex` over the `images` table, refreshed from it before each search.

    Concurrent lookups share one index: an asyncio lock lets one refresh run at a time, and
    a lookup that waited for it skips its own when a refresh that began after the lookup
    arrived has completed meanwhile (that one saw every row committed before the lookup).
    Searches read a snapshot, so a search in a worker thread is safe while the next refresh
    adds rows. `start_warm_up` runs the first refresh (the full load) in the background: a
    search meanwhile waits for it under that lock, then reads only what arrived since.
    """

    def __init__(
        self,
        db: Database,
        *,
        margin_s: float = DEFAULT_MARGIN_S,
        merge_threshold: int = DEFAULT_MERGE_THRESHOLD,
    ) -> None:
        self.db = db
        self.margin = timedelta(seconds=margin_s)
        self.index = PdqIndex(merge_threshold)
        self._lock = asyncio.Lock()
        self._loaded = False
        self._newest: datetime | None = None  # the newest first_seen_at held
        self._since: datetime | None = None  # the next refresh reads rows stamped from here
        self._refreshed_from = -1  # when (monotonic ns) the last completed refresh began
        self._warm_up: asyncio.Task[None] | None = None
        self.full_loads = 0  # loads of the whole table begun: one per process, unless one failed

    def start_warm_up(self) -> None:
        """Begin loading the index in the background; returns at once."""
        if self._warm_up is None:
            self._warm_up = asyncio.create_task(self._warm(), name="pdq-index-warm-up")

    @property
    def warming(self) -> asyncio.Task[None] | None:
        """The warm-up task, if one was started (done once the index is loaded or it failed)."""
        return self._warm_up

    async def _warm(self) -> None:
        try:
            await self.refresh()
        except Exception as error:  # the first search loads it instead
            log.warning(
                "pdq index: the load at startup failed, the first search loads it: %r", error
            )

    async def stop_warm_up(self) -> None:
        """Cancel a warm-up still running, and wait until it has let go of its connection."""
        task = self._warm_up
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def search(
        self, queries: Sequence[str], *, max_distance: int, per_query: int = 10
    ) -> list[NearMatch]:
        """Refresh, then the near matches of `queries` (see `PdqIndex.search`)."""
        if not queries:
            return []
        await self.refresh()
        if len(queries) * len(self.index) <= INLINE_PAIRS:
            return self.index.search(queries, max_distance=max_distance, per_query=per_query)
        return await asyncio.to_thread(
            self.index.search, queries, max_distance=max_distance, per_query=per_query
        )

    async def refresh(self) -> int:
        """Bring the index up to date with the table; returns how many images were new."""
        arrived = time.monotonic_ns()
        async with self._lock:
            if self._refreshed_from > arrived:
                return 0
            began, started = time.monotonic_ns(), utcnow()
            if not self._loaded:
                added = await self._load_all()
                self._loaded = True
            else:
                added = await self._load_since()
            newest = started if self._newest is None else min(self._newest, started)
            self._since = newest - self.margin
            if self.index.pending > self.index.merge_threshold:
                await asyncio.to_thread(self.index.merge)
            self._refreshed_from = began
            return added

    async def _load_all(self) -> int:
        """Every (sha256, pdq), read in parts parsed off the event loop, then indexed in one
        go. The newest stamp comes first, from an aggregate: a row stamped later is read
        again by the next refresh (it is within the margin of that stamp)."""
        self.full_loads += 1
        started = time.perf_counter()
        async with self.db.connect() as conn:
            newest = (await conn.execute(select(func.max(Image.first_seen_at)))).scalar()
            read = copy_rows if conn.dialect.driver == "asyncpg" else stream_rows
            parts = await read(conn)
        # Built aside and swapped in: a cancelled load leaves no thread writing to the index.
        self.index = await asyncio.to_thread(build_index, parts, self.index.merge_threshold)
        self._note_newest(newest)
        log.info(
            "pdq index: loaded %d images (%d bytes) in %.2f s",
            len(self.index),
            self.index.nbytes,
            time.perf_counter() - started,
        )
        return len(self.index)

    async def _load_since(self) -> int:
        """The rows stamped at or after the watermark (mostly held already: skipped)."""
        assert self._since is not None
        query = select(Image.sha256, Image.pdq, Image.first_seen_at).where(
            Image.first_seen_at >= self._since, Image.pdq_quality >= MIN_PDQ_QUALITY
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        self._note_newest(max(seen for _, _, seen in rows))
        pairs = [(sha, pdq) for sha, pdq, _ in rows]
        if len(rows) > INLINE_ROWS:
            return await asyncio.to_thread(self.index.add, pairs)
        return self.index.add(pairs)

    def _note_newest(self, seen: datetime | None) -> None:
        if seen is not None and (self._newest is None or as_utc(seen) > self._newest):
            self._newest = as_utc(seen)
