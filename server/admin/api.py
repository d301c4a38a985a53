"""The review API under /v1/admin: queue, items, decisions, audit log, export, tokens.

Every handler sits behind a role guard: reviewers (and admins) review, read the audit log and
export; only admins manage tokens and review page sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.audit import MAX_PAGE as MAX_AUDIT_PAGE
from server.admin.audit import audit_entry_to_dict, list_audit, record_audit
from server.admin.auth import admin_guard, current_principal, reviewer_guard
from server.admin.context import database, provide_admin_session
from server.admin.export import EXPORT_MEDIA_TYPE, ExportFilters, jsonl_stream
from server.admin.near import near_duplicates
from server.admin.page_session import session_lifetime
from server.admin.review_items import (
    MAX_NOTE_CHARS,
    DecisionConflictError,
    ItemNotFoundError,
    load_item,
    record_decision,
)
from server.admin.review_queue import (
    LABELS,
    MAX_PAGE,
    STATUSES,
    QueueFilters,
    UnknownCursorError,
    read_queue,
)
from server.admin.roles import Role
from server.admin.session_store import end_session_by_id, live_sessions
from server.admin.token_store import (
    MAX_NAME_CHARS,
    TokenNotFoundError,
    create_token,
    list_tokens,
    revoke_token,
    token_to_dict,
)
from server.openapi_docs.operations import AdminOperation
from server.openapi_docs.responses import ADMIN_PROBLEMS, problem_responses
from server.problems import ProblemError
from server.timefmt import as_utc, iso_z

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REASON_RE = re.compile(r"^[a-z0-9_]{1,64}$")
# Larger ages overflow datetime arithmetic; a century covers every real question.
MAX_AGE_HOURS = 100 * 366 * 24
# The largest id a database integer column holds; larger ones overflow the driver.
MAX_ROW_ID = 2**63 - 1
# NUL cannot be stored in PostgreSQL text; other C0 controls (but tab, newline, CR) are noise.
CONTROL_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def checked_text(name: str, value: str | None, max_chars: int) -> str | None:
    """A free-text field as given, or a 422 naming the problem (too long, control characters)."""
    if value is None:
        return None
    if len(value) > max_chars:
        raise ProblemError(422, f"{name} is longer than {max_chars} characters")
    if CONTROL_CHARS_RE.search(value):
        raise ProblemError(
            422, f"{name} must not contain control characters (other than tab and newline)"
        )
    return value


def checked_sha256(value: str) -> str:
    sha = value.strip().lower()
    if not SHA256_RE.match(sha):
        raise ProblemError(422, "sha256 must be 64 hexadecimal characters", code="invalid-sha256")
    return sha


INSTANT_DOC = "An ISO 8601 date or time: 2026-11-01 (midnight UTC), 2026-11-01T12:00:00Z"


def _instant(name: str, value: str | None) -> datetime | None:
    """A query's ISO 8601 date or time as UTC (without a zone, UTC), or None when absent."""
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        hint = " (a '+' in a URL's query means a space: write it %2B)" if " " in value else ""
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ProblemError(
            422, f"{name} must be an ISO 8601 date or time, not {shown!r}{hint}"
        ) from None


