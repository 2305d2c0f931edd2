"""The paper trail (bot.trail): audit log, base-model approvals, data approvals, forgotten tickets,
settled conflicts on examples, and on each retrain run its data approval and promotion sign-off.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The audit log is append-only in the database itself: a trigger refuses UPDATE and DELETE on it,
on SQLite and on PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PG_REFUSE = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "base_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("obtained", sa.String(length=64), nullable=False),
        sa.Column("license", sa.String(length=128), nullable=False),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_base_approvals_name", "base_approvals", ["name"])
    op.create_table(
        "data_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("up_to_example_id", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "forgotten",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("forgotten_by", sa.String(length=255), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id", name="uq_forgotten_source_id"),
    )
    with op.batch_alter_table("examples") as batch:
        batch.add_column(sa.Column("settled_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("settled_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("retrain_runs") as batch:
        batch.add_column(sa.Column("data_approval_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("signed_off_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("signed_off_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_REFUSE)
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
    # Tickets no longer keep the URL their helpdesk sent (one can carry a token or an email):
    # messages link to a ticket by its id (bot.helpdesk.ticket_link). Text masked by the old
    # regexes stays as it was: masking it again needs the detector, not SQL.
    op.execute("UPDATE tickets SET url = NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    with op.batch_alter_table("retrain_runs") as batch:
        for name in ("signed_off_at", "signed_off_by", "data_approval_id"):
            batch.drop_column(name)
    with op.batch_alter_table("examples") as batch:
        for name in ("settled_reason", "settled_at", "settled_by"):
            batch.drop_column(name)
    op.drop_table("forgotten")
    op.drop_table("data_approvals")
    op.drop_index("ix_base_approvals_name", table_name="base_approvals")
    op.drop_table("base_approvals")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
