"""The search interface every backend implements, and the documents and results it speaks in.

The index stage hands a backend one :class:`VideoDocument` with the plain-text cues of its
usable tracks; the CLI and the HTTP API ask it for a :class:`SearchResult`. Backends differ in
how they match and rank, never in these shapes, so callers do not know which one answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class VideoDocument:
    """The searchable fields of one video, as the index stage read them."""

    id: uuid.UUID
    title: str
    description: str
    language: str | None
    owner_id: uuid.UUID | None
    status: str
    duration: float | None
    """Seconds; ``None`` while the video has not been probed."""


@dataclass(frozen=True)
class CueDocument:
    """One subtitle cue of a video's track."""

    id: int
    """The cue's row id in ``cues``; unique across all videos."""
    track_id: uuid.UUID
    language: str | None
    """The language of the cue's subtitle track."""
    start: float
    end: float
    text: str
    """Plain text: the markup is already stripped."""


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on which videos a search may return."""

    language: str | None = None
    """Matches the video's language or the language of one of its subtitle tracks."""
    owner_id: uuid.UUID | None = None
    visible_to: uuid.UUID | None = None
    """Only videos this account owns or that have no owner (what a member may see)."""
    min_duration: float | None = None
    max_duration: float | None = None
    statuses: tuple[str, ...] = ("ready",)


NO_FILTERS = SearchFilters()
"""The default filters: every ready video."""


@dataclass(frozen=True)
class CueHit:
    """A cue that matched, with its text ready to show."""

    start: float
    end: float
    text: str
    highlight: str
    """The text HTML-escaped, with the matched parts wrapped in ``<mark>…</mark>``."""


@dataclass(frozen=True)
class SearchHit:
    """One matching video and its best matching cues."""

    video_id: uuid.UUID
    title: str
    score: float
    """Higher is more relevant; comparable only within one result of one backend."""
    cues: list[CueHit] = field(default_factory=list)


@dataclass(frozen=True)
class SearchResult:
    """One page of matching videos."""

    total: int
    """How many videos match across all pages."""
    hits: list[SearchHit]

    def to_json(self) -> dict[str, Any]:
        """The shape the CLI prints with ``--json`` and the HTTP API answers with."""
        return {
            "total": self.total,
            "hits": [
                {
                    "video": {"id": str(hit.video_id), "title": hit.title},
                    "score": float(hit.score),
                    "cues": [
                        {"start": cue.start, "end": cue.end, "text": cue.text, "highlight": cue.highlight}
                        for cue in hit.cues
                    ],
                }
                for hit in self.hits
            ],
        }


@dataclass(frozen=True)
class Suggestion:
    """A title offered while a person types."""

    text: str
    video_id: uuid.UUID


class SearchBackend(Protocol):
    """What the pipeline, the CLI and the API need from a search backend."""

    name: str
    """``database`` or ``opensearch``, for logs and ``vidpipe doctor``."""

    async def index_video(self, video: VideoDocument, cues: Sequence[CueDocument]) -> None:
        """Make ``video`` and exactly these cues searchable, replacing what was indexed for it."""
        ...

    async def delete_video(self, video_id: uuid.UUID) -> None:
        """Forget the video and its cues; quietly does nothing when it was never indexed."""
        ...

    async def search(
        self,
        query: str,
        *,
        filters: SearchFilters = NO_FILTERS,
        page: int = 1,
        per_page: int = 20,
        cues_per_video: int = 3,
    ) -> SearchResult:
        """Find the videos that match every word of ``query``, best first.

        Raises:
            InvalidInput: the query is empty or too long, or the page is out of range.
            SearchUnavailable: the backend did not answer.
        """
        ...

    async def suggest(self, prefix: str, *, limit: int = 10) -> list[Suggestion]:
        """Titles of ready videos that start with ``prefix`` or have a word starting with it."""
        ...

    async def check(self) -> None:
        """Raise :class:`~pipeline.errors.SearchUnavailable` unless the backend answers."""
        ...

    async def close(self) -> None:
        """Release what the backend holds open."""
        ...
