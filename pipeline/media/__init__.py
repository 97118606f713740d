"""Media work: probing uploads in process with PyAV, and frame and subtitle work with ffmpeg.

- :mod:`~pipeline.media.probe` reads a file's facts or rejects it with a ``media.*`` code.
- :mod:`~pipeline.media.thumbnails` cuts posters, poster candidates and storyboards.
- :mod:`~pipeline.media.embedded` takes embedded text tracks out as WebVTT.
- :mod:`~pipeline.media.ffmpeg` finds the ffmpeg binary and runs it without leaving orphans.
"""

from pipeline.media.embedded import extract_subtitle_stream
from pipeline.media.ffmpeg import find_ffmpeg, run_ffmpeg
from pipeline.media.probe import ProbeResult, SubtitleStream, probe
from pipeline.media.thumbnails import (
    Storyboard,
    build_storyboard,
    default_poster_time,
    extract_candidates,
    extract_poster,
)

__all__ = [
    "ProbeResult",
    "Storyboard",
    "SubtitleStream",
    "build_storyboard",
    "default_poster_time",
    "extract_candidates",
    "extract_poster",
    "extract_subtitle_stream",
    "find_ffmpeg",
    "probe",
    "run_ffmpeg",
]
