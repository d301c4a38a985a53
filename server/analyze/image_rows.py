"""Analysed image bytes as database rows (``FAKESCOPE_IMAGE_STORE=database``).

With API processes and GPU workers on several machines, the bytes of an image analysed
by one worker must reach whichever worker answers a question about it later, and every
API process's review page. PostgreSQL already holds the cache and the job queue, so it
holds these bytes too (``stored_images``; uploads are capped by
``FAKESCOPE_MAX_UPLOAD_BYTES``). Saving known bytes again only moves their retention
clock: the bytes themselves are sent once.

Saving, loading and checking for bytes go on through dropped connections (a terminated
backend, a failover) for `retry_s` seconds: a save is an upsert that sets the same state
again when repeated (a try whose commit's reply was lost has stored the bytes; the next
only moves their clock). The purge is the retention loop's, which tries again later.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from server.analyze.image_store import is_sha256
from server.db.database import RETRY_BUDGET_S, Database, retry_connection_errors
from server.db.models import StoredImage
from server.timefmt import utcnow

if TYPE_CHECKING:
    from server.jobs.retry import RetryAllowance

_PURGE_CHUNK = 500  # rows deleted per statement: bounded parameter lists and transactions


class DatabaseImageStore:
    """:class:`server.analyze.image_store.ImageStore` on the ``stored_images`` table."""

    def __init__(self, db: Database, *, retry_s: float = RETRY_BUDGET_S) -> None:
        self.db = db
        self.retry_s = retry_s  # how long work goes on through dropped connections

    async def save(self, sha256: str, data: bytes) -> None:
        if not is_sha256(sha256):
            raise ValueError("not a sha256 hex digest")
        await retry_connection_errors(lambda: self._save(sha256, data), budget_s=self.retry_s)

    async def _save(self, sha256: str, data: bytes) -> None:
        now = utcnow()
        async with self.db.write() as session:
            touched = await session.execute(
                update(StoredImage).where(StoredImage.sha256 == sha256).values(stored_at=now)
            )
            if touched.rowcount:  # type: ignore[attr-defined]
                return
            insert = postgresql_insert if not self.db.is_sqlite else sqlite_insert
            statement = insert(StoredImage).values(sha256=sha256, data=data, stored_at=now)
            # Another process may insert the same image between our UPDATE and INSERT.
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[StoredImage.sha256], set_={"stored_at": now}
                )
            )

    async def load(self, sha256: str, *, allowance: RetryAllowance | None = None) -> bytes | None:
        """The bytes; tried again for `allowance` (a request's, shared with its other
        steps) when given, else for `retry_s`."""
        if not is_sha256(sha256):
            return None
        statement = select(StoredImage.data).where(StoredImage.sha256 == sha256)
        found = await self._read(statement, allowance)
        return bytes(found) if found is not None else None

    async def contains(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            return False
        found = await self._read(select(StoredImage.sha256).where(StoredImage.sha256 == sha256))
        return found is not None

    async def _read(self, statement: Select[Any], allowance: RetryAllowance | None = None) -> Any:
        """The first column of the statement's first row (None without one)."""

        async def read() -> Any:
            async with self.db.connect() as conn:
                return await conn.scalar(statement)

        if allowance is not None:
            return await allowance.run(read)
        return await retry_connection_errors(read, budget_s=self.retry_s)

    async def purge(self, older_than_s: float, *, keep: Collection[str] = ()) -> int:
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(StoredImage.sha256).where(StoredImage.stored_at < cutoff)
            )
            expired = [sha for sha in rows.scalars() if sha not in keep]
        deleted = 0
        for start in range(0, len(expired), _PURGE_CHUNK):
            chunk = expired[start : start + _PURGE_CHUNK]
            async with self.db.write() as session:
                # Re-checked here: bytes saved again since the SELECT keep their new clock.
                result = await session.execute(
                    delete(StoredImage).where(
                        StoredImage.sha256.in_(chunk), StoredImage.stored_at < cutoff
                    )
                )
                deleted += result.rowcount  # type: ignore[attr-defined]
        return deleted
