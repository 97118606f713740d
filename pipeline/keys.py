"""Deterministic object keys: the same video and artefact always land at the same key.

That is what makes a repeated stage overwrite its earlier output instead of adding to it.
"""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_suffix(filename: str, default: str = ".bin") -> str:
    """The file's extension, lower-cased and limited to safe characters."""
    suffix = PurePosixPath(filename).suffix.lower()
    return suffix if suffix and _UNSAFE.sub("", suffix) == suffix and len(suffix) <= 10 else default


def video_prefix(video_id: uuid.UUID) -> str:
    return f"videos/{video_id}/"


def source_key(video_id: uuid.UUID, filename: str) -> str:
    """The uploaded original; only its extension comes from the uploader's file name."""
    return f"{video_prefix(video_id)}source/original{safe_suffix(filename)}"


def subtitle_source_key(video_id: uuid.UUID, track_id: uuid.UUID, filename: str) -> str:
    return f"{video_prefix(video_id)}subtitles/source/{track_id}{safe_suffix(filename, '.txt')}"


def subtitle_vtt_key(video_id: uuid.UUID, track_id: uuid.UUID) -> str:
    return f"{video_prefix(video_id)}subtitles/{track_id}.vtt"


def poster_key(video_id: uuid.UUID, ext: str) -> str:
    return f"{video_prefix(video_id)}thumbnails/poster.{ext}"


def candidate_key(video_id: uuid.UUID, position: int, ext: str) -> str:
    return f"{video_prefix(video_id)}thumbnails/candidate-{position:02d}.{ext}"


def storyboard_key(video_id: uuid.UUID, name: str) -> str:
    return f"{video_prefix(video_id)}storyboard/{name}"
