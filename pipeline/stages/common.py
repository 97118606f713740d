"""Small helpers the stages share."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import Video
from pipeline.errors import NotFound


async def get_video(session: AsyncSession, video_id: uuid.UUID) -> Video:
    video = await session.get(Video, video_id, populate_existing=True)
    if video is None:
        raise NotFound(f"Video {video_id} no longer exists.", code="video.not_found")
    return video


def require_probed(video: Video) -> float:
    """The video's duration; a stage after ingest cannot run without it."""
    if video.duration is None:
        raise NotFound(f"Video {video.id} has not been probed yet.", code="video.not_probed")
    return video.duration
