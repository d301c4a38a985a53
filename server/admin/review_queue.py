"""Reading the review queue: filtered, oldest first, keyset-paginated by SHA-256.

Each page is read from an index of `review_items` (migration 0007): by status and flag
time, by status, served label and flag time, or by flag time alone. The label served now
is the item's `served_label` column, kept current by every analysis and decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.db.models import AnalysisRow, ReviewDecision, ReviewItem
from server.timefmt import as_utc, iso_z, utcnow

REASONS: dict[str, str] = {
    "user_report": "User report",
    "uncertain": "Uncertain verdict",
    "conflict_camera_vs_model": "Camera evidence vs model",
    "conflict_provenance_vs_model": "Provenance vs model",
    "c2pa_invalid": "C2PA manifest invalid",
    "model_score_not_finite": "Model score not a number",
}
STATUSES = ("open", "decided")
LABELS = ("fake", "real", "uncertain")
MAX_PAGE = 200


@dataclass(frozen=True)
class QueueFilters:
    """What the queue is narrowed to; every field is optional except the status."""

    status: str | None = "open"  # None: any status
    reason: str | None = None
    label: str | None = None  # the label served now: latest decision, else latest analysis
    min_age: timedelta | None = None  # flagged at least this long ago
    max_age: timedelta | None = None  # flagged at most this long ago


class UnknownCursorError(LookupError):
    """The cursor names no review item (it must be the last SHA-256 of a page)."""


@dataclass(frozen=True)
class QueueEntry:
    sha256: str
    reasons: list[str]
    status: str
    label: str | None
    decided_by: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "reasons": self.reasons,
            "status": self.status,
            "label": self.label,
            "decided_by": self.decided_by,
            "created_at": iso_z(self.created_at),
            "updated_at": iso_z(self.updated_at),
        }


@dataclass(frozen=True)
class QueuePage:
    entries: list[QueueEntry]
    next_cursor: str | None
    total: int
    filters: QueueFilters = field(default_factory=QueueFilters)
    offset: int = 0  # how many matching items come before this page (when asked for)


def _latest_decision_label() -> Any:
    return (
        select(ReviewDecision.label)
        .where(ReviewDecision.sha256 == ReviewItem.sha256)
        .order_by(ReviewDecision.created_at.desc(), ReviewDecision.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _latest_analysis(column: Any) -> Any:
    return (
        select(column)
        .where(AnalysisRow.sha256 == ReviewItem.sha256)
        .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _conditions(filters: QueueFilters, served_label: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    now = utcnow()
    if filters.status:
        conditions.append(ReviewItem.status == filters.status)
    if filters.reason:
        # JSON containment differs between SQLite and PostgreSQL; the JSON text of a list of
        # plain identifiers contains '"reason"' exactly when the list holds that reason.
        # "_" is a LIKE wildcard: escape it, or "user_report" would also match "userXreport".
        literal = filters.reason.replace("\\", "\\\\").replace("_", "\\_")
        conditions.append(cast(ReviewItem.reasons, String).like(f'%"{literal}"%', escape="\\"))
    if filters.label:
        conditions.append(served_label == filters.label)
    if filters.min_age is not None:
        conditions.append(ReviewItem.created_at <= now - filters.min_age)
    if filters.max_age is not None:
        conditions.append(ReviewItem.created_at >= now - filters.max_age)
    return conditions


async def read_queue(
    session: AsyncSession,
    filters: QueueFilters,
    *,
    limit: int = 50,
    cursor: str | None = None,
    count_before: bool = False,
) -> QueuePage:
    """One page, oldest flag first; ``cursor`` is the last SHA-256 of the previous page.

    An unknown cursor raises UnknownCursorError (rather than answering an empty page, which
    would read as the end of the queue). ``count_before`` also counts the matching items
    before the page (``QueuePage.offset``), for "items 101-200 of 299".
    """
    decided_label = _latest_decision_label()
    served_label = ReviewItem.served_label
    conditions = _conditions(filters, served_label)
    total = await session.scalar(select(func.count()).select_from(ReviewItem).where(*conditions))
    query = (
        select(ReviewItem, served_label, decided_label, _latest_analysis(AnalysisRow.decided_by))
        .where(*conditions)
        .order_by(ReviewItem.created_at, ReviewItem.sha256)
        .limit(limit + 1)
    )
    offset = 0
    if cursor:
        if (
            await session.scalar(select(ReviewItem.sha256).where(ReviewItem.sha256 == cursor))
            is None
        ):
            raise UnknownCursorError(cursor)
        after = select(ReviewItem.created_at).where(ReviewItem.sha256 == cursor).scalar_subquery()
        query = query.where(
            or_(
                ReviewItem.created_at > after,
                and_(ReviewItem.created_at == after, ReviewItem.sha256 > cursor),
            )
        )
        if count_before:
            before = or_(
                ReviewItem.created_at < after,
                and_(ReviewItem.created_at == after, ReviewItem.sha256 <= cursor),
            )
            offset = (
                await session.scalar(
                    select(func.count()).select_from(ReviewItem).where(*conditions, before)
                )
                or 0
            )
    rows = (await session.execute(query)).all()
    entries = [
        QueueEntry(
            sha256=item.sha256,
            reasons=list(item.reasons or []),
            status=item.status,
            label=label,
            decided_by="review" if decided is not None else analysis_decided_by,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )
        for item, label, decided, analysis_decided_by in rows[:limit]
    ]
    next_cursor = entries[-1].sha256 if len(rows) > limit and entries else None
    return QueuePage(
        entries=entries,
        next_cursor=next_cursor,
        total=total or 0,
        filters=filters,
        offset=offset,
    )


async def page_before(
    session: AsyncSession, filters: QueueFilters, first: str, *, limit: int
) -> tuple[str | None, str | None]:
    """The page of ``limit`` matching items that ends just before the item ``first``.

    Returns its last item (None when nothing matches before ``first``) and the cursor that
    opens it (None: it is the first page), so the review page can step back a page.
    """
    served_label = ReviewItem.served_label
    anchor = select(ReviewItem.created_at).where(ReviewItem.sha256 == first).scalar_subquery()
    before = or_(
        ReviewItem.created_at < anchor,
        and_(ReviewItem.created_at == anchor, ReviewItem.sha256 < first),
    )
    rows = (
        await session.scalars(
            select(ReviewItem.sha256)
            .where(*_conditions(filters, served_label), before)
            .order_by(ReviewItem.created_at.desc(), ReviewItem.sha256.desc())
            .limit(limit + 1)
        )
    ).all()
    if not rows:
        return None, None
    return rows[0], rows[limit] if len(rows) > limit else None


@dataclass(frozen=True)
class QueueSummary:
    """How many items are in each status, and how long the oldest open one has waited."""

    counts: dict[str, int]
    oldest_open_s: float | None


async def queue_summary(conn: AsyncConnection) -> QueueSummary:
    """One grouped query (for /metrics: alert on a growing or stale queue)."""
    statement = select(ReviewItem.status, func.count(), func.min(ReviewItem.created_at)).group_by(
        ReviewItem.status
    )
    rows = (await conn.execute(statement)).all()
    found = {str(status): (int(count), oldest) for status, count, oldest in rows}
    oldest = found.get("open", (0, None))[1]
    return QueueSummary(
        counts={status: found.get(status, (0, None))[0] for status in STATUSES},
        oldest_open_s=(utcnow() - as_utc(oldest)).total_seconds() if oldest else None,
    )
