"""search speed: per-video cue indexes for the database search on PostgreSQL

The database search now asks, for each indexed video and each query word, for at most a
handful of that video's matching cues, instead of grouping every matching cue of the library.
Those probes need indexes keyed by video first: GIN indexes over ``(video_id, text)`` need
``btree_gin`` for the uuid column. The trigram index reads a stored lower-cased copy of the
text, because rechecking ``ILIKE`` on Korean text lower-cases every candidate row again and
was most of the cost of a probe; ``lower(text) LIKE lower(pattern)`` is exactly what
PostgreSQL's ``ILIKE`` computes in a multi-byte encoding. The library-wide cue indexes of
revision 0002 no longer serve any query and are dropped. SQLite needs no change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_POSTGRESQL_UPGRADE = (
    # btree_gin is a trusted extension (PostgreSQL 13+), like pg_trgm in revision 0002.
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    # Adding a stored generated column rewrites search_cues once.
    "ALTER TABLE search_cues ADD COLUMN text_folded text GENERATED ALWAYS AS (lower(text)) STORED",
    "CREATE INDEX ix_search_cues_video_folded_trgm ON search_cues USING gin (video_id, text_folded gin_trgm_ops)",
    "CREATE INDEX ix_search_cues_video_text_vector ON search_cues USING gin (video_id, text_vector)",
    "DROP INDEX IF EXISTS ix_search_cues_text_trgm",
    "DROP INDEX IF EXISTS ix_search_cues_text_vector",
)

_POSTGRESQL_DOWNGRADE = (
    "CREATE INDEX ix_search_cues_text_trgm ON search_cues USING gin (text gin_trgm_ops)",
    "CREATE INDEX ix_search_cues_text_vector ON search_cues USING gin (text_vector)",
    "DROP INDEX IF EXISTS ix_search_cues_video_text_vector",
    "DROP INDEX IF EXISTS ix_search_cues_video_folded_trgm",
    "ALTER TABLE search_cues DROP COLUMN text_folded",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    # btree_gin stays, as pg_trgm does: other schemas may use it.
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL_DOWNGRADE:
            op.execute(statement)
