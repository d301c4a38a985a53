"""Reviewed items as JSON Lines: one line per image, the final human label with its evidence.

Each line is a self-contained training example: the reviewer's label is the target; the
explanation and evidence are what a model saw or said about the image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.review_items import analysis_to_dict, image_to_dict
from server.db.models import AnalysisRow, Image, ReviewDecision, ReviewItem
from server.timefmt import iso_z

EXPORT_MEDIA_TYPE = "application/x-ndjson"
_CHUNK = 500


async def _latest_decisions(session: AsyncSession, after: str, limit: int) -> list[ReviewDecision]:
    newest = (
        select(ReviewDecision.sha256, func.max(ReviewDecision.id).label("id"))
        .where(ReviewDecision.sha256 > after)
        .group_by(ReviewDecision.sha256)
        .order_by(ReviewDecision.sha256)
        .limit(limit)
        .subquery()
    )
    query = select(ReviewDecision).join(newest, ReviewDecision.id == newest.c.id)
    return list((await session.scalars(query.order_by(ReviewDecision.sha256))).all())


async def _export_record(session: AsyncSession, decision: ReviewDecision) -> dict[str, Any]:
    image = await session.get(Image, decision.sha256)
    item = await session.get(ReviewItem, decision.sha256)
    analysis = await session.scalar(
        select(AnalysisRow)
        .where(AnalysisRow.sha256 == decision.sha256)
        .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
        .limit(1)
    )
    revisions = await session.scalar(
        select(func.count()).where(ReviewDecision.sha256 == decision.sha256)
    )
    stored = analysis_to_dict(analysis) if analysis else None
    return {
        "sha256": decision.sha256,
        "label": decision.label,
        "note": decision.note,
        "decided_at": iso_z(decision.created_at),
        "revisions": revisions or 1,
        "explanation": stored["explanation"] if stored else None,
        "evidence": stored["evidence"] if stored else [],
        "model_label": stored["label"] if stored else None,
        "p_fake": stored["p_fake"] if stored else None,
        "model": stored["model"] if stored else None,
        "prompt_version": stored["prompt_version"] if stored else None,
        "reasons": list(item.reasons or []) if item else [],
        "image": image_to_dict(image) if image else None,
    }


async def export_reviewed(session: AsyncSession) -> list[dict[str, Any]]:
    """Every reviewed image with its latest decision, ordered by SHA-256."""
    records: list[dict[str, Any]] = []
    after = ""
    while True:
        decisions = await _latest_decisions(session, after, _CHUNK)
        for decision in decisions:
            records.append(await _export_record(session, decision))
        if len(decisions) < _CHUNK:
            return records
        after = decisions[-1].sha256


def to_jsonl(records: list[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
