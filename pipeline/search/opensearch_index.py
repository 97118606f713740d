"""The OpenSearch index of vidpipe: its names, settings, mappings and documents.

Layout: one index, one document per video, with the video's cues as ``nested`` objects.
The alternative, a ``cues`` index beside a ``videos`` index, would spread one question ("does
every query word occur somewhere in this video, and which cues say it?") over two indices:
the all-words rule, the filters and the count of matching videos would then need joins the
engine does not have. Nested cues keep a video and its cues in one block, so one bool query
answers it, ``inner_hits`` returns the best cues, and deleting the video deletes its cues in
the same write. The price is that changing one cue rewrites the whole video, which is what
the index stage does anyway: it always replaces every cue of a video.

Names: the alias ``<prefix>-videos`` is what every read and write uses. It points at one
versioned index ``<prefix>-videos-v<schema>-<stamp>``; a rebuild fills a new one and swaps
the alias in one atomic ``_aliases`` call.

Analysis, for every text field (title, description, cue text):

* the field itself uses the ``english`` analyzer: stemming, so ``running`` finds ``runs``;
* ``.grams`` holds every three-character window of the lower-cased text (``ngram`` 3..3, all
  characters kept). A window starts one position after the previous one, so a phrase query
  over a word's windows matches exactly where the word occurs as a substring: ``고유값``
  finds ``고유값과`` on osmem and on OpenSearch alike, with no Korean dictionary involved;
* ``.short`` holds the one- and two-character windows, for query words too short for a
  trigram (``행``, ``값과``, ``%``).

Suggestions come from ``suggest``, a ``completion`` field fed with each word-start suffix of
the title (``linear models``, ``models``) and of the first words of the description, cleaned
of punctuation, and left empty for videos that are not ready.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.search.base import CueDocument, VideoDocument
from pipeline.search.query import clean_text

SCHEMA_VERSION = 1
"""Raise it with any change below; ``vidpipe search reindex --all`` then moves the data over."""

MAX_CUES_PER_VIDEO = 50_000
"""OpenSearch refuses a document with more nested objects than this (its default is 10,000)."""

_SUGGEST_INPUT_LENGTH = 50
"""Completion inputs longer than this are cut by OpenSearch anyway; cutting first keeps requests small."""
_DESCRIPTION_WORDS = 20
"""Only the start of a description feeds suggestions: later words suggest poorly and cost memory."""
_PUNCTUATION = re.compile(r"[^\w\s]+")

_TEXT_FIELD: dict[str, Any] = {
    "type": "text",
    "analyzer": "english",
    "fields": {
        "grams": {"type": "text", "analyzer": "vidpipe_trigrams"},
        "short": {"type": "text", "analyzer": "vidpipe_short_grams"},
    },
}

SETTINGS: dict[str, Any] = {
    "index": {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "max_ngram_diff": 1,
        "mapping": {"nested_objects": {"limit": MAX_CUES_PER_VIDEO}},
    },
    "analysis": {
        "tokenizer": {
            "vidpipe_trigrams": {"type": "ngram", "min_gram": 3, "max_gram": 3},
            "vidpipe_short_grams": {"type": "ngram", "min_gram": 1, "max_gram": 2},
        },
        "analyzer": {
            "vidpipe_trigrams": {"type": "custom", "tokenizer": "vidpipe_trigrams", "filter": ["lowercase"]},
            "vidpipe_short_grams": {"type": "custom", "tokenizer": "vidpipe_short_grams", "filter": ["lowercase"]},
        },
    },
}

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "video_id": {"type": "keyword"},
        "title": _TEXT_FIELD,
        "description": _TEXT_FIELD,
        "language": {"type": "keyword"},
        "languages": {"type": "keyword"},
        "owner_id": {"type": "keyword"},
        "status": {"type": "keyword"},
        "duration": {"type": "double"},
        "suggest": {"type": "completion", "analyzer": "simple", "preserve_separators": True},
        "cues": {
            "type": "nested",
            "properties": {
                "id": {"type": "long"},
                "track_id": {"type": "keyword"},
                "language": {"type": "keyword"},
                "languages": {"type": "keyword"},
                "start": {"type": "double"},
                "end": {"type": "double"},
                "text": _TEXT_FIELD,
            },
        },
    },
}


class IndexNames:
    """The alias and the versioned index names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.lower()
        self.alias = f"{self.prefix}-videos"

    @property
    def first(self) -> str:
        """The index a fresh cluster starts with; fixed, so two processes starting at once create one."""
        return f"{self.alias}-v{SCHEMA_VERSION}-initial"

    @property
    def pattern(self) -> str:
        """Every versioned index under this prefix, of any schema version."""
        return f"{self.alias}-v*"

    def fresh(self) -> str:
        """A new, unused name for a rebuild."""
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        return f"{self.alias}-v{SCHEMA_VERSION}-{stamp}"


def index_body() -> dict[str, Any]:
    """The create-index request body: settings and mappings, no alias."""
    return {"settings": SETTINGS, "mappings": MAPPINGS}


def video_source(video: VideoDocument, cues: Sequence[CueDocument]) -> dict[str, Any]:
    """The document of ``video``, with every cue nested and the suggestion inputs.

    A cue's ``languages`` are its track's and its video's, so a language filter that accepts
    either can test one field; the video's ``languages`` likewise gather every track's.
    """
    title = clean_text(video.title)
    description = clean_text(video.description or "")
    nested = [_cue_source(cue, video.language) for cue in _unique(cues)]
    languages = {video.language, *(cue.language for cue in cues)} - {None}
    return {
        "video_id": str(video.id),
        "title": title,
        "description": description,
        "language": video.language,
        "languages": sorted(language for language in languages if language),
        "owner_id": str(video.owner_id) if video.owner_id else None,
        "status": video.status,
        "duration": video.duration,
        "suggest": suggest_inputs(title, description) if video.status == "ready" else [],
        "cues": nested,
    }


def suggest_inputs(title: str, description: str) -> list[str]:
    """Every word-start suffix of the title, then of the description's first words, without punctuation."""
    inputs = _suffixes(_PUNCTUATION.sub(" ", title).split())
    inputs += _suffixes(_PUNCTUATION.sub(" ", description).split()[:_DESCRIPTION_WORDS])
    return list(dict.fromkeys(text[:_SUGGEST_INPUT_LENGTH] for text in inputs))


def _suffixes(words: list[str]) -> list[str]:
    return [" ".join(words[start:]) for start in range(len(words))]


def _cue_source(cue: CueDocument, video_language: str | None) -> dict[str, Any]:
    languages = {cue.language, video_language} - {None}
    return {
        "id": cue.id,
        "track_id": str(cue.track_id),
        "language": cue.language,
        "languages": sorted(language for language in languages if language),
        "start": cue.start,
        "end": cue.end,
        "text": clean_text(cue.text),
    }


def _unique(cues: Sequence[CueDocument]) -> list[CueDocument]:
    """One cue per id, the last one winning, as the database backend keeps them."""
    return list({cue.id: cue for cue in cues}.values())
