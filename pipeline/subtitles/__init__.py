"""Subtitle files: read WebVTT, SRT and SBV in any common encoding, write normalised WebVTT.

WebVTT is read block by block as browsers read it (:mod:`.vtt_parser`); SRT and SBV go
through webvtt-py one block at a time (:mod:`.srt_sbv`). Damaged blocks are skipped with a
warning rather than failing the file; a file with no usable cue is rejected.
"""

from pipeline.subtitles.encoding import decode_subtitle_bytes
from pipeline.subtitles.language import language_from_filename
from pipeline.subtitles.models import Cue, Region, SubtitleDocument
from pipeline.subtitles.reader import parse_subtitles
from pipeline.subtitles.writer import to_webvtt

__all__ = [
    "Cue",
    "Region",
    "SubtitleDocument",
    "decode_subtitle_bytes",
    "language_from_filename",
    "parse_subtitles",
    "to_webvtt",
]
