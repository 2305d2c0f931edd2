"""Who may label: each click says whether it trains the model (a labeller's, or approved) or waits for a manager.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

feedback.trust is `labeller` for every click stored before this revision (the team had no labeller
list then, so every click trained), `held` for a click from someone not in TUESDAY_LABELLERS, and
`approved` / `rejected` once a manager decided (trust_by, trust_at).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite: that would rebuild the table without its trigger).
    op.add_column("feedback", sa.Column("trust", sa.String(length=16), nullable=False, server_default="labeller"))
    op.add_column("feedback", sa.Column("trust_by", sa.String(length=255), nullable=True))
    op.add_column("feedback", sa.Column("trust_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_feedback_trust", "feedback", ["trust"])
    # The flood alert (every TUESDAY_ALERT_CHECK_MINUTES) and the People page read recent clicks by time.
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])


def downgrade() -> None:
    bind = op.get_bind()
    present = {c["name"] for c in sa.inspect(bind).get_columns("feedback")}
    if "trust" not in present:
        return
    # Held and rejected clicks would train once the column is gone: refuse while any wait or were refused.
    waiting = bind.execute(sa.text("SELECT count(*) FROM feedback WHERE trust IN ('held', 'rejected')")).scalar()
    if waiting:
        raise RuntimeError(f"{waiting} clicks are held or rejected (not training data); approve or delete them "
                           "before downgrading below revision 0011")
    op.drop_index("ix_feedback_created_at", table_name="feedback")
    op.drop_index("ix_feedback_trust", table_name="feedback")
    for column in ("trust_at", "trust_by", "trust"):
        op.execute(f"ALTER TABLE feedback DROP COLUMN {column}")
