"""The index stage: the video and the cues of its usable tracks into the search backend."""

from __future__ import annotations

import logging

from pipeline.search.documents import load_documents
from pipeline.stages.runner import StageContext
from pipeline.states import VideoStatus

logger = logging.getLogger(__name__)


async def run(ctx: StageContext) -> None:
    async with ctx.runtime.database.sessions() as session:
        # The document says "ready": it is what the video will be once this last stage succeeds.
        document, cues = await load_documents(session, ctx.video_id, status=VideoStatus.READY.value)
    await ctx.report(30)
    await ctx.runtime.search.index_video(document, cues)
    logger.info("Video %s is indexed with %d cues in the %s search.", ctx.video_id, len(cues), ctx.runtime.search.name)
