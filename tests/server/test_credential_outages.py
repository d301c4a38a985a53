"""Credential checks through database outages: a dropped connection is read again.

The public API's client-token check, the admin API's token lookup (and its last-used
touch), and the review page's session lookup (and its touch, or the deletion of an ended
session) each used to answer 503 `database-unavailable` on the first dropped connection.
They are safe to repeat (reads, and updates or deletes that set the same state again), so
they now go on on fresh connections for the request's retry budget. A database that
stays away still ends in 503 `database-unavailable` with Retry-After, never a 500, and a
database outage is never counted as a failed login. The faults are real: the backend under
the statement is terminated just before it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from admin_sessions import new_token, page_session
from db_faults import TerminatedBackends
from server_helpers import AppClient, problem, run_sql, running

from server.admin.auth import SESSION_COOKIE
from server.admin.roles import Role
from server.app import create_app
from server.settings import Settings

TOKEN_LOOKUP = "FROM api_tokens"  # the client-token check and the admin token lookup
TOKEN_TOUCH = "UPDATE api_tokens SET last_used_at"
SESSION_LOOKUP = "FROM admin_sessions LEFT OUTER JOIN api_tokens"
SESSION_TOUCH = "UPDATE admin_sessions SET last_seen_at"
SESSION_END = "DELETE FROM admin_sessions WHERE admin_sessions.session_hash"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _reviewer_page_session(database_url: str, *, idle_for: timedelta) -> str:
    """A review page session of a new reviewer token, last seen `idle_for` ago; its cookie."""
    token_id, _ = await new_token(database_url, Role.REVIEWER)
    return await page_session(database_url, token_id, Role.REVIEWER, idle_for=idle_for)


def _faults(client: AppClient, *markers: str, times: int | None = 1) -> list[TerminatedBackends]:
    engine = client.app.state.db.engine
    return [TerminatedBackends(engine, marker, times=times) for marker in markers]


def _remove(faults: list[TerminatedBackends]) -> None:
    for fault in faults:
        fault.remove()


def _database_unavailable(response: object) -> None:
    body = problem(response)
    assert body["status"] == 503, body
    assert body["type"].endswith(":database-unavailable"), body
    assert response.headers["retry-after"] == "2"  # type: ignore[attr-defined]


async def test_the_client_token_check_rides_out_a_terminated_backend(settings: Settings) -> None:
    _, secret = await new_token(settings.database_url, Role.CLIENT)
    async with running(create_app(replace(settings, require_token=True))) as client:
        faults = _faults(client, TOKEN_LOOKUP)
        try:
            response = await client.post("/v1/lookup", json={"sha256": []}, headers=bearer(secret))
        finally:
            _remove(faults)
    assert response.status_code == 200, response.text
    assert faults[0].seen == 2  # terminated, then read again


async def test_the_admin_token_lookup_and_its_last_used_touch_ride_out_terminated_backends(
    settings: Settings,
) -> None:
    token_id, secret = await new_token(settings.database_url, Role.ADMIN)
    async with running(create_app(settings)) as client:
        faults = _faults(client, TOKEN_LOOKUP, TOKEN_TOUCH)
        try:
            response = await client.get("/v1/admin/queue", headers=bearer(secret))
        finally:
            _remove(faults)
    assert response.status_code == 200, response.text
    assert [fault.seen for fault in faults] == [2, 2]
    (used,) = await run_sql(
        settings.database_url, "SELECT last_used_at FROM api_tokens WHERE id = :id", id=token_id
    )
    assert used[0] is not None


async def test_the_review_page_session_lookup_and_its_touch_ride_out_terminated_backends(
    settings: Settings,
) -> None:
    cookie = await _reviewer_page_session(settings.database_url, idle_for=timedelta(minutes=5))
    async with running(create_app(settings)) as client:
        faults = _faults(client, SESSION_LOOKUP, SESSION_TOUCH)
        try:
            response = await client.get("/admin", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        finally:
            _remove(faults)
    assert response.status_code == 200, response.text
    assert 'action="/admin/logout"' in response.text  # signed in, not the sign-in form
    assert faults[0].seen >= 2 and faults[1].seen == 2


async def test_an_ended_session_is_deleted_through_a_terminated_backend(
    settings: Settings,
) -> None:
    cookie = await _reviewer_page_session(settings.database_url, idle_for=timedelta(hours=13))
    async with running(create_app(settings)) as client:
        faults = _faults(client, SESSION_END)
        try:
            response = await client.get("/admin", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        finally:
            _remove(faults)
    assert response.status_code == 401, response.text
    assert "Your session expired" in response.text
    assert faults[0].seen == 2
    sessions = await run_sql(settings.database_url, "SELECT count(*) FROM admin_sessions")
    assert sessions == [(0,)]


def _every_other(marker: str) -> Callable[[str], bool]:
    """Picks the 1st, 3rd, 5th... statement holding `marker`."""
    seen = 0

    def picks(statement: str) -> bool:
        nonlocal seen
        if marker not in statement:
            return False
        seen += 1
        return seen % 2 == 1

    return picks


async def test_a_reviewer_whose_token_lookups_meet_dropped_connections_skips_the_public_limit(
    settings: Settings,
) -> None:
    # The public per-address limit exempts live reviewer credentials; an exemption check
    # that met a dropped connection used to count the request, so a reviewer got 429.
    _, secret = await new_token(settings.database_url, Role.REVIEWER)
    limited = replace(settings, rate_limit=("minute", 2))
    async with running(create_app(limited)) as client:
        engine = client.app.state.db.engine
        faults = TerminatedBackends(engine, _every_other(TOKEN_LOOKUP), times=None)
        try:
            statuses = [
                (await client.get("/v1/admin/queue", headers=bearer(secret))).status_code
                for _ in range(4)
            ]
        finally:
            faults.remove()
    assert statuses == [200] * 4
    assert faults.seen >= 4  # each request's first lookup was terminated


async def test_credential_checks_of_a_database_that_stays_away_end_in_503_and_count_no_failed_login(
    settings: Settings,
) -> None:
    # A request timeout of 4 s: the checks try again for half of it, then answer 503. The
    # failed logins are counted in the database, shared by processes: none is counted, and
    # more outages than the failed-login limit allows leave the token usable. The 13
    # requests' terminations each take a connection of their own and run one after another
    # on the event loop: a first try took up to 0.49 s here on a busy machine, so with 1 s
    # (0.5 s of retries) the session lookup was sometimes never tried again.
    _, client_secret = await new_token(settings.database_url, Role.CLIENT)
    _, admin_secret = await new_token(settings.database_url, Role.ADMIN)
    cookie = await _reviewer_page_session(settings.database_url, idle_for=timedelta(0))
    outage = replace(settings, request_timeout_s=4.0, require_token=True, limits_store="database")
    async with running(create_app(outage)) as client:
        faults = _faults(client, TOKEN_LOOKUP, SESSION_LOOKUP, times=None)
        try:
            responses = await asyncio.gather(
                client.post("/v1/lookup", json={"sha256": []}, headers=bearer(client_secret)),
                client.get("/admin", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}),
                *(client.get("/v1/admin/queue", headers=bearer(admin_secret)) for _ in range(11)),
            )
        finally:
            _remove(faults)
        for response in responses:
            _database_unavailable(response)
        assert all(fault.seen > 1 for fault in faults)  # tried again before giving up
        failures = await run_sql(settings.database_url, "SELECT count(*) FROM auth_failures")
        assert failures == [(0,)]
        after = await client.get("/v1/admin/queue", headers=bearer(admin_secret))
        assert after.status_code == 200, after.text
