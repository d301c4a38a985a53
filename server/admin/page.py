"""The server-rendered review page at /admin: work through the queue, decide.

Signing in and out is page_sign_in.py; what every route of the page shares, page_shell.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.context import database, provide_admin_session
from server.admin.csrf import csrf_matches
from server.admin.input_checks import CONTROL_CHARS_RE, REASON_RE, SHA256_RE, row_id
from server.admin.near import near_duplicates
from server.admin.page_session import PageSession, current_page_session
from server.admin.page_shell import (
    FORM_BODY_LIMIT,
    SECURITY_HEADERS,
    STATIC_PREFIX,
    csrf_refused,
    refusal,
)
from server.admin.review_items import (
    DECISION_LABELS,
    DecisionConflictError,
    ItemNotFoundError,
    load_item,
    record_decision,
)
from server.admin.review_queue import (
    REASONS,
    STATUSES,
    QueueFilters,
    QueuePage,
    UnknownCursorError,
    page_before,
    read_queue,
)
from server.admin.stored_images import browser_media_type, has_stored_image, stored_image
from server.problems import ProblemError

QUEUE_SHOWN = 100
REPORTS_SHOWN = 50  # the newest; anyone may report, so an image can gather thousands


@dataclass
class DecisionForm:
    label: str = ""
    note: str = ""
    csrf_token: str = ""
    filter_reason: str = ""
    filter_status: str = "open"
    filter_cursor: str = ""
    # The id of the latest decision the page showed ("0": none): a decision someone else
    # made since is a conflict, not something to overwrite silently.
    seen_decision: str = ""


@dataclass(frozen=True)
class PageFilters:
    """The queue's filters, and where the shown page of it starts (``cursor``)."""

    reason: str | None
    status: str
    cursor: str | None = None

    @classmethod
    def parse(
        cls, reason: str | None, status: str | None, cursor: str | None = None
    ) -> PageFilters:
        # Unknown values fall back to defaults: they also end up in redirect URLs.
        return cls(
            reason=reason if reason and REASON_RE.match(reason) else None,
            status=status if status in STATUSES else "open",
            cursor=cursor if cursor and SHA256_RE.match(cursor) else None,
        )

    @property
    def params(self) -> dict[str, str]:
        params = {"reason": self.reason or "", "status": self.status, "cursor": self.cursor or ""}
        return {k: v for k, v in params.items() if v and not (k == "status" and v == "open")}

    @property
    def query(self) -> str:
        kept = self.params
        return "?" + urlencode(kept) if kept else ""

    def page_query(self, cursor: str | None) -> str:
        """The query string of the queue page starting after ``cursor`` (None: the first)."""
        kept = {**self.params, "cursor": cursor or ""}
        kept = {k: v for k, v in kept.items() if v}
        return "?" + urlencode(kept) if kept else ""

    def first_page(self) -> PageFilters:
        return PageFilters(reason=self.reason, status=self.status)

    def to_queue_filters(self) -> QueueFilters:
        return QueueFilters(status=self.status, reason=self.reason)


async def _queue_page(db: AsyncSession, filters: PageFilters) -> tuple[QueuePage, PageFilters]:
    """The shown page of the queue; the first page when the cursor is unknown or past the end."""
    if filters.cursor is not None:
        try:
            queue = await read_queue(
                db,
                filters.to_queue_filters(),
                limit=QUEUE_SHOWN,
                cursor=filters.cursor,
                count_before=True,
            )
        except UnknownCursorError:
            queue = None
        if queue is not None and queue.entries:
            return queue, filters
        filters = filters.first_page()
    return await read_queue(db, filters.to_queue_filters(), limit=QUEUE_SHOWN), filters


async def _review_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    session: PageSession,
    filters: PageFilters,
    sha256: str | None,
    *,
    after: str | None = None,
    notice: str | None = None,
    saved: dict[str, str] | None = None,
    conflict: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    queue, filters = await _queue_page(db, filters)
    shown = [entry.sha256 for entry in queue.entries]
    if sha256 is None and shown:
        sha256 = shown[0]
        if after is not None:
            # Continue after the item just decided, wrapping to the start of the page.
            try:
                following = await read_queue(db, filters.to_queue_filters(), limit=1, cursor=after)
            except UnknownCursorError:
                following = None
            if following is not None and following.entries and following.entries[0].sha256 in shown:
                sha256 = following.entries[0].sha256
    item = None
    if sha256 is not None:
        try:
            item = await load_item(db, sha256, max_reports=REPORTS_SHOWN)
        except ItemNotFoundError:
            notice, status_code = "No image with this SHA-256 is known.", 404
    near = await near_duplicates(request.app, db, item) if item is not None else []
    image_url = None
    if item is not None and await has_stored_image(request.app, item):
        image_url = f"/admin/items/{item['sha256']}/image"
    skip_url = None
    if item is not None:
        position = shown.index(item["sha256"]) if item["sha256"] in shown else -1
        if position == len(shown) - 1 and queue.next_cursor:
            # The page's last item: skipping goes on to the next page, as j does, not back
            # to the top of this one (items past the first page would never come up).
            skip_url = "/admin" + filters.page_query(queue.next_cursor)
        elif len(shown) > 1 or (shown and position == -1):
            skip_url = f"/admin/items/{shown[(position + 1) % len(shown)]}{filters.query}"
    previous_url = None
    if filters.cursor is not None and shown:
        # Past the first page: k on its first item, or the pager, steps back to the end
        # of the page before.
        before, before_cursor = await page_before(
            db, filters.to_queue_filters(), shown[0], limit=QUEUE_SHOWN
        )
        if before is not None:
            previous_url = f"/admin/items/{before}{filters.page_query(before_cursor)}"
    return Template(
        template_name="admin/review.html.jinja",
        context={
            "static_prefix": STATIC_PREFIX,
            "principal": session.principal,
            "csrf_token": session.csrf_token,
            "queue": {
                "open_count": queue.total,
                "entries": queue.entries,
                "first": queue.offset + 1,
                "last": queue.offset + len(queue.entries),
                "next_url": (
                    "/admin" + filters.page_query(queue.next_cursor) if queue.next_cursor else None
                ),
                "first_url": "/admin" + filters.page_query(None) if filters.cursor else None,
                "previous_url": previous_url,
            },
            "filters": filters,
            "filter_query": filters.query,
            "reason_names": REASONS,
            "item": item,
            "seen_decision": item["decisions"][-1]["id"] if item and item["decisions"] else 0,
            "near": near,
            "skip_url": skip_url,
            "image_url": image_url,
            "notice": notice,
            "saved": saved,
            "conflict": conflict,
        },
        status_code=status_code,
    )


