"""The ingest stage: check the uploaded file, hash it and probe it.

A file that is not a playable video fails here, with a reason a content editor can act on,
before any expensive work starts. Text tracks found in the container are recorded as
subtitle tracks for the subtitles stage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import SubtitleTrack, Video
from pipeline.errors import MediaError, ObjectMissing
from pipeline.languages import normalise_language
from pipeline.media.probe import ProbeResult, probe
from pipeline.stages.common import get_video
from pipeline.stages.runner import StageContext

logger = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 20


async def run(ctx: StageContext) -> None:
    storage = ctx.runtime.storage
    async with ctx.runtime.database.sessions() as session:
        video = await get_video(session, ctx.video_id)
        source_key = video.source_key

    stat = await storage.stat(source_key)
    if stat is None:
        raise ObjectMissing(
            "The uploaded video file is missing from storage; upload it again.", code="media.source_missing"
        )
    if stat.size == 0:
        raise MediaError("The uploaded file is empty (0 bytes); upload the video again.", code="media.empty_file")

    async with storage.local_path(source_key) as path:
        digest = await asyncio.to_thread(_sha256, path)
        await ctx.report(40)
        facts = await asyncio.to_thread(probe, path)
    await ctx.report(90)

    async with ctx.runtime.database.sessions() as session:
        video = await get_video(session, ctx.video_id)
        _record(video, facts, size=stat.size, sha256=digest)
        await _record_embedded_tracks(session, video, facts)
        await session.commit()
    logger.info(
        "Video %s probed: %s %dx%d, %.2f s, %s/%s.",
        ctx.video_id,
        facts.container,
        facts.width,
        facts.height,
        facts.duration,
        facts.video_codec,
        facts.audio_codec or "no audio",
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _record(video: Video, facts: ProbeResult, *, size: int, sha256: str) -> None:
    video.size = size
    video.sha256 = sha256
    video.container = facts.container
    video.duration = facts.duration
    video.width = facts.width
    video.height = facts.height
    video.display_width = facts.display_width
    video.display_height = facts.display_height
    video.rotation = facts.rotation
    video.frame_rate = facts.frame_rate
    video.video_codec = facts.video_codec
    video.audio_codec = facts.audio_codec
    video.bit_rate = facts.bit_rate
    video.has_audio = facts.has_audio


async def _record_embedded_tracks(session: AsyncSession, video: Video, facts: ProbeResult) -> None:
    """One track row per text stream; a repeated ingest finds the rows it made before."""
    existing = set(
        await session.scalars(
            select(SubtitleTrack.source_ref).where(
                SubtitleTrack.video_id == video.id, SubtitleTrack.source == "embedded"
            )
        )
    )
    for stream in facts.subtitle_streams:
        ref = f"stream:{stream.index}"
        if ref in existing:
            continue
        session.add(
            SubtitleTrack(
                video_id=video.id,
                source="embedded",
                source_ref=ref,
                language=normalise_language(stream.language),
                label=stream.title,
                format=stream.codec,
            )
        )
