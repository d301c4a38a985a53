"""Index finished jobs by state and finished_at: the expiry deletes the old ones by it.

Every few seconds one process deletes the jobs finished over an hour ago
(`state IN ('done', 'failed') AND finished_at < now - 1 h`): without an index, to find
those few it read every row of the table, an hour of jobs with their answers. Each
/metrics scrape of an API or worker process counts the last hour's finished jobs, which
the index alone can answer. It holds finished jobs only (queued and running ones have no
finished_at), so claims and lease renewals never touch it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = sa.text("finished_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_state_finished_at",
        "jobs",
        ["state", "finished_at"],
        unique=False,
        postgresql_where=FINISHED,
        sqlite_where=FINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_state_finished_at", table_name="jobs")
