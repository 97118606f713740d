"""The migrations build exactly the schema the models declare, on SQLite and on PostgreSQL.

Each feature's tests check its own tables; this one checks the whole schema at once, so a
column added to a model without a migration (or the other way round) fails here whatever
feature it belongs to. The search tables carry objects only the migrations make on purpose
(SQLite FTS5 tables, PostgreSQL trigram indexes and a computed tsvector); they are named below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import pipeline.accounts
import pipeline.apikeys
import pipeline.dropfolder.models
import pipeline.email
import pipeline.search.database
import pipeline.uploads
import pipeline.webhooks  # noqa: F401  (each module declares its tables on the shared metadata)
from pipeline.db.migrate import sync_url, upgrade
from pipeline.db.models import Base

# Made by migrations 0002-0010 for the database search and deliberately absent from the models.
MIGRATION_ONLY = (
    "search_videos_fts",
    "search_words_fts",
    "ix_search_videos_title_trgm",
    "ix_search_videos_description_trgm",
    "ix_search_words_text_",
    "text_vector",
)


def _unexpected(differences: list[Any]) -> list[str]:
    found = [repr(d) for d in differences]
    return [d for d in found if not any(f"'{name}" in d for name in MIGRATION_ONLY)]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_the_migrated_schema_is_the_models_schema(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'vidpipe.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_database")
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()

    assert _unexpected(differences) == []
    # The allowance is used: if none of it shows, the names above are stale and hide nothing.
    assert differences, "the migration-only search objects were expected among the differences"
