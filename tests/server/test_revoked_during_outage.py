"""A token revoked while its request waits out a database outage is refused, not honoured.

After the token (or the review page's session) is read, its last-used (last-seen) time is
updated, and that update goes on through dropped connections for the request's retry
budget, up to 4 s. A revocation during that wait used to be ignored for the request: the
earlier read vouched for it. The update now applies only while the token is unrevoked and
the session still there, and the request is refused when it matched nothing. The outage
is a write whose connection drops before it writes anything (`DroppedWrites`); the token
is revoked, from another connection, as the connection drops.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from admin_sessions import new_token, page_session
from db_faults import DroppedWrites
from server_helpers import problem, run_sql, running
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.admin.auth import SESSION_COOKIE
from server.admin.roles import Role
from server.admin.token_store import revoke_token
from server.app import create_app
from server.db.engine import create_engine
from server.settings import Settings
from server.timefmt import utcnow


def revoked_now(database_url: str, token_id: int) -> None:
    """Revoke the token from another connection (as `fakescope admin revoke-token` does in
    another process) and return once that committed. Run from a callback of the app's event
    loop, so the revocation runs on its own loop in a thread, waited for."""

    async def revoke() -> None:
        engine = create_engine(database_url)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                await revoke_token(session, token_id, actor="admin")
                await session.commit()
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, revoke()).result()


def revoked_only(database_url: str, token_id: int) -> None:
    """Mark the token revoked and nothing else (its sessions stay), from another connection."""

    async def revoke() -> None:
        await run_sql(
            database_url,
            "UPDATE api_tokens SET revoked_at = :now WHERE id = :id",
            now=utcnow(),
            id=token_id,
        )

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, revoke()).result()


async def test_a_token_revoked_while_its_last_used_touch_waits_out_an_outage_is_refused(
    settings: Settings,
) -> None:
    token_id, secret = await new_token(settings.database_url, Role.REVIEWER)
    async with running(create_app(settings)) as client:
        faults = DroppedWrites(
            client.app.state.db,
            times=1,
            on_drop=lambda: revoked_now(settings.database_url, token_id),
        )
        try:
            response = await client.get(
                "/v1/admin/queue", headers={"Authorization": f"Bearer {secret}"}
            )
        finally:
            faults.remove()
        assert faults.dropped == 1  # the touch met the outage, and the token was revoked
        assert response.status_code == 401, response.text
        assert problem(response)["type"].endswith(":unauthorized")
        (used,) = await run_sql(
            settings.database_url, "SELECT last_used_at FROM api_tokens WHERE id = :id", id=token_id
        )
        assert used == (None,)  # a revoked token is not marked used


async def test_a_page_session_whose_token_is_revoked_during_its_touch_is_signed_out(
    settings: Settings,
) -> None:
    token_id, _ = await new_token(settings.database_url, Role.REVIEWER)
    cookie = await page_session(
        settings.database_url, token_id, Role.REVIEWER, idle_for=timedelta(minutes=5)
    )
    async with running(create_app(settings)) as client:
        faults = DroppedWrites(
            client.app.state.db,
            times=1,
            on_drop=lambda: revoked_now(settings.database_url, token_id),
        )
        try:
            response = await client.get("/admin", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        finally:
            faults.remove()
    assert faults.dropped == 1
    assert response.status_code == 401, response.text
    assert "Your session has ended" in response.text
    assert 'action="/admin/logout"' not in response.text  # the sign-in form, not the queue


async def test_a_page_session_whose_token_alone_is_marked_revoked_during_its_touch_ends(
    settings: Settings,
) -> None:
    # The token's row says revoked while its session row is still there (revoked by hand
    # in SQL): the touch matches the session but not the token, and the session is ended.
    token_id, _ = await new_token(settings.database_url, Role.REVIEWER)
    cookie = await page_session(
        settings.database_url, token_id, Role.REVIEWER, idle_for=timedelta(minutes=5)
    )
    async with running(create_app(settings)) as client:
        faults = DroppedWrites(
            client.app.state.db,
            times=1,
            on_drop=lambda: revoked_only(settings.database_url, token_id),
        )
        try:
            response = await client.get("/admin", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        finally:
            faults.remove()
    assert faults.dropped == 1
    assert response.status_code == 401, response.text
    assert "the token was revoked" in response.text
    sessions = await run_sql(settings.database_url, "SELECT count(*) FROM admin_sessions")
    assert sessions == [(0,)]
