"""Monitoring (bot.monitor): when a suggestion was posted, what its prediction cost in CPU time,
the model's own top label and the nearest training example's similarity as columns, and the
indexes the measures' time windows need.

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-12

predicted_label and nearest_similarity are filled for existing rows from their probabilities and
evidence JSON (the measures read columns, never JSON, so a dashboard over 100,000 tickets stays fast).
posted_at stays empty on old rows: the measures fall back to created_at.

Each suggestion also carries its first click (first_action, first_label, first_click_at), its last
click's label and its number of clicks: filled here from feedback, then kept by a trigger on every
insert into feedback (which is append-only), so the measures read one table, never a join.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 1000
MEASURED = ("model_version", "label", "routing", "first_action", "first_label", "last_label", "latency_ms", "cpu_ms",
            "posted_at", "first_click_at", "nearest_similarity", "predicted_label", "ticket_id")  # = bot.store's
# Each suggestion carries its first click (action, label, time) and its last click's label, kept by
# the database itself on every insert into feedback (append-only), whoever inserts: the measures then
# read one table in one pass instead of joining every suggestion to its clicks.
MARK_SET = """first_action = COALESCE(first_action, NEW.action),
        first_label = CASE WHEN first_click_at IS NULL THEN NEW.label ELSE first_label END,
        first_click_at = COALESCE(first_click_at, NEW.created_at),
        last_label = NEW.label,
        clicks = COALESCE(clicks, 0) + 1"""
PG_MARK = f"""
CREATE OR REPLACE FUNCTION feedback_marks_suggestion() RETURNS trigger AS $$
BEGIN
    UPDATE suggestions SET {MARK_SET} WHERE id = NEW.suggestion_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
FIRST, LAST = ("(SELECT f.{column} FROM feedback f WHERE f.suggestion_id = suggestions.id ORDER BY f.id {order} LIMIT 1)",
               "DESC")


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
    op.add_column("suggestions", sa.Column("first_action", sa.String(length=16), nullable=True))
    op.add_column("suggestions", sa.Column("first_label", sa.String(length=128), nullable=True))
    op.add_column("suggestions", sa.Column("first_click_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("suggestions", sa.Column("last_label", sa.String(length=128), nullable=True))
    op.add_column("suggestions", sa.Column("clicks", sa.Integer(), nullable=True))
    # On PostgreSQL the index carries every column the measures read, so a week's measures are an
    # index-only scan instead of a walk through rows made wide by their evidence JSON.
    op.create_index("ix_suggestions_created_at", "suggestions", ["created_at"], postgresql_include=list(MEASURED))
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
    # Shadow mode (bot.shadow): what a candidate in shadow would have shown, beside production's suggestion.
    op.create_table(
        "shadow_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("suggestion_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=True),
        sa.Column("routing", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cpu_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.ForeignKeyConstraint(["suggestion_id"], ["suggestions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("suggestion_id", "version", name="uq_shadow_suggestion_version"),
    )
    op.create_index("ix_shadow_suggestions_version", "shadow_suggestions", ["version"])
    _backfill()
    _mark_clicks()


def _mark_clicks() -> None:
    """Fill the click columns of the suggestions clicked so far, then let the database keep them."""
    first = FIRST.format(column="{column}", order="")
    op.execute(f"""UPDATE suggestions SET
        first_action = {first.format(column="action")}, first_label = {first.format(column="label")},
        first_click_at = {first.format(column="created_at")},
        last_label = {FIRST.format(column="label", order=LAST)},
        clicks = (SELECT count(*) FROM feedback f WHERE f.suggestion_id = suggestions.id)
        WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.suggestion_id = suggestions.id)""")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_MARK)
        op.execute("CREATE TRIGGER feedback_marks_suggestion AFTER INSERT ON feedback "
                   "FOR EACH ROW EXECUTE FUNCTION feedback_marks_suggestion()")
    else:
        op.execute(f"CREATE TRIGGER feedback_marks_suggestion AFTER INSERT ON feedback BEGIN "
                   f"UPDATE suggestions SET {MARK_SET} WHERE id = NEW.suggestion_id; END")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS feedback_marks_suggestion" +
               (" ON feedback" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS feedback_marks_suggestion()")
    op.drop_index("ix_shadow_suggestions_version", table_name="shadow_suggestions")
    op.drop_table("shadow_suggestions")
    op.drop_index("ix_alerts_fired_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    op.drop_index("ix_suggestions_created_at", table_name="suggestions")
    with op.batch_alter_table("suggestions") as batch:
        for name in ("clicks", "last_label", "first_click_at", "first_label", "first_action"):
            batch.drop_column(name)
        batch.drop_column("nearest_similarity")
        batch.drop_column("predicted_label")
        batch.drop_column("cpu_ms")
        batch.drop_column("posted_at")
