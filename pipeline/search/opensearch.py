"""Search in OpenSearch: the production backend, chosen by an ``http(s)://`` ``VIDPIPE_SEARCH_URL``.

The index layout, analysis and documents are in :mod:`pipeline.search.opensearch_index`, the
query in :mod:`pipeline.search.opensearch_query`. Queries are validated and highlights drawn
by :mod:`pipeline.search.query`, exactly as the database backend does, so both answer alike.

The synchronous opensearch-py client runs in a worker thread per call. It is not bound to an
event loop, so one backend serves whichever loop a runtime lives on, and the client needs no
extra HTTP library. The alias and its first index are created on first use (or by
``vidpipe search init``); a rebuild fills a new index and swaps the alias atomically.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as ClientConnectionError
from opensearchpy.exceptions import TransportError

from pipeline.errors import PermanentError, SearchUnavailable
from pipeline.search.base import (
    NO_FILTERS,
    CueDocument,
    CueHit,
    SearchFilters,
    SearchHit,
    SearchResult,
    Suggestion,
    VideoDocument,
)
from pipeline.search.opensearch_index import IndexNames, index_body, video_source
from pipeline.search.opensearch_query import search_body, suggest_body
from pipeline.search.query import (
    MAX_SUGGESTIONS,
    check_page,
    highlight,
    parse_query,
    pick_suggestions,
    suggestion_prefix,
    suggestion_rank,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_ON_CONFLICT = 5
"""Two index stages of one video may race (at-least-once delivery); the later write wins."""
_BULK_CUES = 20_000
"""A rebuild sends videos in requests of about this many cues, a few megabytes each."""
_SUGGEST_CANDIDATES = 20
"""Completion options read per wanted suggestion: a title found by several of its inputs repeats."""


class DocumentRejected(PermanentError):
    """OpenSearch refused a document for a reason a retry cannot change (a mapping error)."""

    code = "search.document_rejected"


@dataclass
class RebuildReport:
    """What ``vidpipe search reindex --all`` did."""

    index: str
    """The versioned index the alias points at now."""
    videos: int = 0
    failed: list[uuid.UUID] = field(default_factory=list)
    """Videos OpenSearch refused; the rest were swapped in regardless."""


class OpenSearchBackend:
    """The :class:`~pipeline.search.base.SearchBackend` over an OpenSearch cluster."""

    name = "opensearch"

    def __init__(self, url: str, *, index_prefix: str = "vidpipe", timeout: float = 10.0) -> None:
        # One retry on a dropped connection smooths a node restart; longer outages reach
        # the stage runner as SearchUnavailable and are retried there with backoff.
        self._client = OpenSearch(hosts=[url], timeout=timeout, max_retries=1, retry_on_timeout=False)
        self.names = IndexNames(index_prefix)
        self._ready = False

    async def index_video(self, video: VideoDocument, cues: Sequence[CueDocument]) -> None:
        """Upsert the video with exactly these cues; a re-index replaces the old ones.

        Raises:
            SearchUnavailable: OpenSearch did not answer or refused for a transient reason.
            DocumentRejected: OpenSearch refused the document itself.
        """
        started = time.perf_counter()
        await self.ensure_index()
        failures = await self._call("index a video", self._bulk, self.names.alias, [(video, cues)], False)
        if failures and all(failure.alias_missing for failure in failures.values()):
            # The alias vanished behind this process (a cluster reset, an index deleted by
            # hand): create it again rather than fail every later write.
            logger.warning("OpenSearch alias %s is missing; it is created again.", self.names.alias)
            self._ready = False
            await self.ensure_index()
            failures = await self._call("index a video", self._bulk, self.names.alias, [(video, cues)], False)
        _raise_for(failures)
        logger.debug(
            "Video %s is in OpenSearch with %d cues (%.0f ms).",
            video.id,
            len(cues),
            (time.perf_counter() - started) * 1000,
        )

    async def delete_video(self, video_id: uuid.UUID) -> None:
        """Remove the video's document, and with it its nested cues; a missing video is not an error."""
        await self.ensure_index()
        await self._call(
            "delete a video",
            self._client.delete,
            index=self.names.alias,
            id=str(video_id),
            refresh="true",
            params={"ignore": 404},
        )
        logger.debug("Video %s is no longer in OpenSearch.", video_id)

    async def search(
        self,
        query: str,
        *,
        filters: SearchFilters = NO_FILTERS,
        page: int = 1,
        per_page: int = 20,
        cues_per_video: int = 3,
    ) -> SearchResult:
        """Find the videos that match every word of ``query``; see :mod:`.opensearch_query` for the ranking.

        Raises:
            InvalidInput: an empty or overlong query, or a page outside the result window.
            SearchUnavailable: OpenSearch did not answer.
        """
        terms = parse_query(query)
        check_page(page, per_page, cues_per_video)
        await self.ensure_index()
        body = search_body(terms, filters, offset=(page - 1) * per_page, size=per_page, cues_per_video=cues_per_video)
        answer = await self._call("search", self._client.search, index=self.names.alias, body=body)
        hits = [_hit(raw, terms) for raw in answer["hits"]["hits"]]
        return SearchResult(total=int(answer["hits"]["total"]["value"]), hits=hits)

    async def suggest(self, prefix: str, *, limit: int = 10) -> list[Suggestion]:
        """Titles of ready videos with a word starting with ``prefix``; Latin prefixes forgive a typo.

        Exact word starts come first, ordered as the database backend orders them; titles found
        only through a typo or a description word follow.

        Raises:
            InvalidInput: ``search.query_too_long`` for a prefix over 500 characters.
            SearchUnavailable: OpenSearch did not answer.
        """
        text = suggestion_prefix(prefix)
        if not text or limit < 1 or not any(char.isalnum() for char in text):
            return []
        limit = min(limit, MAX_SUGGESTIONS)
        await self.ensure_index()
        fuzzy = text.isascii() and len(text) >= 3
        body = suggest_body(text, min(limit * _SUGGEST_CANDIDATES, 1000), fuzzy=fuzzy)
        answer = await self._call("suggest titles", self._client.search, index=self.names.alias, body=body)
        options = [option for entry in answer["suggest"]["titles"] for option in entry["options"]]
        found = [(option["_source"]["title"], uuid.UUID(option["_id"])) for option in options]
        exact = sorted(found, key=lambda item: (suggestion_rank(item[0], text), item[0], item[1]))
        picked = pick_suggestions(exact, text, limit)
        picked += _others(found, picked, limit)
        return [Suggestion(text=title, video_id=video_id) for title, video_id in picked]

    async def check(self) -> None:
        """Raise :class:`SearchUnavailable` unless the cluster answers and the alias exists."""
        await self._call("answer", self._client.info)
        await self.ensure_index()

    async def close(self) -> None:
        """Close the client's connections."""
        await asyncio.to_thread(self._client.close)

    async def ensure_index(self) -> None:
        """Create the first index behind the alias unless the alias exists; cheap after the first call."""
        if self._ready:
            return
        created = await self._call("create its index", self._create_first_index)
        if created:
            logger.info("OpenSearch index %s was created behind alias %s.", self.names.first, self.names.alias)
        self._ready = True

    async def rebuild(self, documents: AsyncIterable[tuple[VideoDocument, list[CueDocument]]]) -> RebuildReport:
        """Index ``documents`` into a new versioned index, then point the alias at it in one step.

        Searches keep reading the old index until the swap; the old indices are deleted after it.
        """
        # Videos the pipeline indexes while this runs land in the old index; the caller brings
        # them over after the swap (pipeline.search.maintenance.catch_up).
        report = RebuildReport(index=self.names.fresh())
        started = time.perf_counter()
        await self._call("create an index", self._client.indices.create, index=report.index, body=index_body())
        batch: list[tuple[VideoDocument, list[CueDocument]]] = []
        async for video, cues in documents:
            batch.append((video, cues))
            if sum(len(cues) + 1 for _, cues in batch) >= _BULK_CUES:
                await self._rebuild_batch(report, batch)
                batch = []
        if batch:
            await self._rebuild_batch(report, batch)
        await self._call("swap the alias", self._swap_alias, report.index)
        self._ready = True
        logger.info(
            "OpenSearch alias %s points at %s with %d videos (%d refused) after %.1f s.",
            self.names.alias,
            report.index,
            report.videos,
            len(report.failed),
            time.perf_counter() - started,
        )
        return report

    async def _rebuild_batch(self, report: RebuildReport, batch: list[tuple[VideoDocument, list[CueDocument]]]) -> None:
        failures = await self._call("index videos", self._bulk, report.index, batch, True)
        _raise_for({video_id: error for video_id, error in failures.items() if error.transient})
        report.failed += list(failures)
        report.videos += len(batch) - len(failures)

    def _create_first_index(self) -> bool:
        if self._client.indices.exists_alias(name=self.names.alias):
            return False
        body = {**index_body(), "aliases": {self.names.alias: {}}}
        # A fixed first name makes a concurrent start-up fail here harmlessly instead of
        # creating a second index under the same alias.
        answer = self._client.indices.create(index=self.names.first, body=body, params={"ignore": 400})
        return bool(answer.get("acknowledged"))

    def _swap_alias(self, index: str) -> None:
        old: list[str] = []
        if self._client.indices.exists_alias(name=self.names.alias):
            old = [name for name in self._client.indices.get_alias(name=self.names.alias) if name != index]
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": self.names.alias}} for name in old]
        actions.append({"add": {"index": index, "alias": self.names.alias}})
        self._client.indices.update_aliases(body={"actions": actions})
        for name in old:
            self._client.indices.delete(index=name, params={"ignore": 404})
            logger.info("OpenSearch index %s was deleted after the alias moved to %s.", name, index)

    def _bulk(
        self, index: str, videos: list[tuple[VideoDocument, Sequence[CueDocument]]], fresh: bool
    ) -> dict[uuid.UUID, _ItemError]:
        """Upsert each video in one bulk request; returns the videos OpenSearch refused, by id."""
        operations: list[dict[str, Any]] = []
        for video, cues in videos:
            action: dict[str, Any] = {"_index": index, "_id": str(video.id), "retry_on_conflict": _RETRY_ON_CONFLICT}
            if not fresh:
                # Writing through a missing alias must fail, not create an index without our mappings.
                action["require_alias"] = True
            operations.append({"update": action})
            operations.append({"doc": video_source(video, cues), "doc_as_upsert": True})
        # A rebuild refreshes once before the swap; the pipeline's single writes are visible at once.
        answer = self._client.bulk(body=operations, refresh="false" if fresh else "true")
        if fresh:
            self._client.indices.refresh(index=index)
        return _item_errors(answer)

    async def _call(self, action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with _unavailable(action):
            return await asyncio.to_thread(function, *args, **kwargs)


@dataclass(frozen=True)
class _ItemError:
    status: int
    reason: str

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500

    @property
    def alias_missing(self) -> bool:
        return self.reason.startswith("index_not_found_exception")


def _item_errors(answer: dict[str, Any]) -> dict[uuid.UUID, _ItemError]:
    if not answer.get("errors"):
        return {}
    failures = {}
    for item in answer["items"]:
        result = next(iter(item.values()))
        error = result.get("error")
        if error:
            reason = f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else str(error)
            failures[uuid.UUID(result["_id"])] = _ItemError(status=int(result.get("status", 500)), reason=reason)
    for video_id, failure in failures.items():
        logger.warning("OpenSearch refused video %s with status %d: %s.", video_id, failure.status, failure.reason)
    return failures


def _raise_for(failures: dict[uuid.UUID, _ItemError]) -> None:
    if not failures:
        return
    video_id, failure = next(iter(failures.items()))
    message = f"OpenSearch refused video {video_id} ({failure.status}): {failure.reason}."
    if any(error.transient for error in failures.values()):
        raise SearchUnavailable(message)
    raise DocumentRejected(message)


def _hit(raw: dict[str, Any], terms: list[Any]) -> SearchHit:
    inner = raw.get("inner_hits", {}).get("cues", {}).get("hits", {}).get("hits", [])
    cues = [
        CueHit(
            start=float(cue["_source"]["start"]),
            end=float(cue["_source"]["end"]),
            text=cue["_source"]["text"],
            highlight=highlight(cue["_source"]["text"], terms),
        )
        for cue in inner
    ]
    title = raw["_source"]["title"]
    return SearchHit(video_id=uuid.UUID(raw["_id"]), title=title, score=float(raw["_score"]), cues=cues)


def _others(
    found: list[tuple[str, uuid.UUID]], picked: list[tuple[str, uuid.UUID]], limit: int
) -> list[tuple[str, uuid.UUID]]:
    """Titles found through a typo or the description, in the suggester's order, after the exact ones."""
    seen = {title.casefold() for title, _ in picked}
    others: list[tuple[str, uuid.UUID]] = []
    for title, video_id in found:
        if len(picked) + len(others) >= limit:
            break
        if title.casefold() not in seen:
            seen.add(title.casefold())
            others.append((title, video_id))
    return others


@contextmanager
def _unavailable(action: str) -> Iterator[None]:
    """Turn a cluster that does not answer, is overloaded or fails into :class:`SearchUnavailable`."""
    try:
        yield
    except ClientConnectionError as exc:
        raise SearchUnavailable(f"OpenSearch could not {action}: {exc.error}.") from exc
    except TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        if status == 429 or status >= 500 or status == 0:
            raise SearchUnavailable(f"OpenSearch could not {action} ({status}): {exc.error}.") from exc
        message = f"OpenSearch refused to {action} ({status}): {exc.error}."
        raise PermanentError(message, code="search.rejected") from exc
