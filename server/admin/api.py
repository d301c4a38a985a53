"""The review API under /v1/admin: queue, items, decisions, audit log, export.

Reviewers and admins may use it (a role guard); tokens and review page sessions, for admins
only, are in access_api.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.audit import MAX_PAGE as MAX_AUDIT_PAGE
from server.admin.audit import audit_entry_to_dict, list_audit, record_audit
from server.admin.auth import current_principal, reviewer_guard
from server.admin.context import database, provide_admin_session
from server.admin.export import EXPORT_MEDIA_TYPE, ExportFilters, jsonl_stream
from server.admin.input_checks import (
    ACTION_RE,
    MAX_ROW_ID,
    REASON_RE,
    checked_sha256,
    checked_text,
)
from server.admin.near import near_duplicates
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
from server.admin.roles import Role, role_allows
from server.openapi_docs.operations import AdminOperation
from server.openapi_docs.responses import ADMIN_PROBLEMS, BODY_PROBLEMS, problem_responses
from server.problems import ProblemError
from server.requests import JSON_BODY_LIMIT
from server.timefmt import as_utc, iso_z

# Larger ages overflow datetime arithmetic; a century covers every real question.
MAX_AGE_HOURS = 100 * 366 * 24

# An item's reports come a page at a time: anyone may file them (4,000 characters each, at
# the public rate), so one image's could otherwise make its answer gigabytes long.
DEFAULT_REPORTS_PAGE = 100
MAX_REPORTS_PAGE = 1000

INSTANT_DOC = "An ISO 8601 date or time: 2026-11-01 (midnight UTC), 2026-11-01T12:00:00Z"
# What the filters below accept, documented (they are checked by hand, as 422 problems).
# An empty sha256, cursor or action filter is no filter; an empty reason is refused.
OPTIONAL_HEX64 = "^([0-9a-fA-F]{64})?$"
REASON_PATTERN = "^[a-z0-9_]{1,64}$"  # input_checks.REASON_RE
ACTION_PATTERN = "^[a-z0-9_.]{0,64}$"  # input_checks.ACTION_RE, or empty


def _instant(name: str, value: str | None) -> datetime | None:
    """A query's ISO 8601 date or time as UTC (without a zone, UTC), or None when absent."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        hint = " (a '+' in a URL's query means a space: write it %2B)" if " " in value else ""
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ProblemError(
            422, f"{name} must be an ISO 8601 date or time, not {shown!r}{hint}"
        ) from None
    try:
        return as_utc(moment)
    except OverflowError:  # 9999-12-31T23:00-02:00 is past the last UTC instant Python has
        raise ProblemError(422, f"{name} is out of range in UTC: {value!r}") from None


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
        status: Annotated[
            str,
            QueryParameter(
                description="open, decided or any",
                schema_extra={"enum": [*STATUSES, "any"]},
            ),
        ] = "open",
        reason: Annotated[
            str | None, QueryParameter(schema_extra={"pattern": REASON_PATTERN})
        ] = None,
        label: FromQuery[Literal["fake", "real", "uncertain"] | None] = None,
        # schema_extra: Litestar leaves a `ge` of 0 out of the schema.
        min_age_hours: Annotated[
            float | None, QueryParameter(ge=0, le=MAX_AGE_HOURS, schema_extra={"minimum": 0})
        ] = None,
        max_age_hours: Annotated[
            float | None, QueryParameter(ge=0, le=MAX_AGE_HOURS, schema_extra={"minimum": 0})
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="The next_cursor of the previous page",
                schema_extra={"pattern": OPTIONAL_HEX64},
            ),
        ] = None,
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
        reports: Annotated[
            int,
            QueryParameter(
                ge=1,
                le=MAX_REPORTS_PAGE,
                description="How many reports to return: the newest (listed oldest first); "
                "`reports_total` counts them all",
            ),
        ] = DEFAULT_REPORTS_PAGE,
        reports_before: Annotated[
            int | None,
            QueryParameter(
                ge=1,
                le=MAX_ROW_ID,
                description="The `reports_next_before` of an earlier answer: the reports "
                "older than those it listed",
            ),
        ] = None,
    ) -> dict[str, Any]:
        try:
            item = await load_item(
                admin_db,
                checked_sha256(sha256),
                max_reports=reports,
                reports_before=reports_before,
            )
        except ItemNotFoundError as exc:
            raise ProblemError(404, "no image with this sha256 is known", code="not-found") from exc
        item["near_duplicates"] = await near_duplicates(request.app, admin_db, item)
        return item

    @post(
        "/items/{sha256:str}/decision",
        status_code=201,
        summary="Decide the final label",
        operation_class=AdminOperation,
        request_max_body_size=JSON_BODY_LIMIT,
        responses=problem_responses(
            {
                400: "Malformed JSON (`malformed-json`)",
                404: "No image with this sha256 is known (`not-found`)",
                409: "Another decision came in since `expected_decision_id` "
                "(`decision-conflict`, with `latest_decision`)",
                408: BODY_PROBLEMS[408],
                413: BODY_PROBLEMS[413],
                415: BODY_PROBLEMS[415],
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
        responses=problem_responses(
            {
                422: "A bad limit, before_id or sha256, or an action no entry can have "
                "(`invalid-filter`)"
            },
            ADMIN_PROBLEMS,
        ),
    )
    async def audit(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_AUDIT_PAGE)] = 50,
        before_id: Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID)] = None,
        action: Annotated[
            str | None, QueryParameter(schema_extra={"pattern": ACTION_PATTERN})
        ] = None,
        sha256: Annotated[
            str | None, QueryParameter(schema_extra={"pattern": OPTIONAL_HEX64})
        ] = None,
    ) -> dict[str, Any]:
        # Checked, not just compared: PostgreSQL refuses a NUL in the comparison (a 500).
        if action and not ACTION_RE.match(action):
            raise ProblemError(
                422,
                "action must be an audit action name such as token.create",
                code="invalid-filter",
            )
        entries, next_cursor = await list_audit(
            admin_db,
            limit=limit,
            before_id=before_id,
            action=action,
            sha256=checked_sha256(sha256) if sha256 else None,
        )
        admin = role_allows(current_principal(request).role, Role.ADMIN)
        return {
            "entries": [audit_entry_to_dict(e, admin=admin) for e in entries],
            "next_before_id": next_cursor,
        }

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
