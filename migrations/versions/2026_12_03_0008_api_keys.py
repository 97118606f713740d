"""api keys: service accounts' API keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a reserved slot in the chain; a no-op until its change lands


def downgrade() -> None:
    pass
