"""SQLAlchemy models. The schema itself comes only from the Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.timefmt import utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Image(Base):
    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(CHAR(64), primary_key=True)
    pdq: Mapped[str] = mapped_column(CHAR(64), index=True)
    pdq_quality: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    n_frames: Mapped[int] = mapped_column(Integer, default=1)
    # Indexed: the PDQ index of each process refreshes by it (server/lookup/live_index.py).
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class AnalysisRow(Base):
    __tablename__ = "analyses"
    __table_args__ = (
        UniqueConstraint("sha256", "model_key", "prompt_version", name="uq_analyses_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"))
    model_key: Mapped[str] = mapped_column(String(300))
    prompt_version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(16))
    p_fake: Mapped[float | None] = mapped_column(Float, nullable=True)
    decided_by: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    explanation: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON)
    timings: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint(
            "sha256", "model_key", "prompt_version", "kind", "prompt_hash", name="uq_answers_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"))
    model_key: Mapped[str] = mapped_column(String(300))
    prompt_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    prompt_hash: Mapped[str] = mapped_column(CHAR(64))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    suggested_label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewItem(Base):
    """An image flagged for review. The queue is read oldest flag first, by status and by
    the label served now (`served_label`: the latest decision's, else the latest analysis's,
    kept here by every write of either, server/db/review.py), each page from an index."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_created", "status", "created_at", "sha256"),
        Index(
            "ix_review_items_status_label_created",
            "status",
            "served_label",
            "created_at",
            "sha256",
        ),
        Index("ix_review_items_created", "created_at", "sha256"),
    )

    sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"), primary_key=True)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    served_label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(CHAR(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AdminSession(Base):
    """A sign-in to the review page (/admin); the browser's cookie holds only its secret.

    Only the SHA-256 of the secret is stored. Sessions opened with the bootstrap token
    (FAKESCOPE_ADMIN_TOKEN) have no ``token_id``; ``bootstrap_mac`` binds them to that
    token (an HMAC keyed by the session secret, so it cannot be checked without the cookie).
    """

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(CHAR(64), unique=True)
    token_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("api_tokens.id"), nullable=True, index=True
    )
    bootstrap_mac: Mapped[str | None] = mapped_column(CHAR(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    client: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ReviewDecision(Base):
    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("api_tokens.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(CHAR(64), nullable=True, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class Job(Base):
    """Work an API process hands to the GPU workers (FAKESCOPE_ROLE=api|worker).

    `queued` → `running` (claimed by one worker under a lease it keeps renewing) → `done`
    or `failed`. A worker that dies leaves its lease to run out; the job is then queued
    again, up to `max_attempts`. The image bytes travel in the row and are dropped when
    the job finishes; the analysis or answer itself lands in `analyses` or `answers`.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        # Finished jobs by state and age: the expiry's delete of those finished over an hour
        # ago (every few seconds) and /metrics' count of the last hour's read only these
        # entries. Queued and running jobs (finished_at NULL) are left out.
        Index(
            "ix_jobs_state_finished_at",
            "state",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # "analyze" | "ask"
    sha256: Mapped[str] = mapped_column(CHAR(64))
    model_key: Mapped[str] = mapped_column(String(300))
    prompt_version: Mapped[str] = mapped_column(String(64))
    explain: Mapped[bool] = mapped_column(Boolean, default=False)
    question: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Worker(Base):
    """A GPU worker process: which model it serves, and when it last said it was alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    model_key: Mapped[str] = mapped_column(String(300))
    prompt_version: Mapped[str] = mapped_column(String(64))
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StoredImage(Base):
    """Analysed image bytes kept in the database (FAKESCOPE_IMAGE_STORE=database).

    With API processes and GPU workers on several machines, no one disk holds every
    image: `/v1/ask` on any worker and the review page on any API process read the
    bytes from here. `stored_at` is when the bytes last came in (the retention clock).
    """

    __tablename__ = "stored_images"

    sha256: Mapped[str] = mapped_column(CHAR(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class LimiterEntry(Base):
    """One key of Litestar's rate-limit store, shared by every API process."""

    __tablename__ = "limiter_entries"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )


class AuthFailure(Base):
    """One failed admin authentication, counted across processes (one row per attempt)."""

    __tablename__ = "auth_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(128), index=True)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
