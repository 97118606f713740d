"""Search: one interface (:mod:`pipeline.search.base`), chosen by ``VIDPIPE_SEARCH_URL``.

``database`` (the embedded default) searches vidpipe's own database; an ``http(s)://`` URL
will name an OpenSearch cluster.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pipeline.db.engine import Database
from pipeline.errors import ConfigurationError
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
from pipeline.settings import Settings

__all__ = [
    "CueDocument",
    "CueHit",
    "DatabaseSearch",
    "SearchBackend",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "Suggestion",
    "VideoDocument",
    "open_search",
]


def open_search(settings: Settings, database: Database) -> SearchBackend:
    """The search backend ``settings.search_url`` names; nothing is contacted yet.

    Raises:
        ConfigurationError: the URL names OpenSearch, which this build cannot talk to yet.
    """
    if settings.search_url == "database":
        return DatabaseSearch(database)
    # TODO(opensearch-backend): an http(s) URL should open the OpenSearch backend; until it
    # exists, such a setting fails at start-up rather than silently searching the database.
    raise ConfigurationError(
        "OpenSearch support arrives with the search backend issue; VIDPIPE_SEARCH_URL names an "
        f"{urlsplit(settings.search_url).scheme}:// server, so set it to database for now.",
        code="config.search_url",
    )
