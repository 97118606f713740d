"""The thumbnails stage: a poster, a few candidates, and a storyboard for hover previews.

Everything is written to deterministic keys and the rows are replaced as a set, so a
repeated run leaves exactly one set of outputs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import delete

from pipeline import keys
from pipeline.db.models import Thumbnail
from pipeline.media.thumbnails import build_storyboard, extract_candidates, extract_poster
from pipeline.stages.common import get_video, require_probed
from pipeline.stages.runner import StageContext

logger = logging.getLogger(__name__)

_CONTENT_TYPES = {"jpg": "image/jpeg", "webp": "image/webp"}


async def run(ctx: StageContext) -> None:
    runtime = ctx.runtime
    ext = "webp" if runtime.settings.image_format == "webp" else "jpg"
    async with runtime.database.sessions() as session:
        video = await get_video(session, ctx.video_id)
        duration = require_probed(video)
        source_key, poster_at = video.source_key, video.poster_at
        display = (video.display_width or video.width or 0, video.display_height or video.height or 0)

    rows: list[Thumbnail] = []
    with tempfile.TemporaryDirectory(prefix="vidpipe-thumbs-") as tmp:
        work = Path(tmp)
        async with runtime.storage.local_path(source_key) as src:
            poster = work / f"poster.{ext}"
            used_at = await extract_poster(src, poster, at=poster_at, duration=duration, ffmpeg=runtime.ffmpeg)
            await ctx.report(20)
            candidates = await extract_candidates(
                src, work / "candidates", duration=duration, ffmpeg=runtime.ffmpeg, fmt=ext
            )
            await ctx.report(40)
            board = await build_storyboard(
                src,
                work / "storyboard",
                duration=duration,
                display_width=display[0],
                display_height=display[1],
                ffmpeg=runtime.ffmpeg,
                fmt=ext,
            )
        await ctx.report(80)

        content_type = _CONTENT_TYPES[ext]
        rows.append(await _store(ctx, poster, keys.poster_key(ctx.video_id, ext), "poster", 0, used_at, content_type))
        for i, (path, at) in enumerate(candidates):
            key = keys.candidate_key(ctx.video_id, i, ext)
            rows.append(await _store(ctx, path, key, "candidate", i, at, content_type))
        for i, sprite in enumerate(board.sprites):
            key = keys.storyboard_key(ctx.video_id, sprite.name)
            row = await _store(ctx, sprite, key, "sprite", i, None, content_type)
            row.width, row.height = board.tile_width, board.tile_height
            rows.append(row)
        vtt_key = keys.storyboard_key(ctx.video_id, "storyboard.vtt")
        await runtime.storage.put_bytes(vtt_key, board.vtt.encode("utf-8"), "text/vtt; charset=utf-8")
        rows.append(
            Thumbnail(
                video_id=ctx.video_id,
                kind="storyboard",
                position=0,
                key=vtt_key,
                content_type="text/vtt",
                width=board.tile_width,
                height=board.tile_height,
            )
        )

    async with runtime.database.sessions() as session:
        await session.execute(delete(Thumbnail).where(Thumbnail.video_id == ctx.video_id))
        session.add_all(rows)
        await session.commit()
    logger.info(
        "Video %s has a poster at %.2f s, %d candidates and a storyboard of %d tiles in %d sprites.",
        ctx.video_id,
        used_at,
        len(candidates),
        board.tiles,
        len(board.sprites),
    )


async def _store(
    ctx: StageContext, path: Path, key: str, kind: str, position: int, at: float | None, content_type: str
) -> Thumbnail:
    await ctx.runtime.storage.put_file(key, path, content_type)
    return Thumbnail(video_id=ctx.video_id, kind=kind, position=position, time=at, key=key, content_type=content_type)
