"""Review page sessions in the database (``admin_sessions``): open, find, touch, end.

The browser's cookie holds a random session secret; the row holds only its SHA-256, so
neither the cookie nor the database gives away an API token. Every process on the
database sees the same sessions. A session ends when it has been idle too long, when it
reaches its absolute lifetime, when its browser signs out, or when its token is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.audit import record_audit
from server.admin.principal import BOOTSTRAP_ADMIN_NAME, Principal
from server.admin.roles import Role
from server.admin.tokens import hash_token, hashes_match
from server.db.models import AdminSession, ApiToken
from server.timefmt import as_utc, iso_z, utcnow

MAX_SECRET_CHARS = 512
USER_AGENT_CHARS = 300
CLIENT_CHARS = 128
# last_seen_at only decides idle expiry: a write a minute per session is plenty.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
_BOOTSTRAP_CONTEXT = b"fakescope-admin-bootstrap-session/v1:"


def new_session_secret() -> str:
    """A fresh random session secret (256 bits, URL-safe): the cookie's whole value."""
    return secrets.token_urlsafe(32)


def bootstrap_mac(session_secret: str, bootstrap_token: str) -> str:
    """Binds a session to the bootstrap token it was opened with.

    Keyed by the session secret, which the database never sees: the row alone cannot be
    used to test guesses of the bootstrap token.
    """
    message = _BOOTSTRAP_CONTEXT + bootstrap_token.encode("utf-8")
    return hmac.new(session_secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SessionLifetime:
    """How long a session lasts: ``idle`` since it was last used, ``absolute`` since sign-in."""

    idle: timedelta
    absolute: timedelta

    def ended(self, row: AdminSession, now: datetime) -> bool:
        return now >= as_utc(row.expires_at) or now - as_utc(row.last_seen_at) >= self.idle


@dataclass(frozen=True)
class FoundSession:
    """A live session and who it belongs to."""

    id: int
    principal: Principal
    stale_last_seen: bool


class SessionEndedError(Exception):
    """The cookie names no live session; ``reason`` is for the sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def open_session(
    session: AsyncSession,
    principal: Principal,
    *,
    secret: str,
    lifetime: SessionLifetime,
    bootstrap_token: str | None,
    user_agent: str | None,
    client: str | None,
) -> AdminSession:
    """Store a new session for ``principal`` and audit the sign-in; the caller commits.

    Sessions that have ended are deleted first, in bulk: sign-ins are rare, pages are not.
    """
    now = utcnow()
    await delete_ended_sessions(session, lifetime, now)
    row = AdminSession(
        session_hash=hash_token(secret),
        token_id=principal.token_id,
        bootstrap_mac=(
            bootstrap_mac(secret, bootstrap_token)
            if principal.token_id is None and bootstrap_token
            else None
        ),
        user_agent=user_agent[:USER_AGENT_CHARS] if user_agent else None,
        client=client[:CLIENT_CHARS] if client else None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime.absolute,
    )
    session.add(row)
    await session.flush()
    record_audit(
        session,
        actor=principal.actor,
        action="session.sign_in",
        details={
            "session_id": row.id,
            "token_id": principal.token_id,
            "client": row.client,
            "user_agent": row.user_agent,
        },
    )
    return row


async def find_session(
    session: AsyncSession,
    secret: str,
    *,
    lifetime: SessionLifetime,
    bootstrap_token: str | None,
) -> FoundSession:
    """The live session this secret opens; raises SessionEndedError otherwise.

    The lookup is by the SHA-256 of the secret (an index probe), and the hashes are
    compared in constant time, as for API tokens.
    """
    if not secret or len(secret) > MAX_SECRET_CHARS:
        raise SessionEndedError("unknown")
    query = (
        select(AdminSession, ApiToken)
        .outerjoin(ApiToken, ApiToken.id == AdminSession.token_id)
        .where(AdminSession.session_hash == hash_token(secret))
    )
    found = (await session.execute(query)).first()
    if found is None:
        raise SessionEndedError("unknown")
    row, token = found
    if not hashes_match(row.session_hash, secret):
        raise SessionEndedError("unknown")
    now = utcnow()
    if lifetime.ended(row, now):
        raise SessionEndedError("expired")
    principal = _principal_of(row, token, secret, bootstrap_token)
    if principal is None:
        raise SessionEndedError("revoked")
    stale = now - as_utc(row.last_seen_at) >= LAST_SEEN_RESOLUTION
    return FoundSession(id=row.id, principal=principal, stale_last_seen=stale)


def _principal_of(
    row: AdminSession, token: ApiToken | None, secret: str, bootstrap_token: str | None
) -> Principal | None:
    """Who the session acts for, or None when its token was revoked (or changed)."""
    if row.token_id is None:
        if not bootstrap_token or row.bootstrap_mac is None:
            return None
        expected = bootstrap_mac(secret, bootstrap_token)
        if not hmac.compare_digest(row.bootstrap_mac.encode(), expected.encode()):
            return None
        return Principal(token_id=None, name=BOOTSTRAP_ADMIN_NAME, role=Role.ADMIN)
    if token is None or token.revoked_at is not None:
        return None
    return Principal(token_id=token.id, name=token.name, role=Role(token.role))


async def touch_session(session: AsyncSession, session_id: int, token_id: int | None) -> None:
    """Record that a session (and its token) was used now; the caller commits.

    Raises SessionEndedError when the session ended ("unknown": signed out, ended by an
    admin, or its token revoked, which deletes it) or its token was revoked ("revoked")
    since the session was read: the caller then rolls back and refuses the request.
    """
    now = utcnow()
    touched = await session.execute(
        update(AdminSession)
        .where(AdminSession.id == session_id)
        .values(last_seen_at=now)
        .returning(AdminSession.id)
    )
    if touched.first() is None:
        raise SessionEndedError("unknown")
    if token_id is None:
        return
    used = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(last_used_at=now)
        .returning(ApiToken.id)
    )
    if used.first() is None:
        raise SessionEndedError("revoked")


async def end_session(session: AsyncSession, secret: str) -> int | None:
    """Delete the session this secret opens; returns its id, or None if there was none."""
    if not secret or len(secret) > MAX_SECRET_CHARS:
        return None
    result = await session.execute(
        delete(AdminSession)
        .where(AdminSession.session_hash == hash_token(secret))
        .returning(AdminSession.id)
    )
    return result.scalar_one_or_none()


async def end_sessions_of_token(session: AsyncSession, token_id: int) -> int:
    """Delete every session opened with a token (it was revoked); returns how many."""
    result = await session.execute(delete(AdminSession).where(AdminSession.token_id == token_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_ended_sessions(
    session: AsyncSession, lifetime: SessionLifetime, now: datetime | None = None
) -> None:
    """Delete every session past its absolute lifetime or idle for too long."""
    now = now or utcnow()
    await session.execute(
        delete(AdminSession).where(
            or_(AdminSession.expires_at <= now, AdminSession.last_seen_at <= now - lifetime.idle)
        )
    )


async def live_sessions(session: AsyncSession, lifetime: SessionLifetime) -> list[dict[str, Any]]:
    """Every review page session still open, newest first, with whose token it is."""
    now = utcnow()
    query = (
        select(AdminSession, ApiToken.name)
        .outerjoin(ApiToken, ApiToken.id == AdminSession.token_id)
        .where(
            AdminSession.expires_at > now,
            AdminSession.last_seen_at > now - lifetime.idle,
        )
        .order_by(AdminSession.created_at.desc(), AdminSession.id.desc())
    )
    return [
        {
            "id": row.id,
            "token_id": row.token_id,
            "token_name": name if row.token_id is not None else BOOTSTRAP_ADMIN_NAME,
            "created_at": iso_z(row.created_at),
            "last_seen_at": iso_z(row.last_seen_at),
            "expires_at": iso_z(
                min(as_utc(row.expires_at), as_utc(row.last_seen_at) + lifetime.idle)
            ),
            "user_agent": row.user_agent,
            "client": row.client,
        }
        for row, name in (await session.execute(query)).all()
    ]


async def end_session_by_id(session: AsyncSession, session_id: int, *, actor: str) -> bool:
    """Sign one session out from elsewhere (an admin's decision); audited. False if none."""
    result = await session.execute(
        delete(AdminSession).where(AdminSession.id == session_id).returning(AdminSession.token_id)
    )
    ended = result.first()
    if ended is None:
        return False
    record_audit(
        session,
        actor=actor,
        action="session.end",
        details={"session_id": session_id, "token_id": ended[0]},
    )
    return True
