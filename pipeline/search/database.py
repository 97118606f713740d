"""Search in the database itself: the embedded default, chosen by ``VIDPIPE_SEARCH_URL=database``.

The backend keeps its own copy of what the index stage sends it in ``search_videos`` and
``search_cues`` (migration 0002), so a video is found only once it is indexed, exactly as with
OpenSearch, and rows in ``cues`` alone are never searched.

Matching is the same on both databases: each query word must occur, as a case-insensitive
substring, in the video's title or description or in one of its cues (see
:mod:`pipeline.search.query`). What differs is the index that finds the candidates:

* SQLite: FTS5 tables with the trigram tokenizer, whose phrase queries are substring
  matches; words under three characters fall back to ``LIKE`` over the cue table. Its plan
  groups every matching cue per video in one pass (see :class:`_GroupedPlan`), so on SQLite
  all of a video's matching cues count towards ``s`` below, not only the first ten per word.
* PostgreSQL: GIN indexes keyed by video id and then by trigram (over a stored lower-cased
  copy of the text) serve ``ILIKE '%word%'`` within one video for words of three characters
  or more; an English ``tsvector`` index also matches other forms of a word (``running``
  finds ``runs``) and marks a cue where the word stands as a whole word.

Ranking, per video (higher first, then by video id so pages never overlap):

* 3 points times the share of query words found in the title, 1 point for the description;
* each matching cue is worth the share of query words it contains (plus half that again on
  PostgreSQL for each word matched as a whole English word); the cues' sum ``s`` adds
  ``2 * s / (s + 2)``, which grows with more and better cues but never outweighs the title.
  Only the first ten cues containing each word count towards ``s``: past that the term is
  nearly flat, and the cap is what keeps a common word from costing a scan of the library.

Cues within a hit are ordered by the same per-cue worth, then by start time.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Table,
    Text,
    Uuid,
    and_,
    case,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from pipeline.db.engine import Database
from pipeline.db.models import Base
from pipeline.errors import SearchUnavailable
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
from pipeline.search.query import (
    LIKE_ESCAPE,
    MAX_SUGGESTIONS,
    Term,
    check_page,
    clean_text,
    escape_like,
    fts5_phrase,
    highlight,
    like_pattern,
    parse_query,
    pick_suggestions,
    suggestion_prefix,
)

logger = logging.getLogger(__name__)

_TITLE_WEIGHT = 3.0
_DESCRIPTION_WEIGHT = 1.0
_CUES_WEIGHT = 2.0
_CUES_HALF_POINT = 2.0
"""The cue worth at which the cues contribute half of ``_CUES_WEIGHT``."""
_WORD_BONUS = 0.5
_CUES_PER_TERM = 10
"""How many of a video's cues containing a term count towards its rank; see :class:`_SearchPlan`."""

# The integer id exists for SQLite's FTS5 table, which needs a stable integer row id;
# everything else addresses an indexed video by its video_id.
search_videos = Table(
    "search_videos",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("video_id", Uuid, nullable=False, unique=True),
    Column("title", String(500), nullable=False),
    Column("description", Text, nullable=False),
    Column("language", String(35)),
    Column("owner_id", Uuid),
    Column("status", String(16), nullable=False),
    Column("duration", Float),
)

# The id is the cue's id in ``cues``; the copy lets a video be re-indexed without touching them.
search_cues = Table(
    "search_cues",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("video_id", Uuid, nullable=False, index=True),
    Column("track_id", Uuid, nullable=False),
    Column("language", String(35)),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("text", Text, nullable=False),
)

# SQLite's FTS5 tables are created by the migration, outside the metadata: only their
# row ids and the table-named MATCH column are ever referred to.
_videos_fts = table("search_videos_fts", column("rowid"))
_cues_fts = table("search_cues_fts", column("rowid"))


