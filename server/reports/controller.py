"""POST /v1/reports: store the report and (re)open the image's review item, atomically."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from server.db.database import Database
from server.db.models import Image, Report
from server.db.review import USER_REPORT, flag_for_review
from server.openapi_docs.operations import ReportOperation
from server.openapi_docs.responses import BODY_PROBLEMS, ReportCreated, responses, success
from server.problems import ProblemError
from server.requests import JSON_BODY_LIMIT, json_object, optional_text, sha256_key
from server.timefmt import iso_z, utcnow

LABELS = frozenset({"fake", "real", "uncertain"})
MAX_TEXT = 2000


class ReportsController(Controller):
    path = "/v1"
    tags = ["review"]

    @post(
        "/reports",
        status_code=201,
        request_max_body_size=JSON_BODY_LIMIT,
        summary="Report a wrong verdict; the image enters the human review queue",
        description=(
            'Body: {"sha256": ..., "reason": "...", '
            '"suggested_label": "fake"|"real"|"uncertain"|null, "note": "..."}. '
            "The image must have been analysed."
        ),
        operation_class=ReportOperation,
        responses=responses(
            201,
            success(ReportCreated, "The report is stored and the review item is open"),
            {
                **BODY_PROBLEMS,
                404: "The image has not been analysed",
                422: "Invalid request: a bad sha256, no reason, an unknown suggested_label, or "
                "text too long or holding NUL characters",
            },
        ),
    )
    async def report(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await json_object(request)
        sha = sha256_key(body.get("sha256"))
        reason = optional_text(body, "reason", MAX_TEXT)
        if reason is None:
            raise ProblemError(422, "reason is required: say what is wrong with the verdict")
        suggested = body.get("suggested_label")
        if suggested is not None and (not isinstance(suggested, str) or suggested not in LABELS):
            raise ProblemError(422, f"suggested_label must be one of {sorted(LABELS)} or null")
        note = optional_text(body, "note", MAX_TEXT)
        db: Database = request.app.state.db
        async with db.write() as session:
            if await session.get(Image, sha) is None:
                raise ProblemError(404, "this image has not been analysed; nothing to report")
            row = Report(
                sha256=sha, reason=reason, suggested_label=suggested, note=note, created_at=utcnow()
            )
            session.add(row)
            await flag_for_review(session, sha, [USER_REPORT], reopen=True)
            await session.flush()
        return Response(
            {
                "id": row.id,
                "sha256": sha,
                "review_status": "open",
                "created_at": iso_z(row.created_at),
            },
            status_code=201,
        )
