"""One item under review: everything a reviewer needs to see, and recording a decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.audit import record_audit
from server.admin.principal import Principal
from server.db.analyses import IMAGE_FACTS
from server.db.models import AnalysisRow, ApiToken, Image, Report, ReviewDecision, ReviewItem
from server.timefmt import iso_z, utcnow

DECISION_LABELS = ("fake", "real")
MAX_NOTE_CHARS = 2000


class ItemNotFoundError(LookupError):
    """The server has never seen an image with this SHA-256."""


class DecisionConflictError(Exception):
    """Someone decided the item after the reviewer looked at it; nothing was recorded.

    ``latest`` is the decision that came in meanwhile (as in the item's history), or None
    when the reviewer expected a decision that is no longer the latest one.
    """

    def __init__(self, expected_id: int, latest: dict[str, Any] | None) -> None:
        who = f" by {latest['reviewer']}" if latest else ""
        label = f" as {latest['label']}" if latest else ""
        super().__init__(
            f"this item was decided{label}{who} after you looked at it "
            f"(expected decision {expected_id or 'none'}); nothing was recorded"
        )
        self.expected_id = expected_id
        self.latest = latest


@dataclass(frozen=True)
class RecordedDecision:
    id: int
    sha256: str
    label: str
    note: str | None
    previous_label: str | None
    decided_at: str | None
    reviewer: str


def image_to_dict(image: Image) -> dict[str, Any]:
    facts = {name: getattr(image, name) for name in IMAGE_FACTS}
    return {**facts, "first_seen_at": iso_z(image.first_seen_at)}


def analysis_to_dict(row: AnalysisRow) -> dict[str, Any]:
    """The stored analysis as the core produced it (before any review override)."""
    model = row.model or None
    return {
        "id": row.id,
        "label": row.label,
        "p_fake": row.p_fake,
        "decided_by": row.decided_by,
        "mode": row.mode,
        "evidence": list(row.evidence or []),
        "explanation": row.explanation,
        "model": model,
        "untrained": bool(model and model.get("untrained")),
        "model_key": row.model_key,
        "prompt_version": row.prompt_version,
        "flags": list(row.flags or []),
        "created_at": iso_z(row.created_at),
    }


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "reason": report.reason,
        "suggested_label": report.suggested_label,
        "note": report.note,
        "created_at": iso_z(report.created_at),
    }


def _reviewer_name(token: ApiToken | None, token_id: int | None) -> str:
    if token is not None:
        return token.name
    return "bootstrap admin" if token_id is None else f"token #{token_id}"


async def _decision_history(session: AsyncSession, sha256: str) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(ReviewDecision, ApiToken)
            .outerjoin(ApiToken, ApiToken.id == ReviewDecision.token_id)
            .where(ReviewDecision.sha256 == sha256)
            .order_by(ReviewDecision.created_at, ReviewDecision.id)
        )
    ).all()
    return [
        {
            "id": decision.id,
            "label": decision.label,
            "note": decision.note,
            "reviewer": _reviewer_name(token, decision.token_id),
            "token_id": decision.token_id,
            "created_at": iso_z(decision.created_at),
        }
        for decision, token in rows
    ]


async def load_item(
    session: AsyncSession,
    sha256: str,
    *,
    max_reports: int | None = None,
    reports_before: int | None = None,
) -> dict[str, Any]:
    """Image facts, every analysis (newest first), the reports and the decision history.

    ``max_reports`` keeps only the newest reports (oldest first still), those older than the
    report id ``reports_before`` when given; ``reports_next_before`` is then the cursor to the
    older ones (None when there are none) and ``reports_total`` always counts them all.
    Anyone may file reports, so one image can gather thousands: unbounded, an item's answer
    could grow to gigabytes. Reports are ordered by id, the order they were stored in.
    """
    image = await session.get(Image, sha256)
    item = await session.get(ReviewItem, sha256)
    if image is None and item is None:
        raise ItemNotFoundError(sha256)
    analyses = (
        await session.scalars(
            select(AnalysisRow)
            .where(AnalysisRow.sha256 == sha256)
            .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
        )
    ).all()
    report_query = select(Report).where(Report.sha256 == sha256)
    if reports_before is not None:
        report_query = report_query.where(Report.id < reports_before)
    next_before: int | None = None
    if max_reports is None:
        reports = list((await session.scalars(report_query.order_by(Report.id))).all())
    else:
        newest = report_query.order_by(Report.id.desc()).limit(max_reports + 1)
        reports = list((await session.scalars(newest)).all())
        if len(reports) > max_reports:  # one more than asked for: older ones remain
            reports = reports[:max_reports]
            next_before = reports[-1].id if reports else None
        reports.reverse()
    if max_reports is None and reports_before is None:
        reports_total = len(reports)
    else:
        reports_total = (
            await session.scalar(
                select(func.count()).select_from(Report).where(Report.sha256 == sha256)
            )
            or 0
        )
    decisions = await _decision_history(session, sha256)
    latest = analyses[0] if analyses else None
    final = decisions[-1] if decisions else None
    served = {
        "label": final["label"] if final else (latest.label if latest else None),
        "decided_by": "review" if final else (latest.decided_by if latest else None),
        "p_fake": latest.p_fake if latest else None,
    }
    return {
        "sha256": sha256,
        "status": item.status if item else "not_flagged",
        "reasons": list(item.reasons or []) if item else [],
        "flagged_at": iso_z(item.created_at) if item else None,
        "served": served,
        "image": image_to_dict(image) if image else None,
        "analysis": analysis_to_dict(latest) if latest else None,
        "analyses": [analysis_to_dict(row) for row in analyses],
        "reports": [report_to_dict(report) for report in reports],
        "reports_total": reports_total,
        "reports_next_before": next_before,
        "decisions": decisions,
        "review": (
            {
                "label": final["label"],
                "note": final["note"],
                "decided_at": final["created_at"],
                "reviewer": final["reviewer"],
            }
            if final
            else None
        ),
    }


async def record_decision(
    session: AsyncSession,
    sha256: str,
    *,
    label: str,
    note: str | None,
    principal: Principal,
    expected_decision_id: int | None = None,
) -> RecordedDecision:
    """Append a decision (history is kept), close the item, audit it; the caller commits.

    ``expected_decision_id`` is the id of the latest decision the reviewer saw (0: none).
    When given and another decision is the latest by now, DecisionConflictError is raised
    and nothing is written: two reviewers on one item never silently overwrite each other.
    """
    if label not in DECISION_LABELS:
        raise ValueError(f"label must be one of {', '.join(DECISION_LABELS)}")
    # The row lock serialises decisions on one image across processes (PostgreSQL), so the
    # conflict check, the previous label and the review item's creation see every earlier
    # decision. SQLite serialises all writers already.
    image = await session.get(Image, sha256, with_for_update=True)
    if image is None:
        raise ItemNotFoundError(sha256)
    note = (note or "").strip()[:MAX_NOTE_CHARS] or None
    previous = (
        await session.execute(
            select(ReviewDecision.id, ReviewDecision.label)
            .where(ReviewDecision.sha256 == sha256)
            .order_by(ReviewDecision.created_at.desc(), ReviewDecision.id.desc())
            .limit(1)
        )
    ).first()
    previous_id, previous_label = (previous[0], previous[1]) if previous else (0, None)
    if expected_decision_id is not None and expected_decision_id != previous_id:
        history = await _decision_history(session, sha256)
        raise DecisionConflictError(expected_decision_id, history[-1] if history else None)
    now = utcnow()
    item = await session.get(ReviewItem, sha256)
    if item is None:
        # A reviewer may decide an image nobody flagged; it then appears among decided items.
        item = ReviewItem(
            sha256=sha256, reasons=[], status="decided", created_at=now, updated_at=now
        )
        session.add(item)
    item.status = "decided"
    item.served_label = label  # the latest decision's: the queue is filtered by it
    item.updated_at = now
    decision = ReviewDecision(
        sha256=sha256, label=label, note=note, token_id=principal.token_id, created_at=now
    )
    session.add(decision)
    await session.flush()
    record_audit(
        session,
        actor=principal.actor,
        action="review.revise" if previous_label is not None else "review.decide",
        sha256=sha256,
        details={
            "label": label,
            "previous_label": previous_label,
            "note": note,
            "decision_id": decision.id,
            "role": principal.role.value,
        },
    )
    return RecordedDecision(
        id=decision.id,
        sha256=sha256,
        label=label,
        note=note,
        previous_label=previous_label,
        decided_at=iso_z(now),
        reviewer=principal.name,
    )
