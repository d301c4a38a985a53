"""Requests whose URL cannot be built are refused before routing, as a 400 problem.

Litestar checks the Host header's characters only: `x:abc`, `x:99999` or `[::1]:65536`
pass, and so does a query string that is not UTF-8 (uvicorn's h11 parser hands raw 8-bit
bytes on). Building `request.url` from them raises ValueError, and the first code to ask
for it, the problem handlers included, turned any answer into a bare text/plain 500 with
"Exception in ASGI application" in the log. The check builds that URL once, the way
Litestar does, so that no handler meets one it cannot read.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar.datastructures import URL
from litestar.types import ASGIApp, Receive, Scope, Send

from server.problems import problem_body, send_problem


def _port_of(host: str) -> int | None:
    """The port a Host header value names (None: the scheme's); ValueError if unreadable."""
    return urlsplit("//" + host).port


def unreadable_reason(scope: Scope) -> str | None:
    """Why this request's URL cannot be built (the detail of its 400), or None."""
    try:
        URL.from_scope(scope)
    except ValueError as exc:  # UnicodeDecodeError is one
        raw = next((v for k, v in scope.get("headers", []) if k == b"host"), b"")
        host = raw.decode("latin-1")
        try:
            _port_of(host)
        except ValueError as host_exc:
            return f"the Host header {host[:100]!r} is not a valid host[:port] ({host_exc})"
        return f"the request target cannot be read: {exc}"
    return None


class RefuseUnreadableRequests:
    """ASGI wrapper around the app: a request whose URL cannot be built gets a 400 problem
    (`unreadable-request`) and never reaches the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = unreadable_reason(scope) if scope["type"] == "http" else None
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = problem_body(400, reason, code="unreadable-request", instance=scope["path"])
        await send_problem(send, body)
