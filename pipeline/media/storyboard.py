"""Storyboards: small frames at a fixed interval, packed into sprite sheets, with a WebVTT index.

Players show a storyboard tile when the viewer hovers over the seek bar. The index is a
WebVTT file with one cue per tile whose text is ``sprite-N.jpg#xywh=x,y,w,h``: the sheet
and the tile's rectangle in it, names relative to the index file.

The interval is 5 s, stretched so a long video has at most 300 tiles (three sheets of
10x10) and shrunk so a short clip still gets 5. Tiles are 160 px wide by default, the
height following the display aspect ratio, both even.

Speed comes from decoding little. Clips longer than 20 s are decoded keyframes only
(``-skip_frame nokey``): the demuxer still reads the file, but the decoder, by far the cost,
sees a frame every few seconds instead of 25 or 30 a second. Each tile then shows the
keyframe nearest its time, which for lecture material (slides, a speaker) is
indistinguishable from the exact frame. Short clips, where keyframes may be seconds apart
compared to a sub-second interval, decode every frame. One ffmpeg run does the decoding,
the frame picking, the scaling of only the picked frames and the packing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import ffmpeg as ffmpeg_cli

from pipeline.errors import MediaError
from pipeline.media.ffmpeg import media_arg, run_ffmpeg
from pipeline.subtitles.writer import format_timestamp

logger = logging.getLogger(__name__)

BASE_INTERVAL = 5.0
"""Seconds between tiles for most videos."""
MIN_TILES = 5
MAX_TILES = 300
MAX_COLUMNS = 10
MAX_ROWS = 10
KEYFRAMES_ONLY_AFTER = 20.0
"""Clips longer than this many seconds are decoded keyframes only."""
_IMAGE_CODECS = {"jpg": ["-c:v", "mjpeg", "-q:v", "4"], "webp": ["-c:v", "libwebp", "-quality", "70"]}


@dataclass(frozen=True)
class Storyboard:
    """The sprite sheets and index of a video's storyboard."""

    sprites: list[Path]
    """Sheet files in order: ``sprite-0.jpg``, ``sprite-1.jpg``, ..."""
    vtt: str
    """The WebVTT index, one cue per tile, naming sheets relative to the index's own location."""
    interval: float
    """Seconds between tiles; tile ``k`` covers ``[k * interval, (k + 1) * interval)``."""
    tile_width: int
    tile_height: int
    columns: int
    """Tiles per row of a sheet."""
    rows: int
    """Rows per sheet; the last sheet may be partly empty."""
    tiles: int
    """Tiles in all sheets together."""


def choose_interval(duration: float) -> float:
    """Seconds between tiles for a video of ``duration`` seconds, rounded to milliseconds."""
    if duration <= 0:
        raise ValueError("a storyboard needs a positive duration")
    if duration / BASE_INTERVAL > MAX_TILES:
        return float(math.ceil(duration / MAX_TILES))
    if duration / BASE_INTERVAL < MIN_TILES:
        # Rounded down so that MIN_TILES tiles always fit inside the clip.
        return max(0.001, math.floor(duration / MIN_TILES * 1000) / 1000)
    return BASE_INTERVAL


def tile_count(duration: float, interval: float) -> int:
    """Tiles needed so that their cues cover ``[0, duration]``."""
    return max(1, math.ceil(duration / interval - 1e-9))


def tile_size(display_width: int, display_height: int, tile_width: int) -> tuple[int, int]:
    """Even tile dimensions ``tile_width`` wide (rounded to even) keeping the display aspect ratio."""
    width = max(2, tile_width - tile_width % 2)
    height = max(2, round(width * display_height / display_width / 2) * 2)
    return width, height


def sheet_grid(tiles: int) -> tuple[int, int]:
    """Columns and rows of a sheet: 10x10 when several sheets are needed, just enough otherwise."""
    columns = min(MAX_COLUMNS, tiles)
    rows = min(MAX_ROWS, math.ceil(tiles / columns))
    return columns, rows


def storyboard_vtt(
    *, duration: float, interval: float, tiles: int, size: tuple[int, int], grid: tuple[int, int], fmt: str
) -> str:
    """The WebVTT index: cue ``k`` spans ``[k * interval, min((k + 1) * interval, duration)]``."""
    width, height = size
    columns, rows = grid
    lines = ["WEBVTT", ""]
    for tile in range(tiles):
        sheet, place = divmod(tile, columns * rows)
        row, column = divmod(place, columns)
        start, end = tile * interval, min((tile + 1) * interval, duration)
        lines.append(f"{format_timestamp(start)} --> {format_timestamp(end)}")
        lines.append(f"sprite-{sheet}.{fmt}#xywh={column * width},{row * height},{width},{height}")
        lines.append("")
    return "\n".join(lines)


