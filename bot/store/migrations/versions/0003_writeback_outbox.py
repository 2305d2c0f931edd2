"""The helpdesk write-back outbox (bot.helpdesk.outbox): one row per decision to write back.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Feedback recorded before this revision gets no row: the release before it queued each of those
write-backs as its own job (bot.helpdesk.write_back_job), which still runs, through the outbox.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writeback_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("helpdesk", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["feedback_id"], ["feedback.id"]),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("feedback_id", name="uq_writeback_outbox_feedback"),
    )
    op.create_index("ix_writeback_outbox_due", "writeback_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_writeback_outbox_due", table_name="writeback_outbox")
    op.drop_table("writeback_outbox")
