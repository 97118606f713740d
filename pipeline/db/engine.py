"""The async engine and session factory, built explicitly from settings.

SQLite (the embedded default) runs in WAL mode with a busy timeout so the in-process worker
threads and the command that waits on them can share the file. PostgreSQL connections are
checked before use, so a database restart costs one failed attempt, not a broken pool.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from pipeline.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Database:
    """An engine and its session factory; one per event loop."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(settings: Settings) -> Database:
    """Build the engine for ``settings.database_url``; no connection is made yet."""
    url = settings.database_url
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        options["connect_args"] = {"timeout": 30}
    else:
        options.update(pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800)
        # vidpipe's statements are short; on a large library a plan's cost can pass
        # jit_above_cost, and compiling it would take longer than running it.
        options["connect_args"] = {"options": "-c jit=off"}
    engine = create_async_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(engine=engine, sessions=async_sessionmaker(engine, expire_on_commit=False))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file, which SQLite itself will not do."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