class DatabaseSearch:
    """The :class:`~pipeline.search.base.SearchBackend` over vidpipe's own database."""

    name = "database"

    def __init__(self, database: Database) -> None:
        self._database = database
        self._match: _Matcher = _SQLiteMatcher() if database.dialect == "sqlite" else _PostgreSQLMatcher()

    async def index_video(self, video: VideoDocument, cues: Sequence[CueDocument]) -> None:
        """Replace the indexed copy of ``video`` and its cues in one transaction."""
        started = time.perf_counter()
        rows = _cue_rows(video.id, cues)
        with _unavailable("index a video"):
            async with self._database.engine.begin() as connection:
                # The upsert comes first: on PostgreSQL its row lock queues a concurrent
                # re-index of the same video behind this one, so the cues cannot collide.
                await connection.execute(self._upsert_video(video))
                await connection.execute(delete(search_cues).where(search_cues.c.video_id == video.id))
                if rows:
                    await connection.execute(insert(search_cues), rows)
        logger.debug(
            "Video %s is in the database search with %d cues (%.0f ms).",
            video.id,
            len(rows),
            (time.perf_counter() - started) * 1000,
        )

    async def delete_video(self, video_id: uuid.UUID) -> None:
        """Remove the video and its cues; a video that was never indexed is not an error."""
        with _unavailable("delete a video"):
            async with self._database.engine.begin() as connection:
                await connection.execute(delete(search_cues).where(search_cues.c.video_id == video_id))
                await connection.execute(delete(search_videos).where(search_videos.c.video_id == video_id))
        logger.debug("Video %s is no longer in the database search.", video_id)

    async def search(
        self,
        query: str,
        *,
        filters: SearchFilters = NO_FILTERS,
        page: int = 1,
        per_page: int = 20,
        cues_per_video: int = 3,
    ) -> SearchResult:
        """Find the videos that match every word of ``query``; see the module for the ranking.

        Raises:
            InvalidInput: an empty query (``search.empty_query``), one over 500 characters
                (``search.query_too_long``) or a page outside the result window.
            SearchUnavailable: the database did not answer.
        """
        terms = parse_query(query)
        check_page(page, per_page, cues_per_video)
        plan_type = _GroupedPlan if self._database.dialect == "sqlite" else _SearchPlan
        plan = plan_type(self._match, terms, filters)
        with _unavailable("search"):
            async with self._database.engine.connect() as connection:
                if self._database.dialect == "postgresql":
                    # The per-video probes add up to a plan cost past jit_above_cost, and
                    # compiling it took longer than running it.
                    await connection.execute(sql_text("SET LOCAL jit = off"))
                videos = (await connection.execute(plan.page(page, per_page))).all()
                total = await self._total(connection, plan, videos, page)
                cues = await self._best_cues(connection, plan, [row.video_id for row in videos], cues_per_video)
        hits = [
            SearchHit(
                video_id=row.video_id,
                title=row.title,
                score=float(row.score),
                cues=cues.get(row.video_id, []),
            )
            for row in videos
        ]
        return SearchResult(total=total, hits=hits)

    async def suggest(self, prefix: str, *, limit: int = 10) -> list[Suggestion]:
        """Titles of ready videos with a word starting with ``prefix``, those starting with it first.

        Raises:
            InvalidInput: ``search.query_too_long`` for a prefix over 500 characters.
            SearchUnavailable: the database did not answer.
        """
        text = suggestion_prefix(prefix)
        if not text or limit < 1:
            return []
        limit = min(limit, MAX_SUGGESTIONS)
        with _unavailable("suggest titles"):
            async with self._database.engine.connect() as connection:
                rows = (await connection.execute(_suggestion_candidates(text, limit))).all()
        return _suggestions(rows, text, limit)

    async def check(self) -> None:
        """Raise :class:`SearchUnavailable` unless the search tables answer a query."""
        with _unavailable("answer"):
            async with self._database.engine.connect() as connection:
                await connection.execute(select(search_videos.c.id).limit(1))
                if self._database.dialect == "sqlite":
                    await connection.execute(select(_cues_fts.c.rowid).limit(1))

    async def close(self) -> None:
        """Nothing to release: the engine belongs to the :class:`Database` it was given."""

    def _upsert_video(self, video: VideoDocument) -> Any:
        values = {
            "video_id": video.id,
            "title": clean_text(video.title),
            "description": clean_text(video.description or ""),
            "language": video.language,
            "owner_id": video.owner_id,
            "status": video.status,
            "duration": video.duration,
        }
        dialect_insert = sqlite.insert if self._database.dialect == "sqlite" else postgresql.insert
        statement = dialect_insert(search_videos).values(values)
        changed = {name: statement.excluded[name] for name in values if name != "video_id"}
        return statement.on_conflict_do_update(index_elements=["video_id"], set_=changed)

    async def _total(self, connection: AsyncConnection, plan: _SearchPlan, videos: Sequence[Any], page: int) -> int:
        """The page carries the total in every row; only a page past the end needs its own count."""
        if videos:
            return int(videos[0].total)
        if page == 1:
            return 0
        return int((await connection.execute(plan.count())).scalar_one())

    async def _best_cues(
        self, connection: AsyncConnection, plan: _SearchPlan, video_ids: list[uuid.UUID], per_video: int
    ) -> dict[uuid.UUID, list[CueHit]]:
        if not video_ids or per_video == 0:
            return {}
        found: dict[uuid.UUID, list[CueHit]] = {}
        for row in await connection.execute(plan.best_cues(video_ids, per_video)):
            hit = CueHit(start=row.start, end=row.end, text=row.text, highlight=highlight(row.text, plan.terms))
            found.setdefault(row.video_id, []).append(hit)
        return found


