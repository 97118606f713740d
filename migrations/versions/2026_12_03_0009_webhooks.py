"""webhooks: webhook endpoints and their delivery log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a reserved slot in the chain; a no-op until its change lands


def downgrade() -> None:
    pass
