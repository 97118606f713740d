"""accounts email profile: email verification, password reset and profile fields

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a reserved slot in the chain; a no-op until its change lands


def downgrade() -> None:
    pass
