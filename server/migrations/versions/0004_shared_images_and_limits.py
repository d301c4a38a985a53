"""Image bytes and rate-limit state in the database, shared by every process.

`stored_images` holds analysed image bytes when FAKESCOPE_IMAGE_STORE=database (the
default for the api and worker roles), so that any worker can answer /v1/ask and any API
process can show a flagged image without a shared disk. `limiter_entries` backs
Litestar's rate-limit middleware and `auth_failures` the failed-login limit, so that N
API processes allow the configured rate, not N times it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_images",
        sa.Column("sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_stored_images")),
    )
    with op.batch_alter_table("stored_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stored_images_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "limiter_entries",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_limiter_entries")),
    )
    with op.batch_alter_table("limiter_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_limiter_entries_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "auth_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client", sa.String(length=128), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_failures")),
    )
    with op.batch_alter_table("auth_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_failures_client"), ["client"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_failures_failed_at"), ["failed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_failures_failed_at"))
        batch_op.drop_index(batch_op.f("ix_auth_failures_client"))
    op.drop_table("auth_failures")
    with op.batch_alter_table("limiter_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_limiter_entries_expires_at"))
    op.drop_table("limiter_entries")
    with op.batch_alter_table("stored_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stored_images_stored_at"))
    op.drop_table("stored_images")
