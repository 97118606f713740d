"""Setting up and rebuilding a search backend: ``vidpipe search init`` and ``vidpipe search reindex``.

The database backend's tables come from the migrations, so ``init`` only checks them, and a
rebuild re-sends every video in place. OpenSearch gets its alias and first index on ``init``,
and ``reindex --all`` fills a new versioned index and swaps the alias, so searches keep
answering from the old index until the new one is complete; what the pipeline indexed or
deleted meanwhile is then brought over (:func:`catch_up`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from pipeline.db.engine import Database
from pipeline.db.models import Job, StageRun, utcnow
from pipeline.errors import NotFound
from pipeline.search.base import CueDocument, SearchBackend, VideoDocument
from pipeline.search.documents import all_video_ids, load_documents
from pipeline.search.opensearch import OpenSearchBackend
from pipeline.states import Stage

logger = logging.getLogger(__name__)


@dataclass
class ReindexReport:
    """What a reindex did, for the command to print."""

    videos: int = 0
    failed: list[uuid.UUID] = field(default_factory=list)
    index: str | None = None
    """The new versioned index, when the backend swapped one in."""


async def init_search(search: SearchBackend) -> str:
    """Create what the backend needs to answer and say what that was.

    Raises:
        SearchUnavailable: the backend did not answer.
    """
    if isinstance(search, OpenSearchBackend):
        await search.ensure_index()
        await search.check()
        return f"OpenSearch alias {search.names.alias} is ready."
    await search.check()
    return "The database search needs no set-up beyond vidpipe migrate; its tables answer."


async def reindex_video(search: SearchBackend, database: Database, video_id: uuid.UUID) -> ReindexReport:
    """Send one video to the search backend again, as the index stage would (with its stored status).

    Raises:
        NotFound: the video does not exist.
    """
    async with database.sessions() as session:
        video, cues = await load_documents(session, video_id)
    await search.index_video(video, cues)
    logger.info("Video %s was re-indexed in the %s search.", video_id, search.name)
    return ReindexReport(videos=1)


async def reindex_all(search: SearchBackend, database: Database) -> ReindexReport:
    """Rebuild the whole search index from the database."""
    if isinstance(search, OpenSearchBackend):
        began = utcnow()
        async with database.sessions() as session:
            video_ids = await all_video_ids(session)
        rebuilt = await search.rebuild(_documents(database, video_ids))
        await catch_up(search, database, set(video_ids), began)
        return ReindexReport(videos=rebuilt.videos, failed=rebuilt.failed, index=rebuilt.index)
    report = ReindexReport()
    async with database.sessions() as session:
        video_ids = await all_video_ids(session)
    async for video, cues in _documents(database, video_ids):
        await search.index_video(video, cues)
        report.videos += 1
    logger.info("%d videos were re-indexed in the %s search.", report.videos, search.name)
    return report


async def catch_up(search: SearchBackend, database: Database, listed: set[uuid.UUID], began: datetime) -> int:
    """Bring a freshly swapped-in index up to what changed while it was being filled.

    Until the swap, the index stage wrote to the old index: videos it indexed since ``began``
    are sent again, now to the new one, and videos of ``listed`` (what the rebuild set out to
    read) that were deleted meanwhile are removed from it. Writes after the swap go to the new
    index by themselves.

    Returns:
        How many videos were sent again or removed.
    """
    async with database.sessions() as session:
        indexed = set(
            await session.scalars(
                select(Job.video_id)
                .join(StageRun, StageRun.job_id == Job.id)
                .where(StageRun.stage == Stage.INDEX.value, StageRun.finished_at >= began)
            )
        )
        remaining = set(await all_video_ids(session))
    for video_id in listed - remaining:
        await search.delete_video(video_id)
        logger.info("Video %s was deleted during the rebuild, so it is removed from the new index.", video_id)
    for video_id in indexed & remaining:
        await reindex_video(search, database, video_id)
    return len(listed - remaining) + len(indexed & remaining)


async def _documents(
    database: Database, video_ids: list[uuid.UUID]
) -> AsyncIterator[tuple[VideoDocument, list[CueDocument]]]:
    """The documents of ``video_ids``, one video at a time, so a large library never sits in memory."""
    for video_id in video_ids:
        async with database.sessions() as session:
            try:
                documents = await load_documents(session, video_id)
            except NotFound:
                logger.info("Video %s was deleted during the rebuild, so it is left out.", video_id)
                continue
        yield documents
