"""Shadow errors stored before error ids keep only their type: their message could quote a ticket.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Until revision 0012's release a failed shadow answer stored "Type: message" and `/tuesday shadow`
showed it; a model library's message may quote the ticket it was given. Rows written since hold our
own message or "Type (error id …)". Older rows cannot be told apart from our own messages, so each
keeps its type and says when it was stored; the message is gone (nothing to downgrade).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KEPT = " (stored before error ids; its message is not kept)"


def upgrade() -> None:
    bind = op.get_bind()
    table = sa.table("shadow_suggestions", sa.column("id", sa.Integer), sa.column("error", sa.Text))
    rows = bind.execute(sa.select(table.c.id, table.c.error).where(table.c.error.is_not(None))).all()
    for row_id, error in rows:
        if "(error id " in error or error.endswith(KEPT):
            continue
        kind = error.split(":", 1)[0].strip()[:80] or "error"
        bind.execute(table.update().where(table.c.id == row_id).values(error=kind + KEPT))


def downgrade() -> None:
    pass