async def build_storyboard(
    src: Path,
    dest_dir: Path,
    *,
    duration: float,
    display_width: int,
    display_height: int,
    ffmpeg: str,
    fmt: str = "jpg",
    tile_width: int = 160,
    interval: float | None = None,
) -> Storyboard:
    """Render a video's storyboard sheets into ``dest_dir`` and return them with their index.

    Args:
        src: the video.
        dest_dir: created if needed; receives ``sprite-0.<fmt>``, ``sprite-1.<fmt>``, ...
            (the index text is returned, not written).
        duration: seconds, from the probe.
        display_width: from the probe (rotation and pixel aspect applied).
        display_height: from the probe.
        ffmpeg: the binary, from :func:`~pipeline.media.ffmpeg.find_ffmpeg`.
        fmt: ``jpg`` or ``webp``.
        tile_width: pixels; the height follows the display aspect ratio.
        interval: seconds between tiles; chosen from ``duration`` when ``None``.

    Raises:
        MediaError: ffmpeg failed, or produced fewer sheets than planned.
    """
    if fmt not in _IMAGE_CODECS:
        raise ValueError(f"storyboard format must be one of {sorted(_IMAGE_CODECS)}, not {fmt!r}")
    interval = round(interval, 3) if interval else choose_interval(duration)
    tiles = tile_count(duration, interval)
    size = tile_size(display_width, display_height, tile_width)
    grid = sheet_grid(tiles)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for stale in dest_dir.glob(f"sprite-*.{fmt}"):
        # A rerun with another plan must not leave sheets the new index does not name.
        stale.unlink()

    started = time.perf_counter()
    args = _command(
        src,
        dest_dir / f"sprite-%d.{fmt}",
        duration=duration,
        interval=interval,
        tiles=tiles,
        size=size,
        grid=grid,
        fmt=fmt,
    )
    await run_ffmpeg(args, ffmpeg=ffmpeg, what=f"the storyboard of {src.name}")
    sprites = _collect_sprites(dest_dir, fmt, math.ceil(tiles / (grid[0] * grid[1])), src)
    logger.info(
        "Built the storyboard of %s: %s tiles every %.3f s on %s sheets in %.2f s.",
        src.name,
        tiles,
        interval,
        len(sprites),
        time.perf_counter() - started,
    )

    vtt = storyboard_vtt(duration=duration, interval=interval, tiles=tiles, size=size, grid=grid, fmt=fmt)
    return Storyboard(
        sprites=sprites,
        vtt=vtt,
        interval=interval,
        tile_width=size[0],
        tile_height=size[1],
        columns=grid[0],
        rows=grid[1],
        tiles=tiles,
    )


def _command(
    src: Path,
    pattern: Path,
    *,
    duration: float,
    interval: float,
    tiles: int,
    size: tuple[int, int],
    grid: tuple[int, int],
    fmt: str,
) -> list[str]:
    """The ffmpeg arguments: decode (keyframes only for longer clips), pick, scale, pack."""
    # TODO(storyboard-sparse-keyframes): a recording with keyframes minutes apart (some screen
    # recorders) repeats one picture over many tiles; a bounded decode after each keyframe,
    # or a seek per tile, would fix it at some cost in speed.
    input_options = {"skip_frame": "nokey"} if duration > KEYFRAMES_ONLY_AFTER else {}
    stream = (
        ffmpeg_cli.input(media_arg(src), **input_options)
        .video
        # The last frame is held for one more interval so the final tile always has a frame,
        # whatever the rounding of the container's duration.
        .filter("tpad", stop_mode="clone", stop_duration=interval)
        .filter("fps", fps=f"1000/{round(interval * 1000)}", start_time=0, round="up")
        .filter("trim", end_frame=tiles)
        .filter("scale", w=size[0], h=size[1])
        .filter("setsar", "1")
        .filter("tile", layout=f"{grid[0]}x{grid[1]}")
    )
    output = stream.output(media_arg(pattern), f="image2", start_number=0)
    return [*output.get_args()[:-1], *_IMAGE_CODECS[fmt], output.get_args()[-1]]


def _collect_sprites(dest_dir: Path, fmt: str, expected: int, src: Path) -> list[Path]:
    """The sheets ffmpeg wrote, checked against the plan."""
    sprites = [dest_dir / f"sprite-{sheet}.{fmt}" for sheet in range(expected)]
    missing = [path.name for path in sprites if not path.is_file() or path.stat().st_size == 0]
    if missing:
        raise MediaError(
            f"The storyboard of {src.name} could not be completed: {', '.join(missing)} was not produced.",
            code="media.ffmpeg_failed",
        )
    return sprites
