"""Alembic environment: runs revisions on a synchronous connection to SQLite or PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import pipeline.accounts  # declares the refresh token and login event tables on the same metadata
import pipeline.apikeys  # declares the API key table on the same metadata
import pipeline.dropfolder.models  # declares the drops table on the same metadata
import pipeline.email  # declares the email outbox table on the same metadata
import pipeline.search.database  # declares the search tables on the same metadata
import pipeline.uploads  # declares the upload and idempotency key tables on the same metadata
import pipeline.webhooks  # noqa: F401  (declares the webhook and delivery tables on the same metadata)
from pipeline.db.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    """Keep autogenerate away from what revisions manage by hand: FTS5 tables and generated columns."""
    if kind == "table" and name and ("_fts" in name):
        return False
    return not (kind == "column" and name in ("text_vector", "text_folded"))


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
