"""The index stage: the video and the cues of its usable tracks into the search backend."""

from __future__ import annotations

import logging

from sqlalchemy import select

from pipeline.db.models import Cue, SubtitleTrack
from pipeline.search.base import CueDocument, VideoDocument
from pipeline.stages.common import get_video
from pipeline.stages.runner import StageContext
from pipeline.states import VideoStatus

logger = logging.getLogger(__name__)


async def run(ctx: StageContext) -> None:
    async with ctx.runtime.database.sessions() as session:
        video = await get_video(session, ctx.video_id)
        rows = await session.execute(
            select(Cue, SubtitleTrack.language)
            .join(SubtitleTrack, SubtitleTrack.id == Cue.track_id)
            .where(Cue.video_id == ctx.video_id, SubtitleTrack.status == "ready")
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
        # The document says "ready": it is what the video will be once this last stage succeeds.
        document = VideoDocument(
            id=video.id,
            title=video.title,
            description=video.description,
            language=video.language,
            owner_id=video.owner_id,
            status=VideoStatus.READY.value,
            duration=video.duration,
        )
    await ctx.report(30, force=True)
    await ctx.runtime.search.index_video(document, cues)
    logger.info("Video %s is indexed with %d cues in the %s search.", ctx.video_id, len(cues), ctx.runtime.search.name)
