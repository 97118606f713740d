"""stage duration totals: the metrics histogram kept as stages succeed

``/metrics`` built ``vidpipe_stage_duration_seconds`` by scanning every succeeded stage run at
each scrape; the stage runner now adds each success to ``stage_duration_totals``, one row per
stage and histogram bucket (see ``pipeline.stagetotals``). The runs already in the database are
counted here, so the histogram continues where the scan left it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from pipeline.stagetotals import totals_from_runs

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_duration_totals",
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stage", "bucket"),
    )
    op.execute(totals_from_runs(op.get_bind().dialect.name))


def downgrade() -> None:
    op.drop_table("stage_duration_totals")
