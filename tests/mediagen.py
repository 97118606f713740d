"""Real media for tests, generated with the ffmpeg binary from its built-in sources.

Every helper is synchronous, writes one file and returns its path. Clips are small (a few
seconds at 320x180) so that a test module generating a dozen of them stays fast. The video
content is ``testsrc2``, whose picture changes every frame (a running counter and moving
shapes), so tests can tell frames taken at different times apart.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg


def ffmpeg_exe() -> str:
    """The ffmpeg binary the tests use: the one imageio-ffmpeg ships, present on every machine."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(args: list[str]) -> None:
    """Run ffmpeg quietly and fail the calling test with ffmpeg's own complaint if it fails."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"test media generation failed: {result.stderr.strip()}")


def _out(path: Path) -> str:
    # The "file:" prefix keeps a name such as "-lecture.mp4" from being read as an option.
    return f"file:{Path(path).resolve()}"


def make_video(
    path: Path,
    *,
    duration: float = 2.0,
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    audio: bool = True,
    codec: str = "libx264",
    rotate: int | None = None,
    faststart: bool = True,
    sar: str | None = None,
    live: bool = False,
    frames: int | None = None,
) -> Path:
    """Write a clip of moving test pictures, with a sine tone unless ``audio`` is False.

    Args:
        path: where to write; the suffix picks the container (.mp4, .mkv, .webm, .mov, or
            .h264 for a raw stream without timestamps).
        duration: seconds.
        width: coded picture width.
        height: coded picture height.
        fps: frames per second.
        audio: add an AAC (or Opus for .webm) sine tone.
        codec: the video encoder.
        rotate: a display rotation in degrees (counter-clockwise, as ffmpeg counts it),
            stored as container side data; the coded picture is not turned.
        faststart: for MP4/MOV, put the index at the front of the file.
        sar: a pixel aspect ratio such as ``"4/3"`` (non-square pixels).
        live: for Matroska/WebM, write as a live recording does: no duration, no index.
        frames: stop after this many video frames (``1`` makes a one-picture video).

    Returns:
        The path written.
    """
    path = Path(path)
    args = _sources(duration, width, height, fps, audio)
    args += _video_options(codec, fps, sar, frames)
    if audio:
        args += ["-c:a", "libopus" if path.suffix == ".webm" else "aac", "-b:a", "64k"]
    if faststart and path.suffix in (".mp4", ".mov", ".m4v"):
        args += ["-movflags", "+faststart"]
    if live:
        args += ["-live", "1"]
    if rotate is None:
        _run([*args, _out(path)])
        return path

    # Display rotation is set on an input stream, so the clip is made first and then remuxed.
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / f"plain{path.suffix}"
        _run([*args, _out(plain)])
        _run(["-display_rotation:v:0", str(rotate), "-i", _out(plain), "-c", "copy", _out(path)])
    return path


def _sources(duration: float, width: int, height: int, fps: int, audio: bool) -> list[str]:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    return args


def _video_options(codec: str, fps: int, sar: str | None, frames: int | None) -> list[str]:
    args = ["-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        # A keyframe every second, so that keyframe-only work has something to land on.
        args += ["-preset", "ultrafast", "-g", str(fps)]
    if sar is not None:
        args += ["-vf", f"setsar={sar}"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    return args


def make_audio_only(path: Path, duration: float = 1.0) -> Path:
    """Write a sine tone with no video stream (the suffix picks the container, e.g. .m4a or .mp4)."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    _run([*args, "-c:a", "aac", "-b:a", "64k", _out(path)])
    return path


def make_image(path: Path, width: int = 320, height: int = 180) -> Path:
    """Write one still test picture (PNG for a .png suffix, JPEG for .jpg)."""
    path = Path(path)
    source = f"testsrc2=size={width}x{height}:rate=1:duration=1"
    _run(["-f", "lavfi", "-i", source, "-frames:v", "1", "-update", "1", _out(path)])
    return path


def make_truncated(path: Path, source: Path, fraction: float = 0.5) -> Path:
    """Write the first ``fraction`` of ``source``'s bytes: a file cut short in transfer."""
    path = Path(path)
    data = Path(source).read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_corrupted(path: Path, source: Path) -> Path:
    """Write ``source`` (an MP4 with its index first) with its media data replaced by noise.

    The container stays intact, so the file opens and claims its full length, but no
    picture in it can be decoded.
    """
    path = Path(path)
    data = bytearray(Path(source).read_bytes())
    payload = data.find(b"mdat") + 4
    if payload < 4:
        raise ValueError(f"{source} has no media data box")
    noise = random.Random(7).randbytes(len(data) - payload)
    data[payload:] = noise
    path.write_bytes(bytes(data))
    return path


def make_video_with_subtitles(
    path: Path, tracks: list[tuple[str, str]], *, duration: float = 2.0, codec: str | None = None
) -> Path:
    """Write a clip carrying one embedded text track per ``(language, srt_text)`` pair.

    The tracks are stored as SubRip in a .mkv and as mov_text in a .mp4, each with its
    language tag (an ISO 639-2 code such as ``kor`` or ``eng``).

    Args:
        path: where to write.
        tracks: ``(language, srt_text)`` pairs.
        duration: seconds of video.
        codec: another subtitle encoder instead (``ass`` or ``webvtt`` in a .mkv).

    Returns:
        The path written.
    """
    path = Path(path)
    if codec is None:
        codec = "mov_text" if path.suffix in (".mp4", ".mov", ".m4v") else "srt"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=10:duration={duration}"]
        for number, (_, text) in enumerate(tracks):
            srt = Path(tmp) / f"track{number}.srt"
            srt.write_text(text, encoding="utf-8")
            args += ["-sub_charenc", "UTF-8", "-i", _out(srt)]
        args += ["-map", "0:v"]
        for number in range(len(tracks)):
            args += ["-map", f"{number + 1}:s"]
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:s", codec]
        for number, (language, _) in enumerate(tracks):
            args += [f"-metadata:s:s:{number}", f"language={language}"]
        _run([*args, _out(path)])
    return path


def make_timecode_video(path: Path, *, duration: float = 6.0, fps: int = 10, gop: int | None = None) -> Path:
    """Write a grey clip whose brightness tells the second it shows: luma ``16 + 8 * floor(t)``.

    A test can decode any frame taken from it (a poster, a storyboard tile) and read back
    the second it came from with :func:`second_shown`. Up to 27 s stay below white.

    Args:
        path: where to write (.mp4).
        duration: seconds.
        fps: frames per second.
        gop: frames between keyframes (default: one keyframe a second).

    Returns:
        The path written.
    """
    path = Path(path)
    source = f"color=c=black:size=160x90:rate={fps}:duration={duration},format=yuv420p"
    grey = "geq=lum='16+8*floor(T)':cb=128:cr=128"
    args = ["-f", "lavfi", "-i", source, "-vf", grey, "-c:v", "libx264", "-preset", "ultrafast"]
    args += ["-g", str(gop or fps), "-pix_fmt", "yuv420p", "-movflags", "+faststart", _out(path)]
    _run(args)
    return path


def second_shown(mean_luma: float, *, full_range: bool = True) -> int:
    """The second of a :func:`make_timecode_video` clip that a picture's mean luma shows.

    JPEG images store full-range luma (0-255) where the video has limited range (16-235).
    """
    limited = mean_luma * 219 / 255 + 16 if full_range else mean_luma
    return round((limited - 16) / 8)


def copy_to(source: Path, dest: Path) -> Path:
    """Copy a generated file under another name (e.g. one starting with ``-``)."""
    shutil.copyfile(source, dest)
    return Path(dest)