class _Matcher:
    """How one database tells whether a term occurs in a column; see the module docstring."""

    def cue_match(self, term: Term) -> ColumnElement[bool]:
        raise NotImplementedError

    def video_match(self, field: str, term: Term) -> ColumnElement[bool]:
        raise NotImplementedError

    def cue_word_bonus(self, term: Term) -> ColumnElement[Any] | None:
        """Extra worth for a cue that has ``term`` as a whole word, where the database can tell."""
        return None


class _SQLiteMatcher(_Matcher):
    def cue_match(self, term: Term) -> ColumnElement[bool]:
        if not term.indexable:
            return _contains(search_cues.c.text, term)
        match = literal_column("search_cues_fts").match(fts5_phrase(term.needle))
        return search_cues.c.id.in_(select(_cues_fts.c.rowid).where(match).correlate(None))

    def video_match(self, field: str, term: Term) -> ColumnElement[bool]:
        if not term.indexable:
            return _contains(search_videos.c[field], term)
        # A column filter ("title : ...") keeps title and description apart in one FTS table.
        match = literal_column("search_videos_fts").match(f"{field} : {fts5_phrase(term.needle)}")
        return search_videos.c.id.in_(select(_videos_fts.c.rowid).where(match).correlate(None))


class _PostgreSQLMatcher(_Matcher):
    def cue_match(self, term: Term) -> ColumnElement[bool]:
        # text_folded is lower(text), stored and trigram-indexed with the video id (migration
        # 0004). PostgreSQL's ILIKE on UTF-8 is lower(text) LIKE lower(pattern), so this matches
        # exactly the same cues without lower-casing every candidate again.
        folded: ColumnElement[Any] = literal_column("search_cues.text_folded")
        pattern = func.lower(literal(like_pattern(term.needle), Text))
        return or_(folded.like(pattern, escape=LIKE_ESCAPE), self._word_match(term))

    def video_match(self, field: str, term: Term) -> ColumnElement[bool]:
        return _contains(search_videos.c[field], term)

    def cue_word_bonus(self, term: Term) -> ColumnElement[Any] | None:
        return case((self._word_match(term), literal_column("1.0")), else_=literal_column("0.0"))

    def _word_match(self, term: Term) -> ColumnElement[bool]:
        # text_vector is a generated column that exists on PostgreSQL only (migration 0002),
        # so it is named here rather than declared on the shared table.
        vector: ColumnElement[Any] = literal_column("search_cues.text_vector")
        english: ColumnElement[Any] = literal_column("'english'::regconfig")
        return vector.bool_op("@@")(func.plainto_tsquery(english, term.word))


