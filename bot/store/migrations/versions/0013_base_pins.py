"""Base approvals pinned to the sha256 of every file (issue 20, item 7).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

base_approvals.files holds the approved base's pins, JSON {relative path (a single file: its
name) -> sha256}; sha256 becomes their combined hash (inference.base_models.content_sha256). Rows
approved before this revision get '{}': training refuses them until an admin approves again on a
host that holds the base, since nothing recorded says which bytes were reviewed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("base_approvals", sa.Column("files", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch copy would leave its temporary table behind when a later
    # step of the same downgrade refuses and SQLite's DDL is rolled back around it.
    if "files" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("base_approvals")}:
        op.execute("ALTER TABLE base_approvals DROP COLUMN files")
