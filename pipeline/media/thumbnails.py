"""Posters, poster candidates and storyboards, cut from a video with the ffmpeg command line.

Every frame grab seeks on the input (``-ss`` before ``-i``): the demuxer jumps to the
keyframe before the wanted time and only the frames from there are decoded, instead of
decoding the video from its start (45 s into a 60 s 720p clip: 0.16 s against 1.8 s).
Images come out the way players show the video: rotation applied (ffmpeg turns the frames
itself) and non-square pixels stretched to square ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_cli

from pipeline.errors import MediaError
from pipeline.media.ffmpeg import media_arg, run_ffmpeg
from pipeline.media.storyboard import Storyboard, build_storyboard

__all__ = [
    "Storyboard",
    "build_storyboard",
    "default_poster_time",
    "extract_candidates",
    "extract_poster",
]

logger = logging.getLogger(__name__)

POSTER_FRACTION = 0.1
"""The default poster is taken this far into the video: past a title card or black lead-in."""
POSTER_LATEST_DEFAULT = 30.0
"""...but no later than this many seconds, so a long lecture's poster shows its opening."""
END_MARGIN = 0.25
"""Seconds kept clear of the end, where the last frame may stop short of the claimed duration."""
_ENCODERS = {
    ".jpg": ["-f", "image2", "-update", "1", "-c:v", "mjpeg", "-q:v", "2"],
    ".jpeg": ["-f", "image2", "-update", "1", "-c:v", "mjpeg", "-q:v", "2"],
    ".webp": ["-f", "webp", "-c:v", "libwebp", "-quality", "85"],
}


def default_poster_time(duration: float) -> float:
    """10 % into the video, at most 30 s in, and always on a real frame (see :func:`clamp_time`)."""
    return clamp_time(min(duration * POSTER_FRACTION, POSTER_LATEST_DEFAULT), duration)


def clamp_time(at: float, duration: float) -> float:
    """Bring a wanted time inside the video, clear of its last frame's end.

    The margin is 0.25 s, or half the clip when it is shorter than 0.5 s.
    """
    latest = max(0.0, duration - min(END_MARGIN, duration / 2))
    return round(min(max(at, 0.0), latest), 3)


def _scale_to_display(stream: Any, width: int | None) -> Any:
    """Square the pixels (``dar`` is the display aspect ratio) and optionally fit ``width``."""
    if width is None:
        scaled = stream.filter("scale", w="trunc(ih*dar/2)*2", h="trunc(ih/2)*2")
    else:
        even = width - width % 2
        scaled = stream.filter("scale", w=even, h=f"trunc({even}/dar/2)*2")
    return scaled.filter("setsar", "1")


def _encoder_args(dest: Path) -> list[str]:
    try:
        return _ENCODERS[dest.suffix.lower()]
    except KeyError:
        raise ValueError(f"image format must be one of {sorted(_ENCODERS)}, not {dest.suffix!r}") from None


def _grab_args(src: Path, dest: Path, at: float, width: int | None) -> tuple[Any, list[str]]:
    """One input seeked to ``at`` and one single-frame image output (an ffmpeg-python node)."""
    stream = _scale_to_display(ffmpeg_cli.input(media_arg(src), ss=f"{at:.3f}").video, width)
    return stream.output(media_arg(dest), vframes=1), _encoder_args(dest)


def _with_encoders(args: list[str], outputs: list[tuple[Path, list[str]]]) -> list[str]:
    """Insert each output's encoder options just before its file name."""
    result = list(args)
    for dest, encoder in outputs:
        position = result.index(media_arg(dest))
        result[position:position] = encoder
    return result


