"""Review state the public API writes: flagging images for human review."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.inserts import insert_ignoring_duplicates
from server.db.models import ReviewItem
from server.timefmt import utcnow

USER_REPORT = "user_report"


async def flag_for_review(
    session: AsyncSession, sha256: str, reasons: Iterable[str], *, reopen: bool = False
) -> None:
    """Add reasons to the image's review item (creating it). New reasons, or `reopen`, reopen it."""
    wanted = list(dict.fromkeys(reasons))
    if not wanted:
        return
    now = utcnow()
    item = await session.get(ReviewItem, sha256, with_for_update=True)
    if item is None:
        # Two requests may both find no item (two first reports, or a report racing a
        # re-analysis): the loser's insert does nothing and it merges into the winner's row.
        created = await session.execute(
            insert_ignoring_duplicates(session, ReviewItem)
            .values(sha256=sha256, reasons=wanted, status="open", created_at=now, updated_at=now)
            .returning(ReviewItem.sha256)
        )
        if created.first() is not None:
            return
        item = await session.get(ReviewItem, sha256, with_for_update=True, populate_existing=True)
        assert item is not None  # the conflicting row is committed: nothing deletes items
    merged = list(dict.fromkeys([*item.reasons, *wanted]))
    if merged != list(item.reasons) or reopen:
        if item.status != "open":
            # Flagged again after a decision: it queues behind what already waits (oldest
            # flag first), not ahead of it with its first flag's time. The earlier reports
            # and decisions keep that history.
            item.created_at = now
        item.reasons = merged
        item.status = "open"
        item.updated_at = now
