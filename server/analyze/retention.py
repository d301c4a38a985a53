"""How long analysed image bytes are kept (``FAKESCOPE_IMAGE_RETENTION_DAYS``).

The server keeps the bytes of analysed images only so that ``/v1/ask`` can show the
model the same pixels later and reviewers can see a flagged image. Users' images are not
kept longer than that needs: a background task deletes bytes older than the retention
period, once at startup and then periodically. Images with an open review item are kept
until a reviewer has decided. Verdicts, evidence and answers stay in the database;
asking about a purged image answers 409 ``image-not-stored`` (analyse it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import select

from server.analyze.image_store import ImageStore
from server.background import cancel_and_wait
from server.db.database import Database
from server.db.models import ReviewItem

log = logging.getLogger("fakescope.server")
DAY_S = 86_400.0
MAX_INTERVAL_S = 3_600.0


class ImageRetention:
    """Purges the image store on a schedule; ``start`` / ``stop`` with the app."""

    def __init__(
        self,
        store: ImageStore,
        db: Database,
        retention_days: float,
        on_purged: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.on_purged = on_purged
        self.retention_s = retention_days * DAY_S
        # Often enough that nothing outlives the period by more than a tenth of it.
        self.interval_s = min(MAX_INTERVAL_S, max(1.0, self.retention_s / 10))
        self._task: asyncio.Task[None] | None = None

    async def purge_once(self) -> int:
        """Delete what is past the period now (images under open review excepted)."""
        async with self.db.read() as session:
            rows = await session.execute(
                select(ReviewItem.sha256).where(ReviewItem.status == "open")
            )
            under_review = {str(sha) for sha in rows.scalars()}
        deleted = await self.store.purge(self.retention_s, keep=under_review)
        if self.on_purged is not None:
            self.on_purged(deleted)
        if deleted:
            log.info("image retention: deleted %d stored images", deleted)
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.purge_once()
            except Exception:  # a failed pass (database busy, disk error) retries later
                log.exception("image retention pass failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="image-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
