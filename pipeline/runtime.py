"""The services a stage or command works with, built from settings in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.db import Database, open_database
from pipeline.db.engine import ensure_sqlite_folder
from pipeline.db.migrate import upgrade
from pipeline.dispatch import Dispatcher
from pipeline.media.ffmpeg import find_ffmpeg, set_thread_count
from pipeline.search import open_search
from pipeline.settings import Settings
from pipeline.storage import open_storage

if TYPE_CHECKING:
    from pipeline.search.base import SearchBackend
    from pipeline.storage.base import Storage

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Database, storage, search and dispatcher for one event loop.

    The async engine belongs to the loop that created it, so each loop (the command's, a
    worker's) builds its own runtime with :meth:`build`.
    """

    settings: Settings
    database: Database
    storage: Storage
    search: SearchBackend
    dispatcher: Dispatcher
    ffmpeg: str

    @classmethod
    def build(cls, settings: Settings, dispatcher: Dispatcher) -> Runtime:
        database = open_database(settings)
        set_thread_count(settings.ffmpeg_threads)
        return cls(
            settings=settings,
            database=database,
            storage=open_storage(settings),
            search=open_search(settings, database),
            dispatcher=dispatcher,
            ffmpeg=find_ffmpeg(settings.ffmpeg),
        )

    async def close(self) -> None:
        await self.search.close()
        await self.database.dispose()


def prepare_database(settings: Settings) -> None:
    """Migrate the embedded SQLite database on first use; other databases use ``vidpipe migrate``."""
    if settings.database_dialect == "sqlite":
        ensure_sqlite_folder(settings.database_url)
        upgrade(settings.database_url)
