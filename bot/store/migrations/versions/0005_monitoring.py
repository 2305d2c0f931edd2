"""Monitoring (bot.monitor): when a suggestion was posted, what its prediction cost in CPU time,
the model's own top label and the nearest training example's similarity as columns, and the
indexes the measures' time windows need.

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-12

predicted_label and nearest_similarity are filled for existing rows from their probabilities and
evidence JSON (the measures read columns, never JSON, so a dashboard over 100,000 tickets stays fast).
posted_at stays empty on old rows: the measures fall back to created_at.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 1000


def _backfill() -> None:
    """predicted_label (argmax of probabilities) and nearest_similarity (evidence[0]) of the rows stored before."""
    bind = op.get_bind()
    rows = sa.table("suggestions", sa.column("id", sa.Integer), sa.column("probabilities", sa.Text),
                    sa.column("evidence", sa.Text), sa.column("label", sa.String),
                    sa.column("predicted_label", sa.String), sa.column("nearest_similarity", sa.Float))
    last = 0
    while True:
        batch = bind.execute(sa.select(rows.c.id, rows.c.probabilities, rows.c.evidence, rows.c.label)
                             .where(rows.c.id > last).order_by(rows.c.id).limit(BATCH)).all()
        if not batch:
            return
        values = []
        for row_id, probabilities, evidence, label in batch:
            try:
                probs = json.loads(probabilities or "{}")
                nearest = json.loads(evidence or "[]")
            except ValueError:
                probs, nearest = {}, []
            top = max(probs, key=probs.get) if isinstance(probs, dict) and probs else label
            similarity = nearest[0].get("similarity") if isinstance(nearest, list) and nearest \
                and isinstance(nearest[0], dict) else None
            values.append({"row_id": row_id, "top": top, "similarity": similarity})
        bind.execute(rows.update().where(rows.c.id == sa.bindparam("row_id"))
                     .values(predicted_label=sa.bindparam("top"), nearest_similarity=sa.bindparam("similarity")),
                     values)
        last = batch[-1][0]


def upgrade() -> None:
    op.add_column("suggestions", sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("suggestions", sa.Column("cpu_ms", sa.Float(), nullable=True))
    op.add_column("suggestions", sa.Column("predicted_label", sa.String(length=128), nullable=True))
    op.add_column("suggestions", sa.Column("nearest_similarity", sa.Float(), nullable=True))
    op.create_index("ix_suggestions_created_at", "suggestions", ["created_at"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    # Alerts and weekly digests posted to the triage channel (bot.monitor.alerts): one row per kind,
    # key and day, so several workers checking at once post each alert once.
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("measures", sa.Text(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key", "day", name="uq_alert_kind_key_day"),
    )
    op.create_index("ix_alerts_fired_at", "alerts", ["fired_at"])
    _backfill()


def downgrade() -> None:
    op.drop_index("ix_alerts_fired_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    op.drop_index("ix_suggestions_created_at", table_name="suggestions")
    with op.batch_alter_table("suggestions") as batch:
        batch.drop_column("nearest_similarity")
        batch.drop_column("predicted_label")
        batch.drop_column("cpu_ms")
        batch.drop_column("posted_at")
