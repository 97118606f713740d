"""search probe: a per-video word table for the database search

A database search used to probe, for every indexed video and every query word, that video's
cues through a GIN index keyed by video and trigram. GIN keeps one posting list per key, so each
probe of a common word read the word's posting list for the whole library again: a two-word query
over 100,000 cues took about 50 ms on PostgreSQL and 200 ms on SQLite. The search now looks query
words up in ``search_words``: per video and track language, each distinct lower-cased word of its
cues, how many cues hold it and their ordinals (packed little-endian 32-bit integers). The cues
get an ``ordinal``, their place in the video by start and id, so the few cues a result shows are
read by key. The cue-level full-text indexes no longer serve a query and are dropped, which also
makes indexing cheaper: SQLite's FTS5 cue table and its triggers, PostgreSQL's stored lower-cased
copy and tsvector of each cue with their GIN indexes. The words get a trigram FTS5 table on
SQLite, and a pg_trgm GIN index plus a stored, indexed English tsvector on PostgreSQL.

Existing libraries are back-filled here, one video at a time, with the same code the index stage
uses. The downgrade restores revision 0004's cue indexes and rebuilds them from the cue text.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import logging

import sqlalchemy as sa
from alembic import op

from pipeline.search.database import word_rows

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)

# The ordinal of a cue is its place among its video's cues by start, then id: the order the
# index stage numbers them in. UPDATE ... FROM runs on PostgreSQL and SQLite 3.33 or later.
_NUMBER_CUES = (
    "UPDATE search_cues SET ordinal = numbered.place FROM ("
    "SELECT id, row_number() OVER (PARTITION BY video_id ORDER BY start, id) - 1 AS place FROM search_cues"
    ") AS numbered WHERE search_cues.id = numbered.id"
)

_SQLITE_CUE_FTS = (
    "CREATE VIRTUAL TABLE search_cues_fts USING fts5("
    "text, content='search_cues', content_rowid='id', tokenize='trigram')",
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
    "INSERT INTO search_cues_fts(search_cues_fts) VALUES ('rebuild')",
)

_SQLITE_DROP_CUE_FTS = (
    "DROP TRIGGER IF EXISTS search_cues_fts_update",
    "DROP TRIGGER IF EXISTS search_cues_fts_delete",
    "DROP TRIGGER IF EXISTS search_cues_fts_insert",
    "DROP TABLE IF EXISTS search_cues_fts",
)

# The words' FTS5 table reads its text from search_words (content=...), kept in step by triggers.
_SQLITE_WORD_FTS = (
    "CREATE VIRTUAL TABLE search_words_fts USING fts5("
    "text, content='search_words', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER search_words_fts_insert AFTER INSERT ON search_words BEGIN "
    "INSERT INTO search_words_fts(rowid, text) VALUES (new.id, new.text); "
    "END",
    "CREATE TRIGGER search_words_fts_delete AFTER DELETE ON search_words BEGIN "
    "INSERT INTO search_words_fts(search_words_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "END",
    "CREATE TRIGGER search_words_fts_update AFTER UPDATE ON search_words BEGIN "
    "INSERT INTO search_words_fts(search_words_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO search_words_fts(rowid, text) VALUES (new.id, new.text); "
    "END",
)

_SQLITE_DROP_WORD_FTS = (
    "DROP TRIGGER IF EXISTS search_words_fts_update",
    "DROP TRIGGER IF EXISTS search_words_fts_delete",
    "DROP TRIGGER IF EXISTS search_words_fts_insert",
    "DROP TABLE IF EXISTS search_words_fts",
)

_POSTGRESQL_DROP_CUE_INDEXES = (
    # Their indexes (ix_search_cues_video_folded_trgm, ix_search_cues_video_text_vector) go with them.
    "ALTER TABLE search_cues DROP COLUMN text_vector",
    "ALTER TABLE search_cues DROP COLUMN text_folded",
)

_POSTGRESQL_WORD_VECTOR = (
    "ALTER TABLE search_words ADD COLUMN text_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED"
)

_POSTGRESQL_WORD_INDEXES = (
    "CREATE INDEX ix_search_words_text_trgm ON search_words USING gin (text gin_trgm_ops)",
    "CREATE INDEX ix_search_words_text_vector ON search_words USING gin (text_vector)",
    # Trigrams cannot find a query word of one or two characters (a Korean noun is often two
    # syllables); the set of a word's characters narrows the words to those having them all.
    "CREATE INDEX ix_search_words_text_characters ON search_words USING gin (string_to_array(text, NULL))",
)

# Revision 0004's cue columns and indexes, for the downgrade.
_POSTGRESQL_CUE_INDEXES = (
    "ALTER TABLE search_cues ADD COLUMN text_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED",
    "ALTER TABLE search_cues ADD COLUMN text_folded text GENERATED ALWAYS AS (lower(text)) STORED",
    "CREATE INDEX ix_search_cues_video_folded_trgm ON search_cues USING gin (video_id, text_folded gin_trgm_ops)",
    "CREATE INDEX ix_search_cues_video_text_vector ON search_cues USING gin (video_id, text_vector)",
)


def upgrade() -> None:
    on_sqlite = op.get_bind().dialect.name == "sqlite"
    if on_sqlite:
        _execute(_SQLITE_DROP_CUE_FTS)
    else:
        _execute(_POSTGRESQL_DROP_CUE_INDEXES)

    with op.batch_alter_table("search_cues") as batch_op:
        batch_op.add_column(sa.Column("ordinal", sa.Integer(), nullable=True))
    op.execute(_NUMBER_CUES)
    with op.batch_alter_table("search_cues") as batch_op:
        batch_op.alter_column("ordinal", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_index("ix_search_cues_video_id")
        batch_op.create_index("ix_search_cues_video_ordinal", ["video_id", "ordinal"], unique=True)

    op.create_table(
        "search_words",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("cues", sa.Integer(), nullable=False),
        sa.Column("ordinals", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_search_words_video_id", "search_words", ["video_id"])

    # SQLite's triggers must exist before the back-fill; PostgreSQL's GIN indexes are built
    # faster over the filled table than row by row.
    if on_sqlite:
        _execute(_SQLITE_WORD_FTS)
        _fill_words()
    else:
        op.execute(_POSTGRESQL_WORD_VECTOR)
        _fill_words()
        _execute(_POSTGRESQL_WORD_INDEXES)


def downgrade() -> None:
    on_sqlite = op.get_bind().dialect.name == "sqlite"
    if on_sqlite:
        _execute(_SQLITE_DROP_WORD_FTS)
    # PostgreSQL's word indexes go with their table.
    op.drop_index("ix_search_words_video_id", table_name="search_words")
    op.drop_table("search_words")

    with op.batch_alter_table("search_cues") as batch_op:
        batch_op.drop_index("ix_search_cues_video_ordinal")
        batch_op.create_index("ix_search_cues_video_id", ["video_id"])
        batch_op.drop_column("ordinal")
    _execute(_SQLITE_CUE_FTS if on_sqlite else _POSTGRESQL_CUE_INDEXES)


def _execute(statements: tuple[str, ...]) -> None:
    for statement in statements:
        op.execute(statement)


def _fill_words() -> None:
    """Write the word rows of every indexed video, one video at a time to bound the memory used."""
    connection = op.get_bind()
    cues = sa.table(
        "search_cues",
        sa.column("video_id", sa.Uuid()),
        sa.column("language", sa.String()),
        sa.column("ordinal", sa.Integer()),
        sa.column("text", sa.Text()),
    )
    words = sa.table(
        "search_words",
        sa.column("video_id", sa.Uuid()),
        sa.column("language", sa.String()),
        sa.column("text", sa.Text()),
        sa.column("cues", sa.Integer()),
        sa.column("ordinals", sa.LargeBinary()),
    )
    video_ids = connection.execute(sa.select(cues.c.video_id).distinct()).scalars().all()
    for video_id in video_ids:
        selected = sa.select(cues.c.language, cues.c.ordinal, cues.c.text).where(cues.c.video_id == video_id)
        rows = [dict(row._mapping) for row in connection.execute(selected.order_by(cues.c.ordinal))]
        if filled := word_rows(video_id, rows):
            connection.execute(sa.insert(words), filled)
    logger.info("The search word table is filled for %d indexed videos.", len(video_ids))
