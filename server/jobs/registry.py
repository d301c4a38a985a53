"""The `workers` table: each GPU worker says which model it serves and that it is alive.

API processes read it to know the model identity their cached results are keyed by, and
whether any worker can take a job right now (a heartbeat within the lease).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from server.db.analyses import Identity
from server.db.database import Database
from server.db.models import Worker
from server.timefmt import utcnow


@dataclass(frozen=True)
class LiveWorker:
    id: str
    host: str
    identity: Identity
    model: dict[str, Any]
    capacity: int


async def register(
    db: Database, worker_id: str, identity: Identity, model: dict[str, Any], capacity: int
) -> None:
    """Add this worker's row, or bring it back to life (a retry whose first try's reply
    was lost, a row someone deleted): safe to repeat."""
    now = utcnow()
    async with db.write() as session:
        row = await session.get(Worker, worker_id)
        if row is None:
            session.add(
                Worker(
                    id=worker_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    model_key=identity.model_key,
                    prompt_version=identity.prompt_version,
                    model=model,
                    capacity=capacity,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        else:
            row.heartbeat_at = now
            row.stopped_at = None


async def heartbeat(db: Database, worker_id: str) -> bool:
    """Say this worker is alive; False when its row is gone (it must register again)."""
    async with db.write() as session:
        result = await session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def stopped(db: Database, worker_id: str) -> None:
    async with db.write() as session:
        await session.execute(
            update(Worker).where(Worker.id == worker_id).values(stopped_at=utcnow())
        )


async def live_workers(db: Database, within_s: float) -> list[LiveWorker]:
    """Workers that beat within `within_s` and have not stopped, newest first."""
    since = utcnow() - timedelta(seconds=within_s)
    statement = (
        select(
            Worker.id,
            Worker.host,
            Worker.model_key,
            Worker.prompt_version,
            Worker.model,
            Worker.capacity,
        )
        .where(Worker.heartbeat_at >= since, Worker.stopped_at.is_(None))
        .order_by(Worker.started_at.desc())
    )
    async with db.connect() as conn:
        rows = (await conn.execute(statement)).all()
    return [
        LiveWorker(
            id=row.id,
            host=row.host,
            identity=Identity(model_key=row.model_key, prompt_version=row.prompt_version),
            model=dict(row.model),
            capacity=int(row.capacity),
        )
        for row in rows
    ]


async def newest_identity(db: Database) -> tuple[Identity, dict[str, Any]] | None:
    """The model of the most recently started worker, alive or not (None: never one)."""
    statement = (
        select(Worker.model_key, Worker.prompt_version, Worker.model)
        .order_by(Worker.started_at.desc())
        .limit(1)
    )
    async with db.connect() as conn:
        row = (await conn.execute(statement)).first()
    if row is None:
        return None
    return Identity(model_key=row.model_key, prompt_version=row.prompt_version), dict(row.model)
