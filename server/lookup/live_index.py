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
refresh scanned the table). The first load of a million images takes some 8 s, once per
process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select

from server.db.database import Database
from server.db.models import Image
from server.lookup.pdq_index import (
    DEFAULT_MERGE_THRESHOLD,
    NearMatch,
    Parsed,
    PdqIndex,
    parse_rows,
)
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


class LivePdqIndex:
    """`PdqIndex` over the `images` table, refreshed from it before each search.

    Concurrent lookups share one index: an asyncio lock lets one refresh run at a time, and
    a lookup that waited for it skips its own when a refresh that began after the lookup
    arrived has completed meanwhile (that one saw every row committed before the lookup).
    Searches read a snapshot, so a search in a worker thread is safe while the next refresh
    adds rows.
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
        """Every (sha256, pdq), streamed in partitions parsed off the event loop, then indexed
        in one go. The newest stamp comes first, from an aggregate: a row stamped later is
        read again by the next refresh (it is within the margin of that stamp)."""
        async with self.db.connect() as conn:
            newest = (await conn.execute(select(func.max(Image.first_seen_at)))).scalar()
            result = await conn.stream(
                select(Image.sha256, Image.pdq)
                .where(Image.pdq_quality >= MIN_PDQ_QUALITY)
                .execution_options(yield_per=LOAD_PARTITION)
            )
            parts = [
                await asyncio.to_thread(parse_rows, partition)
                async for partition in result.partitions(LOAD_PARTITION)
            ]
        self._note_newest(newest)
        added = await asyncio.to_thread(self._add_all, parts)
        log.info("pdq index: loaded %d images (%d bytes)", len(self.index), self.index.nbytes)
        return added

    def _add_all(self, parts: list[Parsed]) -> int:
        if not parts:
            return 0
        shas = np.concatenate([shas for shas, _ in parts])
        words = np.concatenate([words for _, words in parts])
        added = self.index.add_parsed((shas, words))
        self.index.merge()
        return added

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