class _SearchPlan:
    """The statements of one search: which videos match, how they rank, which cues they show.

    Each video is probed once per term for at most :data:`_CUES_PER_TERM` matching cues, by an
    index on the video's own cues, so a word that fills half the library costs a few rows per
    video rather than a scan and a grouping of every matching cue. A cue's worth is a share per
    term it contains (plus the word bonus), so the sum over a video's cues is the sum over terms
    of what each term's cues are worth; only that per-term count is capped.
    """

    def __init__(self, match: _Matcher, terms: list[Term], filters: SearchFilters) -> None:
        self.terms = terms
        self._match = match
        self._filters = filters
        self._share = literal(1.0 / len(terms), Float)

    def count(self) -> Select[Any]:
        candidates = self._candidates()
        return select(func.count()).select_from(candidates).where(self._every_term(candidates))

    def page(self, page: int, per_page: int) -> Select[Any]:
        """One page of videos, best first, each row carrying the exact total as ``total``."""
        candidates = self._candidates()
        score = self._score(candidates).label("score")
        return (
            select(candidates.c.video_id, candidates.c.title, score, func.count().over().label("total"))
            .where(self._every_term(candidates))
            .order_by(score.desc(), candidates.c.video_id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )

    def best_cues(self, video_ids: list[uuid.UUID], per_video: int) -> Select[Any]:
        matches = self._cue_matches(video_ids).subquery("matches")
        place = func.row_number().over(
            partition_by=matches.c.video_id,
            order_by=(matches.c.worth.desc(), matches.c.start, matches.c.id),
        )
        ranked = select(matches, place.label("place")).subquery("ranked")
        return (
            select(ranked.c.video_id, ranked.c.start, ranked.c.end, ranked.c.text)
            .where(ranked.c.place <= per_video)
            .order_by(ranked.c.video_id, ranked.c.place)
        )

    def _candidates(self) -> Any:
        """The filtered videos, with per term a title flag, a description flag and the capped cue worth."""
        columns: list[ColumnElement[Any]] = [search_videos.c.video_id, search_videos.c.title]
        for i, term in enumerate(self.terms):
            columns.append(case((self._match.video_match("title", term), 1), else_=0).label(f"title_{i}"))
            columns.append(case((self._match.video_match("description", term), 1), else_=0).label(f"description_{i}"))
            columns.append(self._cue_worth(term).label(f"cues_{i}"))
        # The OFFSET keeps both databases from merging this subquery into the outer one, which
        # would run the per-video cue probes twice: once to filter and once to score.
        return select(*columns).where(*self._video_filters()).offset(0).subquery("candidates")

    def _cue_worth(self, term: Term) -> ColumnElement[Any]:
        """What the video's first few cues containing ``term`` are worth; zero when none does."""
        worth: ColumnElement[Any] = literal_column("1.0")
        if (bonus := self._match.cue_word_bonus(term)) is not None:
            worth = worth + bonus * _WORD_BONUS
        capped = (
            select(worth.label("worth"))
            .where(search_cues.c.video_id == search_videos.c.video_id, self._match.cue_match(term))
            .where(*self._cue_language(search_videos.c.language))
            .limit(_CUES_PER_TERM)
            .correlate(search_videos)
            .subquery("capped")
        )
        found = select(func.sum(capped.c.worth)).scalar_subquery()
        return func.coalesce(found, literal_column("0.0"))

    def _cue_matches(self, video_ids: list[uuid.UUID]) -> Select[Any]:
        """The matching cues of ``video_ids``, with their worth."""
        predicates = [self._match.cue_match(term) for term in self.terms]
        worth = _sum([case((predicate, 1), else_=0) for predicate in predicates]) * self._share
        bonuses = [bonus for term in self.terms if (bonus := self._match.cue_word_bonus(term)) is not None]
        if bonuses:
            worth = worth + _sum(bonuses) * self._share * _WORD_BONUS
        video_language = select(search_videos.c.language).where(search_videos.c.video_id == search_cues.c.video_id)
        conditions = [
            or_(*predicates),
            search_cues.c.video_id.in_(video_ids),
            *self._cue_language(video_language.scalar_subquery()),
        ]
        return select(*search_cues.c, worth.label("worth")).where(*conditions)

    def _cue_language(self, video_language: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """With a language filter, a cue counts if its track or its video is in that language."""
        language = self._filters.language
        if language is None:
            return []
        return [or_(search_cues.c.language == language, video_language == language)]

    def _every_term(self, candidates: Any) -> ColumnElement[bool]:
        found = [
            or_(candidates.c[f"title_{i}"] == 1, candidates.c[f"description_{i}"] == 1, candidates.c[f"cues_{i}"] > 0)
            for i in range(len(self.terms))
        ]
        return and_(*found)

    def _video_filters(self) -> list[ColumnElement[bool]]:
        filters = self._filters
        conditions: list[ColumnElement[bool]] = [search_videos.c.status.in_(filters.statuses)]
        if filters.owner_id is not None:
            conditions.append(search_videos.c.owner_id == filters.owner_id)
        if filters.visible_to is not None:
            owner = search_videos.c.owner_id
            conditions.append(or_(owner == filters.visible_to, owner.is_(None)))
        if filters.min_duration is not None:
            conditions.append(search_videos.c.duration >= filters.min_duration)
        if filters.max_duration is not None:
            conditions.append(search_videos.c.duration <= filters.max_duration)
        if filters.language is not None:
            tracks_in_language = select(search_cues.c.video_id).where(search_cues.c.language == filters.language)
            conditions.append(
                or_(
                    search_videos.c.language == filters.language,
                    search_videos.c.video_id.in_(tracks_in_language),
                )
            )
        return conditions

    def _score(self, candidates: Any) -> ColumnElement[Any]:
        count = range(len(self.terms))
        title = _sum([candidates.c[f"title_{i}"] for i in count])
        description = _sum([candidates.c[f"description_{i}"] for i in count])
        cues = _sum([candidates.c[f"cues_{i}"] for i in count]) * self._share
        return (
            title * self._share * _TITLE_WEIGHT
            + description * self._share * _DESCRIPTION_WEIGHT
            + cues * _CUES_WEIGHT / (cues + _CUES_HALF_POINT)
        )


class _GroupedPlan(_SearchPlan):
    """SQLite's plan: one pass over the matching cues of the library, grouped per video.

    SQLite cannot use an index for "this video's cues containing the word" (its FTS5 table is
    keyed by cue, not by video), so the per-video probes of :class:`_SearchPlan` would run the
    full-text lookup once per video; a single grouped pass over the FTS matches is faster there.
    """

    def count(self) -> Select[Any]:
        per_video = self._per_video()
        return select(func.count()).select_from(self._joined(per_video)).where(*self._conditions(per_video))

    def page(self, page: int, per_page: int) -> Select[Any]:
        per_video = self._per_video()
        score = self._grouped_score(per_video).label("score")
        return (
            select(search_videos.c.video_id, search_videos.c.title, score, func.count().over().label("total"))
            .select_from(self._joined(per_video))
            .where(*self._conditions(per_video))
            .order_by(score.desc(), search_videos.c.video_id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )

    def _per_video(self) -> Any:
        """Per video: whether any cue has each term, and the summed worth of its matching cues."""
        predicates = [self._match.cue_match(term) for term in self.terms]
        flags = [case((predicate, 1), else_=0).label(f"has_{i}") for i, predicate in enumerate(predicates)]
        worth = _sum([case((predicate, 1), else_=0) for predicate in predicates]) * self._share
        video_language = select(search_videos.c.language).where(search_videos.c.video_id == search_cues.c.video_id)
        cues = (
            select(search_cues.c.video_id, *flags, worth.label("worth"))
            .where(or_(*predicates), *self._cue_language(video_language.scalar_subquery()))
            .subquery("matching_cues")
        )
        found = [func.max(cues.c[f"has_{i}"]).label(f"has_{i}") for i in range(len(self.terms))]
        return (
            select(cues.c.video_id, *found, func.sum(cues.c.worth).label("worth"))
            .group_by(cues.c.video_id)
            .subquery("per_video")
        )

    def _joined(self, per_video: Any) -> Any:
        return search_videos.outerjoin(per_video, per_video.c.video_id == search_videos.c.video_id)

    def _conditions(self, per_video: Any) -> list[ColumnElement[bool]]:
        every_term = [
            or_(
                self._match.video_match("title", term),
                self._match.video_match("description", term),
                per_video.c[f"has_{i}"] == 1,
            )
            for i, term in enumerate(self.terms)
        ]
        return [*self._video_filters(), and_(*every_term)]

    def _grouped_score(self, per_video: Any) -> ColumnElement[Any]:
        title = _sum([case((self._match.video_match("title", term), 1), else_=0) for term in self.terms])
        description = _sum([case((self._match.video_match("description", term), 1), else_=0) for term in self.terms])
        cues = func.coalesce(per_video.c.worth, literal_column("0.0"))
        return (
            title * self._share * _TITLE_WEIGHT
            + description * self._share * _DESCRIPTION_WEIGHT
            + cues * _CUES_WEIGHT / (cues + _CUES_HALF_POINT)
        )


def _sum(expressions: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    return functools.reduce(operator.add, expressions)


def _contains(target: Any, term: Term) -> ColumnElement[bool]:
    result: ColumnElement[bool] = target.ilike(like_pattern(term.needle), escape=LIKE_ESCAPE)
    return result


def _cue_rows(video_id: uuid.UUID, cues: Sequence[CueDocument]) -> list[dict[str, Any]]:
    """One row per cue id (the last one wins), ready for one executemany."""
    rows = {
        cue.id: {
            "id": cue.id,
            "video_id": video_id,
            "track_id": cue.track_id,
            "language": cue.language,
            "start": cue.start,
            "end": cue.end,
            "text": clean_text(cue.text),
        }
        for cue in cues
    }
    if len(rows) < len(cues):
        logger.warning("Video %s sent %d cues with a repeated id; the last of each is kept.", video_id, len(cues))
    return list(rows.values())


def _suggestion_candidates(text: str, limit: int) -> Select[Any]:
    """Ready titles containing ``text``, those starting with it first, then word starts after a space.

    More rows than ``limit`` are read because a title containing the prefix mid-word is
    filtered out afterwards.
    """
    title = search_videos.c.title
    starts = title.ilike(escape_like(text) + "%", escape=LIKE_ESCAPE)
    after_space = title.ilike("% " + escape_like(text) + "%", escape=LIKE_ESCAPE)
    return (
        select(search_videos.c.video_id, title)
        .where(search_videos.c.status == "ready", title.ilike(like_pattern(text), escape=LIKE_ESCAPE))
        .order_by(case((starts, 0), (after_space, 1), else_=2), title, search_videos.c.video_id)
        .limit(limit * 20)
    )


def _suggestions(rows: Sequence[Any], text: str, limit: int) -> list[Suggestion]:
    picked = pick_suggestions(((row.title, row.video_id) for row in rows), text, limit)
    return [Suggestion(text=title, video_id=video_id) for title, video_id in picked]


@contextmanager
def _unavailable(action: str) -> Iterator[None]:
    """Turn a database that does not answer into :class:`SearchUnavailable`."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise SearchUnavailable(f"The database search could not {action}: {exc.orig}.") from exc
    except OSError as exc:
        raise SearchUnavailable(f"The database search could not {action}: {exc}.") from exc
