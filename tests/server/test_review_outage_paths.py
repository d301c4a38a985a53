"""Review of the credential checks that go on through database outages.

A token lookup that rides out an outage ends later than the failed-login limiter's check,
which ran before it, possibly while the limiter's own read failed open. The limit must
still hold when the lookup ends: an address past it gets 429, even with a good token.
And a database that stays away is waited for once per request, for one retry budget, though
both the rate limit's reviewer exemption and the route check the credential. The faults
are real: the backend under the statement is terminated just before it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from admin_sessions import new_token, page_session
from db_faults import TerminatedBackends
from server_helpers import problem, run_sql, running

from server.admin import context
from server.admin.auth import SESSION_COOKIE
from server.admin.roles import Role
from server.app import create_app
from server.settings import Settings

TOKEN_LOOKUP = "FROM api_tokens"
LIMITER_READ = "FROM auth_failures"
SESSION_LOOKUP = "FROM admin_sessions LEFT OUTER JOIN api_tokens"
CLIENT = "127.0.0.1"  # httpx's ASGI transport

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


async def _failed_logins(database_url: str, count: int) -> None:
    """`count` failed logins by CLIENT just now, as another API process records them."""
    for _ in range(count):
        await run_sql(
            database_url,
            "INSERT INTO auth_failures (client, failed_at) VALUES (:client, now())",
            client=CLIENT,
        )


async def test_an_address_past_the_login_limit_gets_429_after_a_lookup_that_rode_out_an_outage(
    settings: Settings,
) -> None:
    # The limiter's read meets the outage first and fails open (by design); the token's
    # lookup then waits for the database to come back. When it does, the address is past
    # the limit: the good token must not be accepted (that would confirm a guess).
    _, secret = await new_token(settings.database_url, Role.ADMIN)
    await _failed_logins(settings.database_url, 10)
    shared = replace(settings, limits_store="database")
    async with running(create_app(shared)) as client:
        engine = client.app.state.db.engine
        faults = [
            TerminatedBackends(engine, LIMITER_READ, times=1),
            TerminatedBackends(engine, TOKEN_LOOKUP, times=1),
        ]
        try:
            response = await client.get(
                "/v1/admin/queue", headers={"Authorization": f"Bearer {secret}"}
            )
        finally:
            for fault in faults:
                fault.remove()
        assert faults[0].seen >= 1 and faults[1].seen == 2  # failed open; lookup read again
        body = problem(response)
        assert body["status"] == 429, body
        assert body["type"].endswith(":auth-rate-limited"), body
        assert int(response.headers["retry-after"]) > 0


class RetryRounds:
    """Counts the credential checks' retry rounds that ended in the outage's error."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failed = 0
        retry = context.retry_connection_errors

        async def counted(work: Callable[[], Awaitable[Any]], **kwargs: Any) -> Any:
            try:
                return await retry(work, **kwargs)
            except Exception:
                self.failed += 1
                raise

        monkeypatch.setattr(context, "retry_connection_errors", counted)


@pytest.mark.parametrize("credential", ["bearer", "cookie"])
async def test_a_review_request_waits_out_a_database_that_stays_away_once_not_twice(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, credential: str
) -> None:
    # The public rate limit's reviewer exemption checks the credential before the route
    # does. A database that stays away used to be waited for by both, each for the whole
    # retry budget: the 503 came after the request's whole time instead of half of it.
    if credential == "bearer":
        _, secret = await new_token(settings.database_url, Role.ADMIN)
        path, headers, marker = (
            "/v1/admin/queue",
            {"Authorization": f"Bearer {secret}"},
            TOKEN_LOOKUP,
        )
    else:
        token_id, _ = await new_token(settings.database_url, Role.ADMIN)
        cookie = await page_session(settings.database_url, token_id, Role.ADMIN)
        path, headers, marker = "/admin", {"Cookie": f"{SESSION_COOKIE}={cookie}"}, SESSION_LOOKUP
    # A request timeout of 2 s: the checks try again for 1 s. With 0.4 s (0.2 s of retries)
    # the first try alone outlasted the budget on a loaded 2-core CI machine (terminating a
    # backend takes a connection of its own), and nothing was tried again.
    limited = replace(settings, rate_limit=("minute", 100), request_timeout_s=2.0)
    rounds = RetryRounds(monkeypatch)
    async with running(create_app(limited)) as client:
        fault = TerminatedBackends(client.app.state.db.engine, marker, times=None)
        try:
            response = await client.get(path, headers=headers)
        finally:
            fault.remove()
    body = problem(response)
    assert body["type"].endswith(":database-unavailable"), body
    assert fault.seen > 1  # tried again before giving up
    assert rounds.failed == 1
