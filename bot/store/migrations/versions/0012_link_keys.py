"""Signed links revocable by an epoch in SQL (issue 20, item 3).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

link_epochs holds one row per page kind (review, dashboard): the epoch every new link of that
kind signs in, bumped by `tuesday links revoke` (bot.store.link_epochs). Links made before this
revision carry no epoch and are refused.
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PAGES = ("review", "dashboard")


def upgrade() -> None:
    table = op.create_table(
        "link_epochs",
        sa.Column("page", sa.String(length=32), primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(table, [{"page": page, "epoch": 1, "changed_by": "migration 0012",
                            "changed_at": datetime.now(timezone.utc)} for page in PAGES])


def downgrade() -> None:
    if "link_epochs" in sa.inspect(op.get_bind()).get_table_names():
        op.drop_table("link_epochs")
