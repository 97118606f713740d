"""Running Alembic from code: ``vidpipe migrate`` and the embedded default's self-migration."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

import migrations
from pipeline.errors import ConfigurationError, DatabaseUnavailable

logger = logging.getLogger(__name__)


def sync_url(url: str) -> str:
    """The same database through a synchronous driver, for Alembic."""
    return url.replace("sqlite+aiosqlite://", "sqlite://", 1)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def current_revision(database_url: str) -> str | None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call when it is already there."""
    from sqlalchemy.exc import OperationalError

    try:
        before = current_revision(database_url)
        if before == head_revision(database_url) and revision == "head":
            return
        logger.info("Migrating the database from revision %s to %s.", before or "(empty)", revision)
        command.upgrade(alembic_config(database_url), revision)
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"The database at {_safe(database_url)} did not answer: {exc.orig}.",
        ) from exc
    except ValueError as exc:  # pragma: no cover - malformed URLs are caught by settings first
        raise ConfigurationError(str(exc)) from exc


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
