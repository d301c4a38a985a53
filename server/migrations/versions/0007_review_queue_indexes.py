"""The review queue reads each page from an index: by status and flag time, by the label
served now, and by flag time alone.

The queue is read oldest flag first (`ORDER BY created_at, sha256`). With only an index on
`status`, every page sorted all the items of its status: 150,000 open items took about
0.2 s a page on PostgreSQL. Filtering by label computed the label served now (the latest
decision's, else the latest analysis's) for every item, two subqueries each: over 5 s a
page. That label is now a column, `served_label`, which every new analysis and decision
keeps current (server/db/review.py), filled here for the items there are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The label served now: the latest decision's, else the latest analysis's (both orders as in
# the code: newest first, the larger id first among equal times).
SERVED_LABEL = """
UPDATE review_items SET served_label = COALESCE(
    (SELECT d.label FROM review_decisions d WHERE d.sha256 = review_items.sha256
     ORDER BY d.created_at DESC, d.id DESC LIMIT 1),
    (SELECT a.label FROM analyses a WHERE a.sha256 = review_items.sha256
     ORDER BY a.created_at DESC, a.id DESC LIMIT 1)
)
"""


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("served_label", sa.String(length=16), nullable=True))
    op.execute(SERVED_LABEL)
    op.drop_index("ix_review_items_status", table_name="review_items")
    op.create_index(
        "ix_review_items_status_created", "review_items", ["status", "created_at", "sha256"]
    )
    op.create_index(
        "ix_review_items_status_label_created",
        "review_items",
        ["status", "served_label", "created_at", "sha256"],
    )
    op.create_index("ix_review_items_created", "review_items", ["created_at", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_review_items_created", table_name="review_items")
    op.drop_index("ix_review_items_status_label_created", table_name="review_items")
    op.drop_index("ix_review_items_status_created", table_name="review_items")
    op.create_index("ix_review_items_status", "review_items", ["status"])
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("served_label")
