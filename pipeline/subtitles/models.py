"""The subtitle data every reader produces and the writer consumes: cues, regions, documents."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

# A cue tag runs from "<" to the next ">" on the same line. A "<" with no ">" after it is kept
# as text: WebVTT would swallow the rest of the line, but for search the words matter more.
_CUE_TAG = re.compile(r"<[^>\n]*>")


@dataclass(frozen=True)
class Cue:
    """One timed piece of text, as written in the source file."""

    start: float
    """Start time in seconds."""
    end: float
    """End time in seconds; WebVTT cues may end before they start and are kept as browsers keep them."""
    text: str
    """The cue payload with its markup kept, e.g. ``<b>hi</b>`` or ``<v Bob>x``."""
    identifier: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    """Valid WebVTT cue settings as written, e.g. ``{"align": "start", "line": "0"}``."""

    @property
    def plain_text(self) -> str:
        """The text for search: markup removed, entities decoded and whitespace collapsed."""
        without_tags = _CUE_TAG.sub("", self.text)
        return " ".join(html.unescape(without_tags).split())


@dataclass(frozen=True)
class Region:
    """A WebVTT ``REGION`` definition that cues refer to through their ``region`` setting."""

    identifier: str
    settings: dict[str, str] = field(default_factory=dict)
    """Valid region settings other than ``id``, e.g. ``{"width": "40%", "scroll": "up"}``."""


@dataclass(frozen=True)
class SubtitleDocument:
    """A parsed subtitle file: its cues and what was repaired or skipped to read them."""

    format: str
    """``"webvtt"``, ``"srt"`` or ``"sbv"``."""
    encoding: str
    """The encoding the bytes were read with, e.g. ``"utf-8"`` or ``"cp949"``."""
    cues: list[Cue]
    warnings: list[str]
    """One sentence per skipped or repaired block, naming its line."""
    regions: list[Region] = field(default_factory=list)
    """WebVTT regions, in file order; empty for SRT and SBV."""