def _hours(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(hours=value)


@dataclass
class DecisionRequest:
    """A reviewer's final label for an image; ``note`` says why (kept in history and export).

    ``expected_decision_id``: the id of the latest decision the reviewer saw (0 when there
    was none). When it is given and another decision came in meanwhile, the answer is 409
    ``decision-conflict`` and nothing is recorded. Left out, the decision is appended as is.
    """

    label: Literal["fake", "real"]
    note: str | None = None
    expected_decision_id: int | None = None


DECISION_FIELDS = frozenset(DecisionRequest.__dataclass_fields__)


@dataclass
class TokenRequest:
    role: Literal["admin", "reviewer", "client"]
    name: str | None = None


class ReviewController(Controller):
    """Queue, item, decision, audit log and export routes, open to reviewers and admins."""

    path = "/v1/admin"
    guards = [reviewer_guard]
    dependencies = {"admin_db": Provide(provide_admin_session)}
    tags = ["admin"]

    @get(
        "/queue",
        summary="Items waiting for (or past) review, oldest first",
        operation_class=AdminOperation,
        responses=problem_responses(
            {422: "A bad filter (`invalid-filter`), limit or cursor (`unknown-cursor`)"},
            ADMIN_PROBLEMS,
        ),
    )
    async def queue(
        self,
        admin_db: NamedDependency[AsyncSession],
        status: Annotated[str, QueryParameter(description="open, decided or any")] = "open",
        reason: FromQuery[str | None] = None,
        label: FromQuery[Literal["fake", "real", "uncertain"] | None] = None,
        min_age_hours: Annotated[float | None, QueryParameter(ge=0, le=MAX_AGE_HOURS)] = None,
        max_age_hours: Annotated[float | None, QueryParameter(ge=0, le=MAX_AGE_HOURS)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        if status not in (*STATUSES, "any"):
            raise ProblemError(422, "status must be open, decided or any", code="invalid-filter")
        if reason is not None and not REASON_RE.match(reason):
            raise ProblemError(422, "reason must be a snake_case name", code="invalid-filter")
        filters = QueueFilters(
            status=None if status == "any" else status,
            reason=reason,
            label=label if label in LABELS else None,
            min_age=_hours(min_age_hours),
            max_age=_hours(max_age_hours),
        )
        try:
            page = await read_queue(
                admin_db, filters, limit=limit, cursor=checked_sha256(cursor) if cursor else None
            )
        except UnknownCursorError as exc:
            raise ProblemError(
                422,
                "cursor must be the next_cursor of an earlier page (no review item has it)",
                code="unknown-cursor",
            ) from exc
        return {
            "items": [entry.to_dict() for entry in page.entries],
            "total": page.total,
            "next_cursor": page.next_cursor,
        }

    @get(
        "/items/{sha256:str}",
        summary="Everything about one item: facts, analysis, reports, near duplicates",
        operation_class=AdminOperation,
        responses=problem_responses(
            {
                404: "No image with this sha256 is known (`not-found`)",
                422: "The path is not 64 hexadecimal characters (`invalid-sha256`)",
            },
            ADMIN_PROBLEMS,
        ),
    )
    async def item(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        sha256: FromPath[str],
    ) -> dict[str, Any]:
        try:
            item = await load_item(admin_db, checked_sha256(sha256))
        except ItemNotFoundError as exc:
            raise ProblemError(404, "no image with this sha256 is known", code="not-found") from exc
        item["near_duplicates"] = await near_duplicates(request.app, admin_db, item)
        return item

    @post(
        "/items/{sha256:str}/decision",
        status_code=201,
        summary="Decide the final label",
        operation_class=AdminOperation,
        responses=problem_responses(
            {
                400: "Malformed JSON",
                404: "No image with this sha256 is known (`not-found`)",
                409: "Another decision came in since `expected_decision_id` "
                "(`decision-conflict`, with `latest_decision`)",
                422: "An invalid body (`errors` lists the fields), note or sha256",
            },
            ADMIN_PROBLEMS,
        ),
    )
    async def decide(
        self,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
        data: JSONBody[DecisionRequest],
    ) -> dict[str, Any]:
        # An unknown field is most likely a misspelt one: a dropped `expected_decision_id`
        # would silently turn off the conflict check.
        body = await request.json()
        unknown = sorted(set(body) - DECISION_FIELDS) if isinstance(body, dict) else []
        if unknown:
            raise ProblemError(
                422,
                f"unknown field(s) {', '.join(unknown)}; a decision takes "
                f"{', '.join(sorted(DECISION_FIELDS))}",
            )
        note = checked_text("note", data.note, MAX_NOTE_CHARS)
        expected = data.expected_decision_id
        if expected is not None and not 0 <= expected <= MAX_ROW_ID:
            raise ProblemError(422, "expected_decision_id must be a decision id, or 0 for none")
        sha = checked_sha256(sha256)
        principal = current_principal(request)
        try:
            async with database(request.app).write() as session:
                decision = await record_decision(
                    session,
                    sha,
                    label=data.label,
                    note=note,
                    principal=principal,
                    expected_decision_id=expected,
                )
        except ItemNotFoundError as exc:
            raise ProblemError(404, "no image with this sha256 is known", code="not-found") from exc
        except DecisionConflictError as exc:
            raise ProblemError(
                409, str(exc), code="decision-conflict", extra={"latest_decision": exc.latest}
            ) from exc
        return {
            "id": decision.id,
            "sha256": decision.sha256,
            "label": decision.label,
            "note": decision.note,
            "previous_label": decision.previous_label,
            "decided_at": decision.decided_at,
            "reviewer": decision.reviewer,
        }

    @get(
        "/audit",
        summary="The audit log, newest first",
        operation_class=AdminOperation,
        responses=problem_responses({422: "A bad limit, before_id or sha256"}, ADMIN_PROBLEMS),
    )
    async def audit(
        self,
        admin_db: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_AUDIT_PAGE)] = 50,
        before_id: Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID)] = None,
        action: FromQuery[str | None] = None,
        sha256: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        entries, next_cursor = await list_audit(
            admin_db,
            limit=limit,
            before_id=before_id,
            action=action,
            sha256=checked_sha256(sha256) if sha256 else None,
        )
        return {"entries": [audit_entry_to_dict(e) for e in entries], "next_before_id": next_cursor}

    @get(
        "/export",
        summary="Reviewed items as JSON Lines (fine-tuning data), streamed",
        description=(
            "One line per reviewed image with its latest decision, ordered by sha256. "
            "Filters: label (fake or real), since / until (the latest decision at or after / "
            "before an ISO 8601 time; without a zone, UTC)."
        ),
        media_type=EXPORT_MEDIA_TYPE,
        operation_class=AdminOperation,
        responses=problem_responses({422: "A bad label, since or until"}, ADMIN_PROBLEMS),
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        label: FromQuery[Literal["fake", "real"] | None] = None,
        since: Annotated[str | None, QueryParameter(description=INSTANT_DOC)] = None,
        until: Annotated[str | None, QueryParameter(description=INSTANT_DOC)] = None,
    ) -> Stream:
        filters = ExportFilters(
            label=label, since=_instant("since", since), until=_instant("until", until)
        )
        # Reviewed labels and notes leave the server: who took them, and which, is audited.
        async with database(request.app).write() as session:
            record_audit(
                session,
                actor=current_principal(request).actor,
                action="review.export",
                details={
                    "label": label,
                    "since": iso_z(filters.since) if filters.since else None,
                    "until": iso_z(filters.until) if filters.until else None,
                },
            )
        return Stream(
            jsonl_stream(database(request.app), filters),
            media_type=EXPORT_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="fakescope-reviewed.jsonl"'},
        )


