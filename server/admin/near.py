"""Near duplicates of an item: other images whose PDQ hash is within the lookup's distance.

A near match is a hint (a re-encoded or resized copy, or a different image that happens to
hash close), shown with its distance and its own served label, never taken as this item's
verdict. The search uses the process's PDQ index, the one `/v1/lookup` answers from.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.context import settings_of
from server.db.models import AnalysisRow, ReviewDecision, ReviewItem
from server.lookup.live_index import MIN_PDQ_QUALITY, LivePdqIndex

MAX_NEAR = 10
DEFAULT_MAX_DISTANCE = 31


async def _served(session: AsyncSession, shas: list[str]) -> dict[str, dict[str, Any]]:
    """The label each image is served with now: its latest decision, else its latest analysis."""
    served: dict[str, dict[str, Any]] = {
        sha: {"label": None, "decided_by": None, "status": None} for sha in shas
    }
    analyses = await session.execute(
        select(AnalysisRow.sha256, AnalysisRow.label, AnalysisRow.decided_by)
        .where(AnalysisRow.sha256.in_(shas))
        .order_by(AnalysisRow.created_at, AnalysisRow.id)
    )
    for sha, label, decided_by in analyses:  # the last row of each image wins: the newest
        served[sha].update(label=label, decided_by=decided_by)
    decisions = await session.execute(
        select(ReviewDecision.sha256, ReviewDecision.label)
        .where(ReviewDecision.sha256.in_(shas))
        .order_by(ReviewDecision.created_at, ReviewDecision.id)
    )
    for sha, label in decisions:
        served[sha].update(label=label, decided_by="review")
    items = await session.execute(
        select(ReviewItem.sha256, ReviewItem.status).where(ReviewItem.sha256.in_(shas))
    )
    for sha, status in items:
        served[sha]["status"] = status
    return served


async def near_duplicates(
    app: Litestar, session: AsyncSession, item: dict[str, Any], limit: int = MAX_NEAR
) -> list[dict[str, Any]]:
    """Other known images within the PDQ distance of this one, closest first, with labels."""
    image = item.get("image") or {}
    pdq = image.get("pdq")
    index = app.state.get("pdq_index")
    if not pdq or not isinstance(index, LivePdqIndex):
        return []
    if (image.get("pdq_quality") or 0) < MIN_PDQ_QUALITY:
        return []  # a flat image's hash matches other flat images, not copies of it
    settings = settings_of(app)
    max_distance = settings.pdq_max_distance if settings else DEFAULT_MAX_DISTANCE
    matches = await index.search([pdq], max_distance=max_distance, per_query=limit + 1)
    others = [m for m in matches if m.sha256 != item["sha256"]][:limit]
    if not others:
        return []
    served = await _served(session, [m.sha256 for m in others])
    return [{"sha256": m.sha256, "distance": m.distance, **served[m.sha256]} for m in others]
