"""Exchangeability checks of production versions (bot.monitor.promise): whether live tickets still look like the rows
a version's promise was measured on, and the hand-off threshold re-set from clicked tickets while they do not.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promise_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("below", sa.Integer(), nullable=False),
        sa.Column("p05", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("shifted", sa.Boolean(), nullable=False),
        sa.Column("reset_handoff", sa.Float(), nullable=True),
        sa.Column("reset_bound", sa.Float(), nullable=True),
        sa.Column("far_on", sa.Boolean(), nullable=True),
        sa.Column("clicked_n", sa.Integer(), nullable=True),
        sa.Column("in_scope_n", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every suggest worker reads its version's newest row.
    op.create_index("ix_promise_checks_version", "promise_checks", ["version", "id"])


def downgrade() -> None:
    # Idempotent, as 0012's: on SQLite a downgrade refused further down (0007) leaves this one already run.
    if "promise_checks" in sa.inspect(op.get_bind()).get_table_names():
        op.drop_index("ix_promise_checks_version", table_name="promise_checks")
        op.drop_table("promise_checks")
