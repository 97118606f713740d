"""Text tracks embedded in a video container, taken out as WebVTT.

The subtitles stage finds the tracks with :func:`~pipeline.media.probe.probe` and hands
each to :func:`extract_subtitle_stream`. ffmpeg's WebVTT encoder converts SubRip, ASS/SSA,
WebVTT and MP4 ``mov_text`` tracks; ASS styling (fonts, colours, positions) is dropped on
the way, as WebVTT has no place for most of it. Picture-based tracks (DVD, Blu-ray) cannot
be turned into text and are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ffmpeg as ffmpeg_cli

from pipeline.errors import MediaError
from pipeline.media.ffmpeg import media_arg, run_ffmpeg
from pipeline.media.probe import SubtitleStream

logger = logging.getLogger(__name__)

BITMAP_CODECS = frozenset({"dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle", "xsub"})


async def extract_subtitle_stream(src: Path, stream: SubtitleStream, dest: Path, *, ffmpeg: str) -> None:
    """Write one embedded text track of ``src`` to ``dest`` as WebVTT (UTF-8).

    Args:
        src: the video.
        stream: the track, as the probe reported it.
        dest: the ``.vtt`` file to write; its folder is created if needed.
        ffmpeg: the binary, from :func:`~pipeline.media.ffmpeg.find_ffmpeg`.

    Raises:
        MediaError: ``media.bitmap_subtitles`` for a picture-based track, or
            ``media.ffmpeg_failed`` when ffmpeg cannot convert the track.
    """
    if stream.codec in BITMAP_CODECS:
        raise MediaError(
            f"Subtitle track {stream.index} of {src.name} is made of pictures ({stream.codec}), "
            "not text, so it cannot be turned into WebVTT.",
            code="media.bitmap_subtitles",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = (
        ffmpeg_cli.input(media_arg(src))[str(stream.index)]
        .output(media_arg(dest), f="webvtt", **{"c:s": "webvtt"})
        .get_args()
    )
    what = f"subtitle track {stream.index} ({stream.language or 'no language'}) of {src.name}"
    await run_ffmpeg(args, ffmpeg=ffmpeg, what=what)
    logger.info("Extracted %s to WebVTT (%s bytes).", what, dest.stat().st_size)
