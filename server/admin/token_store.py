"""API tokens in the database: create (secret shown once), revoke, list, authenticate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.audit import record_audit
from server.admin.roles import Role
from server.admin.session_store import end_sessions_of_token
from server.admin.tokens import display_prefix, generate_token, hash_token, hashes_match
from server.db.models import ApiToken
from server.timefmt import as_utc, iso_z, utcnow

MAX_NAME_CHARS = 200
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # fewer writes: last_used_at is a hint, not a log


class TokenNotFoundError(LookupError):
    """No token with that id exists."""


@dataclass(frozen=True)
class CreatedToken:
    """A freshly created token; ``secret`` exists only here and is never stored."""

    id: int
    name: str
    role: Role
    prefix: str
    secret: str


def token_to_dict(token: ApiToken) -> dict[str, Any]:
    """The public view of a token row (never the hash)."""
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "prefix": token.prefix,
        "created_at": iso_z(token.created_at),
        "revoked_at": iso_z(token.revoked_at),
        "last_used_at": iso_z(token.last_used_at),
    }


async def create_token(
    session: AsyncSession, *, role: Role, name: str | None, actor: str
) -> CreatedToken:
    """Create a token of ``role`` and audit it; the caller commits."""
    secret = generate_token()
    prefix = display_prefix(secret)
    label = (name or f"{role.value}-{prefix}").strip()[:MAX_NAME_CHARS] or prefix
    row = ApiToken(
        name=label,
        role=role.value,
        token_hash=hash_token(secret),
        prefix=prefix,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    record_audit(
        session,
        actor=actor,
        action="token.create",
        details={"token_id": row.id, "name": label, "role": role.value, "prefix": prefix},
    )
    return CreatedToken(id=row.id, name=label, role=role, prefix=prefix, secret=secret)


async def revoke_token(session: AsyncSession, token_id: int, *, actor: str) -> ApiToken:
    """Revoke a token (idempotent), end its review page sessions, audit it; the caller commits."""
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise TokenNotFoundError(f"no token with id {token_id}")
    sessions_ended = await end_sessions_of_token(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_audit(
            session,
            actor=actor,
            action="token.revoke",
            details={
                "token_id": row.id,
                "name": row.name,
                "role": row.role,
                "prefix": row.prefix,
                "sessions_ended": sessions_ended,
            },
        )
    return row


async def list_tokens(session: AsyncSession, *, include_revoked: bool = True) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list((await session.scalars(query)).all())


async def find_active_token(session: AsyncSession, secret: str) -> ApiToken | None:
    """The unrevoked token whose secret this is, or None.

    The lookup is by the SHA-256 of the presented secret (an index probe, so timing reveals
    nothing about stored secrets); the comparison of the hashes is constant-time as well.
    """
    if not secret or len(secret) > 512:
        return None
    digest = hash_token(secret)
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    return row if hashes_match(row.token_hash, secret) else None


def needs_touch(row: ApiToken) -> bool:
    """True when ``last_used_at`` is older than its resolution (or unset)."""
    if row.last_used_at is None:
        return True
    return utcnow() - as_utc(row.last_used_at) >= _LAST_USED_RESOLUTION


async def mark_used(session: AsyncSession, token_id: int) -> bool:
    """Set the token's ``last_used_at`` to now unless it was revoked since it was read:
    False then (or when it is gone), and the request it came with is refused."""
    touched = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(last_used_at=utcnow())
        .returning(ApiToken.id)
    )
    return touched.first() is not None
