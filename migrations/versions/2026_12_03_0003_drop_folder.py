"""drop folder: the drops table and videos.ingest_notes

The ingest scanner records every file version it sees in the drop location, keyed by the
object's key and fingerprint, so each is taken once even with several schedulers running.
A partial unique index lets only one drop being taken hold a given SHA-256. Videos gain
``ingest_notes``: problems met while taking a video in, such as an unreadable sidecar.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TAKING_CONTENT = "status = 'pending' AND sha256 IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "drops",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("fingerprint", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("moved_to", sa.String(length=1024), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["video_id"], ["videos.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "fingerprint", name="uq_drops_key_fingerprint"),
    )
    op.create_index("ix_drops_key_status", "drops", ["key", "status"])
    op.create_index(
        "ux_drops_pending_sha256",
        "drops",
        ["sha256"],
        unique=True,
        sqlite_where=sa.text(_TAKING_CONTENT),
        postgresql_where=sa.text(_TAKING_CONTENT),
    )
    # A plain ADD COLUMN: both SQLite and PostgreSQL add a nullable column in place.
    op.add_column("videos", sa.Column("ingest_notes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("ingest_notes")
    op.drop_index("ux_drops_pending_sha256", table_name="drops")
    op.drop_index("ix_drops_key_status", table_name="drops")
    op.drop_table("drops")
