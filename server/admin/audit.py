"""Writing and reading the audit log: who did what to which item, and when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import AuditEntry
from server.timefmt import iso_z, utcnow

MAX_PAGE = 500


def record_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    sha256: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row to the session; it is written with the caller's transaction."""
    entry = AuditEntry(
        at=utcnow(), actor=actor, action=action, sha256=sha256, details=details or {}
    )
    session.add(entry)
    return entry


# What only admins see of an entry's details: where and from which browser staff signed in,
# and the prefixes of tokens (the admin-only session and token listings show the same).
ADMIN_ONLY_DETAILS = frozenset({"client", "user_agent", "prefix"})


def audit_entry_to_dict(entry: AuditEntry, *, admin: bool = True) -> dict[str, Any]:
    """An entry as the audit API answers it; for a reviewer (``admin`` False) without the
    details in ADMIN_ONLY_DETAILS, named instead in ``withheld``."""
    details = entry.details
    withheld: list[str] = []
    if not admin and isinstance(details, dict):
        withheld = sorted(key for key in details if key in ADMIN_ONLY_DETAILS)
        details = {k: v for k, v in details.items() if k not in ADMIN_ONLY_DETAILS}
    answer: dict[str, Any] = {
        "id": entry.id,
        "at": iso_z(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "sha256": entry.sha256,
        "details": details,
    }
    if withheld:
        answer["withheld"] = withheld
    return answer


async def list_audit(
    session: AsyncSession,
    *,
    limit: int = 50,
    before_id: int | None = None,
    action: str | None = None,
    sha256: str | None = None,
) -> tuple[list[AuditEntry], int | None]:
    """Newest first; returns the page and the cursor (an id) for the next, older page."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if sha256:
        query = query.where(AuditEntry.sha256 == sha256)
    rows = list((await session.scalars(query)).all())
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor
