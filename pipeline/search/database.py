"""Search in the database itself: the embedded default, chosen by ``VIDPIPE_SEARCH_URL=database``.

The backend keeps its own copy of what the index stage sends it, so a video is found only once it
is indexed, exactly as with OpenSearch, and rows in ``cues`` alone are never searched:

* ``search_videos``: per video, the fields the filters and the ranking read (migration 0002);
* ``search_cues``: the cues, each with its ``ordinal``, its place among the video's cues in time
  order (migration 0010);
* ``search_words``: per video and track language, every distinct lower-cased word of its cues,
  how many cues hold it and the ordinals of those cues (migration 0010).

Matching is the same on both databases: each query word must occur, as a case-insensitive
substring, in the video's title or description or in one of its cues (see
:mod:`pipeline.search.query`). A query word never contains whitespace, so it occurs in a cue
exactly when it occurs in one of the cue's words. A search therefore looks its words up in
``search_words``, about a tenth of the rows of ``search_cues`` and already counted per video, and
reads ``search_cues`` only for the handful of cues it returns. What differs is the index that
finds the words:

* SQLite: an FTS5 table with the trigram tokenizer, whose phrase queries are substring matches;
  words under three characters are looked for by a scan of the word table.
* PostgreSQL: a pg_trgm GIN index serves ``LIKE '%word%'`` for words of three characters or more,
  and a GIN index over each word's set of characters narrows the words for shorter ones before
  ``LIKE`` checks the order; an English ``tsvector`` of each word, also GIN-indexed, matches other
  forms of a word (``running`` finds ``runs``) and marks where the query word stands as a whole
  English word.

Ranking, per video (higher first, then by video id so pages never overlap):

* 3 points times the share of query words found in the title, 1 point for the description;
* per query word, the number of the video's cues containing it, up to ten, plus on PostgreSQL
  half the number where it stands as a whole English word, up to ten; that sum ``s``, times the
  share of one query word, adds ``2 * s / (s + 2)``, which grows with more and better cues but
  never outweighs the title. The counts are sums over the matching word rows, so a cue holding a
  query word inside two different words counts twice; in exchange a word that fills half the
  library costs one row per video, not a pass over its cues.

The cues shown for a hit are worth the share of query words each contains (plus half that again
per word it holds as a whole English word), best first, then by start time. They are chosen from
the ordinals of the matching word rows, so only the cues returned are read and highlighted.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import operator
import struct
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
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
    tuple_,
)
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
    text_words,
)

logger = logging.getLogger(__name__)

_TITLE_WEIGHT = 3.0
_DESCRIPTION_WEIGHT = 1.0
_CUES_WEIGHT = 2.0
_CUES_HALF_POINT = 2.0
"""The cue worth at which the cues contribute half of ``_CUES_WEIGHT``."""
_WORD_BONUS = 0.5
_CUES_PER_TERM = 10
"""How many of a video's cues containing a term count towards its rank; past that the term is nearly flat."""

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
# ordinal is the cue's place among its video's indexed cues, by start and then id.
search_cues = Table(
    "search_cues",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("video_id", Uuid, nullable=False),
    Column("track_id", Uuid, nullable=False),
    Column("language", String(35)),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("text", Text, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Index("ix_search_cues_video_ordinal", "video_id", "ordinal", unique=True),
)

# One row per video, track language and lower-cased word: how many of those cues hold the
# word and their ordinals (see _pack_ordinals). The integer id is the FTS5 row id on SQLite.
search_words = Table(
    "search_words",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("video_id", Uuid, nullable=False, index=True),
    Column("language", String(35)),
    Column("text", Text, nullable=False),
    Column("cues", Integer, nullable=False),
    Column("ordinals", LargeBinary, nullable=False),
)

# SQLite's FTS5 tables are created by the migrations, outside the metadata: only their row
# ids and the table-named MATCH column are ever referred to.
_videos_fts = table("search_videos_fts", column("rowid"))
_words_fts = table("search_words_fts", column("rowid"))


class DatabaseSearch:
    """The :class:`~pipeline.search.base.SearchBackend` over vidpipe's own database."""

    name = "database"

    def __init__(self, database: Database) -> None:
        self._database = database
        self._match: _Matcher = _SQLiteMatcher() if database.dialect == "sqlite" else _PostgreSQLMatcher()

    async def index_video(self, video: VideoDocument, cues: Sequence[CueDocument]) -> None:
        """Replace the indexed copy of ``video``, its cues and their words in one transaction."""
        started = time.perf_counter()
        rows = _cue_rows(video.id, cues)
        words = word_rows(video.id, rows)
        with _unavailable("index a video"):
            async with self._database.engine.begin() as connection:
                # The upsert comes first: on PostgreSQL its row lock queues a concurrent
                # re-index of the same video behind this one, so the cues cannot collide.
                await connection.execute(self._upsert_video(video))
                await connection.execute(delete(search_cues).where(search_cues.c.video_id == video.id))
                await connection.execute(delete(search_words).where(search_words.c.video_id == video.id))
                if rows:
                    await connection.execute(insert(search_cues), rows)
                if words:
                    await connection.execute(insert(search_words), words)
        logger.debug(
            "Video %s is in the database search with %d cues and %d words (%.0f ms).",
            video.id,
            len(rows),
            len(words),
            (time.perf_counter() - started) * 1000,
        )

    async def delete_video(self, video_id: uuid.UUID) -> None:
        """Remove the video, its cues and their words; a video that was never indexed is not an error."""
        with _unavailable("delete a video"):
            async with self._database.engine.begin() as connection:
                await connection.execute(delete(search_words).where(search_words.c.video_id == video_id))
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
        statements = _statements(_Shape.of(self._database.dialect, terms, filters))
        values = _parameters(terms, filters)
        window = {"limit": per_page, "offset": (page - 1) * per_page}
        with _unavailable("search"):
            async with self._database.engine.connect() as connection:
                videos = (await connection.execute(statements.page, values | window)).all()
                total = await self._total(connection, statements.count, values, videos, page)
                cues = await self._best_cues(connection, statements, values, terms, videos, cues_per_video)
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
                await connection.execute(select(search_words.c.id).limit(1))
                if self._database.dialect == "sqlite":
                    await connection.execute(select(_words_fts.c.rowid).limit(1))

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

    async def _total(
        self, connection: AsyncConnection, count: Select[Any], values: dict[str, Any], videos: Sequence[Any], page: int
    ) -> int:
        """The page carries the total in every row; only a page past the end needs its own count."""
        if videos:
            return int(videos[0].total)
        if page == 1:
            return 0
        return int((await connection.execute(count, values)).scalar_one())

    async def _best_cues(
        self,
        connection: AsyncConnection,
        statements: _Statements,
        values: dict[str, Any],
        terms: list[Term],
        videos: Sequence[Any],
        per_video: int,
    ) -> dict[uuid.UUID, list[CueHit]]:
        """The best ``per_video`` cues of each video on the page, highlighted."""
        if not videos or per_video == 0:
            return {}
        video_ids = [row.video_id for row in videos]
        whole = [row.video_id for row in videos if row.language == values["language"]]
        words = await connection.execute(
            statements.matching_words, values | {"video_ids": video_ids, "whole_video_ids": whole}
        )
        chosen = _choose_cues(words.all(), statements.flags, per_video)
        keys = [(video_id, ordinal) for video_id, ordinals in chosen.items() for ordinal in ordinals]
        if not keys:
            return {}
        wanted = {"keys": keys, "key_videos": [key[0] for key in keys], "key_ordinals": [key[1] for key in keys]}
        found = {(row.video_id, row.ordinal): row for row in await connection.execute(statements.chosen_cues, wanted)}
        # A cue can be missing only when the video was re-indexed between the two statements.
        return {
            video_id: [
                CueHit(start=row.start, end=row.end, text=row.text, highlight=highlight(row.text, terms))
                for ordinal in ordinals
                if (row := found.get((video_id, ordinal))) is not None
            ]
            for video_id, ordinals in chosen.items()
        }


@dataclass(frozen=True)
class _Shape:
    """What the statements of a search depend on, apart from the values bound into them.

    Statements are built once per shape and kept (see :func:`_statements`): building one with
    SQLAlchemy costs a few milliseconds of Python, more than the database takes to run it.
    """

    sqlite: bool
    indexable: tuple[bool, ...]
    """Per query word, whether a trigram index can find it (see :attr:`Term.indexable`)."""
    owner: bool
    visible_to: bool
    min_duration: bool
    max_duration: bool
    language: bool

    @classmethod
    def of(cls, dialect: str, terms: Sequence[Term], filters: SearchFilters) -> _Shape:
        return cls(
            sqlite=dialect == "sqlite",
            indexable=tuple(term.indexable for term in terms),
            owner=filters.owner_id is not None,
            visible_to=filters.visible_to is not None,
            min_duration=filters.min_duration is not None,
            max_duration=filters.max_duration is not None,
            language=filters.language is not None,
        )


@dataclass(frozen=True)
class _Statements:
    """The statements of one :class:`_Shape`; every value comes as a bound parameter."""

    page: Select[Any]
    """One page of videos, best first, each row carrying the total as ``total``; binds ``limit`` and ``offset``."""
    count: Select[Any]
    """How many videos match, for a page past the end."""
    matching_words: Select[Any]
    """The word rows of the videos ``video_ids`` matching a query word, as ``(video_id, ordinals,
    flags...)``; with a language filter, only words of that language unless the video is one of
    ``whole_video_ids``."""
    flags: tuple[tuple[int, int | None], ...]
    """Per query word, where in a ``matching_words`` row the flags stand that the word contains it
    and, where the database can tell, that the word is it as a whole word."""
    chosen_cues: Select[Any]
    """The cues picked by :func:`_choose_cues`, by ``key_videos`` and ``key_ordinals``."""


def _parameters(terms: Sequence[Term], filters: SearchFilters) -> dict[str, Any]:
    """The values of a search, by the names its statements bind them under."""
    values: dict[str, Any] = {
        "statuses": list(filters.statuses),
        "owner_id": filters.owner_id,
        "visible_to": filters.visible_to,
        "min_duration": filters.min_duration,
        "max_duration": filters.max_duration,
        "language": filters.language,
    }
    for i, term in enumerate(terms):
        phrase = fts5_phrase(term.needle)
        values[f"needle_{i}"] = term.needle
        values[f"pattern_{i}"] = like_pattern(term.needle)
        values[f"word_{i}"] = term.word
        values[f"characters_{i}"] = sorted(set(term.needle))
        values[f"phrase_{i}"] = phrase
        values[f"title_phrase_{i}"] = f"title : {phrase}"
        values[f"description_phrase_{i}"] = f"description : {phrase}"
    return values


@functools.lru_cache(maxsize=512)
def _statements(shape: _Shape) -> _Statements:
    plan = _SearchPlan(shape)
    matching_words, flags = plan.matching_words()
    return _Statements(
        page=plan.page(),
        count=plan.count(),
        matching_words=matching_words,
        flags=flags,
        chosen_cues=plan.chosen_cues(),
    )


def _bound(name: str, i: int, type_: Any = Text) -> Any:
    """The parameter ``<name>_<i>`` of query word ``i`` (see :func:`_parameters`)."""
    return bindparam(f"{name}_{i}", type_=type_)


class _Matcher:
    """How one database finds the words containing query word ``i``; see the module docstring."""

    def word_filter(self, i: int, indexable: bool) -> ColumnElement[bool]:
        """Word rows containing the query word, in a form an index can serve (for a WHERE clause)."""
        return self.word_test(i)

    def word_test(self, i: int) -> ColumnElement[bool]:
        """Whether one word row contains the query word (to classify rows already found)."""
        raise NotImplementedError

    def word_bonus(self, i: int) -> ColumnElement[bool] | None:
        """Whether one word row is the query word as a whole word, where the database can tell."""
        return None

    def video_match(self, field: str, i: int, indexable: bool) -> ColumnElement[bool]:
        return _contains(search_videos.c[field], i)

    def among(self, target: ColumnElement[Any], name: str, type_: Any) -> ColumnElement[bool]:
        """``target`` is one of the list bound as ``name``."""
        return target.in_(bindparam(name, expanding=True, type_=type_))

    def chosen_cues(self) -> Select[Any]:
        keys = tuple_(search_cues.c.video_id, search_cues.c.ordinal)
        return select(*_CUE_COLUMNS).where(keys.in_(bindparam("keys", expanding=True)))


class _SQLiteMatcher(_Matcher):
    def word_filter(self, i: int, indexable: bool) -> ColumnElement[bool]:
        if not indexable:
            return self.word_test(i)
        match = literal_column("search_words_fts").match(_bound("phrase", i))
        indexed = search_words.c.id.in_(select(_words_fts.c.rowid).where(match).correlate(None))
        # FTS5 folds case its own way; the exact test keeps its answer to the shared rule.
        return and_(indexed, self.word_test(i))

    def word_test(self, i: int) -> ColumnElement[bool]:
        # Both sides are lower-cased by Python, so a plain substring test is the whole rule.
        return func.instr(search_words.c.text, _bound("needle", i)) > 0

    def video_match(self, field: str, i: int, indexable: bool) -> ColumnElement[bool]:
        if not indexable:
            return _contains(search_videos.c[field], i)
        # A column filter ("title : ...") keeps title and description apart in one FTS table.
        match = literal_column("search_videos_fts").match(_bound(f"{field}_phrase", i))
        return search_videos.c.id.in_(select(_videos_fts.c.rowid).where(match).correlate(None))


class _PostgreSQLMatcher(_Matcher):
    def word_filter(self, i: int, indexable: bool) -> ColumnElement[bool]:
        if indexable:
            return self.word_test(i)
        # A trigram index cannot serve one or two characters. The index over each word's set
        # of characters (migration 0010) finds the words having them all, LIKE keeps those
        # having them in order; the expression must read exactly as the index's does.
        characters = func.string_to_array(search_words.c.text, literal_column("NULL"), type_=postgresql.ARRAY(Text))
        wanted = _bound("characters", i, postgresql.ARRAY(Text))
        return or_(and_(characters.contains(wanted), self._like(i)), self._english(i))

    def word_test(self, i: int) -> ColumnElement[bool]:
        # The words are stored lower-cased, so a case-sensitive LIKE is the shared rule, and
        # the trigram index (migration 0010) serves it for needles of three characters or more.
        return or_(self._like(i), self._english(i))

    def word_bonus(self, i: int) -> ColumnElement[bool] | None:
        return self._english(i)

    def among(self, target: ColumnElement[Any], name: str, type_: Any) -> ColumnElement[bool]:
        # One array parameter keeps the statement's text the same for any number of values,
        # so psycopg prepares it once and the server plans it once.
        return target == any_(bindparam(name, type_=postgresql.ARRAY(type_)))

    def chosen_cues(self) -> Select[Any]:
        # A join with the pairs unnested plans as one index probe per pair; a row-value IN list
        # of the same pairs took longer to plan than to run.
        arrays = (
            bindparam("key_videos", type_=postgresql.ARRAY(Uuid)),
            bindparam("key_ordinals", type_=postgresql.ARRAY(Integer)),
        )
        keys = func.unnest(*arrays).table_valued(column("video_id", Uuid), column("ordinal", Integer))
        keys = keys.render_derived().alias("keys")
        on = and_(search_cues.c.video_id == keys.c.video_id, search_cues.c.ordinal == keys.c.ordinal)
        return select(*_CUE_COLUMNS).select_from(search_cues.join(keys, on))

    def _like(self, i: int) -> ColumnElement[bool]:
        return search_words.c.text.like(_bound("pattern", i), escape=LIKE_ESCAPE)

    def _english(self, i: int) -> ColumnElement[bool]:
        # text_vector is a generated column that exists on PostgreSQL only (migration 0010),
        # so it is named here rather than declared on the shared table.
        vector: ColumnElement[Any] = literal_column("search_words.text_vector")
        english: ColumnElement[Any] = literal_column("'english'::regconfig")
        return vector.bool_op("@@")(func.plainto_tsquery(english, _bound("word", i)))


class _SearchPlan:
    """Builds the statements of one :class:`_Shape`: which videos match, how they rank, which words they hold.

    The word rows matching any query word are grouped per video in one pass: their ``cues``
    counts are the per-word cue counts the ranking caps, so no cue is read to rank a video.
    """

    def __init__(self, shape: _Shape) -> None:
        self._shape = shape
        self._match: _Matcher = _SQLiteMatcher() if shape.sqlite else _PostgreSQLMatcher()
        self._terms = range(len(shape.indexable))
        self._share = literal(1.0 / len(shape.indexable), Float)
        self._bonus = [self._match.word_bonus(i) for i in self._terms]

    def count(self) -> Select[Any]:
        candidates = self._candidates()
        return select(func.count()).select_from(candidates).where(self._every_term(candidates))

    def page(self) -> Select[Any]:
        candidates = self._candidates()
        score = self._score(candidates).label("score")
        return (
            select(
                candidates.c.video_id,
                candidates.c.title,
                candidates.c.language,
                score,
                func.count().over().label("total"),
            )
            .where(self._every_term(candidates))
            .order_by(score.desc(), candidates.c.video_id)
            .limit(bindparam("limit", type_=Integer))
            .offset(bindparam("offset", type_=Integer))
        )

    def matching_words(self) -> tuple[Select[Any], tuple[tuple[int, int | None], ...]]:
        columns: list[ColumnElement[Any]] = [search_words.c.video_id, search_words.c.ordinals]
        flags: list[tuple[int, int | None]] = []
        for i in self._terms:
            columns.append(self._match.word_test(i))
            contains = len(columns) - 1
            if (bonus := self._bonus[i]) is not None:
                columns.append(bonus)
            flags.append((contains, None if bonus is None else len(columns) - 1))
        video_ids = self._match.among(search_words.c.video_id, "video_ids", Uuid)
        conditions = [video_ids, self._any_term()]
        if self._shape.language:
            whole = self._match.among(search_words.c.video_id, "whole_video_ids", Uuid)
            conditions.append(or_(search_words.c.language == _LANGUAGE, whole))
        return select(*columns).where(*conditions).order_by(search_words.c.video_id), tuple(flags)

    def chosen_cues(self) -> Select[Any]:
        return self._match.chosen_cues()

    def _any_term(self) -> ColumnElement[bool]:
        return or_(*[self._match.word_filter(i, indexable) for i, indexable in enumerate(self._shape.indexable)])

    def _word_hits(self) -> Any:
        """Per video with a matching word: per query word, the cues holding it and those holding it as a word."""
        columns: list[ColumnElement[Any]] = [search_words.c.video_id]
        for i in self._terms:
            columns.append(_sum_cues(self._match.word_test(i)).label(f"cues_{i}"))
            if (bonus := self._bonus[i]) is not None:
                columns.append(_sum_cues(bonus).label(f"words_{i}"))
        conditions = [self._any_term()]
        if self._shape.language:
            in_language = select(search_videos.c.video_id).where(search_videos.c.language == _LANGUAGE)
            conditions.append(or_(search_words.c.language == _LANGUAGE, search_words.c.video_id.in_(in_language)))
        hits = select(*columns).where(*conditions).group_by(search_words.c.video_id).cte("hits")
        # Computed once: without statistics (a freshly filled table) PostgreSQL may otherwise
        # run the grouping again for every video it joins.
        return hits.prefix_with("MATERIALIZED", dialect="postgresql")

    def _candidates(self) -> Any:
        """The filtered videos, with per query word a title flag, a description flag and capped cue counts."""
        hits = self._word_hits()
        columns: list[ColumnElement[Any]] = [search_videos.c.video_id, search_videos.c.title, search_videos.c.language]
        for i, indexable in enumerate(self._shape.indexable):
            for field in ("title", "description"):
                found = self._match.video_match(field, i, indexable)
                columns.append(case((found, 1), else_=0).label(f"{field}_{i}"))
            columns.append(_capped(hits.c[f"cues_{i}"]).label(f"cues_{i}"))
            if self._bonus[i] is not None:
                columns.append(_capped(hits.c[f"words_{i}"]).label(f"words_{i}"))
        joined = search_videos.outerjoin(hits, hits.c.video_id == search_videos.c.video_id)
        return select(*columns).select_from(joined).where(*self._video_filters()).subquery("candidates")

    def _every_term(self, candidates: Any) -> ColumnElement[bool]:
        found = [
            or_(candidates.c[f"title_{i}"] == 1, candidates.c[f"description_{i}"] == 1, candidates.c[f"cues_{i}"] > 0)
            for i in self._terms
        ]
        return and_(*found)

    def _video_filters(self) -> list[ColumnElement[bool]]:
        shape = self._shape
        conditions = [self._match.among(search_videos.c.status, "statuses", String)]
        if shape.owner:
            conditions.append(search_videos.c.owner_id == bindparam("owner_id", type_=Uuid))
        if shape.visible_to:
            owner = search_videos.c.owner_id
            conditions.append(or_(owner == bindparam("visible_to", type_=Uuid), owner.is_(None)))
        if shape.min_duration:
            conditions.append(search_videos.c.duration >= bindparam("min_duration", type_=Float))
        if shape.max_duration:
            conditions.append(search_videos.c.duration <= bindparam("max_duration", type_=Float))
        if shape.language:
            # A track in the language has words in it: a track without a single word has no
            # cue a search could show either.
            tracks_in_language = select(search_words.c.video_id).where(search_words.c.language == _LANGUAGE)
            conditions.append(
                or_(search_videos.c.language == _LANGUAGE, search_videos.c.video_id.in_(tracks_in_language))
            )
        return conditions

    def _score(self, candidates: Any) -> ColumnElement[Any]:
        title = _sum([candidates.c[f"title_{i}"] for i in self._terms])
        description = _sum([candidates.c[f"description_{i}"] for i in self._terms])
        cues = _sum([candidates.c[f"cues_{i}"] for i in self._terms])
        words = [candidates.c[f"words_{i}"] for i in self._terms if self._bonus[i] is not None]
        if words:
            cues = cues + _sum(words) * _WORD_BONUS
        cues = cues * self._share
        return (
            title * self._share * _TITLE_WEIGHT
            + description * self._share * _DESCRIPTION_WEIGHT
            + cues * _CUES_WEIGHT / (cues + _CUES_HALF_POINT)
        )


_LANGUAGE = bindparam("language", type_=String)

_CUE_COLUMNS = (
    search_cues.c.video_id,
    search_cues.c.ordinal,
    search_cues.c.start,
    search_cues.c.end,
    search_cues.c.text,
)


def _sum(expressions: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    return functools.reduce(operator.add, expressions)


def _sum_cues(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, search_words.c.cues), else_=0))


def _capped(count: ColumnElement[Any]) -> ColumnElement[Any]:
    """``count`` (NULL for a video without matching words) as 0 to :data:`_CUES_PER_TERM`."""
    return case((count > _CUES_PER_TERM, _CUES_PER_TERM), (count > 0, count), else_=0)


def _contains(target: Any, i: int) -> ColumnElement[bool]:
    result: ColumnElement[bool] = target.ilike(_bound("pattern", i), escape=LIKE_ESCAPE)
    return result


def _cue_rows(video_id: uuid.UUID, cues: Sequence[CueDocument]) -> list[dict[str, Any]]:
    """One row per cue id (the last one wins), in time order with their ordinals, for one executemany."""
    unique = {cue.id: cue for cue in cues}
    if len(unique) < len(cues):
        logger.warning("Video %s sent %d cues with a repeated id; the last of each is kept.", video_id, len(cues))
    ordered = sorted(unique.values(), key=lambda cue: (cue.start, cue.id))
    return [
        {
            "id": cue.id,
            "video_id": video_id,
            "track_id": cue.track_id,
            "language": cue.language,
            "start": cue.start,
            "end": cue.end,
            "text": clean_text(cue.text),
            "ordinal": ordinal,
        }
        for ordinal, cue in enumerate(ordered)
    ]


def word_rows(video_id: uuid.UUID, cue_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``search_words`` rows of one video from its cue rows (``language``, ``text``, ``ordinal``).

    The index write path and migration 0010's back-fill both build the rows here, so a migrated
    library holds exactly what indexing it again would write.
    """
    ordinals: dict[tuple[str | None, str], list[int]] = {}
    for row in cue_rows:
        for word in text_words(row["text"]):
            ordinals.setdefault((row["language"], word), []).append(row["ordinal"])
    return [
        {
            "video_id": video_id,
            "language": language,
            "text": word,
            "cues": len(found),
            "ordinals": _pack_ordinals(found),
        }
        for (language, word), found in ordinals.items()
    ]


def _pack_ordinals(ordinals: Sequence[int]) -> bytes:
    """Cue ordinals as little-endian unsigned 32-bit integers: compact, and the same on both databases."""
    return struct.pack(f"<{len(ordinals)}I", *ordinals)


def _unpack_ordinals(packed: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(packed) // 4}I", packed)


def _choose_cues(
    words: Sequence[Any], flags: tuple[tuple[int, int | None], ...], per_video: int
) -> dict[uuid.UUID, list[int]]:
    """Per video, the ordinals of its best ``per_video`` cues: highest worth first, then earliest.

    ``words`` are the rows of :attr:`_Statements.matching_words`, ordered by video, and ``flags``
    where their per-word flags stand. A cue's worth is, per query word, one if one of its words
    contains it and a half more if one is it as a whole word: counted here in halves, so that
    worth and ordinal fit in one integer key.
    """
    chosen: dict[uuid.UUID, list[int]] = {}
    for video_id, rows in groupby(words, key=operator.itemgetter(0)):
        matched: list[set[int]] = [set() for _ in flags]
        whole: list[set[int]] = [set() for _ in flags]
        for row in rows:
            ordinals = _unpack_ordinals(row[1])
            for i, (contains, bonus) in enumerate(flags):
                if row[contains]:
                    matched[i].update(ordinals)
                if bonus is not None and row[bonus]:
                    whole[i].update(ordinals)
        # Usually enough cues are worth the most (every word, whole where that counts): the
        # intersection of the sets finds them in C, and the earliest of them are the answer.
        best = set.intersection(*matched, *(whole[i] for i, (_, bonus) in enumerate(flags) if bonus is not None))
        if len(best) >= per_video:
            chosen[video_id] = heapq.nsmallest(per_video, best)
            continue
        # Otherwise count set members in C (Counter over the sets); only the ranking key is made
        # per cue in Python.
        halves = Counter(itertools.chain(*matched, *matched, *whole))
        keys = heapq.nlargest(per_video, [(worth << 32) | (_LAST_ORDINAL - o) for o, worth in halves.items()])
        chosen[video_id] = [_LAST_ORDINAL - (key & _LAST_ORDINAL) for key in keys]
    return chosen


_LAST_ORDINAL = 0xFFFFFFFF
"""The largest ordinal :func:`_pack_ordinals` can store."""


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