async def extract_poster(
    src: Path, dest: Path, *, at: float | None, duration: float, ffmpeg: str, width: int | None = None
) -> float:
    """Write one frame of ``src`` as an image, the format following ``dest``'s suffix.

    Args:
        src: the video.
        dest: ``.jpg``/``.jpeg`` or ``.webp``.
        at: seconds into the video; ``None`` for :func:`default_poster_time`. Times before
            the start or past the end are clamped.
        duration: seconds, from the probe.
        ffmpeg: the binary, from :func:`~pipeline.media.ffmpeg.find_ffmpeg`.
        width: scale to this width (even), keeping the display aspect ratio; ``None`` keeps
            the display size.

    Returns:
        The time actually used, in seconds.

    Raises:
        MediaError: ``media.ffmpeg_failed`` when no frame could be taken, even from the start.
    """
    used = default_poster_time(duration) if at is None else clamp_time(at, duration)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        await _grab(src, dest, used, width, ffmpeg)
    except MediaError as exc:
        if used == 0.0 or exc.code != "media.ffmpeg_failed":
            raise
        # The claimed duration can run past the last frame (sound longer than pictures),
        # and ffmpeg fails when its seek lands after the last frame.
        logger.warning("No frame of %s at %.3f s (%s); taking the poster from the start.", src.name, used, exc)
        used = 0.0
        await _grab(src, dest, used, width, ffmpeg)
    logger.info("Took the poster of %s at %.3f s.", src.name, used)
    return used


async def _grab(src: Path, dest: Path, at: float, width: int | None, ffmpeg: str) -> None:
    node, encoder = _grab_args(src, dest, at, width)
    args = _with_encoders(node.get_args(), [(dest, encoder)])
    await run_ffmpeg(args, ffmpeg=ffmpeg, what=f"the poster of {src.name}")


def _written(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def candidate_times(duration: float, count: int) -> list[float]:
    """Up to ``count`` distinct times spread evenly inside the video, none at its very start.

    A clip too short for ``count`` distinct times after clamping gets fewer.
    """
    times = [clamp_time(duration * (n + 1) / (count + 1), duration) for n in range(count)]
    return sorted(set(times))


async def extract_candidates(
    src: Path, dest_dir: Path, *, duration: float, count: int = 5, ffmpeg: str, fmt: str = "jpg"
) -> list[tuple[Path, float]]:
    """Write ``count`` poster candidates spread over the video, in one ffmpeg run.

    Each candidate is its own input seeked to its time, so ffmpeg decodes only a little
    around each point, and the inputs are demuxed and decoded in parallel.

    Args:
        src: the video.
        dest_dir: created if needed; receives ``candidate-0.<fmt>``, ``candidate-1.<fmt>``, ...
        duration: seconds, from the probe.
        count: how many.
        ffmpeg: the binary, from :func:`~pipeline.media.ffmpeg.find_ffmpeg`.
        fmt: ``jpg`` or ``webp``.

    Returns:
        ``(path, seconds)`` pairs in time order. A clip too short for ``count`` distinct
        times gets fewer, and a candidate whose time holds no frame (the very end of a clip
        whose sound outlasts its pictures) is left out.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    planned = [(dest_dir / f"candidate-{n}.{fmt}", at) for n, at in enumerate(candidate_times(duration, count))]
    nodes = []
    outputs = []
    for dest, at in planned:
        dest.unlink(missing_ok=True)
        node, encoder = _grab_args(src, dest, at, None)
        nodes.append(node)
        outputs.append((dest, encoder))
    args = _with_encoders(ffmpeg_cli.merge_outputs(*nodes).get_args(), outputs)
    try:
        await run_ffmpeg(args, ffmpeg=ffmpeg, what=f"the poster candidates of {src.name}")
    except MediaError as exc:
        # One output without a frame (a time past the last picture) fails the whole run and
        # may stop the others early, so the missing ones are taken again one by one.
        if exc.code != "media.ffmpeg_failed":
            raise
        logger.warning("Taking poster candidates of %s one by one after: %s", src.name, exc)
        await _grab_missing(src, planned, ffmpeg)

    written = [(dest, at) for dest, at in planned if _written(dest)]
    if not written:
        raise MediaError(
            f"No picture could be taken from {src.name} for poster candidates.", code="media.ffmpeg_failed"
        )
    logger.info("Took %s of %s poster candidates of %s.", len(written), count, src.name)
    return written


async def _grab_missing(src: Path, planned: list[tuple[Path, float]], ffmpeg: str) -> None:
    """Take each candidate not yet written in its own run, skipping those without a frame."""
    for dest, at in planned:
        if _written(dest):
            continue
        try:
            await _grab(src, dest, at, None, ffmpeg)
        except MediaError as exc:
            logger.info("Left out the poster candidate of %s at %.3f s: %s", src.name, at, exc)
