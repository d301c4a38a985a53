"""What every route of the review page at /admin shares: the headers its answers carry,
where its static files are, and the pages shown instead of the one asked for (the sign-in
form when there is no session, the form-expired error when a CSRF check fails).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import ResponseHeader
from litestar.response import Template

from server.admin.auth import SESSION_COOKIE
from server.admin.csrf import LOGIN_CSRF_COOKIE, is_login_csrf_token, new_login_csrf_token
from server.admin.page_session import (
    PageAuthOutcome,
    PageSession,
    expired_cookie,
    login_csrf_cookie,
)

STATIC_PREFIX = "/admin/static"
# The page's forms (sign-in, sign-out, a decision with its note of at most 2,000 characters,
# percent-encoded) fit easily: the app-wide limit is an image upload's, far too much for
# a form anyone may post (the sign-in form needs no session).
FORM_BODY_LIMIT = 64 * 1024
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value=(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    ),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


def login_page(
    request: Request[Any, Any, Any],
    error: str | None = None,
    status_code: int = 200,
    clear_session: bool = False,
) -> Template:
    """The sign-in form; `clear_session` also expires a session cookie that no longer works."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    token = cookie if is_login_csrf_token(cookie) else new_login_csrf_token()
    cookies = [login_csrf_cookie(request, token)]
    if clear_session:
        cookies.append(expired_cookie(SESSION_COOKIE))
    return Template(
        template_name="admin/login.html.jinja",
        context={
            "static_prefix": STATIC_PREFIX,
            "principal": None,
            "csrf_token": token,
            "error": error,
        },
        status_code=status_code,
        cookies=cookies,
    )


def refusal(request: Request[Any, Any, Any], outcome: PageAuthOutcome) -> Template:
    """What a route shows someone without a live session: the sign-in form, saying why."""
    status = outcome.status_code if outcome.error else 200
    return login_page(request, outcome.error, status, clear_session=outcome.stale_cookie)


def csrf_refused(session: PageSession | None) -> Template:
    """A form post without its CSRF token: nothing was done, the form should be reloaded."""
    return Template(
        template_name="admin/error.html.jinja",
        context={
            "static_prefix": STATIC_PREFIX,
            "principal": session.principal if session else None,
            "csrf_token": session.csrf_token if session else "",
            "title": "Form expired",
            "message": (
                "This form was missing its security token (CSRF). Reload the page and try again."
            ),
        },
        status_code=403,
    )
