"""database search: the search tables and their full-text indexes

The database search backend keeps its own copy of what the index stage sends it, so a video
is searchable only once it is indexed (as with OpenSearch). SQLite gets external-content FTS5
tables with the trigram tokenizer, kept in step with the tables by triggers; PostgreSQL gets
pg_trgm GIN indexes for substring matching and a stored, indexed English tsvector for word
matching.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


_SQLITE_UPGRADE = (
    # The FTS tables read their text from the plain tables (content=...), so each string is
    # stored once; the triggers below are what keep the two in step on every write path.
    "CREATE VIRTUAL TABLE search_videos_fts USING fts5("
    "title, description, content='search_videos', content_rowid='id', tokenize='trigram')",
    "CREATE VIRTUAL TABLE search_cues_fts USING fts5("
    "text, content='search_cues', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER search_videos_fts_insert AFTER INSERT ON search_videos BEGIN "
    "INSERT INTO search_videos_fts(rowid, title, description) VALUES (new.id, new.title, new.description); "
    "END",
    "CREATE TRIGGER search_videos_fts_delete AFTER DELETE ON search_videos BEGIN "
    "INSERT INTO search_videos_fts(search_videos_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "END",
    "CREATE TRIGGER search_videos_fts_update AFTER UPDATE ON search_videos BEGIN "
    "INSERT INTO search_videos_fts(search_videos_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "INSERT INTO search_videos_fts(rowid, title, description) VALUES (new.id, new.title, new.description); "
    "END",
    "CREATE TRIGGER search_cues_fts_insert AFTER INSERT ON search_cues BEGIN "
    "INSERT INTO search_cues_fts(rowid, text) VALUES (new.id, new.text); "
    "END",
    "CREATE TRIGGER search_cues_fts_delete AFTER DELETE ON search_cues BEGIN "
    "INSERT INTO search_cues_fts(search_cues_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "END",
    "CREATE TRIGGER search_cues_fts_update AFTER UPDATE ON search_cues BEGIN "
    "INSERT INTO search_cues_fts(search_cues_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO search_cues_fts(rowid, text) VALUES (new.id, new.text); "
    "END",
)

_SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS search_cues_fts_update",
    "DROP TRIGGER IF EXISTS search_cues_fts_delete",
    "DROP TRIGGER IF EXISTS search_cues_fts_insert",
    "DROP TRIGGER IF EXISTS search_videos_fts_update",
    "DROP TRIGGER IF EXISTS search_videos_fts_delete",
    "DROP TRIGGER IF EXISTS search_videos_fts_insert",
    "DROP TABLE IF EXISTS search_cues_fts",
    "DROP TABLE IF EXISTS search_videos_fts",
)

_POSTGRESQL_UPGRADE = (
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_search_videos_title_trgm ON search_videos USING gin (title gin_trgm_ops)",
    "CREATE INDEX ix_search_videos_description_trgm ON search_videos USING gin (description gin_trgm_ops)",
    "CREATE INDEX ix_search_cues_text_trgm ON search_cues USING gin (text gin_trgm_ops)",
    # Stored, not computed per query: ranking reads the vector of every matching cue, and
    # parsing the text again for each one made common words several times slower.
    "ALTER TABLE search_cues ADD COLUMN text_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED",
    "CREATE INDEX ix_search_cues_text_vector ON search_cues USING gin (text_vector)",
)


def upgrade() -> None:
    op.create_table(
        "search_videos",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("video_id"),
    )
    op.create_table(
        "search_cues",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("track_id", sa.Uuid(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_search_cues_video_id", "search_cues", ["video_id"])

    statements = _SQLITE_UPGRADE if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL_UPGRADE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_DOWNGRADE:
            op.execute(statement)
    # The PostgreSQL indexes go with their tables; pg_trgm stays, other schemas may use it.
    op.drop_index("ix_search_cues_video_id", table_name="search_cues")
    op.drop_table("search_cues")
    op.drop_table("search_videos")