class ReviewPageController(Controller):
    """HTML routes. Authentication is by the session cookie; every POST checks a CSRF token."""

    path = "/admin"
    include_in_schema = False
    dependencies = {"admin_db": Provide(provide_admin_session)}
    response_headers = SECURITY_HEADERS

    @get("/", name="admin-review")
    async def index(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        reason: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        decided: FromQuery[str | None] = None,
        label: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> Template:
        outcome = await current_page_session(request)
        if outcome.session is None:
            return refusal(request, outcome)
        saved = None
        if decided and SHA256_RE.match(decided) and label in DECISION_LABELS:
            saved = {"sha256": decided, "label": label}
        after_sha = after if after and SHA256_RE.match(after) else None
        filters = PageFilters.parse(reason, status, cursor)
        return await _review_page(
            request, admin_db, outcome.session, filters, None, after=after_sha, saved=saved
        )

    @get("/items/{sha256:str}", name="admin-item")
    async def item(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        sha256: FromPath[str],
        reason: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        outcome = await current_page_session(request)
        if outcome.session is None:
            return refusal(request, outcome)
        sha = sha256.lower()
        if not SHA256_RE.match(sha):
            return Redirect(path="/admin", status_code=303)
        filters = PageFilters.parse(reason, status, cursor)
        return await _review_page(request, admin_db, outcome.session, filters, sha)

    @get("/items/{sha256:str}/image", name="admin-item-image")
    async def image(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        sha256: FromPath[str],
    ) -> Response[bytes]:
        """The stored bytes of an analysed image, for reviewers signed in to this page.

        Its refusals are problems, as the app's other non-page answers are (an ``<img>``
        shows none of them).
        """
        outcome = await current_page_session(request)
        if outcome.session is None:
            raise ProblemError(
                outcome.status_code if outcome.error else 401,
                outcome.error or "sign in to the review page to see its images",
            )
        sha = sha256.lower()
        if not SHA256_RE.match(sha):
            raise ProblemError(
                404, "no image here: a sha256 is 64 hexadecimal characters", code="not-found"
            )
        try:
            item = await load_item(admin_db, sha, max_reports=0)
        except ItemNotFoundError as exc:
            raise ProblemError(404, "no image with this sha256 is known", code="not-found") from exc
        data = await stored_image(request.app, item)
        media_type = browser_media_type(item)
        if data is None or media_type is None:
            raise ProblemError(
                404, "this image's bytes are not kept, or no browser shows them", code="not-found"
            )
        return Response(data, media_type=media_type)

    @post("/items/{sha256:str}/decision", status_code=303, request_max_body_size=FORM_BODY_LIMIT)
    async def decide(
        self,
        request: Request[Any, Any, Any],
        admin_db: NamedDependency[AsyncSession],
        sha256: FromPath[str],
        data: URLEncodedBody[DecisionForm],
    ) -> Template | Redirect:
        outcome = await current_page_session(request)
        if outcome.session is None:
            return refusal(request, outcome)
        session = outcome.session
        if not csrf_matches(session.csrf_token, data.csrf_token):
            return csrf_refused(session)
        filters = PageFilters.parse(data.filter_reason, data.filter_status, data.filter_cursor)
        sha = sha256.lower()
        if not SHA256_RE.match(sha) or data.label not in DECISION_LABELS:
            return await _review_page(
                request,
                admin_db,
                session,
                filters,
                None,
                notice="Choose Fake or Real for a known item.",
                status_code=422,
            )
        # A decision id the page showed (0: none); ASCII digits only: str.isdigit() also
        # takes "²" (and int() then raises).
        expected = row_id(data.seen_decision.strip())
        try:
            async with database(request.app).write() as write_session:
                await record_decision(
                    write_session,
                    sha,
                    label=data.label,
                    # Browsers send a textarea's line breaks as CRLF; the textarea's
                    # maxlength counts each as one character, as the stored note does.
                    note=CONTROL_CHARS_RE.sub("", data.note.replace("\r\n", "\n")),
                    principal=session.principal,
                    expected_decision_id=expected,
                )
        except ItemNotFoundError:
            return await _review_page(request, admin_db, session, filters, sha)
        except DecisionConflictError as exc:
            conflict = {"label": data.label, "note": data.note, "latest": exc.latest}
            return await _review_page(
                request, admin_db, session, filters, sha, conflict=conflict, status_code=409
            )
        params = {"after": sha, "decided": sha, "label": data.label, **filters.params}
        return Redirect(path="/admin", query_params=params, status_code=303)
