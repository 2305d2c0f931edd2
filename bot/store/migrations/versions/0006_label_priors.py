"""Label frequencies from the live stream (bot.label_priors): the estimates, and on each suggestion the
estimate its probabilities were re-weighted by.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-20

Rows stored before have no prior_id: their probabilities are the model's own.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_priors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("estimated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_tickets", sa.Integer(), nullable=False),
        sa.Column("prior", sa.Text(), nullable=False),
        sa.Column("training", sa.Text(), nullable=False),
        sa.Column("shift", sa.Float(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every serving worker reads its version's newest row.
    op.create_index("ix_label_priors_version", "label_priors", ["version", "id"])
    # A plain column (no foreign key): SQLite cannot add one without rebuilding suggestions.
    op.add_column("suggestions", sa.Column("prior_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suggestions") as batch:
        batch.drop_column("prior_id")
    op.drop_index("ix_label_priors_version", table_name="label_priors")
    op.drop_table("label_priors")
