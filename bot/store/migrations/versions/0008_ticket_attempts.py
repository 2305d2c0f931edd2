"""Poison tickets: how often a ticket's suggest job failed, and when it was given up on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A ticket whose job fails every time is no longer queued forever: after TUESDAY_SUGGEST_MAX_ATTEMPTS
failures it is `failed` (failed_at set), shown by `/tuesday status`, /metrics and an alert, and left
out of the sweeper; `tuesday tickets retry` queues it again. last_error keeps the exception's type
only (its message may quote the ticket).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("tickets", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tickets", sa.Column("last_error", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Only what is there: SQLite commits each ALTER at once, so a downgrade that a later step refused
    # (0007 with another task's rows) may have dropped these already.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("tickets")}
    for column in [c for c in ("last_error", "failed_at", "attempts") if c in present]:
        # In place on SQLite too (3.35+): rebuilding tickets would trip the triggers that refer to it.
        op.drop_column("tickets", column) if op.get_bind().dialect.name != "sqlite" \
            else op.execute(f"ALTER TABLE tickets DROP COLUMN {column}")