class AdminOnlyController(Controller):
    """Token and review page session management: admins only."""

    path = "/v1/admin"
    guards = [admin_guard]
    dependencies = {"admin_db": Provide(provide_admin_session)}
    tags = ["admin"]

    @get(
        "/sessions",
        summary="Review page sessions still open (never their secrets)",
        operation_class=AdminOperation,
        responses=problem_responses({}, ADMIN_PROBLEMS),
    )
    async def sessions(
        self, request: Request[Any, Any, Any], admin_db: NamedDependency[AsyncSession]
    ) -> dict[str, Any]:
        return {"sessions": await live_sessions(admin_db, session_lifetime(request))}

    @delete(
        "/sessions/{session_id:int}",
        status_code=200,
        summary="Sign one review page session out (e.g. a lost laptop); audited",
        operation_class=AdminOperation,
        responses=problem_responses(
            {404: "No open session with this id (`not-found`)"}, ADMIN_PROBLEMS
        ),
    )
    async def end_session(
        self, request: Request[Any, Any, Any], session_id: FromPath[int]
    ) -> dict[str, Any]:
        actor = current_principal(request).actor
        ended = False
        if 1 <= session_id <= MAX_ROW_ID:
            async with database(request.app).write() as session:
                ended = await end_session_by_id(session, session_id, actor=actor)
        if not ended:
            raise ProblemError(404, f"no open session with id {session_id}", code="not-found")
        return {"id": session_id, "ended": True}

    @get(
        "/tokens",
        summary="API tokens (never their secrets)",
        operation_class=AdminOperation,
        responses=problem_responses({}, ADMIN_PROBLEMS),
    )
    async def tokens(self, admin_db: NamedDependency[AsyncSession]) -> dict[str, Any]:
        return {"tokens": [token_to_dict(row) for row in await list_tokens(admin_db)]}

    @post(
        "/tokens",
        status_code=201,
        summary="Create a token; its secret is returned once",
        operation_class=AdminOperation,
        responses=problem_responses(
            {400: "Malformed JSON", 422: "An invalid body (`errors` lists the fields) or name"},
            ADMIN_PROBLEMS,
        ),
    )
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[TokenRequest]
    ) -> dict[str, Any]:
        name = checked_text("name", data.name, MAX_NAME_CHARS)
        actor = current_principal(request).actor
        async with database(request.app).write() as session:
            created = await create_token(session, role=Role(data.role), name=name, actor=actor)
        return {
            "id": created.id,
            "name": created.name,
            "role": created.role.value,
            "prefix": created.prefix,
            "token": created.secret,
        }

    @delete(
        "/tokens/{token_id:int}",
        status_code=200,
        summary="Revoke a token",
        operation_class=AdminOperation,
        responses=problem_responses({404: "No token with this id (`not-found`)"}, ADMIN_PROBLEMS),
    )
    async def revoke(
        self, request: Request[Any, Any, Any], token_id: FromPath[int]
    ) -> dict[str, Any]:
        actor = current_principal(request).actor
        if not 1 <= token_id <= MAX_ROW_ID:
            raise ProblemError(404, f"no token with id {token_id}", code="not-found")
        try:
            async with database(request.app).write() as session:
                row = await revoke_token(session, token_id, actor=actor)
                return token_to_dict(row)
        except TokenNotFoundError as exc:
            raise ProblemError(404, str(exc), code="not-found") from exc
