"""Search: one interface (:mod:`pipeline.search.base`), chosen by ``VIDPIPE_SEARCH_URL``.

``database`` (the embedded default) searches vidpipe's own database; an ``http(s)://`` URL
names an OpenSearch cluster, whose aliases and indices start with ``VIDPIPE_SEARCH_INDEX_PREFIX``.
"""

from __future__ import annotations

from pipeline.db.engine import Database
from pipeline.search.base import (
    CueDocument,
    CueHit,
    SearchBackend,
    SearchFilters,
    SearchHit,
    SearchResult,
    Suggestion,
    VideoDocument,
)
from pipeline.search.database import DatabaseSearch
from pipeline.search.opensearch import OpenSearchBackend
from pipeline.settings import Settings

__all__ = [
    "CueDocument",
    "CueHit",
    "DatabaseSearch",
    "OpenSearchBackend",
    "SearchBackend",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "Suggestion",
    "VideoDocument",
    "open_search",
]


def open_search(settings: Settings, database: Database) -> SearchBackend:
    """The search backend ``settings.search_url`` names; nothing is contacted yet."""
    if settings.search_url == "database":
        return DatabaseSearch(database)
    return OpenSearchBackend(settings.search_url, index_prefix=settings.search_index_prefix)
