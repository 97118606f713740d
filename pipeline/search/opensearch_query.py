"""The OpenSearch query of one search, built from parsed terms; no user text is ever query syntax.

Matching follows the database backend on PostgreSQL: a query word matches a field when its
needle occurs there as a substring (a phrase over the ``.grams`` trigram windows, or a term
on ``.short`` for needles under three characters), and a cue also matches when the word
matches it as a stemmed English word. Every word must match the title, the description or
a cue; the filters apply to the video and, for the language, to the cues too.

Ranking uses constant scores only, so equal videos tie exactly and pagination by
``(score, video_id)`` is stable on every engine:

* 3 points times the share of query words in the title, 1 point for the description;
* each matching cue is worth the share of words it contains, plus half that again for each
  word matched as a whole English word; the cues' sum counts up to 2 points, so many cues
  never outweigh the title (``function_score`` with ``boost_mode: min`` caps it without a script).
"""

from __future__ import annotations

from typing import Any

from pipeline.search.base import SearchFilters
from pipeline.search.query import SHORTEST_INDEXED_TERM, Term

_TITLE_WEIGHT = 3.0
_DESCRIPTION_WEIGHT = 1.0
_CUES_CAP = 2.0
_WORD_BONUS = 0.5


def search_body(
    terms: list[Term], filters: SearchFilters, *, offset: int, size: int, cues_per_video: int
) -> dict[str, Any]:
    """The ``_search`` request body for one page of videos."""
    share = 1.0 / len(terms)
    scoring = [
        *(_constant(_contains("title", term), _TITLE_WEIGHT * share) for term in terms),
        *(_constant(_contains("description", term), _DESCRIPTION_WEIGHT * share) for term in terms),
        _cues_score(terms, filters, share, cues_per_video),
    ]
    required = [_somewhere(term, filters) for term in terms]
    return {
        "query": {"bool": {"filter": [*_video_filters(filters), *required], "should": scoring}},
        "sort": [{"_score": "desc"}, {"video_id": "asc"}],
        "from": offset,
        "size": size,
        "track_total_hits": True,
        "_source": ["title"],
    }


def _somewhere(term: Term, filters: SearchFilters) -> dict[str, Any]:
    """The video has ``term`` in its title, its description or one of its (filtered) cues."""
    cue = {"bool": {"filter": [_cue_match(term), *_cue_filters(filters)]}}
    return {
        "bool": {
            "should": [
                _contains("title", term),
                _contains("description", term),
                {"nested": {"path": "cues", "query": cue, "score_mode": "none"}},
            ],
            "minimum_should_match": 1,
        }
    }


def _cues_score(terms: list[Term], filters: SearchFilters, share: float, cues_per_video: int) -> dict[str, Any]:
    worth = [_constant(_cue_match(term), share) for term in terms]
    bonus = [_constant(_english("cues.text", term), share * _WORD_BONUS) for term in terms]
    cue = {"bool": {"filter": _cue_filters(filters), "should": [*worth, *bonus], "minimum_should_match": 1}}
    nested: dict[str, Any] = {"path": "cues", "query": cue, "score_mode": "sum"}
    if cues_per_video:
        nested["inner_hits"] = {
            "size": cues_per_video,
            "sort": [{"_score": "desc"}, {"cues.start": "asc"}, {"cues.id": "asc"}],
            "_source": ["cues.start", "cues.end", "cues.text"],
        }
    return {
        "function_score": {
            "query": {"nested": nested},
            "functions": [{"weight": _CUES_CAP}],
            "boost_mode": "min",
        }
    }


def _cue_match(term: Term) -> dict[str, Any]:
    return {"bool": {"should": [_contains("cues.text", term), _english("cues.text", term)], "minimum_should_match": 1}}


def _contains(field: str, term: Term) -> dict[str, Any]:
    """``term``'s needle occurs in ``field`` as a case-insensitive substring."""
    if len(term.needle) >= SHORTEST_INDEXED_TERM:
        return {"match_phrase": {f"{field}.grams": {"query": term.needle}}}
    return {"term": {f"{field}.short": {"value": term.needle}}}


def _english(field: str, term: Term) -> dict[str, Any]:
    """``term`` matches ``field`` as an English word, stemmed; a stop word matches nothing."""
    return {"match": {field: {"query": term.word, "operator": "and", "zero_terms_query": "none"}}}


def _constant(query: dict[str, Any], boost: float) -> dict[str, Any]:
    return {"constant_score": {"filter": query, "boost": boost}}


def _video_filters(filters: SearchFilters) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = [{"terms": {"status": list(filters.statuses)}}]
    if filters.owner_id is not None:
        clauses.append({"term": {"owner_id": str(filters.owner_id)}})
    if filters.visible_to is not None:
        unowned = {"bool": {"must_not": [{"exists": {"field": "owner_id"}}]}}
        mine = {"term": {"owner_id": str(filters.visible_to)}}
        clauses.append({"bool": {"should": [mine, unowned], "minimum_should_match": 1}})
    bounds = {}
    if filters.min_duration is not None:
        bounds["gte"] = filters.min_duration
    if filters.max_duration is not None:
        bounds["lte"] = filters.max_duration
    if bounds:
        clauses.append({"range": {"duration": bounds}})
    if filters.language is not None:
        clauses.append({"term": {"languages": filters.language}})
    return clauses


def _cue_filters(filters: SearchFilters) -> list[dict[str, Any]]:
    """A cue counts under a language filter when its track or its video is in that language."""
    if filters.language is None:
        return []
    return [{"term": {"cues.languages": filters.language}}]


def suggest_body(prefix: str, size: int, *, fuzzy: bool) -> dict[str, Any]:
    """A completion suggestion request; ``fuzzy`` forgives one typo (two in long prefixes)."""
    completion: dict[str, Any] = {"field": "suggest", "size": size}
    if fuzzy:
        completion["fuzzy"] = {"fuzziness": "AUTO", "prefix_length": 1}
    return {
        "_source": ["title"],
        "suggest": {"titles": {"prefix": prefix, "completion": completion}},
    }
