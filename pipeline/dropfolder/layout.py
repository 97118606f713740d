"""How the drop location is laid out: which objects are videos, which are their sidecars.

Pending drops live anywhere below the root except in the three areas the scanner files
finished drops into (``processed/``, ``rejected/``, ``duplicates/``), so a listing of the
folder outside those areas is exactly what is still waiting. A sidecar sits in the same
folder as its video and shares its stem: ``lecture.mp4`` takes ``lecture.ko.vtt``,
``lecture.en.srt``, ``lecture.vtt`` and ``lecture.json``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from pipeline.storage.base import StoredObject

PROCESSED_AREA = "processed"
REJECTED_AREA = "rejected"
DUPLICATES_AREA = "duplicates"
AREAS = (PROCESSED_AREA, REJECTED_AREA, DUPLICATES_AREA)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg"})
SUBTITLE_SUFFIXES = frozenset({".vtt", ".srt", ".sbv"})
METADATA_SUFFIX = ".json"

# What may stand between the stem and a subtitle suffix: one dot-free piece such as a
# language tag (``ko``, ``en-US``) or a label; the subtitles code reads the language from it.
_SUBTITLE_MIDDLE = re.compile(r"[A-Za-z0-9_-]{1,35}")


@dataclass(frozen=True)
class DropGroup:
    """A video file waiting in the drop location, with the sidecars that arrived with it."""

    video: StoredObject
    subtitles: tuple[StoredObject, ...] = ()
    metadata: StoredObject | None = None

    @property
    def objects(self) -> tuple[StoredObject, ...]:
        """The video first, then every sidecar: what moves together when the drop is filed."""
        return (self.video, *self.subtitles, *((self.metadata,) if self.metadata else ()))

    @property
    def newest_change(self) -> datetime | None:
        """The latest modification time among the sidecars; ``None`` when none has one."""
        times = [obj.modified for obj in self.objects[1:] if obj.modified is not None]
        return max(times) if times else None


@dataclass
class _Folder:
    videos: list[StoredObject] = field(default_factory=list)
    others: list[StoredObject] = field(default_factory=list)


def is_pending_key(key: str) -> bool:
    """Whether ``key`` is outside the finished areas and not a hidden (in-progress) file."""
    parts = key.split("/")
    if parts[0] in AREAS and len(parts) > 1:
        return False
    return not any(part.startswith(".") for part in parts)


def is_video_key(key: str) -> bool:
    """Whether the key's suffix is one the scanner takes as a video."""
    return PurePosixPath(key).suffix.lower() in VIDEO_SUFFIXES


def group_drops(objects: Iterable[StoredObject]) -> list[DropGroup]:
    """Pair every pending video with its sidecars; anything else pending is left alone."""
    folders: dict[str, _Folder] = defaultdict(_Folder)
    for obj in objects:
        if not is_pending_key(obj.key):
            continue
        folder = folders[str(PurePosixPath(obj.key).parent)]
        (folder.videos if is_video_key(obj.key) else folder.others).append(obj)
    groups = []
    for folder in folders.values():
        for video in folder.videos:
            groups.append(_group(video, folder.others))
    return sorted(groups, key=lambda group: group.video.key)


def _group(video: StoredObject, others: list[StoredObject]) -> DropGroup:
    stem = PurePosixPath(video.key).stem
    subtitles = tuple(obj for obj in others if _is_subtitle_of(stem, PurePosixPath(obj.key).name))
    metadata = next((obj for obj in others if PurePosixPath(obj.key).name == stem + METADATA_SUFFIX), None)
    return DropGroup(video=video, subtitles=subtitles, metadata=metadata)


def _is_subtitle_of(stem: str, name: str) -> bool:
    path = PurePosixPath(name)
    if path.suffix.lower() not in SUBTITLE_SUFFIXES:
        return False
    base = name[: -len(path.suffix)]
    if base == stem:
        return True
    if not base.startswith(stem + "."):
        return False
    return _SUBTITLE_MIDDLE.fullmatch(base[len(stem) + 1 :]) is not None


def filed_key(area: str, day: str, key: str) -> str:
    """Where a finished drop's object goes: ``<area>/<YYYY-MM-DD>/<its key>``."""
    return f"{area}/{day}/{key}"
