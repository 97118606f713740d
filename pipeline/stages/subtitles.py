"""The subtitles stage: every track of the video, parsed, normalised to WebVTT, cues stored.

A track that cannot be used fails on its own (its row keeps the error code and message);
the stage, and so the job, still succeeds with the tracks that could be read. Only
transient errors (storage, database) fail the stage, to be retried.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from sqlalchemy import delete, select

from pipeline import keys
from pipeline.db.models import Cue, SubtitleTrack
from pipeline.errors import MediaError, SubtitleError
from pipeline.media.embedded import extract_subtitle_stream
from pipeline.media.probe import SubtitleStream
from pipeline.stages.common import get_video
from pipeline.stages.runner import StageContext
from pipeline.subtitles import SubtitleDocument, parse_subtitles, to_webvtt

logger = logging.getLogger(__name__)


async def run(ctx: StageContext) -> None:
    runtime = ctx.runtime
    async with runtime.database.sessions() as session:
        video = await get_video(session, ctx.video_id)
        source_key = video.source_key
        tracks = list(await session.scalars(select(SubtitleTrack).where(SubtitleTrack.video_id == ctx.video_id)))
    if not tracks:
        logger.info("Video %s has no subtitle tracks.", ctx.video_id)
        return

    async with AsyncExitStack() as stack:
        source: Path | None = None
        if any(t.source == "embedded" for t in tracks):
            source = await stack.enter_async_context(runtime.storage.local_path(source_key))
        for done, track in enumerate(tracks, start=1):
            await _process(ctx, track, source)
            await ctx.report(100 * done / len(tracks))


async def _process(ctx: StageContext, track: SubtitleTrack, source: Path | None) -> None:
    try:
        data = await _read(ctx, track, source)
        document = parse_subtitles(data, filename=track.filename)
    except SubtitleError as exc:
        await _record_failure(ctx, track, exc.code, exc.message)
        return
    except MediaError as exc:
        await _record_failure(ctx, track, "subtitles.extract_failed", f"The embedded track could not be read: {exc}")
        return
    vtt_key = keys.subtitle_vtt_key(ctx.video_id, track.id)
    await ctx.runtime.storage.put_bytes(vtt_key, to_webvtt(document).encode("utf-8"), "text/vtt; charset=utf-8")
    await _record_cues(ctx, track, document, vtt_key)
    logger.info(
        "Subtitle track %s of video %s (%s, %s) has %d cues and %d warnings.",
        track.id,
        ctx.video_id,
        track.language or "language unknown",
        document.format,
        len(document.cues),
        len(document.warnings),
    )


async def _read(ctx: StageContext, track: SubtitleTrack, source: Path | None) -> bytes:
    if track.source == "file":
        return await ctx.runtime.storage.get_bytes(track.source_ref)
    assert source is not None
    index = int(track.source_ref.removeprefix("stream:"))
    stream = SubtitleStream(index=index, codec=track.format or "", language=track.language, title=track.label)
    with tempfile.TemporaryDirectory(prefix="vidpipe-subs-") as tmp:
        dest = Path(tmp) / "track.vtt"
        await extract_subtitle_stream(source, stream, dest, ffmpeg=ctx.runtime.ffmpeg)
        return dest.read_bytes()


async def _record_cues(ctx: StageContext, track: SubtitleTrack, document: SubtitleDocument, vtt_key: str) -> None:
    async with ctx.runtime.database.sessions() as session:
        row = await session.get(SubtitleTrack, track.id, populate_existing=True)
        if row is None:
            return
        await session.execute(delete(Cue).where(Cue.track_id == track.id))
        session.add_all(
            Cue(
                track_id=track.id,
                video_id=ctx.video_id,
                position=i,
                start=cue.start,
                end=cue.end,
                text=cue.text,
                plain_text=cue.plain_text,
            )
            for i, cue in enumerate(document.cues)
        )
        row.status = "ready"
        row.vtt_key = vtt_key
        row.encoding = document.encoding
        if row.source == "file":
            row.format = document.format
        row.cue_count = len(document.cues)
        row.warnings = list(document.warnings)
        row.error_code = row.error_message = None
        await session.commit()


async def _record_failure(ctx: StageContext, track: SubtitleTrack, code: str, message: str) -> None:
    logger.info("Subtitle track %s of video %s failed: [%s] %s", track.id, ctx.video_id, code, message)
    async with ctx.runtime.database.sessions() as session:
        row = await session.get(SubtitleTrack, track.id, populate_existing=True)
        if row is None:
            return
        await session.execute(delete(Cue).where(Cue.track_id == track.id))
        row.status = "failed"
        row.error_code = code
        row.error_message = message
        row.cue_count = 0
        await session.commit()
