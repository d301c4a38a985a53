"""Review page sessions live on the server: the cookie and the database never hold the token.

A session ends when idle too long, at its absolute lifetime, when its browser signs out
(that session only) or when its token is revoked (every session of the token).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from admin_helpers import Tokens, bearer, reported_image, session_rows, set_session_times
from litestar import Litestar
from litestar.testing import AsyncTestClient
from test_review_page import csrf_of, sign_in

from server.admin.auth import SESSION_COOKIE
from server.admin.csrf import session_csrf_token
from server.app import create_app
from server.db.models import AdminSession
from server.settings import Settings
from server.timefmt import as_utc, utcnow

SIGN_IN_FORM = 'action="/admin/login"'


def _app(settings: Settings) -> AsyncTestClient[Litestar]:
    return AsyncTestClient(app=create_app(settings), timeout=60)


def _cookie(client: Any) -> str:
    value = client.cookies.get(SESSION_COOKIE)
    assert value, "no session cookie"
    return str(value)


async def _page_with(client: Any, cookie: str, path: str = "/admin") -> Any:
    return await client.get(path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})


async def _new_reviewer(client: Any, tokens: Tokens, name: str = "night shift") -> dict[str, Any]:
    created = await client.post(
        "/v1/admin/tokens", json={"role": "reviewer", "name": name}, headers=bearer(tokens.admin)
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def test_the_cookie_holds_a_random_session_secret_not_the_token(
    client, tokens: Tokens, settings: Settings
) -> None:
    response = await sign_in(client, tokens.reviewer)
    cookie = _cookie(client)
    assert cookie != tokens.reviewer and tokens.reviewer not in cookie
    assert tokens.reviewer not in str(response.headers)
    assert len(cookie) >= 43 and not cookie.startswith("fs_")
    client.cookies.clear()
    await sign_in(client, tokens.reviewer)
    assert _cookie(client) != cookie  # every sign-in opens a new session


async def test_the_token_cannot_be_recovered_from_the_session_row(
    client, tokens: Tokens, settings: Settings
) -> None:
    await sign_in(client, tokens.reviewer)
    cookie = _cookie(client)
    (row,) = await session_rows(settings.database_url)
    assert row.session_hash == hashlib.sha256(cookie.encode()).hexdigest()
    token_sha = hashlib.sha256(tokens.reviewer.encode()).hexdigest()
    stored = [str(getattr(row, column.key)) for column in AdminSession.__table__.columns]
    assert not any(tokens.reviewer in value or token_sha in value for value in stored)
    assert not any(cookie in value for value in stored)
    assert row.token_id is not None and row.bootstrap_mac is None
    assert row.user_agent and row.client


async def test_the_forms_csrf_token_derives_from_the_session_not_from_the_api_token(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(settings) as one, _app(settings) as other:
        await sign_in(one, tokens.reviewer)
        await sign_in(other, tokens.reviewer)
        csrf = csrf_of((await one.get("/admin")).text)
        assert csrf == session_csrf_token(_cookie(one))
        assert csrf != session_csrf_token(tokens.reviewer)
        assert csrf != csrf_of((await other.get("/admin")).text)  # same token, other session
        sha = await reported_image(other)
        stolen = await other.post(
            f"/admin/items/{sha}/decision", data={"label": "fake", "csrf_token": csrf}
        )
        assert stolen.status_code == 403 and "CSRF" in stolen.text


async def test_a_session_opened_on_one_process_works_on_another_sharing_the_database(
    settings: Settings, tokens: Tokens
) -> None:
    api = replace(settings, role="api", limits_store="database")
    async with (
        _app(replace(api, data_dir=settings.data_dir / "a")) as first,
        _app(replace(api, data_dir=settings.data_dir / "b")) as second,
    ):
        await sign_in(first, tokens.reviewer)
        cookie = _cookie(first)
        page = await _page_with(second, cookie)
        assert page.status_code == 200 and "Sign out" in page.text
        assert "Rita Reviewer" in page.text and SIGN_IN_FORM not in page.text
        # Signing out on the second process ends the session on the first as well.
        out = await second.post(
            "/admin/logout",
            data={"csrf_token": csrf_of(page.text)},
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
        )
        assert out.status_code in {200, 303}
        ended = await first.get("/admin")
        assert ended.status_code == 401 and SIGN_IN_FORM in ended.text


async def test_an_idle_session_ends_after_the_idle_timeout(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(replace(settings, admin_session_idle_hours=1.0)) as client:
        await sign_in(client, tokens.reviewer)
        (row,) = await session_rows(settings.database_url)
        await set_session_times(
            settings.database_url, row.id, last_seen_at=utcnow() - timedelta(minutes=50)
        )
        assert "Sign out" in (await client.get("/admin")).text  # 50 minutes idle: still open
        await set_session_times(
            settings.database_url, row.id, last_seen_at=utcnow() - timedelta(minutes=61)
        )
        page = await client.get("/admin")
        assert page.status_code == 401 and "expired" in page.text and SIGN_IN_FORM in page.text
        assert any(
            SESSION_COOKIE in c and "Max-Age=0" in c for c in page.headers.get_list("set-cookie")
        )
        assert await session_rows(settings.database_url) == []  # the ended row is deleted


async def test_a_session_in_constant_use_still_ends_at_its_absolute_lifetime(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(replace(settings, admin_session_max_days=2.0)) as client:
        await sign_in(client, tokens.reviewer)
        (row,) = await session_rows(settings.database_url)
        lifetime = as_utc(row.expires_at) - as_utc(row.created_at)
        assert lifetime == timedelta(days=2)
        await set_session_times(settings.database_url, row.id, expires_at=utcnow())
        page = await client.get("/admin")
        assert page.status_code == 401 and "expired" in page.text and SIGN_IN_FORM in page.text


async def test_last_seen_is_written_at_most_once_a_minute(
    client, tokens: Tokens, settings: Settings
) -> None:
    await sign_in(client, tokens.reviewer)
    (opened,) = await session_rows(settings.database_url)
    for _ in range(3):
        assert (await client.get("/admin")).status_code == 200
    (unchanged,) = await session_rows(settings.database_url)
    assert as_utc(unchanged.last_seen_at) == as_utc(opened.last_seen_at)
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    await set_session_times(settings.database_url, opened.id, last_seen_at=two_minutes_ago)
    assert (await client.get("/admin")).status_code == 200
    (touched,) = await session_rows(settings.database_url)
    assert utcnow() - as_utc(touched.last_seen_at) < timedelta(seconds=30)
    assert as_utc(touched.expires_at) == as_utc(opened.expires_at)  # the lifetime never grows


async def test_signing_out_ends_only_that_session_and_both_are_audited(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(settings) as laptop, _app(settings) as desktop:
        await sign_in(laptop, tokens.reviewer)
        await sign_in(desktop, tokens.reviewer)
        cookie = _cookie(laptop)
        page = await laptop.get("/admin")
        out = await laptop.post(
            "/admin/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
        )
        assert out.status_code == 303
        assert SIGN_IN_FORM in (await laptop.get("/admin")).text
        replayed = await _page_with(laptop, cookie)  # the old cookie, sent again
        assert replayed.status_code == 401 and SIGN_IN_FORM in replayed.text
        assert "Sign out" in (await desktop.get("/admin")).text
        assert len(await session_rows(settings.database_url)) == 1
        audit = await laptop.get("/v1/admin/audit", headers=bearer(tokens.admin))
        entries = [e for e in audit.json()["entries"] if e["action"].startswith("session.")]
        assert [e["action"] for e in entries] == [
            "session.sign_out",
            "session.sign_in",
            "session.sign_in",
        ]
        assert all("Rita Reviewer" in e["actor"] for e in entries)
        assert entries[0]["details"]["session_id"] == entries[2]["details"]["session_id"]


async def test_an_admin_lists_open_sessions_and_signs_one_out_from_elsewhere(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(settings) as laptop, _app(settings) as desktop:
        await sign_in(laptop, tokens.reviewer)
        await sign_in(desktop, tokens.reviewer)
        listed = await laptop.get("/v1/admin/sessions", headers=bearer(tokens.admin))
        sessions = listed.json()["sessions"]
        assert listed.status_code == 200 and len(sessions) == 2
        assert {s["token_name"] for s in sessions} == {"Rita Reviewer"}
        assert all(s["user_agent"] and s["expires_at"] for s in sessions)
        assert not any(_cookie(laptop) in str(s) for s in sessions)  # never the secret
        newest = sessions[0]["id"]  # the desktop's: signed in last
        ended = await laptop.delete(f"/v1/admin/sessions/{newest}", headers=bearer(tokens.admin))
        assert ended.status_code == 200
        assert SIGN_IN_FORM in (await desktop.get("/admin")).text
        assert "Sign out" in (await laptop.get("/admin")).text
        again = await laptop.delete(f"/v1/admin/sessions/{newest}", headers=bearer(tokens.admin))
        assert again.status_code == 404
        refused = await laptop.get("/v1/admin/sessions", headers=bearer(tokens.reviewer))
        assert refused.status_code == 403  # admins only
        audit = await laptop.get(
            "/v1/admin/audit", params={"action": "session.end"}, headers=bearer(tokens.admin)
        )
        assert [e["details"]["session_id"] for e in audit.json()["entries"]] == [newest]


async def test_revoking_a_token_ends_every_one_of_its_sessions_at_once(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(settings) as one, _app(settings) as two, _app(settings) as other:
        created = await _new_reviewer(one, tokens)
        await sign_in(one, created["token"])
        await sign_in(two, created["token"])
        await sign_in(other, tokens.reviewer)
        assert len(await session_rows(settings.database_url)) == 3
        revoked = await one.delete(
            f"/v1/admin/tokens/{created['id']}", headers=bearer(tokens.admin)
        )
        assert revoked.status_code == 200
        for client in (one, two):
            page = await client.get("/admin")
            assert page.status_code == 401 and "revoked" in page.text
            assert SIGN_IN_FORM in page.text
        assert "Sign out" in (await other.get("/admin")).text
        rows = await session_rows(settings.database_url)
        assert len(rows) == 1 and rows[0].token_id != created["id"]
        audit = (await one.get("/v1/admin/audit", headers=bearer(tokens.admin))).json()
        revocation = next(e for e in audit["entries"] if e["action"] == "token.revoke")
        assert revocation["details"]["sessions_ended"] == 2


async def test_an_old_format_cookie_holding_the_token_gets_the_sign_in_page(
    client, tokens: Tokens
) -> None:
    for _ in range(12):  # more than the failed-login limit: these are not login attempts
        page = await _page_with(client, tokens.reviewer)
        assert page.status_code == 401 and SIGN_IN_FORM in page.text
        assert "Sign out" not in page.text
    assert any(
        SESSION_COOKIE in c and "Max-Age=0" in c for c in page.headers.get_list("set-cookie")
    )
    image = await _page_with(client, tokens.reviewer, f"/admin/items/{'ab' * 32}/image")
    assert image.status_code == 401
    assert (await sign_in(client, tokens.reviewer)).status_code == 303


async def test_sessions_that_ended_are_deleted_in_bulk_at_the_next_sign_in(
    settings: Settings, tokens: Tokens
) -> None:
    async with _app(settings) as first, _app(settings) as second, _app(settings) as third:
        await sign_in(first, tokens.reviewer)
        await sign_in(second, tokens.admin)
        idle, old = await session_rows(settings.database_url)
        await set_session_times(
            settings.database_url, idle.id, last_seen_at=utcnow() - timedelta(days=1)
        )
        await set_session_times(settings.database_url, old.id, expires_at=utcnow())
        await sign_in(third, tokens.reviewer)
        rows = await session_rows(settings.database_url)
        assert [row.session_hash for row in rows] == [
            hashlib.sha256(_cookie(third).encode()).hexdigest()
        ]


async def test_a_bootstrap_admin_session_ends_when_the_bootstrap_token_changes_or_goes(
    settings: Settings, tokens: Tokens
) -> None:
    bootstrap = "bootstrap-secret-for-tests-0123456789"
    cookies = []
    for _ in range(2):
        async with _app(replace(settings, admin_token=bootstrap)) as client:
            await sign_in(client, bootstrap)
            cookies.append(_cookie(client))
            assert "Sign out" in (await client.get("/admin")).text
    for row in await session_rows(settings.database_url):
        assert row.token_id is None and row.bootstrap_mac
        assert row.bootstrap_mac != hashlib.sha256(bootstrap.encode()).hexdigest()
    async with _app(replace(settings, admin_token=bootstrap)) as same:
        assert "Sign out" in (await _page_with(same, cookies[0])).text
    for cookie, changed in zip(cookies, ("a-new-bootstrap-secret-9876543210", None), strict=True):
        async with _app(replace(settings, admin_token=changed)) as other:
            page = await _page_with(other, cookie)
            assert page.status_code == 401 and "revoked" in page.text
            assert SIGN_IN_FORM in page.text


async def test_reviewers_read_the_audit_log_without_where_staff_signed_in_from(
    client, tokens: Tokens
) -> None:
    """The audit log is open to reviewers; the admin-only session and token listings are
    not. Its sign-in entries held every staff member's address and browser, and its
    token entries the tokens' prefixes: a reviewer read there what the listings keep from
    them."""
    client.headers["User-Agent"] = "Firefox-on-the-night-desk"
    await sign_in(client, tokens.reviewer)
    await _new_reviewer(client, tokens)

    async def entries(token: str) -> list[dict[str, Any]]:
        answer = await client.get("/v1/admin/audit", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["entries"]
        return found

    def newest_by_action(listed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {e["action"]: e for e in reversed(listed)}  # listed newest first

    by_admin = newest_by_action(await entries(tokens.admin))
    by_reviewer = newest_by_action(await entries(tokens.reviewer))
    signed_in, created = by_admin["session.sign_in"], by_admin["token.create"]
    assert signed_in["details"]["user_agent"] == "Firefox-on-the-night-desk"
    assert signed_in["details"]["client"] and created["details"]["prefix"]
    assert "withheld" not in signed_in
    seen_sign_in, seen_created = by_reviewer["session.sign_in"], by_reviewer["token.create"]
    assert seen_sign_in["withheld"] == ["client", "user_agent"]
    assert seen_created["withheld"] == ["prefix"]
    assert seen_sign_in["details"] == {
        k: v for k, v in signed_in["details"].items() if k not in ("client", "user_agent")
    }
    assert seen_created["details"]["name"] == "night shift"  # the rest stays
    assert "Firefox-on-the-night-desk" not in str(await entries(tokens.reviewer))
