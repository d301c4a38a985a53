"""Cached answers to /v1/ask questions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.analyses import Identity
from server.db.models import Answer, Image
from server.timefmt import utcnow


async def find_answer(
    session: AsyncSession, sha256: str, identity: Identity, kind: str, prompt_hash: str
) -> Answer | None:
    return await session.scalar(
        select(Answer).where(
            Answer.sha256 == sha256,
            Answer.model_key == identity.model_key,
            Answer.prompt_version == identity.prompt_version,
            Answer.kind == kind,
            Answer.prompt_hash == prompt_hash,
        )
    )


async def image_known(session: AsyncSession, sha256: str) -> bool:
    return await session.get(Image, sha256) is not None


def new_answer(
    sha256: str, identity: Identity, kind: str, prompt_hash: str, question: str, answer: str
) -> Answer:
    return Answer(
        sha256=sha256,
        model_key=identity.model_key,
        prompt_version=identity.prompt_version,
        kind=kind,
        prompt_hash=prompt_hash,
        question=question,
        answer=answer,
        created_at=utcnow(),
    )
