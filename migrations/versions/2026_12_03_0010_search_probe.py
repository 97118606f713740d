"""search probe: faster database search

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a reserved slot in the chain; a no-op until its change lands


def downgrade() -> None:
    pass
