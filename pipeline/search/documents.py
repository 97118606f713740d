"""Reading what the search backends index from the database: a video and its usable cues.

The index stage and ``vidpipe search reindex`` build the same documents here, so a rebuild
indexes exactly what the pipeline would have.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import Cue, SubtitleTrack, Video
from pipeline.errors import NotFound
from pipeline.search.base import CueDocument, VideoDocument


async def load_documents(
    session: AsyncSession, video_id: uuid.UUID, *, status: str | None = None
) -> tuple[VideoDocument, list[CueDocument]]:
    """The video's search document and the cues of its ready subtitle tracks, in time order.

    Args:
        session: An open session on vidpipe's database.
        video_id: The video to read.
        status: The status to index instead of the stored one; the index stage passes the
            status the video is about to reach.

    Raises:
        NotFound: the video no longer exists.
    """
    video = await session.get(Video, video_id, populate_existing=True)
    if video is None:
        raise NotFound(f"Video {video_id} no longer exists.", code="video.not_found")
    rows = await session.execute(
        select(Cue, SubtitleTrack.language)
        .join(SubtitleTrack, SubtitleTrack.id == Cue.track_id)
        .where(Cue.video_id == video_id, SubtitleTrack.status == "ready")
        .order_by(Cue.start, Cue.id)
    )
    cues = [
        CueDocument(
            id=cue.id,
            track_id=cue.track_id,
            language=language or video.language,
            start=cue.start,
            end=cue.end,
            text=cue.plain_text,
        )
        for cue, language in rows.all()
    ]
    document = VideoDocument(
        id=video.id,
        title=video.title,
        description=video.description,
        language=video.language,
        owner_id=video.owner_id,
        status=status or video.status,
        duration=video.duration,
    )
    return document, cues


async def all_video_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Every video's id, oldest first, for a full rebuild of the search index."""
    rows = await session.execute(select(Video.id).order_by(Video.created_at, Video.id))
    return list(rows.scalars().all())
