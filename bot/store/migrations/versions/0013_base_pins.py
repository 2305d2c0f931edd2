"""Base approvals pinned to the sha256 of every file (issue 20, item 7).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
