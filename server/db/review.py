"""Review state the public API writes: flagging images for human review, and the label
each review item serves (`review_items.served_label`), which the queue is filtered by."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.inserts import insert_ignoring_duplicates
from server.db.models import AnalysisRow, ReviewDecision, ReviewItem
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
            .values(
                sha256=sha256,
                reasons=wanted,
                status="open",
                served_label=served_label_of(sha256),
                created_at=now,
                updated_at=now,
            )
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


def served_label_of(sha256: str) -> Any:
    """The label an image is served with now, as a scalar subquery: its latest review
    decision's, else its latest analysis's (None: neither exists)."""
    decided = (
        select(ReviewDecision.label)
        .where(ReviewDecision.sha256 == sha256)
        .order_by(ReviewDecision.created_at.desc(), ReviewDecision.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    analysed = (
        select(AnalysisRow.label)
        .where(AnalysisRow.sha256 == sha256)
        .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(decided, analysed)


async def refresh_served_label(session: AsyncSession, sha256: str) -> None:
    """Set the image's review item (if it has one) to the label it is served with now, after
    a new analysis or decision in the caller's transaction.

    On PostgreSQL the item's row is locked first and the label read in a statement of its
    own, which sees what other transactions committed while this one waited for the lock:
    of two writers on one image, the later sets the label from both writes.
    """
    held = await session.scalar(
        select(ReviewItem.sha256).where(ReviewItem.sha256 == sha256).with_for_update()
    )
    if held is None:
        return
    await session.execute(
        update(ReviewItem)
        .where(ReviewItem.sha256 == sha256)
        .values(served_label=served_label_of(sha256))
        .execution_options(synchronize_session=False)
    )
