"""The request rate limit counted in SQL, so that N API processes allow the rate, not N times it.

Litestar's ``RateLimitMiddleware`` reads a client's history from its store, checks it and
writes it back, under a lock only its own process holds: over a shared store, processes
that interleave would lose each other's counts, up to N times the limit under a flood.
This subclass counts each request with one atomic upsert (``DatabaseStore.hit``) and keeps
the rest of Litestar's behaviour: fixed windows (a client's first request starts one, it
lasts the limit's unit), the ``RateLimit-*`` headers, a 429 past the limit (here with
``Retry-After`` too). Once a window is past its limit, each process refuses the client
from memory until the window ends (it cannot move), so a flood costs no database writes.

A database error lets the request through, without the limit's headers, and is logged
(``fail_open.py``): a broken database must not turn every request into a 500.
"""

from __future__ import annotations

import math
from datetime import timedelta

from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, RateLimitMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.limits.fail_open import DATABASE_ERRORS
from server.limits.store import DatabaseStore


class SharedRateLimitMiddleware(RateLimitMiddleware):
    """Use as ``RateLimitConfig(middleware_class=…)``, with a DatabaseStore as its store."""

    def __init__(self, app: ASGIApp, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        self.window_s = DURATION_VALUES[self.unit]
        self.window = timedelta(seconds=self.window_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        litestar_app = scope["litestar_app"]
        request = litestar_app.request_class(scope)
        if not await self.should_check_request(request=request):
            await self.app(scope, receive, send)
            return
        store = self.config.get_store_from_app(litestar_app)
        if not isinstance(store, DatabaseStore):
            raise TypeError(f"the {self.config.store!r} store must be a DatabaseStore")
        try:
            key = self.cache_key_from_request(request)
            hit = await store.hit(key, self.window, limit=self.max_requests)
        except DATABASE_ERRORS as exc:
            store.fail_open.note(exc)
            await self.app(scope, receive, send)
            return
        reset_s = max(1, math.ceil((hit.window_ends - store.clock()).total_seconds()))
        headers = self._headers(hit.count, reset_s) if self.config.set_rate_limit_headers else {}
        if hit.count > self.max_requests:
            raise TooManyRequestsException(headers={**headers, "Retry-After": str(reset_s)})
        if headers:
            send = _with_headers(send, headers)
        await self.app(scope, receive, send)

    def _headers(self, count: int, reset_s: int) -> dict[str, str]:
        """Litestar's RateLimit-* headers for a window holding ``count`` requests."""
        config = self.config
        return {
            config.rate_limit_policy_header_key: f"{self.max_requests}; w={self.window_s}",
            config.rate_limit_limit_header_key: str(self.max_requests),
            config.rate_limit_remaining_header_key: str(max(0, self.max_requests - count)),
            config.rate_limit_reset_header_key: str(reset_s),
        }


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            response_headers = MutableScopeHeaders(message)
            for key, value in headers.items():
                response_headers[key] = value
        await send(message)

    return send_with_headers
