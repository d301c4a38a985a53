"""Signing in to and out of the review page at /admin (the routes; the session behind them
is page_session.py). Every POST checks a CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template

from server.admin.auth import SESSION_COOKIE
from server.admin.csrf import LOGIN_CSRF_COOKIE, csrf_matches
from server.admin.page_session import (
    current_page_session,
    expired_cookie,
    login_with_secret,
    session_cookie,
    sign_out,
)
from server.admin.page_shell import FORM_BODY_LIMIT, SECURITY_HEADERS, csrf_refused, login_page


@dataclass
class LoginForm:
    token: str = ""
    csrf_token: str = ""


@dataclass
class CsrfForm:
    csrf_token: str = ""


class SignInController(Controller):
    """HTML routes that open and close a review page session."""

    path = "/admin"
    include_in_schema = False
    response_headers = SECURITY_HEADERS

    @get("/login", name="admin-login-form")
    async def login_form(self) -> Redirect:
        """A failed sign-in leaves the browser on /admin/login: opening it again shows the form."""
        return Redirect(path="/admin", status_code=303)

    @post("/login", status_code=303, request_max_body_size=FORM_BODY_LIMIT)
    async def login(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm]
    ) -> Template | Redirect:
        if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), data.csrf_token):
            return csrf_refused(None)
        outcome = await login_with_secret(request, data.token.strip())
        if outcome.session is None or outcome.new_cookie is None:
            return login_page(request, outcome.error, outcome.status_code)
        return Redirect(
            path="/admin",
            status_code=303,
            cookies=[
                session_cookie(request, outcome.new_cookie),
                expired_cookie(LOGIN_CSRF_COOKIE),
            ],
        )

    @post("/logout", status_code=303, request_max_body_size=FORM_BODY_LIMIT)
    async def logout(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[CsrfForm]
    ) -> Template | Redirect:
        outcome = await current_page_session(request)
        if outcome.session is not None and not csrf_matches(
            outcome.session.csrf_token, data.csrf_token
        ):
            return csrf_refused(outcome.session)
        if outcome.session is not None:
            await sign_out(request, outcome.session)
        return Redirect(path="/admin", status_code=303, cookies=[expired_cookie(SESSION_COOKIE)])
