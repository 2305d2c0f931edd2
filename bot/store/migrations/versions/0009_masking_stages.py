"""Masking in two stages: which stage a ticket's text has passed, and the door's text until the worker's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

The door masks by patterns only (emails, URLs with secrets, IPs, cards, IBANs, SSNs, accounts, phones)
and stores that text in door_texts; the worker masks names and addresses, moves the text to the ticket
and deletes the row (bot.store.masking). Tickets stored before this revision were masked whole at the
door: they are `full`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("pii_stage", sa.String(length=8), nullable=False, server_default="full"))
    op.create_table(
        "door_texts",
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    # Only what is there (SQLite commits each DDL at once: a downgrade a later step refused may have run this).
    inspector = sa.inspect(op.get_bind())
    if "door_texts" in inspector.get_table_names():
        # A ticket still at the door's stage has no text of its own: refuse rather than lose it.
        waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM door_texts")).scalar()
        if waiting:
            raise RuntimeError(f"{waiting} tickets wait for the worker's masking stage: run a suggest worker "
                               f"(tuesday worker --burst) before downgrading")
        op.drop_table("door_texts")
    present = {c["name"] for c in inspector.get_columns("tickets")}
    if "pii_stage" in present:
        op.drop_column("tickets", "pii_stage") if op.get_bind().dialect.name != "sqlite" \
            else op.execute("ALTER TABLE tickets DROP COLUMN pii_stage")
