"""Reviewed items as JSON Lines: one line per image, the final human label with its evidence.

Each line is a self-contained training example: the reviewer's label is the target; the
explanation and evidence are what a model saw or said about the image.

The export streams: it reads the reviewed images in chunks of ``_CHUNK`` (keyset by
SHA-256, each chunk in its own short read session, a fixed number of queries per chunk) and
writes each chunk's lines as soon as they are ready, so memory and time to first byte do
not grow with the number of reviewed images.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.review_items import analysis_to_dict, image_to_dict
from server.db.database import Database
from server.db.models import AnalysisRow, Image, ReviewDecision, ReviewItem
from server.timefmt import iso_z

EXPORT_MEDIA_TYPE = "application/x-ndjson"
_CHUNK = 500


@dataclass(frozen=True)
class ExportFilters:
    """Which reviewed images to export, by their latest decision."""

    label: str | None = None  # "fake" or "real"
    since: datetime | None = None  # latest decision at or after
    until: datetime | None = None  # latest decision before


async def _latest_decision_ids(
    session: AsyncSession, after: str, limit: int
) -> list[tuple[str, int]]:
    """(sha256, id of its latest decision) for the next ``limit`` reviewed images."""
    newest = (
        select(ReviewDecision.sha256, func.max(ReviewDecision.id).label("id"))
        .where(ReviewDecision.sha256 > after)
        .group_by(ReviewDecision.sha256)
        .order_by(ReviewDecision.sha256)
        .limit(limit)
    )
    return [(sha, int(decision_id)) for sha, decision_id in (await session.execute(newest)).all()]


async def _records(
    session: AsyncSession, decision_ids: list[int], filters: ExportFilters
) -> list[dict[str, Any]]:
    """The export lines of these decisions (those the filters keep), ordered by SHA-256."""
    query = select(ReviewDecision).where(ReviewDecision.id.in_(decision_ids))
    if filters.label:
        query = query.where(ReviewDecision.label == filters.label)
    if filters.since is not None:
        query = query.where(ReviewDecision.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(ReviewDecision.created_at < filters.until)
    decisions = list((await session.scalars(query.order_by(ReviewDecision.sha256))).all())
    if not decisions:
        return []
    shas = [d.sha256 for d in decisions]
    images = {
        row.sha256: row
        for row in await session.scalars(select(Image).where(Image.sha256.in_(shas)))
    }
    items = {
        row.sha256: row
        for row in await session.scalars(select(ReviewItem).where(ReviewItem.sha256.in_(shas)))
    }
    revisions = dict(
        (
            await session.execute(
                select(ReviewDecision.sha256, func.count())
                .where(ReviewDecision.sha256.in_(shas))
                .group_by(ReviewDecision.sha256)
            )
        ).all()
    )
    latest: dict[str, AnalysisRow] = {}
    analyses = await session.scalars(
        select(AnalysisRow)
        .where(AnalysisRow.sha256.in_(shas))
        .order_by(AnalysisRow.created_at, AnalysisRow.id)
    )
    for row in analyses:  # the last row of each image wins: the newest, as the item view
        latest[row.sha256] = row
    return [
        _record(d, images.get(d.sha256), items.get(d.sha256), latest.get(d.sha256), revisions)
        for d in decisions
    ]


def _record(
    decision: ReviewDecision,
    image: Image | None,
    item: ReviewItem | None,
    analysis: AnalysisRow | None,
    revisions: dict[str, int],
) -> dict[str, Any]:
    stored = analysis_to_dict(analysis) if analysis else None
    return {
        "sha256": decision.sha256,
        "label": decision.label,
        "note": decision.note,
        "decided_at": iso_z(decision.created_at),
        "revisions": revisions.get(decision.sha256) or 1,
        "explanation": stored["explanation"] if stored else None,
        "evidence": stored["evidence"] if stored else [],
        "model_label": stored["label"] if stored else None,
        "p_fake": stored["p_fake"] if stored else None,
        "model": stored["model"] if stored else None,
        "prompt_version": stored["prompt_version"] if stored else None,
        "reasons": list(item.reasons or []) if item else [],
        "image": image_to_dict(image) if image else None,
    }


async def export_chunks(
    db: Database, filters: ExportFilters | None = None, chunk: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every reviewed image with its latest decision, ordered by SHA-256, a chunk at a time."""
    filters = filters or ExportFilters()
    chunk = chunk or _CHUNK
    after = ""
    while True:
        async with db.read() as session:
            latest = await _latest_decision_ids(session, after, chunk)
            records = await _records(session, [i for _, i in latest], filters) if latest else []
        if records:
            yield records
        if len(latest) < chunk:
            return
        after = latest[-1][0]


async def export_reviewed(
    db: Database, filters: ExportFilters | None = None
) -> list[dict[str, Any]]:
    """The whole export as a list (for tests and small exports)."""
    return [record async for records in export_chunks(db, filters) for record in records]


def to_jsonl(records: list[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


async def jsonl_stream(db: Database, filters: ExportFilters | None = None) -> AsyncIterator[bytes]:
    """The export as JSON Lines, one encoded chunk of lines at a time."""
    async for records in export_chunks(db, filters):
        yield "".join(to_jsonl(records)).encode("utf-8")
