"""uploads: uploads in progress (single PUT and multipart) and idempotency keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a reserved slot in the chain; a no-op until its change lands


def downgrade() -> None:
    pass
