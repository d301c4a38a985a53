"""Stored analyses: write one atomically, read them back in the API's JSON shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.admin.principal import BOOTSTRAP_ADMIN_NAME
from server.db.inserts import insert_ignoring_duplicates
from server.db.models import AnalysisRow, ApiToken, Image, ReviewDecision
from server.db.review import flag_for_review, refresh_served_label
from server.timefmt import iso_z, utcnow

PROVENANCE_ONLY_KEY = "provenance-only"
# The image facts the core reports, stored once per image and served with every analysis.
IMAGE_FACTS = ("format", "width", "height", "bytes", "pdq", "pdq_quality", "n_frames")

_COLUMNS = (
    AnalysisRow.id,
    AnalysisRow.sha256,
    AnalysisRow.label,
    AnalysisRow.p_fake,
    AnalysisRow.decided_by,
    AnalysisRow.mode,
    AnalysisRow.evidence,
    AnalysisRow.explanation,
    AnalysisRow.model,
    AnalysisRow.prompt_version,
    AnalysisRow.flags,
    AnalysisRow.timings,
    AnalysisRow.created_at,
    *(getattr(Image, name) for name in IMAGE_FACTS),
)


@dataclass(frozen=True)
class Identity:
    """What a cached result is keyed by, besides the image: the model and the prompts."""

    model_key: str
    prompt_version: str


def _under(identity: Identity) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The WHERE conditions that pick the analyses made under `identity`."""
    return (
        AnalysisRow.model_key == identity.model_key,
        AnalysisRow.prompt_version == identity.prompt_version,
    )


def render(row: Row[Any]) -> dict[str, Any]:
    """One analysis as served. A review decision overrides the label and says so."""
    model = row.model
    review = None
    if row.review_label is not None:
        review = {
            "label": row.review_label,
            "note": row.review_note,
            "decided_at": iso_z(row.decided_at),
            # Decisions without a token are the bootstrap admin's (FAKESCOPE_ADMIN_TOKEN).
            "reviewer": BOOTSTRAP_ADMIN_NAME if row.reviewer is None else row.reviewer,
        }
    return {
        "sha256": row.sha256,
        "label": row.label if review is None else review["label"],
        "p_fake": row.p_fake,
        "decided_by": row.decided_by if review is None else "review",
        "mode": row.mode,
        "evidence": row.evidence,
        "explanation": row.explanation,
        "model": model,
        "untrained": bool(model and model.get("untrained")),
        "image": {name: getattr(row, name) for name in IMAGE_FACTS},
        "prompt_version": row.prompt_version,
        "flags": row.flags,
        "created_at": iso_z(row.created_at),
        "timings_ms": row.timings,
        "review": review,
    }


def served_query(shas: Sequence[str], identity: Identity) -> Select[Any]:
    """Analyses under `identity` with their image facts and the latest review decision."""
    latest_decision = (
        select(ReviewDecision.id)
        .where(ReviewDecision.sha256 == AnalysisRow.sha256)
        .order_by(ReviewDecision.created_at.desc(), ReviewDecision.id.desc())
        .limit(1)
        .correlate(AnalysisRow)
        .scalar_subquery()
    )
    return (
        select(
            *_COLUMNS,
            ReviewDecision.label.label("review_label"),
            ReviewDecision.note.label("review_note"),
            ReviewDecision.created_at.label("decided_at"),
            ApiToken.name.label("reviewer"),
        )
        .join(Image, Image.sha256 == AnalysisRow.sha256)
        .outerjoin(ReviewDecision, ReviewDecision.id == latest_decision)
        .outerjoin(ApiToken, ApiToken.id == ReviewDecision.token_id)
        .where(
            AnalysisRow.sha256.in_(list(shas)),
            *_under(identity),
        )
    )


async def fetch_served(
    conn: AsyncConnection | AsyncSession, shas: Sequence[str], identity: Identity
) -> dict[str, dict[str, Any]]:
    """Served analyses (with review overrides) for those of `shas` that are cached (one query)."""
    if not shas:
        return {}
    rows = (await conn.execute(served_query(shas, identity))).all()
    return {row.sha256: render(row) for row in rows}


async def store_analysis(
    session: AsyncSession, analysis: dict[str, Any], identity: Identity
) -> None:
    """Insert the image (if new), the analysis and its review flags, in the caller's transaction.

    Core statements, not the ORM unit of work: this runs for every new analysis.
    """
    sha = analysis["sha256"]
    facts = {"n_frames": 1, **analysis["image"]}  # one frame unless the core says otherwise
    now = utcnow()
    inserted = await session.execute(
        insert_ignoring_duplicates(session, Image).values(
            sha256=sha,
            **{name: facts[name] for name in IMAGE_FACTS},
            first_seen_at=now,
        )
    )
    known_image = inserted.rowcount == 0  # type: ignore[attr-defined]
    await session.execute(
        insert(AnalysisRow).values(
            sha256=sha,
            model_key=identity.model_key,
            prompt_version=identity.prompt_version,
            label=analysis["label"],
            p_fake=analysis["p_fake"],
            decided_by=analysis["decided_by"],
            mode=analysis["mode"],
            evidence=analysis["evidence"],
            explanation=analysis["explanation"],
            model=analysis["model"],
            flags=analysis["flags"],
            timings=analysis["timings_ms"],
            created_at=now,
        )
    )
    await flag_for_review(session, sha, analysis["flags"])
    if known_image:
        # An item flagged before (by a report, or an earlier model) now serves this label,
        # unless a reviewer decided it. A new image has no item but the one just made.
        await refresh_served_label(session, sha)


async def add_explanation(
    session: AsyncSession, sha256: str, identity: Identity, explanation: str, explain_ms: float
) -> None:
    """Add an explanation, and the time it took (`timings_ms.explain`), to a stored verdict
    that has none. The first explanation stored is kept: a concurrent one (another process)
    finds the row explained and changes nothing."""
    unexplained = (
        AnalysisRow.sha256 == sha256,
        *_under(identity),
        AnalysisRow.explanation.is_(None),
    )
    timings = await session.scalar(select(AnalysisRow.timings).where(*unexplained))
    if timings is None:
        return
    await session.execute(
        update(AnalysisRow)
        .where(*unexplained)
        .values(explanation=explanation, timings={**timings, "explain": explain_ms})
    )
